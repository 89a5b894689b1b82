import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { accountKey, addressKey, LoginThrottle } from '../../examples/host-panel/src/login-throttle.js';
import { hashPassword, verifyPassword, type PasswordHasher } from '../../examples/host-panel/src/passwords.js';
import { ADMIN, csrfFrom, startPanel, type Agent } from '../support/panel.js';

const MINUTE = 60_000;

/** A clock the test moves by hand, so a lock's expiry needs no waiting. */
function manualClock(start = Date.UTC(2026, 0, 1)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** scrypt, recording the stored hash each check ran against. */
function countingHasher(): PasswordHasher & { checks: string[] } {
  const checks: string[] = [];
  return {
    checks,
    hash: hashPassword,
    verify: async (password, stored) => {
      checks.push(stored);
      return verifyPassword(password, stored);
    },
  };
}

/** Loads the login page as `browser` and submits it with its CSRF token. */
async function logIn(browser: Agent, username: string, password: string, headers: Record<string, string> = {}) {
  const page = await browser.get('/login').set(headers).expect(200);
  return browser.post('/login').set(headers).type('form').send({ _csrf: csrfFrom(page.text), username, password });
}

describe('failed logins are rate-limited per account', () => {
  test('five wrong passwords lock the account: 429 with Retry-After, and the right password is refused until the lock ends', async (t) => {
    const clock = manualClock();
    const host = await startPanel(t, { auth: { now: clock.now } });
    const browser = host.visitor();

    for (let attempt = 1; attempt <= 4; attempt++) {
      const response = await logIn(browser, ADMIN.username, `wrong ${attempt}`);
      assert.equal(response.status, 401, `attempt ${attempt}`);
      assert.equal(response.headers['retry-after'], undefined, `attempt ${attempt}`);
    }
    const fifth = await logIn(browser, ADMIN.username, 'wrong 5');
    assert.equal(fifth.status, 429);
    assert.equal(fifth.headers['retry-after'], '900');
    assert.match(fifth.text, /<p class="error" role="alert">Too many failed logins; try again in 15 minutes<\/p>/);

    const right = await logIn(browser, ADMIN.username, ADMIN.password);
    assert.equal(right.status, 429, 'the right password is refused while the account is locked');
    assert.equal((await browser.get('/admin/networks')).status, 303, 'still logged out');

    clock.advance(15 * MINUTE - 1_000);
    const almost = await logIn(browser, ADMIN.username, ADMIN.password);
    assert.equal(almost.status, 429);
    assert.equal(almost.headers['retry-after'], '1');

    clock.advance(1_000);
    const after = await logIn(browser, ADMIN.username, ADMIN.password);
    assert.equal(after.status, 303, 'the lock has ended');
    assert.equal((await browser.get('/admin/networks')).status, 200);
  });

  test('the account lock holds whatever address the guesses come from', async (t) => {
    const host = await startPanel(t, { config: { trustProxy: ['loopback'] } });
    const from = (n: number) => ({ 'X-Forwarded-For': `198.51.100.${n}` });

    for (let n = 1; n <= 5; n++) await logIn(host.visitor(), ADMIN.username, 'guess', from(n));
    const response = await logIn(host.visitor(), ADMIN.username, ADMIN.password, from(99));

    assert.equal(response.status, 429);
    assert.equal(response.headers['retry-after'], '900');
  });

  test('a user name differing only in case or spaces shares the lock', async (t) => {
    const host = await startPanel(t);
    const browser = host.visitor();
    for (const name of ['admin', 'Admin', ' ADMIN', 'admin ', 'aDmin']) await logIn(browser, name, 'guess');

    assert.equal((await logIn(browser, ADMIN.username, ADMIN.password)).status, 429);
  });

  test('a successful login forgets the account\'s earlier failures', async (t) => {
    const host = await startPanel(t);
    for (let n = 0; n < 4; n++) assert.equal((await logIn(host.visitor(), ADMIN.username, 'guess')).status, 401);
    assert.equal((await logIn(host.visitor(), ADMIN.username, ADMIN.password)).status, 303);

    for (let n = 0; n < 4; n++) assert.equal((await logIn(host.visitor(), ADMIN.username, 'typo')).status, 401, `failure ${n + 1} after the login`);
  });

  test('thirty guesses sent at once check at most five passwords; at least the other 25 are refused with 429', async (t) => {
    const hasher = countingHasher();
    const host = await startPanel(t, { auth: { passwords: hasher } });
    const browser = host.visitor();
    const token = csrfFrom((await browser.get('/login').expect(200)).text);

    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, n) => browser.post('/login').type('form').send({ _csrf: token, username: ADMIN.username, password: `guess ${n}` })),
    );

    const statuses = responses.map((response) => response.status);
    assert.ok(hasher.checks.length <= 5, `${hasher.checks.length} passwords checked`);
    assert.ok(statuses.every((status) => status === 401 || status === 429), statuses.join(' '));
    assert.ok(statuses.filter((status) => status === 429).length >= 25, statuses.join(' '));
    assert.ok(responses.filter((response) => response.status === 429).every((response) => Number(response.headers['retry-after']) > 0));
  });
});

