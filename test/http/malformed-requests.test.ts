import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { API_TOKEN, csrfFrom, HERMETIC_PLUGIN_OPTIONS, listen, rowCounts, seedHost, startPanel, type TestPanel } from '../support/panel.js';

// Requests a client can send that the panel cannot read: each is the client's fault, so each is a
// 4xx with one log line, never a 500 with a stack trace in the log.

const METRICS_TOKEN = 'metrics-token-0123456789';

/** The panel's log lines written while the test runs (the panel logs at info to stderr). */
function captureLog(t: TestContext): { lines(): string[]; about(path: string): string[] } {
  const written: string[] = [];
  t.mock.method(process.stderr, 'write', (chunk: string | Uint8Array) => {
    written.push(...String(chunk).split('\n').filter((line) => line !== ''));
    return true;
  });
  return {
    lines: () => [...written],
    about: (path: string) => written.filter((line) => line.includes(`"path":${JSON.stringify(path)}`)),
  };
}

async function panelWithLog(t: TestContext): Promise<{ host: TestPanel; log: ReturnType<typeof captureLog> }> {
  const log = captureLog(t);
  const host = await startPanel(t, {
    logLevel: 'info',
    pluginOptions: { ...HERMETIC_PLUGIN_OPTIONS, bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, metrics_token: METRICS_TOKEN } },
  });
  return { host, log };
}

/** Nothing in the log is a stack trace (a stack is logged with its newlines escaped, on one line). */
function assertNoStack(log: ReturnType<typeof captureLog>): void {
  const traces = log.lines().filter((line) => line.includes('    at ') || /\\n\s+at /.test(line));
  assert.deepEqual(traces, [], 'no stack trace in the log');
}

/** The request was logged on one line that gives its status, and nothing in the log is a stack trace. */
function assertRefusedInOneLine(log: ReturnType<typeof captureLog>, path: string, status: number): void {
  const about = log.about(path);
  assert.equal(about.length, 1, `one log line for ${path}, got:\n${about.join('\n')}`);
  assert.match(about[0]!, new RegExp(`"status":${status}[,}]`));
  assertNoStack(log);
}

/** The CSRF token a browser gets on the login page (sent in X-CSRF-Token when there is no form body). */
async function loginPageToken(host: TestPanel): Promise<{ browser: ReturnType<TestPanel['visitor']>; csrf: string }> {
  const browser = host.visitor();
  const page = await browser.get('/login');
  return { browser, csrf: csrfFrom(page.text) };
}

describe('paths that are not valid percent-encoding', () => {
  for (const path of ['/api/networks/%ff', '/api/vms/%', '/api/networks/1/peers/%E0%A4%A', '/api/bandwidth/limits/peer/%']) {
    test(`GET ${path} is a 400 invalid_path`, async (t) => {
      const { host, log } = await panelWithLog(t);

      const response = await host.api.get(path);

      assert.equal(response.status, 400);
      assert.deepEqual(response.body, { error: { code: 'invalid_path', message: 'The URL path is not valid percent-encoded UTF-8' } });
      assertRefusedInOneLine(log, path, 400);
    });
  }

  test('GET /admin/bandwidth/peer/% is a 400 error page', async (t) => {
    const { host, log } = await panelWithLog(t);
    const admin = await host.login();

    const response = await admin.agent.get('/admin/bandwidth/peer/%');

    assert.equal(response.status, 400);
    assert.match(response.headers['content-type'] ?? '', /^text\/html/);
    assert.match(response.text, /The URL path is not valid percent-encoded UTF-8/);
    assertRefusedInOneLine(log, '/admin/bandwidth/peer/%', 400);
  });

  test('a valid escape still reaches the route: /api/vms/%31 is VM 1', async (t) => {
    const { host } = await panelWithLog(t);
    const { vmId } = await seedHost(host.api);
    assert.equal(vmId, 1);

    const response = await host.api.get('/api/vms/%31');

    assert.equal(response.status, 200);
    assert.equal(response.body.vm.id, 1);
  });
});

