import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { ADMIN, API_TOKEN, csrfFrom, hostRows, seedHost, startPanel, wgKey, type AdminSession, type SeededHost } from '../support/panel.js';

type Method = 'get' | 'post' | 'put' | 'delete';

/** Every route of the JSON API, with ids that exist in a seeded host (1 network, 1 peer, 1 VM). */
const API_ROUTES: [Method, string][] = [
  ['get', '/api/networks'],
  ['post', '/api/networks'],
  ['get', '/api/networks/1'],
  ['put', '/api/networks/1'],
  ['delete', '/api/networks/1'],
  ['get', '/api/networks/1/peers'],
  ['post', '/api/networks/1/peers'],
  ['get', '/api/networks/1/peers/1'],
  ['put', '/api/networks/1/peers/1'],
  ['delete', '/api/networks/1/peers/1'],
  ['get', '/api/vms'],
  ['post', '/api/vms'],
  ['get', '/api/vms/1'],
  ['put', '/api/vms/1'],
  ['delete', '/api/vms/1'],
  ['get', '/api/plugins'],
  ['post', '/api/plugins/bandwidth/enable'],
  ['post', '/api/plugins/bandwidth/disable'],
  ['post', '/api/plugins/bandwidth/uninstall'],
  // the bandwidth plugin's own API, behind the same token
  ['get', '/api/networks/1/bandwidth'],
  ['get', '/api/vms/1/bandwidth'],
  ['get', '/api/bandwidth/limits'],
  ['put', '/api/bandwidth/limits/peer/1'],
  ['delete', '/api/bandwidth/limits/vm/1'],
  ['post', '/api/bandwidth/reconcile'],
  ['get', '/api/no-such-route'],
];

/** Bodies that would be valid writes, so a 401 cannot be mistaken for a validation error. */
const WRITE_BODY = { name: 'intruder', interface: 'wg7', public_key: wgKey(7), allowed_ips: ['10.7.0.2/32'], up_kbps: 1000, down_kbps: 1000 };

const WRONG_CREDENTIALS: [string, string | undefined][] = [
  ['no Authorization header', undefined],
  ['a wrong bearer token', 'Bearer wrong-token-0123456789abcdef'],
  ['the token with one character more', `Bearer ${API_TOKEN}x`],
  ['an empty bearer token', 'Bearer '],
  ['the token without the Bearer scheme', API_TOKEN],
  ['the admin password as Basic auth', `Basic ${Buffer.from(`${ADMIN.username}:${ADMIN.password}`).toString('base64')}`],
];

describe('the JSON API needs the bearer token', () => {
  for (const [label, authorization] of WRONG_CREDENTIALS) {
    test(`with ${label}, every /api route answers 401 JSON and changes nothing`, async (t) => {
      const host = await startPanel(t);
      await seedHost(host.api);
      const before = await hostRows(host.db);
      const limitsBefore = await host.db('bw_limits').orderBy('id');
      const visitor = host.visitor();

      for (const [method, path] of API_ROUTES) {
        let request = visitor[method](path);
        if (authorization !== undefined) request = request.set('Authorization', authorization);
        const response = await (method === 'post' || method === 'put' ? request.send(WRITE_BODY) : request);
        assert.equal(response.status, 401, `${method.toUpperCase()} ${path}`);
        assert.match(String(response.headers['content-type']), /^application\/json/, `${method.toUpperCase()} ${path}`);
        assert.deepEqual(
          response.body,
          { error: { code: 'unauthorized', message: 'Missing or wrong bearer token (Authorization: Bearer <PANEL_API_TOKEN>)' } },
          `${method.toUpperCase()} ${path}`,
        );
      }

      assert.deepEqual(await hostRows(host.db), before);
      assert.deepEqual(await host.db('bw_limits').orderBy('id'), limitsBefore);
      const plugins = await host.api.get('/api/plugins').expect(200);
      assert.equal(plugins.body.plugins[0].running, true, 'the 401 disable/uninstall calls must not have stopped the plugin');
    });
  }

  test('a logged-in admin session does not open the API: only the bearer token does', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();

    const withCookie = await admin.agent.get('/api/networks');
    assert.equal(withCookie.status, 401);
    assert.equal(withCookie.body.error.code, 'unauthorized');

    const withToken = await host.api.get('/api/networks');
    assert.equal(withToken.status, 200);
    assert.deepEqual(withToken.body, { networks: [] });
  });
});

/** Admin pages with ids that exist in a seeded host. */
const ADMIN_PAGES = [
  '/admin',
  '/admin/networks',
  '/admin/networks/1',
  '/admin/networks/1/peers/1',
  '/admin/vms',
  '/admin/vms/1',
  '/admin/plugins',
  '/admin/bandwidth',
  '/admin/networks?sort=name',
];

