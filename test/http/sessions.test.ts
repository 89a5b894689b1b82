import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import supertest from 'supertest';
import { LOGIN_CSRF_COOKIE, SESSION_COOKIE } from '../../examples/host-panel/src/auth.js';
import { configFromEnv } from '../../examples/host-panel/src/config.js';
import { ADMIN, csrfFrom, startPanel, type TestPanel } from '../support/panel.js';

const sessionRows = async (host: TestPanel) => Number(((await host.db('panel_sessions').count({ n: '*' })) as { n: number | string }[])[0]?.n);

/** The Set-Cookie line of a cookie, if the response sets it. */
function setCookie(header: string | string[] | undefined, name: string): string | undefined {
  const list = Array.isArray(header) ? header : header ? [header] : [];
  return list.find((cookie) => cookie.startsWith(`${name}=`));
}

/** Logs ADMIN in with `password` as a browser would and returns the session cookie (`panel.sid=…`). */
async function sessionCookieAfterLogin(host: TestPanel, password: string = ADMIN.password, headers: Record<string, string> = {}) {
  // The cookie is passed by hand: a cookie jar would not send a Secure cookie back over plain HTTP.
  const page = await supertest(host.panel.app).get('/login').set(headers).expect(200);
  const csrfCookie = setCookie(page.headers['set-cookie'], LOGIN_CSRF_COOKIE)?.split(';')[0];
  assert.ok(csrfCookie, 'the login page sets its CSRF cookie');
  const response = await supertest(host.panel.app)
    .post('/login')
    .set({ ...headers, Cookie: csrfCookie })
    .type('form')
    .send({ _csrf: csrfFrom(page.text), username: ADMIN.username, password });
  assert.equal(response.status, 303, response.text.slice(0, 300));
  const line = setCookie(response.headers['set-cookie'], SESSION_COOKIE);
  assert.ok(line, 'logging in sets the session cookie');
  return { cookie: line.split(';')[0]!, line, response };
}

describe('visitors who do not log in store no session', () => {
  test('300 login pages and 100 unknown pages store no session row; logging in afterwards stores one', async (t) => {
    const host = await startPanel(t);

    for (let n = 0; n < 300; n++) {
      const page = await supertest(host.panel.app).get('/login').expect(200);
      assert.equal(setCookie(page.headers['set-cookie'], SESSION_COOKIE), undefined, 'no session cookie on the login page');
    }
    for (let n = 0; n < 100; n++) await supertest(host.panel.app).get(`/no-such-page-${n}`).expect(404);
    assert.equal(await sessionRows(host), 0);

    const { cookie } = await sessionCookieAfterLogin(host);
    assert.equal(await sessionRows(host), 1);
    await supertest(host.panel.app).get('/admin/networks').set('Cookie', cookie).expect(200);
  });

  test('a failed login stores no session either', async (t) => {
    const host = await startPanel(t);
    const browser = host.visitor();
    const page = await browser.get('/login').expect(200);
    await browser.post('/login').type('form').send({ _csrf: csrfFrom(page.text), username: ADMIN.username, password: 'wrong' }).expect(401);

    assert.equal(await sessionRows(host), 0);
  });

  test('the login form\'s CSRF token lives in a cookie scoped to /login, and a made-up cookie and token pair is refused', async (t) => {
    const host = await startPanel(t);
    const page = await host.visitor().get('/login').expect(200);
    const line = setCookie(page.headers['set-cookie'], LOGIN_CSRF_COOKIE);
    assert.ok(line, 'the login page sets the CSRF cookie');
    assert.match(line, /; Path=\/login(;|$)/);
    assert.match(line, /; HttpOnly/);
    assert.match(line, /; SameSite=Lax/);
    const nonce = line.split(';')[0]!.split('=')[1]!;
    assert.notEqual(csrfFrom(page.text), nonce, 'the form carries a signature of the cookie, not the cookie itself');

    const forged = await host
      .visitor()
      .post('/login')
      .set('Cookie', `${LOGIN_CSRF_COOKIE}=${'A'.repeat(32)}`)
      .type('form')
      .send({ _csrf: 'A'.repeat(32), username: ADMIN.username, password: ADMIN.password });
    assert.equal(forged.status, 403);
    const doubleSubmit = await host
      .visitor()
      .post('/login')
      .set('Cookie', `${LOGIN_CSRF_COOKIE}=${nonce}`)
      .type('form')
      .send({ _csrf: nonce, username: ADMIN.username, password: ADMIN.password });
    assert.equal(doubleSubmit.status, 403, 'the cookie value itself is not a token');
    assert.equal(await sessionRows(host), 0);
  });

  test('after login the CSRF cookie is dropped and admin forms take the session\'s token', async (t) => {
    const host = await startPanel(t);
    const { line, response } = await sessionCookieAfterLogin(host);
    const cleared = setCookie(response.headers['set-cookie'], LOGIN_CSRF_COOKIE);
    assert.ok(cleared, 'the login answer clears the CSRF cookie');
    assert.match(cleared, /Expires=Thu, 01 Jan 1970/);
    assert.ok(line);

    const admin = await host.login();
    await admin.form('/admin/networks', { name: 'office', interface: 'wg0' }).expect(303);
    const loginPageToken = csrfFrom((await host.visitor().get('/login')).text);
    await admin.agent.post('/admin/networks').type('form').send({ _csrf: loginPageToken, name: 'other', interface: 'wg1' }).expect(403);
  });
});