describe('login forms the panel cannot read', () => {
  test('1,100 fields is a 413', async (t) => {
    const { host, log } = await panelWithLog(t);
    const { browser, csrf } = await loginPageToken(host);
    const fields = [`_csrf=${csrf}`, 'username=admin', ...Array.from({ length: 1_100 }, (_, i) => `f${i}=1`)].join('&');

    const response = await browser.post('/login').type('form').send(fields);

    assert.equal(response.status, 413);
    assert.match(response.text, /The form has too many fields/);
    assertRefusedInOneLine(log, '/login', 413);
  });

  test('a 200 KB body is a 413', async (t) => {
    const { host, log } = await panelWithLog(t);
    const { browser, csrf } = await loginPageToken(host);

    const response = await browser.post('/login').type('form').send(`_csrf=${csrf}&username=${'a'.repeat(200_000)}&password=x`);

    assert.equal(response.status, 413);
    assert.match(response.text, /The request body is too large/);
    assertRefusedInOneLine(log, '/login', 413);
  });

  test('charset=foo is a 415', async (t) => {
    const { host, log } = await panelWithLog(t);
    const { browser, csrf } = await loginPageToken(host);

    const response = await browser.post('/login').set('Content-Type', 'application/x-www-form-urlencoded; charset=foo').send(`_csrf=${csrf}&username=admin`);

    assert.equal(response.status, 415);
    assert.match(response.text, /The charset `foo` is not supported/);
    assertRefusedInOneLine(log, '/login', 415);
  });

  test('no body at all: without a token a 403, with the token in X-CSRF-Token a 401 wrong name or password', async (t) => {
    const { host, log } = await panelWithLog(t);
    const { browser, csrf } = await loginPageToken(host);

    const anonymous = await host.visitor().post('/login');
    const withToken = await browser.post('/login').set('X-CSRF-Token', csrf);

    assert.equal(anonymous.status, 403);
    assert.equal(withToken.status, 401);
    assert.match(withToken.text, /Wrong user name or password/);
    assertNoStack(log);
  });
});

describe('admin forms with no body', () => {
  test('creating a network names the missing field and creates nothing', async (t) => {
    const { host, log } = await panelWithLog(t);
    const admin = await host.login();

    const response = await admin.agent.post('/admin/networks').set('X-CSRF-Token', admin.csrf);

    assert.equal(response.status, 400);
    assert.match(response.text, /`name` is required/);
    assert.equal((await rowCounts(host.db)).networks, 0);
    assertNoStack(log);
  });

  test('a bandwidth cap form with no fields changes nothing', async (t) => {
    const { host, log } = await panelWithLog(t);
    const { peerId } = await seedHost(host.api);
    const admin = await host.login();
    const path = `/admin/bandwidth/limits/peer/${peerId}`;
    const caps = () => host.db('bw_limits').where({ subject_type: 'peer', subject_id: String(peerId) }).select('up_kbps', 'down_kbps');
    const before = await caps();

    const response = await admin.agent.post(path).set('X-CSRF-Token', admin.csrf);

    assert.equal(response.status, 303);
    assertNoStack(log);
    assert.deepEqual(await caps(), before, 'the caps are as they were');
  });
});

describe('API bodies that do not inflate', () => {
  test('Content-Encoding: gzip with a body that is not gzip is a 400', async (t) => {
    const { host, log } = await panelWithLog(t);

    const response = await host.api.post('/api/networks').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('{"name":"office"}');

    assert.equal(response.status, 400);
    assert.equal(response.body.error.code, 'invalid_body_encoding');
    assert.equal((await rowCounts(host.db)).networks, 0);
    assertRefusedInOneLine(log, '/api/networks', 400);
  });

  test('an unknown Content-Encoding is a 415', async (t) => {
    const { host, log } = await panelWithLog(t);

    const response = await host.api.post('/api/networks').set('Content-Type', 'application/json').set('Content-Encoding', 'zstd2').send('{}');

    assert.equal(response.status, 415);
    assert.equal(response.body.error.code, 'unsupported_encoding');
    assertRefusedInOneLine(log, '/api/networks', 415);
  });

  test('a JSON body over 100 kB is a 413', async (t) => {
    const { host, log } = await panelWithLog(t);

    const response = await host.api.post('/api/networks').send({ name: 'office', interface: 'wg0', padding: 'x'.repeat(200_000) });

    assert.equal(response.status, 413);
    assert.equal(response.body.error.code, 'too_large');
    assertRefusedInOneLine(log, '/api/networks', 413);
  });

  test('a real gzip body is read', async (t) => {
    const { host } = await panelWithLog(t);
    // A real socket: supertest does not send a Buffer body untouched.
    const base = await listen(t, host.panel.app);

    const response = await fetch(`${base}/api/networks`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${API_TOKEN}`, 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
      body: gzipSync(JSON.stringify({ name: 'office', interface: 'wg0' })),
    });

    assert.equal(response.status, 201);
    assert.equal(((await response.json()) as { network: { name: string } }).network.name, 'office');
  });
});

describe('/metrics with a bearer token that is not ASCII', () => {
  // `é` is one character and two bytes: as long as the token in characters, longer in bytes.
  for (const [title, token] of [['as many characters as the token', `${METRICS_TOKEN.slice(0, -1)}é`], ['shorter', 'é'], ['longer', 'ÿ'.repeat(40)]] as const) {
    test(`${title}: a 401`, async (t) => {
      const { host, log } = await panelWithLog(t);

      const response = await host.visitor().get('/metrics').set('Authorization', `Bearer ${token}`);

      assert.equal(response.status, 401);
      assertNoStack(log);
      assert.equal((await host.visitor().get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`)).status, 200, 'the right token still works');
    });
  }
});