describe('admin pages need a session', () => {
  test('a logged-out visitor is sent to /login with the page to come back to', async (t) => {
    const host = await startPanel(t);
    await seedHost(host.api);
    const visitor = host.visitor();

    for (const path of ADMIN_PAGES) {
      const response = await visitor.get(path);
      assert.equal(response.status, 303, path);
      assert.equal(response.headers.location, `/login?next=${encodeURIComponent(path)}`, path);
    }
    const root = await visitor.get('/');
    assert.equal(root.status, 303);
    assert.equal(root.headers.location, '/admin');
  });

  test('a logged-out visitor cannot post admin forms: sent to /login, nothing written', async (t) => {
    const host = await startPanel(t);
    await seedHost(host.api);
    const before = await hostRows(host.db);
    const limitsBefore = await host.db('bw_limits').orderBy('id');
    const visitor = host.visitor();
    const forms: [string, Record<string, string>][] = [
      ['/admin/networks', { name: 'intruder', interface: 'wg7' }],
      ['/admin/networks/1', { name: 'renamed' }],
      ['/admin/networks/1/delete', {}],
      ['/admin/networks/1/peers', { name: 'intruder', public_key: wgKey(7), allowed_ips: '10.7.0.2/32' }],
      ['/admin/networks/1/peers/1', { name: 'renamed' }],
      ['/admin/networks/1/peers/1/delete', {}],
      ['/admin/vms', { name: 'intruder', interface: 'tap-x' }],
      ['/admin/vms/1', { name: 'renamed' }],
      ['/admin/vms/1/delete', {}],
      ['/admin/plugins/bandwidth/disable', {}],
      ['/admin/plugins/bandwidth/uninstall', {}],
      ['/admin/bandwidth/limits/peer/1', { bandwidth_up_kbps: '1000', bandwidth_down_kbps: '1000', action: 'set' }],
    ];

    for (const [path, fields] of forms) {
      const response = await visitor.post(path).type('form').send(fields);
      assert.equal(response.status, 303, path);
      assert.match(String(response.headers.location), /^\/login\?next=/, path);
    }
    assert.deepEqual(await hostRows(host.db), before);
    assert.deepEqual(await host.db('bw_limits').orderBy('id'), limitsBefore);
  });
});

describe('logging in and out', () => {
  test('the right password logs in with a new session id and lands on the requested page', async (t) => {
    const host = await startPanel(t);
    const browser = host.visitor();
    const page = await browser.get('/login?next=/admin/vms').expect(200);
    assert.match(page.text, /<input type="hidden" name="next" value="\/admin\/vms">/);
    assert.equal(sessionCookie(page.headers['set-cookie']), undefined, 'loading the login page starts no session (its CSRF token is in a cookie)');

    const response = await browser
      .post('/login')
      .type('form')
      .send({ _csrf: csrfFrom(page.text), username: ADMIN.username, password: ADMIN.password, next: '/admin/vms' });

    assert.equal(response.status, 303);
    assert.equal(response.headers.location, '/admin/vms');
    const sidAfter = sessionCookie(response.headers['set-cookie']);
    assert.ok(sidAfter, 'logging in sets a session cookie');
    const vms = await browser.get('/admin/vms');
    assert.equal(vms.status, 200);
    assert.match(vms.text, new RegExp(`<span class="muted">${ADMIN.username}</span>`));
  });

  for (const [label, username, password] of [
    ['a wrong password', ADMIN.username, 'wrong password'],
    ['an unknown user', 'nobody', ADMIN.password],
    ['an empty password', ADMIN.username, ''],
  ] as const) {
    test(`${label} answers 401 with the login form again, and nobody is logged in`, async (t) => {
      const host = await startPanel(t);
      const browser = host.visitor();
      const page = await browser.get('/login').expect(200);

      const response = await browser.post('/login').type('form').send({ _csrf: csrfFrom(page.text), username, password });

      assert.equal(response.status, 401);
      assert.match(response.text, /<p class="error" role="alert">Wrong user name or password<\/p>/);
      assert.match(response.text, new RegExp(`name="username" value="${username}"`), 'the typed user name is kept');
      if (password) assert.ok(!response.text.includes(password), 'the typed password is never echoed');
      const after = await browser.get('/admin/networks');
      assert.equal(after.status, 303);
      assert.equal(after.headers.location, '/login?next=%2Fadmin%2Fnetworks');
    });
  }

  test('logging out ends the session: admin pages redirect to /login again', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    await admin.agent.get('/admin/networks').expect(200);

    const response = await admin.form('/logout');

    assert.equal(response.status, 303);
    assert.equal(response.headers.location, '/login');
    const after = await admin.agent.get('/admin/networks');
    assert.equal(after.status, 303);
    assert.equal(after.headers.location, '/login?next=%2Fadmin%2Fnetworks');
    const sessions = await host.db('panel_sessions').select('data');
    assert.ok(
      sessions.every((row) => !JSON.parse(String(row.data)).user),
      'no stored session still carries the user',
    );
  });

  const OFF_SITE = [
    '//evil.example/admin',
    'https://evil.example/',
    'http:evil.example',
    '/\\evil.example',
    '\\\\evil.example',
    'javascript:alert(1)',
    ' //evil.example',
    '/admin\r\nSet-Cookie: x=1',
  ];

  test('the next parameter cannot send a fresh login off-site', async (t) => {
    const host = await startPanel(t);
    for (const next of OFF_SITE) {
      const browser = host.visitor();
      const page = await browser.get('/login').query({ next }).expect(200);
      assert.match(page.text, /<input type="hidden" name="next" value="\/admin">/, `hidden next for ${JSON.stringify(next)}`);

      const response = await browser
        .post('/login')
        .type('form')
        .send({ _csrf: csrfFrom(page.text), username: ADMIN.username, password: ADMIN.password, next });
      assert.equal(response.status, 303, JSON.stringify(next));
      assert.equal(response.headers.location, '/admin', JSON.stringify(next));
    }
  });

  test('the next parameter cannot send a logged-in admin off-site from /login', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    for (const next of OFF_SITE) {
      const response = await admin.agent.get('/login').query({ next });
      assert.equal(response.status, 303, JSON.stringify(next));
      assert.equal(response.headers.location, '/admin', JSON.stringify(next));
    }
    const local = await admin.agent.get('/login').query({ next: '/admin/vms' });
    assert.equal(local.headers.location, '/admin/vms');
  });
});