describe('a changed password ends old sessions', () => {
  test('after a restart with a new PANEL_ADMIN_PASSWORD the old cookie is sent to /login, and the new password works', async (t) => {
    const first = await startPanel(t);
    const { cookie } = await sessionCookieAfterLogin(first);
    await supertest(first.panel.app).get('/admin/networks').set('Cookie', cookie).expect(200);

    const second = await first.restart({ config: { adminPassword: 'a brand new passphrase' } });

    const old = await supertest(second.panel.app).get('/admin/networks').set('Cookie', cookie);
    assert.equal(old.status, 303);
    assert.equal(old.headers.location, '/login?next=%2Fadmin%2Fnetworks');
    assert.equal(await sessionRows(second), 0, 'the old session row is gone');
    const fresh = await sessionCookieAfterLogin(second, 'a brand new passphrase');
    await supertest(second.panel.app).get('/admin/networks').set('Cookie', fresh.cookie).expect(200);
  });

  test('a restart with the same password keeps the session', async (t) => {
    const first = await startPanel(t);
    const { cookie } = await sessionCookieAfterLogin(first);

    const second = await first.restart();

    await supertest(second.panel.app).get('/admin/networks').set('Cookie', cookie).expect(200);
  });

  test('a deleted user\'s session ends at its next request; a changed role applies at once', async (t) => {
    const host = await startPanel(t);
    const { cookie } = await sessionCookieAfterLogin(host);
    await supertest(host.panel.app).get('/admin/plugins').set('Cookie', cookie).expect(200);

    await host.db('panel_users').where({ username: ADMIN.username }).update({ role: 'viewer' });
    await supertest(host.panel.app).get('/admin/plugins').set('Cookie', cookie).expect(403);
    await supertest(host.panel.app).get('/admin/networks').set('Cookie', cookie).expect(200);

    await host.db('panel_users').where({ username: ADMIN.username }).delete();
    const after = await supertest(host.panel.app).get('/admin/networks').set('Cookie', cookie);
    assert.equal(after.status, 303);
  });
});

describe('cookies behind a TLS proxy', () => {
  const HTTPS = { 'X-Forwarded-Proto': 'https' };

  test('with PANEL_TRUST_PROXY and X-Forwarded-Proto: https, both cookies are Secure', async (t) => {
    const host = await startPanel(t, { config: { trustProxy: ['loopback'] } });
    const page = await host.visitor().get('/login').set(HTTPS).expect(200);
    assert.match(setCookie(page.headers['set-cookie'], LOGIN_CSRF_COOKIE) ?? '', /; Secure/);

    const { line } = await sessionCookieAfterLogin(host, ADMIN.password, HTTPS);
    assert.match(line, /; Secure/);
  });

  test('over plain HTTP the cookies are not Secure (else the browser would drop them)', async (t) => {
    const host = await startPanel(t, { config: { trustProxy: ['loopback'] } });
    const page = await host.visitor().get('/login').expect(200);
    assert.doesNotMatch(setCookie(page.headers['set-cookie'], LOGIN_CSRF_COOKIE) ?? 'missing', /; Secure/);

    const { line } = await sessionCookieAfterLogin(host);
    assert.doesNotMatch(line, /; Secure/);
  });

  test('without a trusted proxy, X-Forwarded-Proto is not believed', async (t) => {
    const host = await startPanel(t);
    const { line } = await sessionCookieAfterLogin(host, ADMIN.password, HTTPS);
    assert.doesNotMatch(line, /; Secure/);
  });

  test('PANEL_COOKIE_SECURE=false never marks them Secure; true always does', async (t) => {
    const never = await startPanel(t, { config: { trustProxy: ['loopback'], cookieSecure: false } });
    assert.doesNotMatch((await sessionCookieAfterLogin(never, ADMIN.password, HTTPS)).line, /; Secure/);

    const always = await startPanel(t, { config: { trustProxy: ['loopback'], cookieSecure: true } });
    assert.match((await sessionCookieAfterLogin(always, ADMIN.password, HTTPS)).line, /; Secure/);
  });

  test('PANEL_TRUST_PROXY and PANEL_COOKIE_SECURE are read from the environment; a bad value fails at start', () => {
    assert.equal(configFromEnv({}).trustProxy, false);
    assert.equal(configFromEnv({}).cookieSecure, 'auto');
    assert.deepEqual(configFromEnv({ PANEL_TRUST_PROXY: 'loopback, 10.0.0.0/8,fd00::1' }).trustProxy, ['loopback', '10.0.0.0/8', 'fd00::1']);
    assert.equal(configFromEnv({ PANEL_TRUST_PROXY: '2' }).trustProxy, 2);
    assert.equal(configFromEnv({ PANEL_TRUST_PROXY: 'true' }).trustProxy, true);
    assert.equal(configFromEnv({ PANEL_COOKIE_SECURE: 'true' }).cookieSecure, true);
    assert.equal(configFromEnv({ PANEL_COOKIE_SECURE: 'false' }).cookieSecure, false);
    assert.throws(() => configFromEnv({ PANEL_TRUST_PROXY: 'nginx' }), /Expected `PANEL_TRUST_PROXY` to be .*, got `nginx`/);
    assert.throws(() => configFromEnv({ PANEL_TRUST_PROXY: '10.0.0.0/33' }), /got `10.0.0.0\/33`/);
    assert.throws(() => configFromEnv({ PANEL_COOKIE_SECURE: 'yes' }), /Expected `PANEL_COOKIE_SECURE` to be auto, true or false, got `yes`/);
  });
});