describe('failed logins are rate-limited per address', () => {
  test('twenty failures from one address lock it for every user name, while other addresses can still log in', async (t) => {
    const host = await startPanel(t, { config: { trustProxy: ['loopback'] } });
    const attacker = { 'X-Forwarded-For': '203.0.113.7' };

    const statuses: number[] = [];
    for (let n = 0; n < 20; n++) statuses.push((await logIn(host.visitor(), `user-${n}`, 'guess', attacker)).status);
    assert.deepEqual(statuses, [...Array<number>(19).fill(401), 429]);

    const fromAttacker = await logIn(host.visitor(), ADMIN.username, ADMIN.password, attacker);
    assert.equal(fromAttacker.status, 429);
    assert.equal(fromAttacker.headers['retry-after'], '900');
    const fromElsewhere = await logIn(host.visitor(), ADMIN.username, ADMIN.password, { 'X-Forwarded-For': '198.51.100.20' });
    assert.equal(fromElsewhere.status, 303);
  });

  test('without a trusted proxy, X-Forwarded-For is ignored: it cannot dodge the address limit', async (t) => {
    const host = await startPanel(t);
    const statuses: number[] = [];
    for (let n = 0; n < 20; n++) statuses.push((await logIn(host.visitor(), `user-${n}`, 'guess', { 'X-Forwarded-For': `198.51.100.${n}` })).status);

    assert.equal(statuses.at(-1), 429);
  });
});

describe('unknown user names cannot be told from known ones', () => {
  test('an unknown name runs the same password check as a known one and gets the same answer', async (t) => {
    const hasher = countingHasher();
    const host = await startPanel(t, { auth: { passwords: hasher } });

    const known = await logIn(host.visitor(), ADMIN.username, 'wrong password');
    const knownChecks = hasher.checks.splice(0);
    const unknown = await logIn(host.visitor(), 'nobody', 'wrong password');
    const unknownChecks = hasher.checks.splice(0);

    assert.equal(knownChecks.length, 1, 'a known name checks one password hash');
    assert.equal(unknownChecks.length, 1, 'an unknown name checks one password hash too');
    const shape = (stored: string) => stored.replace(/[0-9a-f]/g, 'x');
    assert.equal(shape(unknownChecks[0]!), shape(knownChecks[0]!), 'against a hash of the same scheme and size');
    const users = await host.db('panel_users').select('password_hash');
    assert.ok(users.every((user) => user.password_hash !== unknownChecks[0]), 'the dummy hash is no user\'s hash');

    assert.equal(unknown.status, known.status);
    const message = (text: string) => /<p class="error" role="alert">([^<]*)<\/p>/.exec(text)?.[1];
    assert.equal(message(unknown.text), message(known.text));
  });
});

describe('the throttle\'s memory stays bounded', () => {
  test('a flood of new addresses and user names keeps at most maxEntries of each, and a locked account stays locked', () => {
    const clock = manualClock();
    const throttle = new LoginThrottle({ maxEntries: 100 }, clock.now);
    for (let n = 0; n < 5; n++) {
      throttle.begin({ account: 'admin', address: `192.0.2.${n}` });
      throttle.failed({ account: 'admin', address: `192.0.2.${n}` });
    }
    assert.equal(throttle.begin({ account: 'admin', address: '192.0.2.200' }).locked, true);

    for (let n = 0; n < 10_000; n++) {
      const attempt = { account: `user-${n}`, address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` };
      throttle.begin(attempt);
      throttle.failed(attempt);
    }

    assert.deepEqual(throttle.size, { accounts: 100, addresses: 100 });
    assert.equal(throttle.begin({ account: 'admin', address: '192.0.2.201' }).locked, true, 'the flood did not evict the lock');
  });

  test('options are checked at once', () => {
    assert.throws(() => new LoginThrottle({ maxEntries: 0 }), /Expected `maxEntries` to be an integer >= 1, got `0` \(number\)/);
  });

  test('an IPv6 client counts as its /64, an IPv4-mapped one as its IPv4 address', () => {
    assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:2::99'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:0db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
    assert.equal(accountKey('  Admin '), 'admin');
  });
});