/** The session cookie's value from a Set-Cookie header, if one is set. */
function sessionCookie(header: string | string[] | undefined): string | undefined {
  const list = Array.isArray(header) ? header : header ? [header] : [];
  return list.find((cookie) => cookie.startsWith('panel.sid='))?.split(';')[0];
}

/** Tokens a forged or stale form might carry. */
function badTokens(admin: AdminSession, otherSessionToken: string): [string, Record<string, string>][] {
  const flipped = `${admin.csrf[0] === 'A' ? 'B' : 'A'}${admin.csrf.slice(1)}`;
  return [
    ['no token', {}],
    ['an empty token', { _csrf: '' }],
    ['a wrong token of the right length', { _csrf: flipped }],
    ['the token of another session', { _csrf: otherSessionToken }],
  ];
}

interface CsrfCase {
  form: string;
  path: (ids: SeededHost) => string;
  fields: Record<string, string>;
  /** Puts the host in a state where the form would change something. */
  arrange?: (host: Awaited<ReturnType<typeof startPanel>>) => Promise<void>;
  /** What the form changes once it carries the right token. */
  changed: (db: Knex, ids: SeededHost) => Promise<boolean>;
}

const CSRF_CASES: CsrfCase[] = [
  {
    form: 'create network',
    path: () => '/admin/networks',
    fields: { name: 'branch', interface: 'wg1' },
    changed: async (db) => Boolean(await db('networks').where({ interface: 'wg1' }).first()),
  },
  {
    form: 'update network',
    path: (ids) => `/admin/networks/${ids.networkId}`,
    fields: { name: 'renamed', interface: 'wg0', netns: '' },
    changed: async (db, ids) => (await db('networks').where({ id: ids.networkId }).first()).name === 'renamed',
  },
  {
    form: 'delete network',
    path: (ids) => `/admin/networks/${ids.networkId}/delete`,
    fields: {},
    changed: async (db, ids) => !(await db('networks').where({ id: ids.networkId }).first()),
  },
  {
    form: 'create peer',
    path: (ids) => `/admin/networks/${ids.networkId}/peers`,
    fields: { name: 'phone', public_key: wgKey(2), allowed_ips: '10.8.0.3/32' },
    changed: async (db) => Boolean(await db('peers').where({ name: 'phone' }).first()),
  },
  {
    form: 'update peer',
    path: (ids) => `/admin/networks/${ids.networkId}/peers/${ids.peerId}`,
    fields: { name: 'renamed', public_key: wgKey(1), allowed_ips: '10.8.0.2/32' },
    changed: async (db, ids) => (await db('peers').where({ id: ids.peerId }).first()).name === 'renamed',
  },
  {
    form: 'delete peer',
    path: (ids) => `/admin/networks/${ids.networkId}/peers/${ids.peerId}/delete`,
    fields: {},
    changed: async (db, ids) => !(await db('peers').where({ id: ids.peerId }).first()),
  },
  {
    form: 'create VM',
    path: () => '/admin/vms',
    fields: { name: 'db-01', interface: 'tap-db01', netns: '' },
    changed: async (db) => Boolean(await db('vms').where({ name: 'db-01' }).first()),
  },
  {
    form: 'update VM',
    path: (ids) => `/admin/vms/${ids.vmId}`,
    fields: { name: 'renamed', interface: 'tap-web01', netns: '' },
    changed: async (db, ids) => (await db('vms').where({ id: ids.vmId }).first()).name === 'renamed',
  },
  {
    form: 'delete VM',
    path: (ids) => `/admin/vms/${ids.vmId}/delete`,
    fields: {},
    changed: async (db, ids) => !(await db('vms').where({ id: ids.vmId }).first()),
  },
  {
    form: 'disable plugin',
    path: () => '/admin/plugins/bandwidth/disable',
    fields: {},
    changed: async (db) => !(await db('panel_plugins').where({ id: 'bandwidth' }).first()).enabled,
  },
  {
    form: 'enable plugin',
    path: () => '/admin/plugins/bandwidth/enable',
    fields: {},
    arrange: async (host) => {
      await host.api.post('/api/plugins/bandwidth/disable').expect(200);
    },
    changed: async (db) => Boolean((await db('panel_plugins').where({ id: 'bandwidth' }).first()).enabled),
  },
  {
    form: 'bandwidth limit',
    path: (ids) => `/admin/bandwidth/limits/peer/${ids.peerId}`,
    fields: { bandwidth_up_kbps: '1000', bandwidth_down_kbps: '2000', action: 'set' },
    changed: async (db, ids) => Number((await db('bw_limits').where({ subject_type: 'peer', subject_id: String(ids.peerId) }).first())?.up_kbps) === 1000,
  },
  {
    form: 'uninstall plugin',
    path: () => '/admin/plugins/bandwidth/uninstall',
    fields: {},
    changed: async (db) => !(await db.schema.hasTable('bw_limits')),
  },
];

