import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

import { AgentCore } from '../../src/nodes/agent/core.js';
import { createAgentServer, type AgentServerOptions } from '../../src/nodes/agent/server.js';
import { dryRunExecutor } from '../../src/limits/executor-choice.js';
import type { InterfaceState, NodeSubject } from '../../src/nodes/protocol.js';
import { NodeRefusedError, type NodeEvent } from '../../src/nodes/link.js';
import { RemoteLink } from '../../src/nodes/panel/remote-link.js';
import type { Logger } from '../../src/plugin-api.js';

/** A metric family as parse-prometheus-text-format returns it (the prom2json shape). */
interface Family {
  name: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

const TOKEN = 'agent-test-token-0123456789abcdefghijklmnop';

/** What the agent logged as errors (a test that expects none asserts the list is empty). */
function recordingLogger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  return { errors, debug() {}, info() {}, warn() {}, error: (message, fields) => errors.push(`${message} ${JSON.stringify(fields ?? {})}`) };
}

/** An answer; `json` is the parsed body (tests read it field by field, as a client would). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Answer = { status: number; json: any; text: string; headers: Headers };

interface Agent {
  core: AgentCore;
  url: string;
  logger: ReturnType<typeof recordingLogger>;
  /** One request; `body` is sent as JSON unless it is a string (sent as is). */
  call(method: string, path: string, options?: { body?: unknown; token?: string | null; headers?: Record<string, string> }): Promise<Answer>;
}

/** A real core (dry run, in-memory state) behind the real server on 127.0.0.1:0, closed when the test ends. */
async function startAgent(t: TestContext, options: Partial<AgentServerOptions> = {}): Promise<Agent> {
  const logger = recordingLogger();
  const core = await AgentCore.open({ node: 'hv1', statePath: ':memory:', executor: dryRunExecutor(null), mode: 'recording', logger });
  const server = createAgentServer({ core, token: TOKEN, logger, heartbeatMs: 100, ...options });
  t.after(async () => {
    await server.close();
    await core.close();
  });
  const { port } = await server.listen('127.0.0.1', 0);
  const url = `http://127.0.0.1:${port}`;
  return {
    core,
    url,
    logger,
    async call(method, path, { body, token = TOKEN, headers = {} } = {}) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: {
          ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, json, text, headers: res.headers };
    },
  };
}

const vm = (id: string, overrides: Partial<NodeSubject> = {}): NodeSubject => ({
  type: 'vm', id, name: `vm-${id}`, classMinor: 2, addresses: [], publicKey: null, upKbps: 1000, downKbps: 2000, ...overrides,
});
const peer = (id: string, minor: number, overrides: Partial<NodeSubject> = {}): NodeSubject => ({
  type: 'peer', id, name: `peer-${id}`, classMinor: minor, addresses: [`10.8.0.${minor}/32`], publicKey: `${id.padEnd(43, 'A')}=`, upKbps: 5000, downKbps: 10_000, ...overrides,
});
const vmState = (version: number, subject: NodeSubject = vm('7')): InterfaceState => ({ version, kind: 'vm', netns: null, subjects: [subject] });
const wgState = (version: number, subjects: NodeSubject[] = [peer('1', 2), peer('2', 3)]): InterfaceState => ({ version, kind: 'wireguard', netns: null, subjects });

/** Everything the agent holds: every interface with its state. */
async function snapshot(core: AgentCore): Promise<unknown> {
  const interfaces = await core.interfaces();
  return Promise.all(interfaces.map(async (ref) => ({ ref, state: await core.interfaceState(ref.interface, ref.netns) })));
}

/** Puts `count` ledger rows into the agent's state, as a collector tick would. */
async function recordLedger(core: AgentCore, count: number): Promise<void> {
  const rows = Array.from({ length: count }, (_, i) => ({
    subject_type: 'peer', subject_id: String(i + 1), node: 'local', source: 'wireguard', interface: 'wg0',
    period_start: 1_000 * i, period_end: 1_000 * (i + 1), up_bytes: String(5_000_000_000 + i), down_bytes: '5',
  }));
  await core.db('bw_usage').insert(rows);
}

