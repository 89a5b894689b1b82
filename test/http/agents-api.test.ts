import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import type supertest from 'supertest';
import { created, wgKey } from '../support/panel.js';
import { waitFor } from '../support/lab.js';
import { AGENTS_API, startNodesPanel, type NodesPanel } from '../support/nodes-harness.js';
import { fromBigInt } from '../../src/db/bigint.js';

const TOKEN = 'hv01-token-0123456789abcdef0123456789abcdef';
const FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i * 7 + 16).toString(16).padStart(2, '0').toUpperCase()).join(':');
const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 4, 12, 9, 30);

/** Everything the API answered, as text: the token must appear in none of it. */
async function everyGet(panel: NodesPanel, id: number): Promise<string> {
  const paths = [AGENTS_API, `${AGENTS_API}/${id}`, `${AGENTS_API}/${id}/status`, `${AGENTS_API}/${id}/bandwidth`];
  const answers = await Promise.all(paths.map((path) => panel.api.get(path)));
  answers.forEach((answer, i) => assert.equal(answer.status, 200, `${paths[i]}: ${answer.text.slice(0, 200)}`));
  return answers.map((answer) => answer.text).join('\n');
}

const agentCount = async (panel: NodesPanel) => Number(((await panel.db('bw_agents').count({ n: '*' })) as { n: number | string }[])[0]?.n);

/** Waits until the node's status answers `state`, and returns the status. */
async function statusWhen(panel: NodesPanel, id: number, state: string): Promise<Record<string, unknown>> {
  return waitFor(`agent ${id} to be ${state}`, async () => {
    const answer = await panel.api.get(`${AGENTS_API}/${id}/status`);
    return answer.body.status?.state === state ? (answer.body.status as Record<string, unknown>) : undefined;
  });
}