describe('CSRF: admin forms only accept the token of their own session', () => {
  for (const { form, path, fields, arrange, changed } of CSRF_CASES) {
    test(`the ${form} form is refused with 403 without the session's token, and writes nothing`, async (t) => {
      const host = await startPanel(t);
      const ids = await seedHost(host.api);
      await arrange?.(host);
      const admin = await host.login();
      const other = await host.login();
      const before = await hostRows(host.db);
      const limitsBefore = await host.db('bw_limits').orderBy('id');

      for (const [label, token] of badTokens(admin, other.csrf)) {
        const response = await admin.agent.post(path(ids)).type('form').send({ ...fields, ...token });
        assert.equal(response.status, 403, label);
        assert.match(response.text, /did not come from this panel; reload the page and try again/, label);
        assert.deepEqual(await hostRows(host.db), before, `${label}: nothing written`);
        assert.deepEqual(await host.db('bw_limits').orderBy('id'), limitsBefore, `${label}: no limit written`);
      }

      // The same form with the session's token goes through: the refusals above were about the token.
      const accepted = await admin.form(path(ids), fields);
      assert.equal(accepted.status, 303, accepted.text.slice(0, 300));
      assert.equal(await changed(host.db, ids), true);
    });
  }

  test('the login form is refused with 403 without the token of the login page, and nobody is logged in', async (t) => {
    const host = await startPanel(t);
    const credentials = { username: ADMIN.username, password: ADMIN.password };

    const neverLoadedThePage = await host.visitor().post('/login').type('form').send(credentials);
    assert.equal(neverLoadedThePage.status, 403);

    const browser = host.visitor();
    const page = await browser.get('/login').expect(200);
    const token = csrfFrom(page.text);
    const otherToken = csrfFrom((await host.visitor().get('/login')).text);
    for (const [label, sent] of [
      ['no token', {}],
      ['a wrong token', { _csrf: `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}` }],
      ['the token of another session', { _csrf: otherToken }],
    ] as const) {
      const response = await browser.post('/login').type('form').send({ ...credentials, ...sent });
      assert.equal(response.status, 403, label);
      const after = await browser.get('/admin/networks');
      assert.equal(after.status, 303, `${label}: still logged out`);
    }

    const accepted = await browser.post('/login').type('form').send({ ...credentials, _csrf: token });
    assert.equal(accepted.status, 303);
    assert.equal((await browser.get('/admin/networks')).status, 200);
  });

  test('the logout form is refused with 403 without the token, and the admin stays logged in', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    const other = await host.login();

    for (const [label, token] of badTokens(admin, other.csrf)) {
      const response = await admin.agent.post('/logout').type('form').send(token);
      assert.equal(response.status, 403, label);
      assert.equal((await admin.agent.get('/admin/networks')).status, 200, `${label}: still logged in`);
    }
  });
});