describe('agent API: authentication', () => {
  test('GET /v1/health answers without a token and names no subject, interface or address', async (t) => {
    const agent = await startAgent(t);
    await agent.core.putInterface('tap-secret', vmState(1, vm('vm-secret-id', { name: 'secret-vm-name' })));
    const res = await agent.call('GET', '/v1/health', { token: null });
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.json).sort(), ['capabilities', 'ledgerHead', 'ledgerId', 'mode', 'node', 'protocol', 'uptimeS', 'version']);
    assert.equal(res.json.node, 'hv1');
    assert.equal(res.json.mode, 'recording');
    for (const secret of ['tap-secret', 'vm-secret-id', 'secret-vm-name']) assert.ok(!res.text.includes(secret), `health must not reveal ${secret}`);
  });

  test('every other route answers 401 to a missing or wrong token, and nothing changes', async (t) => {
    const agent = await startAgent(t);
    await agent.core.putInterface('tap0', vmState(1));
    const before = await snapshot(agent.core);
    const routes: [string, string, unknown?][] = [
      ['GET', '/v1/interfaces'],
      ['GET', '/v1/interfaces/tap0'],
      ['PUT', '/v1/interfaces/tap0', vmState(9, vm('7', { downKbps: 1 }))],
      ['PUT', '/v1/interfaces/tap9', vmState(1)],
      ['DELETE', '/v1/interfaces/tap0'],
      ['GET', '/v1/ledger'],
      ['GET', '/v1/rates'],
      ['GET', '/v1/rates/live'],
      ['GET', '/v1/events'],
      ['GET', '/metrics'],
      ['POST', '/v1/jobs', { type: 'NET_EGRESS_CAP_SET', name: 'vm-7', mbps: 1 }],
      ['POST', '/v1/jobs', { type: 'BANDWIDTH_COLLECT' }],
      ['GET', '/v1/no-such-route'],
    ];
    const wrongHeaders: (Record<string, string> | null)[] = [
      null,
      { Authorization: `Bearer ${TOKEN.slice(0, -1)}x` },
      { Authorization: `Bearer ${TOKEN}x` },
      { Authorization: `Bearer ${TOKEN.slice(0, 8)}` },
      { Authorization: `Basic ${Buffer.from(`agent:${TOKEN}`).toString('base64')}` },
      { Authorization: TOKEN },
      { Authorization: 'Bearer ' },
    ];
    for (const [method, path, body] of routes) {
      for (const headers of wrongHeaders) {
        const res = await agent.call(method, path, { body, token: null, headers: headers ?? {} });
        assert.equal(res.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`);
        assert.match(res.json.error, /bearer token/);
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="panel-bandwidth-agent"');
      }
    }
    assert.deepEqual(await snapshot(agent.core), before, 'no refused call changed the state');
    assert.equal((await agent.call('GET', '/v1/interfaces', { headers: { Authorization: `bearer   ${TOKEN}` } })).status, 200, 'the scheme is case-insensitive');
  });
});

describe('agent API: desired state', () => {
  test('PUT then GET gives back the state; the list names the interface', async (t) => {
    const agent = await startAgent(t);
    const state = wgState(3);
    const put = await agent.call('PUT', '/v1/interfaces/wg0', { body: state });
    assert.equal(put.status, 200);
    assert.equal(put.json.interface, 'wg0');
    assert.equal(put.json.version, 3);
    assert.equal(put.json.stale, false);
    assert.equal(put.json.status, 'pending');
    assert.equal(put.json.reason, 'dry_run');
    assert.ok(put.json.operations.some((line: string) => line.startsWith('tc class add dev wg0')), 'the dry run recorded the plan');
    assert.deepEqual(put.json.subjects.map((s: { id: string }) => s.id).sort(), ['1', '2']);

    const got = await agent.call('GET', '/v1/interfaces/wg0');
    assert.equal(got.status, 200);
    assert.deepEqual({ ...got.json, subjects: [...got.json.subjects].sort((a, b) => a.id.localeCompare(b.id)) }, state);
    assert.deepEqual((await agent.call('GET', '/v1/interfaces')).json, { interfaces: [{ interface: 'wg0', netns: null, kind: 'wireguard', version: 3 }] });
    assert.deepEqual(agent.logger.errors, []);
  });

  test('a namespaced interface is addressed with ?netns=', async (t) => {
    const agent = await startAgent(t);
    const state = { ...wgState(1), netns: 'gw-a' };
    assert.equal((await agent.call('PUT', '/v1/interfaces/wg0', { body: state })).status, 200);
    assert.equal((await agent.call('GET', '/v1/interfaces/wg0')).status, 404, 'the host namespace holds no wg0');
    assert.equal((await agent.call('GET', '/v1/interfaces/wg0?netns=gw-a')).json.netns, 'gw-a');
    assert.equal((await agent.call('DELETE', '/v1/interfaces/wg0?netns=gw-a')).status, 200);
    assert.deepEqual((await agent.call('GET', '/v1/interfaces')).json, { interfaces: [] });
  });

  test('an older version answers stale: true and changes nothing; the same state again is idempotent', async (t) => {
    const agent = await startAgent(t);
    await agent.call('PUT', '/v1/interfaces/tap0', { body: vmState(5) });
    const before = await snapshot(agent.core);
    const stale = await agent.call('PUT', '/v1/interfaces/tap0', { body: vmState(4, vm('7', { downKbps: 1 })) });
    assert.equal(stale.status, 200);
    assert.equal(stale.json.stale, true);
    assert.equal(stale.json.version, 5);
    assert.deepEqual(stale.json.operations, []);
    assert.deepEqual(await snapshot(agent.core), before);

    const again = await agent.call('PUT', '/v1/interfaces/tap0', { body: vmState(5) });
    assert.equal(again.status, 200);
    assert.equal(again.json.stale, false);
    assert.deepEqual(await snapshot(agent.core), before, 'the same push twice leaves the same state');

    const newer = await agent.call('PUT', '/v1/interfaces/tap0', { body: vmState(6, vm('7', { downKbps: 1 })) });
    assert.equal(newer.json.version, 6);
    assert.equal((await agent.call('GET', '/v1/interfaces/tap0')).json.subjects[0].downKbps, 1);
  });

  test('DELETE forgets the interface and removes the tree; GET then answers 404 naming the interface', async (t) => {
    const agent = await startAgent(t);
    await agent.call('PUT', '/v1/interfaces/tap0', { body: vmState(2) });
    const deleted = await agent.call('DELETE', '/v1/interfaces/tap0');
    assert.equal(deleted.status, 200);
    assert.equal(deleted.json.interface, 'tap0');
    assert.deepEqual(deleted.json.subjects, []);
    // A hermetic dry run reads an empty kernel, so it finds no tree to remove: no operations.
    assert.deepEqual(deleted.json.operations, []);
    const gone = await agent.call('GET', '/v1/interfaces/tap0');
    assert.equal(gone.status, 404);
    assert.equal(gone.json.field, 'name');
    assert.equal(await agent.core.interfaceState('tap0', null), null);
  });
});

describe('agent API: ledger and rates', () => {
  test('the ledger pages by after and limit, oldest first, byte counts as decimal strings', async (t) => {
    const agent = await startAgent(t);
    assert.deepEqual((await agent.call('GET', '/v1/ledger')).json.entries, []);
    await recordLedger(agent.core, 5);
    const first = await agent.call('GET', '/v1/ledger?limit=2');
    assert.equal(first.status, 200);
    assert.deepEqual(first.json.entries.map((e: { seq: number }) => e.seq), [1, 2]);
    assert.equal(first.json.head, 5);
    assert.equal(first.json.oldest, 1);
    assert.equal(first.json.node, 'hv1');
    assert.equal(first.json.entries[1].upBytes, '5000000001');
    const next = await agent.call('GET', '/v1/ledger?after=2&limit=2');
    assert.deepEqual(next.json.entries.map((e: { seq: number }) => e.seq), [3, 4]);
    const rest = await agent.call('GET', '/v1/ledger?after=4');
    assert.deepEqual(rest.json.entries.map((e: { seq: number }) => e.seq), [5]);
    assert.deepEqual((await agent.call('GET', '/v1/ledger?after=5&limit=10000')).json.entries, []);
  });

  test('rates: the last tick and live rates (a dry run counts nothing: empty)', async (t) => {
    const agent = await startAgent(t);
    assert.deepEqual((await agent.call('GET', '/v1/rates')).json, { tick: {} });
    assert.deepEqual((await agent.call('GET', '/v1/rates/live')).json, {});
  });
});

describe('agent API: malformed input', () => {
  test('each malformed request answers 400 naming its field, and nothing changes', async (t) => {
    const agent = await startAgent(t);
    await agent.call('PUT', '/v1/interfaces/tap0', { body: vmState(1) });
    await agent.call('PUT', '/v1/interfaces/wg0', { body: wgState(1) });
    const before = await snapshot(agent.core);
    const good = wgState(2);
    const withSubject = (overrides: Record<string, unknown>) => ({ ...good, subjects: [{ ...good.subjects[0], ...overrides }, good.subjects[1]] });
    const cases: { name: string; method: string; path: string; body?: unknown; headers?: Record<string, string>; field: string }[] = [
      { name: 'not JSON', method: 'PUT', path: '/v1/interfaces/wg0', body: '{"version":', field: 'body' },
      { name: 'no body', method: 'PUT', path: '/v1/interfaces/wg0', field: 'body' },
      { name: 'not JSON content', method: 'PUT', path: '/v1/interfaces/wg0', body: 'version=3', headers: { 'Content-Type': 'text/plain' }, field: 'body' },
      { name: 'a JSON array', method: 'PUT', path: '/v1/interfaces/wg0', body: [good], field: 'body' },
      { name: 'interface name too long', method: 'PUT', path: '/v1/interfaces/wg0-much-too-long', body: good, field: 'name' },
      { name: 'interface name with a slash', method: 'PUT', path: `/v1/interfaces/${encodeURIComponent('wg/0')}`, body: good, field: 'name' },
      { name: 'version missing', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, version: undefined }, field: 'version' },
      { name: 'version negative', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, version: -1 }, field: 'version' },
      { name: 'version a string', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, version: '2' }, field: 'version' },
      { name: 'unknown kind', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, kind: 'bridge' }, field: 'kind' },
      { name: 'bad netns', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, netns: 'a b' }, field: 'netns' },
      { name: 'unknown top-level field', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, extra: 1 }, field: 'extra' },
      { name: 'subjects not an array', method: 'PUT', path: '/v1/interfaces/wg0', body: { ...good, subjects: {} }, field: 'subjects' },
      { name: 'a fractional cap', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ upKbps: 1.5 }), field: 'subjects.0.upKbps' },
      { name: 'a negative cap', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ downKbps: -1 }), field: 'subjects.0.downKbps' },
      { name: 'a class minor of 1', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ classMinor: 1 }), field: 'subjects.0.classMinor' },
      { name: 'a class minor used twice', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ classMinor: 3 }), field: 'subjects.1.classMinor' },
      { name: 'a subject twice', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ id: '2' }), field: 'subjects.1.id' },
      { name: 'a VM on a wireguard interface', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ type: 'vm' }), field: 'subjects.0.type' },
      { name: 'an unknown subject field', method: 'PUT', path: '/v1/interfaces/wg0', body: withSubject({ colour: 'red' }), field: 'subjects.0.colour' },
      { name: 'an unknown query parameter on PUT', method: 'PUT', path: '/v1/interfaces/wg0?force=1', body: good, field: 'force' },
      { name: 'bad netns on DELETE', method: 'DELETE', path: '/v1/interfaces/wg0?netns=', field: 'netns' },
      { name: 'netns given twice', method: 'DELETE', path: '/v1/interfaces/wg0?netns=a&netns=b', field: 'netns' },
      { name: 'bad interface name on DELETE', method: 'DELETE', path: '/v1/interfaces/wg0-much-too-long', field: 'name' },
      { name: 'bad netns on GET', method: 'GET', path: '/v1/interfaces/wg0?netns=a%20b', field: 'netns' },
      { name: 'after negative', method: 'GET', path: '/v1/ledger?after=-1', field: 'after' },
      { name: 'after not a number', method: 'GET', path: '/v1/ledger?after=abc', field: 'after' },
      { name: 'after beyond 2^53', method: 'GET', path: '/v1/ledger?after=9007199254740993', field: 'after' },
      { name: 'limit 0', method: 'GET', path: '/v1/ledger?limit=0', field: 'limit' },
      { name: 'limit too large', method: 'GET', path: '/v1/ledger?limit=10001', field: 'limit' },
      { name: 'limit fractional', method: 'GET', path: '/v1/ledger?limit=1.5', field: 'limit' },
      { name: 'unknown ledger parameter', method: 'GET', path: '/v1/ledger?before=3', field: 'before' },
      { name: 'events rates=yes', method: 'GET', path: '/v1/events?rates=yes', field: 'rates' },
      { name: 'job without type', method: 'POST', path: '/v1/jobs', body: { name: 'vm-7' }, field: 'type' },
      { name: 'unknown job type', method: 'POST', path: '/v1/jobs', body: { type: 'REBOOT' }, field: 'type' },
      { name: 'cap job without name', method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_SET', mbps: 5 }, field: 'name' },
      { name: 'cap job with mbps a string', method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_SET', name: 'vm-7', mbps: '5' }, field: 'mbps' },
      { name: 'cap job with mbps 0', method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_SET', name: 'vm-7', mbps: 0 }, field: 'mbps' },
      { name: 'cap job with a bad tap name', method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_SET', name: 'vm-7', mbps: 5, if: 'tap 0' }, field: 'if' },
      { name: 'clear job with an empty name', method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_CLEAR', name: '' }, field: 'name' },
      { name: 'job as a string', method: 'POST', path: '/v1/jobs', body: '"BANDWIDTH_COLLECT"', field: 'body' },
    ];
    assert.ok(cases.length >= 20);
    for (const c of cases) {
      const res = await agent.call(c.method, c.path, { body: c.body, ...(c.headers ? { headers: c.headers } : {}) });
      assert.equal(res.status, 400, `${c.name}: ${res.status} ${res.text}`);
      assert.equal(res.json?.field, c.field, `${c.name}: ${res.text}`);
      assert.equal(typeof res.json.error, 'string', c.name);
      assert.ok(res.json.error.length > 0, c.name);
    }
    assert.deepEqual(await snapshot(agent.core), before, 'no malformed request changed anything');
    assert.deepEqual(agent.logger.errors, [], 'malformed input is not an internal error');
  });

  test('a body over the limit answers 413 naming the body', async (t) => {
    const agent = await startAgent(t, { bodyLimit: '1kb' });
    const big = wgState(1, Array.from({ length: 40 }, (_, i) => peer(String(i + 1), i + 2)));
    const res = await agent.call('PUT', '/v1/interfaces/wg0', { body: big });
    assert.equal(res.status, 413);
    assert.equal(res.json.field, 'body');
    assert.equal(await agent.core.interfaceState('wg0', null), null);
  });

  test('an unknown route is 404; an internal failure is 500 with a message, and logged', async (t) => {
    const agent = await startAgent(t);
    const missing = await agent.call('GET', '/v1/nothing');
    assert.equal(missing.status, 404);
    assert.match(missing.json.error, /No route GET \/v1\/nothing/);
    assert.equal((await agent.call('POST', '/v1/interfaces')).status, 404);
    // The state file goes away under the agent (a disk pulled): every read fails.
    await agent.core.db.destroy();
    const broken = await agent.call('GET', '/v1/interfaces');
    assert.equal(broken.status, 500);
    assert.match(broken.json.error, /^internal error: /);
    assert.equal(agent.logger.errors.length, 1);
    assert.match(agent.logger.errors[0]!, /GET \/v1\/interfaces failed/);
  });
});

describe('agent API: jobs of the VM-side design', () => {
  test('NET_EGRESS_CAP_SET sets a held VM’s download cap and keeps its upload cap; CLEAR removes it', async (t) => {
    const agent = await startAgent(t);
    await agent.call('PUT', '/v1/interfaces/tap7', { body: vmState(4, vm('7', { upKbps: 1000, downKbps: 2000 })) });
    const set = await agent.call('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_SET', name: 'vm-7', mbps: 25 } });
    assert.equal(set.status, 200, set.text);
    assert.equal(set.json.if, 'tap7');
    assert.equal(set.json.down_kbps, 25_000);
    assert.equal(set.json.up_kbps, 1000);
    assert.equal(set.json.report.version, 4, 'the held version: the panel’s next push replaces the job’s cap');
    assert.ok(set.json.report.operations.some((line: string) => /tc class \w+ dev tap7 .*classid 1:2 htb rate 25000kbit/.test(line)), 'egress on the tap is the VM’s download');
    let state = (await agent.call('GET', '/v1/interfaces/tap7')).json;
    assert.equal(state.subjects[0].downKbps, 25_000);
    assert.equal(state.subjects[0].upKbps, 1000);
    assert.equal(state.version, 4);

    const clear = await agent.call('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_CLEAR', name: 'vm-7' } });
    assert.equal(clear.status, 200, clear.text);
    state = (await agent.call('GET', '/v1/interfaces/tap7')).json;
    assert.equal(state.subjects[0].downKbps, 0);
    assert.equal(state.subjects[0].upKbps, 1000);

    const panel = await agent.call('PUT', '/v1/interfaces/tap7', { body: vmState(5, vm('7', { upKbps: 1000, downKbps: 3000 })) });
    assert.equal(panel.json.stale, false, 'the panel’s next push wins over a job');
    assert.equal((await agent.call('GET', '/v1/interfaces/tap7')).json.subjects[0].downKbps, 3000);
  });

  test('an unknown VM is 404 naming `name`, unless its tap is given: then the VM is created there', async (t) => {
    const agent = await startAgent(t);
    const before = await snapshot(agent.core);
    for (const body of [{ type: 'NET_EGRESS_CAP_SET', name: 'nobody', mbps: 5 }, { type: 'NET_EGRESS_CAP_CLEAR', name: 'nobody' }, { type: 'NET_EGRESS_CAP_CLEAR', name: 'nobody', if: 'tap3' }]) {
      const res = await agent.call('POST', '/v1/jobs', { body });
      assert.equal(res.status, 404, JSON.stringify(body));
      assert.equal(res.json.field, 'name');
    }
    assert.deepEqual(await snapshot(agent.core), before);

    const created = await agent.call('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_SET', name: 'web-1', mbps: 0.5, if: 'tap3' } });
    assert.equal(created.status, 200, created.text);
    assert.deepEqual((await agent.call('GET', '/v1/interfaces/tap3')).json, {
      version: 0, kind: 'vm', netns: null,
      subjects: [{ type: 'vm', id: 'web-1', name: 'web-1', classMinor: 2, addresses: [], publicKey: null, upKbps: 0, downKbps: 500 }],
    });
    const taken = await agent.call('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_SET', name: 'web-2', mbps: 1, if: 'tap3' } });
    assert.equal(taken.status, 409, 'a tap carries one VM');
    assert.equal(taken.json.field, 'if');
    const elsewhere = await agent.call('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_SET', name: 'web-1', mbps: 1, if: 'tap4' } });
    assert.equal(elsewhere.status, 409, 'a VM is not created twice under one name');
    assert.match(elsewhere.json.error, /VM `web-1` is on `tap3`, not `tap4`/);
    assert.equal(await agent.core.interfaceState('tap4', null), null);
  });

  test('BANDWIDTH_COLLECT answers every VM with its tap’s counters, null where the tap cannot be read', async (t) => {
    const agent = await startAgent(t);
    // `lo` exists everywhere and its sysfs counters are readable without privileges.
    await agent.call('PUT', '/v1/interfaces/lo', { body: vmState(1, vm('1', { name: 'on-lo' })) });
    await agent.call('PUT', '/v1/interfaces/pbwnosuch0', { body: vmState(1, vm('2', { name: 'gone' })) });
    await agent.call('PUT', '/v1/interfaces/wg0', { body: wgState(1) });
    const res = await agent.call('POST', '/v1/jobs', { body: { type: 'BANDWIDTH_COLLECT' } });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(res.json.vms.map((v: { name: string }) => v.name), ['gone', 'on-lo'], 'VMs only, no peers');
    const [gone, onLo] = res.json.vms;
    assert.deepEqual(gone, { name: 'gone', id: '2', if: 'pbwnosuch0', netns: null, rx_bytes: null, tx_bytes: null });
    const rx = BigInt(readFileSync('/sys/class/net/lo/statistics/rx_bytes', 'utf8').trim());
    assert.equal(onLo.if, 'lo');
    assert.ok(Number.isInteger(onLo.rx_bytes) && Number.isInteger(onLo.tx_bytes), 'counters are JSON integers');
    assert.ok(BigInt(onLo.rx_bytes) <= rx, 'read before the test read them');
    assert.match(res.text, /"rx_bytes":\d+,"tx_bytes":\d+\}/);
  });
});

/** One parsed Server-Sent Events block. */
interface SseBlock {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
}

interface SseClient {
  res: IncomingMessage;
  blocks: SseBlock[];
  /** Resolves once `predicate` holds over the blocks read so far; rejects after `timeoutMs`. */
  until(predicate: (blocks: SseBlock[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

async function openEvents(t: TestContext, url: string, headers: Record<string, string>, request = httpRequest): Promise<SseClient> {
  let req: ClientRequest | undefined;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    req = request(url, { headers: { Accept: 'text/event-stream', ...headers } }, resolve);
    req.on('error', reject);
    req.end();
  });
  const blocks: SseBlock[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block: SseBlock = {};
      for (const line of buffer.slice(0, end).split('\n')) {
        if (line.startsWith(':')) block.comment = line.slice(1).trim();
        else {
          const [field, ...rest] = line.split(':');
          const value = rest.join(':').replace(/^ /, '');
          if (field === 'id' || field === 'event' || field === 'data') block[field] = value;
        }
      }
      blocks.push(block);
      buffer = buffer.slice(end + 2);
    }
    for (const wake of waiters) wake();
  });
  const client: SseClient = {
    res,
    blocks,
    until(predicate, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!predicate(blocks)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`SSE condition not met within ${timeoutMs} ms; blocks: ${JSON.stringify(blocks)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => req?.destroy(),
  };
  t.after(() => client.close());
  return client;
}

/** Resolves once `predicate()` holds, polling every 10 ms; rejects after `timeoutMs`. */
async function eventually(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('agent API: events', () => {
  test('/v1/events sends the head at once, ledger events with increasing ids, and heartbeats', async (t) => {
    const agent = await startAgent(t);
    await recordLedger(agent.core, 3);
    const events = await openEvents(t, `${agent.url}/v1/events`, { Authorization: `Bearer ${TOKEN}` });
    assert.equal(events.res.statusCode, 200);
    assert.match(String(events.res.headers['content-type']), /^text\/event-stream/);
    await events.until((blocks) => blocks.some((b) => b.event === 'ledger'));
    const first = events.blocks.find((b) => b.event === 'ledger')!;
    assert.deepEqual(JSON.parse(first.data!), { head: 3 }, 'the current head when the stream opens');

    agent.core.emit('ledger', { head: 4 });
    await events.until((blocks) => blocks.filter((b) => b.event === 'ledger').length === 2);
    const ledger = events.blocks.filter((b) => b.event === 'ledger');
    assert.deepEqual(JSON.parse(ledger[1]!.data!), { head: 4 });
    assert.ok(Number(ledger[1]!.id) > Number(ledger[0]!.id), 'ids increase');
    await events.until((blocks) => blocks.some((b) => b.comment === 'heartbeat'));
    assert.equal(agent.core.listenerCount('ledger'), 1);

    events.close();
    await eventually(() => agent.core.listenerCount('ledger') === 0, 'the core’s listener is removed when the last client goes');
  });

  test('a reconnect with Last-Event-ID continues after it', async (t) => {
    const agent = await startAgent(t);
    const events = await openEvents(t, `${agent.url}/v1/events`, { Authorization: `Bearer ${TOKEN}`, 'Last-Event-ID': '1000' });
    await events.until((blocks) => blocks.some((b) => b.event === 'ledger'));
    assert.ok(Number(events.blocks.find((b) => b.event === 'ledger')!.id) > 1000);
  });

  test('?rates=1 adds rates events once an interval; without it none come', async (t) => {
    const agent = await startAgent(t, { ratesIntervalMs: 50 });
    const plain = await openEvents(t, `${agent.url}/v1/events`, { Authorization: `Bearer ${TOKEN}` });
    const withRates = await openEvents(t, `${agent.url}/v1/events?rates=1`, { Authorization: `Bearer ${TOKEN}` });
    await withRates.until((blocks) => blocks.filter((b) => b.event === 'rates').length >= 3);
    const frame = JSON.parse(withRates.blocks.find((b) => b.event === 'rates')!.data!);
    assert.deepEqual(frame.rates, {});
    assert.equal(typeof frame.at, 'number');
    await plain.until((blocks) => blocks.some((b) => b.comment === 'heartbeat'));
    assert.equal(plain.blocks.filter((b) => b.event === 'rates').length, 0);
  });

  test('closing the server ends the streams', async (t) => {
    const logger = recordingLogger();
    const core = await AgentCore.open({ node: 'hv1', statePath: ':memory:', executor: dryRunExecutor(null), mode: 'recording', logger });
    t.after(() => core.close());
    const server = createAgentServer({ core, token: TOKEN, logger });
    const { port } = await server.listen('127.0.0.1', 0);
    const events = await openEvents(t, `http://127.0.0.1:${port}/v1/events`, { Authorization: `Bearer ${TOKEN}` });
    const ended = new Promise((resolve) => events.res.on('end', resolve));
    await server.close();
    await ended;
    assert.equal(core.listenerCount('ledger'), 0);
  });
});

describe('agent API: metrics', () => {
  test('/metrics shows the node, the ledger head and subjects by status', async (t) => {
    const agent = await startAgent(t);
    await recordLedger(agent.core, 2);
    await agent.call('PUT', '/v1/interfaces/wg0', { body: wgState(1) });
    const res = await agent.call('GET', '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const families = new Map(parsePrometheus(res.text).map((family) => [family.name, family]));
    const value = (name: string, labels: Record<string, string> = {}) =>
      Number(families.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value);
    assert.equal(value('panel_bandwidth_agent_info', { node: 'hv1', mode: 'recording' }), 1);
    assert.equal(value('panel_bandwidth_agent_ledger_head'), 2);
    assert.equal(value('panel_bandwidth_agent_interfaces'), 1);
    assert.equal(value('panel_bandwidth_agent_subjects', { status: 'pending' }), 2);
    assert.equal(value('panel_bandwidth_agent_subjects', { status: 'applied' }), 0);
    assert.equal(value('panel_bandwidth_agent_collect_errors_total'), 0);
    assert.ok(value('panel_bandwidth_agent_uptime_seconds') >= 0);
    assert.ok(value('panel_bandwidth_agent_resident_memory_bytes') > 0);
  });
});

/** A self-signed certificate for 127.0.0.1 (openssl), or null when openssl is missing outside CI. */
async function selfSigned(t: TestContext): Promise<{ cert: Buffer; key: Buffer } | null> {
  const openssl = await execa('openssl', ['version'], { timeout: 10_000, reject: false });
  if (openssl.failed) {
    if (process.env.CI === 'true') assert.fail('openssl is required in CI (Debian package openssl)');
    t.skip('openssl not found (Debian package openssl)');
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'pbw-agent-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await execa('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=agent',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { timeout: 30_000 });
  return { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) };
}

describe('agent API: TLS', () => {
  test('with a certificate and key the agent speaks HTTPS, and plain HTTP to it fails', async (t) => {
    const tls = await selfSigned(t);
    if (!tls) return;
    const { cert } = tls;
    const agent = await startAgent(t, { tls });
    const httpsUrl = agent.url.replace('http:', 'https:');
    const get = (path: string, headers: Record<string, string> = {}) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(`${httpsUrl}${path}`, { ca: cert, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    const health = await get('/v1/health');
    assert.equal(health.status, 200);
    assert.equal(JSON.parse(health.body).node, 'hv1');
    assert.equal((await get('/v1/interfaces')).status, 401);
    assert.equal((await get('/v1/interfaces', { Authorization: `Bearer ${TOKEN}` })).status, 200);
    await assert.rejects(fetch(`${agent.url}/v1/health`), 'plain HTTP is not answered');
    const events = await openEvents(t, `${httpsUrl}/v1/events`, { Authorization: `Bearer ${TOKEN}` }, ((url: string, options: object, cb: (res: IncomingMessage) => void) => httpsRequest(url, { ...options, ca: cert }, cb)) as typeof httpRequest);
    await events.until((blocks) => blocks.some((b) => b.event === 'ledger'));
  });
});

describe('the panel’s RemoteLink against a real agent', () => {
  /** A link to `agent`, closed when the test ends. */
  function linkTo(t: TestContext, url: string, options: { token?: string; tlsFingerprint?: string } = {}): RemoteLink {
    const link = new RemoteLink({ node: 'hv1', url, token: options.token ?? TOKEN, timeoutMs: 5000, readDeadlineMs: 2000, ...(options.tlsFingerprint ? { tlsFingerprint: options.tlsFingerprint } : {}) });
    t.after(() => link.close());
    return link;
  }

  test('health, desired state, ledger and rates answer in the shapes the link checks', async (t) => {
    const agent = await startAgent(t);
    const link = linkTo(t, agent.url);
    assert.equal((await link.health()).node, 'hv1');
    const report = await link.putInterface('wg0', wgState(2));
    assert.equal(report.version, 2);
    assert.equal(report.subjects.length, 2);
    assert.equal((await link.putInterface('wg0', wgState(1))).stale, true);
    await recordLedger(agent.core, 3);
    const page = await link.ledger(1, 10);
    assert.deepEqual(page.entries.map((e) => e.seq), [2, 3]);
    assert.deepEqual(await link.tickRates(), {});
    assert.deepEqual(await link.liveRates(), {});
    assert.deepEqual((await link.deleteInterface('wg0', null)).subjects, []);
    assert.deepEqual(agent.logger.errors, []);
  });

  test('a refusal reaches the link with its status and field', async (t) => {
    const agent = await startAgent(t);
    await assert.rejects(linkTo(t, agent.url, { token: 'x'.repeat(40) }).ledger(0, 1), (error: unknown) => {
      assert.ok(error instanceof NodeRefusedError);
      assert.equal(error.status, 401);
      return true;
    });
    await assert.rejects(linkTo(t, agent.url).putInterface('wg0', { ...wgState(1), kind: 'bridge' as 'vm' }), (error: unknown) => {
      assert.ok(error instanceof NodeRefusedError);
      assert.equal(error.status, 400);
      assert.equal(error.field, 'kind');
      return true;
    });
  });

  test('follow gets the ledger events and heartbeats, and stops on abort', async (t) => {
    const agent = await startAgent(t);
    const link = linkTo(t, agent.url);
    const seen: NodeEvent[] = [];
    const controller = new AbortController();
    const following = link.follow((event) => seen.push(event), controller.signal);
    await eventually(() => seen.some((e) => e.type === 'ledger'), 'the head on connect');
    agent.core.emit('ledger', { head: 42 });
    await eventually(() => seen.some((e) => e.type === 'ledger' && e.head === 42), 'the ledger event');
    await eventually(() => seen.some((e) => e.type === 'heartbeat'), 'a heartbeat');
    assert.ok(link.lastEventId !== null && Number(link.lastEventId) > 0, 'the link keeps the last event id');
    controller.abort();
    await following;
  });

  test('over TLS with the pinned fingerprint it connects; with another it is refused', async (t) => {
    const tls = await selfSigned(t);
    if (!tls) return;
    const agent = await startAgent(t, { tls });
    const url = agent.url.replace('http:', 'https:');
    const fingerprint = new X509Certificate(tls.cert).fingerprint256;
    assert.equal((await linkTo(t, url, { tlsFingerprint: fingerprint }).health()).node, 'hv1');
    await assert.rejects(linkTo(t, url, { tlsFingerprint: 'AB'.repeat(32) }).health(), /fingerprint did not match/);
  });
});