describe('the agents API', () => {
  test('every route needs the API token: 401 and nothing written', async (t) => {
    const panel = await startNodesPanel(t);
    const visitor = panel.visitor();
    const requests: [string, supertest.Test][] = ([
      visitor.get(AGENTS_API),
      visitor.post(AGENTS_API).send({ name: 'hv-01', url: 'http://hv-01:9731', token: TOKEN }),
      visitor.get(`${AGENTS_API}/1`),
      visitor.put(`${AGENTS_API}/1`).send({ enabled: false }),
      visitor.delete(`${AGENTS_API}/1`),
      visitor.get(`${AGENTS_API}/1/status`),
      visitor.get(`${AGENTS_API}/1/bandwidth`),
      visitor.post(`${AGENTS_API}/1/start`),
      visitor.post(`${AGENTS_API}/1/stop`),
      visitor.get(AGENTS_API).set('Authorization', 'Bearer not-the-token-0123456789'),
    ]).map((request) => [`${request.method} ${request.url}`, request]);
    for (const [what, request] of requests) assert.equal((await request).status, 401, what);
    assert.equal(await agentCount(panel), 0);
  });

  test('a registered agent is listed and fetched without its token, which is stored encrypted under a new key file', async (t) => {
    const panel = await startNodesPanel(t);
    panel.agents.set('hv-01', { token: TOKEN });

    const response = await panel.api.post(AGENTS_API).send({ name: 'hv-01', url: 'https://hv-01.example:9731', token: TOKEN, tls_fingerprint: FINGERPRINT });

    assert.equal(response.status, 201, response.text);
    const agent = response.body.agent;
    assert.deepEqual(Object.keys(agent).sort(), ['created_at', 'enabled', 'id', 'name', 'tls_fingerprint', 'token_state', 'updated_at', 'url']);
    assert.deepEqual(
      [agent.name, agent.url, agent.tls_fingerprint, agent.enabled, agent.token_state],
      ['hv-01', 'https://hv-01.example:9731', FINGERPRINT.replaceAll(':', '').toLowerCase(), true, 'set'],
    );
    assert.ok(!response.text.includes(TOKEN), 'the answer to the POST holds no token');
    assert.deepEqual((await panel.api.get(AGENTS_API)).body, { agents: [agent] });
    assert.deepEqual((await panel.api.get(`${AGENTS_API}/${agent.id}`)).body, { agent });
    assert.ok(!(await everyGet(panel, agent.id)).includes(TOKEN), 'no GET shows the token');

    const [row] = await panel.db('bw_agents').select('*');
    assert.ok(!Object.values(row).some((value) => String(value).includes(TOKEN)), 'no column holds the token');
    assert.match(String(row.token_ciphertext), /^v1:[A-Za-z0-9+/=]+$/);
    assert.equal(statSync(panel.keyFile).mode & 0o777, 0o600, 'the key file was created private');
    const [event] = await panel.db('bw_events').where({ action: 'node.created' });
    assert.ok(event, 'the registration is audited');
    assert.ok(!JSON.stringify(event).includes(TOKEN));
    assert.deepEqual(JSON.parse(event.new_value), { node: 'hv-01', url: 'https://hv-01.example:9731', enabled: true, tls_fingerprint: FINGERPRINT.replaceAll(':', '').toLowerCase() });
  });

  const badBodies: [string, unknown, string, RegExp][] = [
    ['no name', { url: 'http://hv:9731', token: TOKEN }, 'name', /`name` must be a string/],
    ['a name with a space', { name: 'hv 01', url: 'http://hv:9731', token: TOKEN }, 'name', /1-64 characters of letters, digits/],
    ['a name of 65 characters', { name: 'h'.repeat(65), url: 'http://hv:9731', token: TOKEN }, 'name', /1-64 characters/],
    ['the reserved name local', { name: 'local', url: 'http://hv:9731', token: TOKEN }, 'name', /reserved for the panel's own machine/],
    ['no url', { name: 'hv', token: TOKEN }, 'url', /`url` must be a URL/],
    ['a url that is no URL', { name: 'hv', url: 'hv-01:9731x', token: TOKEN }, 'url', /`url`/],
    ['an ftp url', { name: 'hv', url: 'ftp://hv:21', token: TOKEN }, 'url', /must start with http:\/\/ or https:\/\//],
    ['a url with a path', { name: 'hv', url: 'http://hv:9731/v1', token: TOKEN }, 'url', /without a path, query or fragment/],
    ['a url with a query', { name: 'hv', url: 'http://hv:9731?x=1', token: TOKEN }, 'url', /without a path, query or fragment/],
    ['a url with credentials', { name: 'hv', url: 'http://admin:pw@hv:9731', token: TOKEN }, 'url', /must not hold credentials/],
    ['no token', { name: 'hv', url: 'http://hv:9731' }, 'token', /`token` must be a string of at least 32 characters, got nothing/],
    ['a short token', { name: 'hv', url: 'http://hv:9731', token: 'x'.repeat(31) }, 'token', /at least 32 characters \(got 31\)/],
    ['a token with a space', { name: 'hv', url: 'http://hv:9731', token: `${'x'.repeat(32)} y` }, 'token', /printable ASCII without spaces/],
    ['a numeric token', { name: 'hv', url: 'http://hv:9731', token: 12345 }, 'token', /must be a string/],
    ['a fingerprint of 63 digits', { name: 'hv', url: 'https://hv:9731', token: TOKEN, tls_fingerprint: 'a'.repeat(63) }, 'tls_fingerprint', /64 hex digits/],
    ['a fingerprint with misplaced colons', { name: 'hv', url: 'https://hv:9731', token: TOKEN, tls_fingerprint: `${'a'.repeat(62)}:a:a` }, 'tls_fingerprint', /64 hex digits/],
    ['a fingerprint over http', { name: 'hv', url: 'http://hv:9731', token: TOKEN, tls_fingerprint: 'a'.repeat(64) }, 'tls_fingerprint', /needs an https:\/\/ url/],
    ['enabled as a string', { name: 'hv', url: 'http://hv:9731', token: TOKEN, enabled: 'yes' }, 'enabled', /true or false/],
    ['an unknown field', { name: 'hv', url: 'http://hv:9731', token: TOKEN, token_hash: 'x' }, 'token_hash', /Unknown field `token_hash`/],
    ['an array', [{ name: 'hv' }], 'body', /must be a JSON object/],
  ];
  for (const [what, body, field, message] of badBodies) {
    test(`a registration with ${what} is refused: 400 naming ${field}, nothing stored`, async (t) => {
      const panel = await startNodesPanel(t);
      const response = await panel.api.post(AGENTS_API).send(body as object);
      assert.equal(response.status, 400, response.text);
      assert.equal(response.body.error.code, 'invalid_input');
      assert.equal(response.body.error.field, field);
      assert.match(response.body.error.message, message);
      assert.equal(await agentCount(panel), 0);
      assert.equal((await panel.db('bw_events').count({ n: '*' }))[0]?.n?.toString(), '0');
    });
  }

  test('a second agent with a taken name is refused with 409 on name', async (t) => {
    const panel = await startNodesPanel(t);
    await created(panel.api.post(AGENTS_API).send({ name: 'hv-01', url: 'http://hv-01:9731', token: TOKEN }), 'agent');

    const response = await panel.api.post(AGENTS_API).send({ name: 'hv-01', url: 'http://other:9731', token: TOKEN });

    assert.equal(response.status, 409);
    assert.deepEqual(response.body, { error: { code: 'conflict', message: 'A node named `hv-01` is already registered', field: 'name' } });
    assert.equal(await agentCount(panel), 1);
  });

  test('PUT changes what it sends, replaces a token without showing it, and refuses bad fields', async (t) => {
    const panel = await startNodesPanel(t);
    const agent = await created(panel.api.post(AGENTS_API).send({ name: 'gw-1', url: 'http://gw-1:9731', token: TOKEN }), 'agent');
    const newToken = 'n'.repeat(48);

    const response = await panel.api.put(`${AGENTS_API}/${agent.id}`).send({ url: 'https://gw-1.example:443/', token: newToken, tls_fingerprint: 'ef'.repeat(32) });

    assert.equal(response.status, 200, response.text);
    assert.deepEqual(
      { ...response.body.agent, updated_at: undefined },
      { ...agent, url: 'https://gw-1.example:443', tls_fingerprint: 'ef'.repeat(32), updated_at: undefined },
    );
    assert.ok(!response.text.includes(newToken));
    const bad = await panel.api.put(`${AGENTS_API}/${agent.id}`).send({ url: 'http://gw-1:9731' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'tls_fingerprint', 'an http url would drop the pin silently: refused');
    assert.equal((await panel.api.put(`${AGENTS_API}/${agent.id}`).send({ token: 'short' })).body.error.field, 'token');
    assert.equal((await panel.api.put(`${AGENTS_API}/${agent.id}`).send({})).body.error.field, 'body');
    assert.equal((await panel.api.put(`${AGENTS_API}/999`).send({ enabled: false })).status, 404);
    assert.equal((await panel.api.get(`${AGENTS_API}/abc`)).status, 404);
    const [updated] = await panel.db('bw_events').where({ action: 'node.updated' });
    assert.equal(JSON.parse(updated.new_value).token_changed, true, 'the audit log says the token changed, not what it is');
    assert.ok(!JSON.stringify(updated).includes(newToken));
  });

  test('status: connected with version, capabilities and ledger lag; unreachable with the error; stop and start', async (t) => {
    const panel = await startNodesPanel(t);
    panel.agents.set('hv-01', { token: TOKEN, version: '1.4.2', ledgerHead: 42, capabilities: { leaf: 'fq_codel', classifier: 'u32' } });
    await panel.db('bw_node_cursors').insert({ node: 'hv-01', ledger_id: 'ledger-hv-01', seq: 40, updated_at: NOW });
    const agent = await created(panel.api.post(AGENTS_API).send({ name: 'hv-01', url: 'http://hv-01:9731', token: TOKEN }), 'agent');

    const connected = await statusWhen(panel, agent.id, 'connected');
    assert.deepEqual(
      { ...connected, since: typeof connected.since, last_seen_at: typeof connected.last_seen_at },
      {
        id: agent.id, node: 'hv-01', state: 'connected', since: 'string', last_seen_at: 'string', version: '1.4.2', protocol: 1,
        capabilities: { leaf: 'fq_codel', classifier: 'u32' }, last_error: null, ledger_head: 42, ledger_cursor: 40, ledger_lag: 2, subjects: 0,
      },
    );

    const stopped = await panel.api.post(`${AGENTS_API}/${agent.id}/stop`);
    assert.equal(stopped.status, 200);
    assert.equal(stopped.body.agent.enabled, false, 'stop disables the node, across restarts too');
    assert.equal((await statusWhen(panel, agent.id, 'disabled')).last_error, null);

    panel.agents.set('hv-01', { token: TOKEN, up: false });
    assert.equal((await panel.api.post(`${AGENTS_API}/${agent.id}/start`)).body.agent.enabled, true);
    const down = await statusWhen(panel, agent.id, 'unreachable');
    assert.match(String(down.last_error), /ECONNREFUSED/);
    assert.equal(down.ledger_lag, 2, 'the lag last heard stays');

    panel.agents.set('hv-01', { token: TOKEN, ledgerHead: 40 });
    await panel.api.post(`${AGENTS_API}/${agent.id}/start`).expect(200);
    assert.equal((await statusWhen(panel, agent.id, 'connected')).ledger_lag, 0);
    assert.deepEqual((await panel.db('bw_events').orderBy('id').pluck('action')), ['node.created', 'node.stopped', 'node.started', 'node.started']);
  });

  test('status of an agent that refuses the token says so; a node without a cursor lags by its whole ledger', async (t) => {
    const panel = await startNodesPanel(t);
    panel.agents.set('gw-2', { token: 'the-agent-has-another-token-0123456789', ledgerHead: 7 });
    const agent = await created(panel.api.post(AGENTS_API).send({ name: 'gw-2', url: 'http://gw-2:9731', token: TOKEN }), 'agent');

    const refused = await statusWhen(panel, agent.id, 'unreachable');
    assert.match(String(refused.last_error), /refused the panel's token/);

    await panel.api.put(`${AGENTS_API}/${agent.id}`).send({ token: 'the-agent-has-another-token-0123456789' }).expect(200);
    const connected = await statusWhen(panel, agent.id, 'connected');
    assert.deepEqual([connected.ledger_head, connected.ledger_cursor, connected.ledger_lag], [7, null, 7]);
  });

  test('bandwidth: totals and an hourly or daily series of the subjects on the node, from/to like the usage API', async (t) => {
    const panel = await startNodesPanel(t, { now: () => NOW });
    const agent = await created(panel.api.post(AGENTS_API).send({ name: 'hv-01', url: 'http://hv-01:9731', token: TOKEN }), 'agent');
    const vm = await created(panel.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', node: 'hv-01' }), 'vm');
    const localVm = await created(panel.api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01' }), 'vm');
    const limits = await panel.db('bw_limits').orderBy('subject_id').select('subject_id', 'node');
    assert.deepEqual(limits.map((l) => [String(l.subject_id), l.node]), [[String(vm.id), 'hv-01'], [String(localVm.id), 'local']]);
    const hour = Math.floor(NOW / HOUR) * HOUR;
    const big = 2n ** 53n + 1n;
    await panel.db('bw_usage_hourly').insert([
      { subject_type: 'vm', subject_id: String(vm.id), hour_start: hour - 2 * HOUR, up_bytes: fromBigInt(big), down_bytes: '100' },
      { subject_type: 'vm', subject_id: String(vm.id), hour_start: hour - HOUR, up_bytes: '1', down_bytes: '200' },
      { subject_type: 'vm', subject_id: String(localVm.id), hour_start: hour - HOUR, up_bytes: '999', down_bytes: '999' },
    ]);

    const response = await panel.api.get(`${AGENTS_API}/${agent.id}/bandwidth`).query({ from: new Date(hour - 3 * HOUR).toISOString(), to: new Date(hour).toISOString() });

    assert.equal(response.status, 200, response.text);
    assert.ok(response.text.includes(`"up_bytes":${big + 1n}`), 'totals past 2^53 are exact integers in the JSON');
    assert.deepEqual(JSON.parse(response.text.replace(/"up_bytes":(\d{16,})/g, '"up_bytes":"$1"')), {
      id: agent.id, node: 'hv-01', from: new Date(hour - 3 * HOUR).toISOString(), to: new Date(hour).toISOString(), step: 'hour',
      totals: { up_bytes: String(big + 1n), down_bytes: 300 },
      series: [
        { start: new Date(hour - 3 * HOUR).toISOString(), up_bytes: 0, down_bytes: 0 },
        { start: new Date(hour - 2 * HOUR).toISOString(), up_bytes: String(big), down_bytes: 100 },
        { start: new Date(hour - HOUR).toISOString(), up_bytes: 1, down_bytes: 200 },
      ],
    });
    const defaults = await panel.api.get(`${AGENTS_API}/${agent.id}/bandwidth`).query({ step: 'day' });
    assert.deepEqual([defaults.body.step, defaults.body.to, defaults.body.series.length], ['day', new Date(NOW).toISOString(), 31], 'the last 30 days by default');
    for (const [query, field] of [[{ step: 'minute' }, 'step'], [{ from: 'yesterday' }, 'from'], [{ from: '2026-05-12', to: '2026-05-11' }, 'from'], [{ to: '2026-02-30' }, 'to']] as const) {
      const refused = await panel.api.get(`${AGENTS_API}/${agent.id}/bandwidth`).query(query);
      assert.equal(refused.status, 400, JSON.stringify(query));
      assert.equal(refused.body.error.field, field);
    }
    assert.equal((await panel.api.get(`${AGENTS_API}/999/bandwidth`)).status, 404);
  });

  test('DELETE removes an empty node (204, then 404) and refuses one that holds subjects (409)', async (t) => {
    const panel = await startNodesPanel(t);
    const empty = await created(panel.api.post(AGENTS_API).send({ name: 'spare', url: 'http://spare:9731', token: TOKEN }), 'agent');
    const busy = await created(panel.api.post(AGENTS_API).send({ name: 'hv-01', url: 'http://hv-01:9731', token: TOKEN }), 'agent');
    await created(panel.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', node: 'hv-01' }), 'vm');

    const removed = await panel.api.delete(`${AGENTS_API}/${empty.id}`);
    assert.equal(removed.status, 204);
    assert.equal((await panel.api.get(`${AGENTS_API}/${empty.id}`)).status, 404);
    assert.equal(panel.manager().status('spare'), undefined, 'the manager let go of it');

    const refused = await panel.api.delete(`${AGENTS_API}/${busy.id}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.field, 'name');
    assert.match(refused.body.error.message, /1 subject is on it/);
    assert.deepEqual((await panel.api.get(AGENTS_API)).body.agents.map((a: { name: string }) => a.name), ['hv-01']);
    assert.deepEqual(await panel.db('bw_events').where({ action: 'node.deleted' }).pluck('actor'), ['api']);
  });
});

describe('the reference host\'s node field', () => {
  test('networks and VMs take an optional node, return it (null: the panel\'s machine) and give it to the plugin', async (t) => {
    const panel = await startNodesPanel(t);
    const network = await created(panel.api.post('/api/networks').send({ name: 'gw', interface: 'wg0', node: 'gw-1' }), 'network');
    const local = await created(panel.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
    assert.deepEqual([network.node, local.node], ['gw-1', null], 'the same interface name on two nodes');
    const peer = await created(panel.api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }), 'peer');
    const vm = await created(panel.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', node: 'local' }), 'vm');
    assert.equal(vm.node, null, '`local` is the panel\'s machine');

    assert.deepEqual(
      (await panel.db('bw_limits').orderBy('subject_type').select('subject_type', 'subject_id', 'node')).map((r) => [r.subject_type, String(r.subject_id), r.node]),
      [['peer', String(peer.id), 'gw-1'], ['vm', String(vm.id), 'local']],
    );
    const moved = await panel.api.put(`/api/vms/${vm.id}`).send({ node: 'hv-02' });
    assert.equal(moved.status, 200, moved.text);
    assert.equal(moved.body.vm.node, 'hv-02');
    assert.equal((await panel.db('bw_limits').where({ subject_type: 'vm' }).first()).node, 'hv-02', 'the plugin follows a VM to its new node');
    assert.equal((await panel.api.get(`/api/networks/${local.id}`)).body.network.node, null);

    for (const [path, body] of [['/api/networks', { name: 'x', interface: 'wg9', node: 'bad node' }], ['/api/vms', { name: 'x', interface: 'tap9', node: 'n'.repeat(65) }], ['/api/vms', { name: 'x', interface: 'tap9', node: 7 }]] as const) {
      const refused = await panel.api.post(path).send(body);
      assert.equal(refused.status, 400, refused.text);
      assert.equal(refused.body.error.field, 'node');
    }
    const taken = await panel.api.post('/api/vms').send({ name: 'again', interface: 'wg0', node: 'gw-1' });
    assert.equal(taken.status, 409, 'an interface name is unique per node');
    assert.match(taken.body.error.message, /on node `gw-1`/);
  });
});
