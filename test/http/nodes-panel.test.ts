/**
 * The panel with a registered node, end to end through the real wiring (src/index.ts): a real agent
 * (its core in a dry run, its HTTP server on loopback) registered through the API; a network placed
 * on it; caps pushed to it; its ledger ingested exactly once; a node that goes away leaves the caps
 * `pending` with `node_unreachable`, and they reach it when it is back. The kernel is the kernel
 * layer's business (test/kernel/nodes-*.test.ts); here the agent records what it would run.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';

import { AgentCore } from '../../src/nodes/agent/core.js';
import { createAgentServer } from '../../src/nodes/agent/server.js';
import { dryRunExecutor } from '../../src/limits/executor-choice.js';
import { created, startPanel, wgKey } from '../support/panel.js';

process.env.PANEL_BANDWIDTH_SECRET_KEY = randomBytes(32).toString('hex');

const TOKEN = 'node-hv1-token-0123456789abcdef0123456789';
const silent = { debug() {}, info() {}, warn() {}, error() {} };

async function waitUntil<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function startAgent(t: TestContext) {
  const core = await AgentCore.open({ node: 'hv1', statePath: ':memory:', executor: dryRunExecutor(null), mode: 'recording', logger: silent });
  let server = createAgentServer({ core, token: TOKEN, logger: silent, heartbeatMs: 200 });
  const { port } = await server.listen('127.0.0.1', 0);
  t.after(async () => {
    await server.close();
    await core.close();
  });
  return {
    core,
    url: `http://127.0.0.1:${port}`,
    stop: () => server.close(),
    /** Listens again on the same port (the node is back). */
    async resume() {
      server = createAgentServer({ core, token: TOKEN, logger: silent, heartbeatMs: 200 });
      await server.listen('127.0.0.1', port);
    },
    /** Records ledger entries as a collector tick would, and announces the new head. */
    async record(entries: { subjectId: string; up: number; down: number; end: number }[]) {
      await core.db('bw_usage').insert(entries.map((e) => ({
        subject_type: 'peer', subject_id: e.subjectId, node: 'local', source: 'wireguard', interface: 'wg-hv1',
        period_start: e.end - 60_000, period_end: e.end, up_bytes: e.up, down_bytes: e.down,
      })));
      core.emit('ledger', { head: await core.ledgerHead() });
    },
  };
}

test('a registered node gets its subjects’ caps, its ledger is ingested exactly once, and a cap typed while it is away reaches it when it is back', { timeout: 60_000 }, async (t) => {
  const agent = await startAgent(t);
  const host = await startPanel(t, { pluginOptions: { bandwidth: { executor: 'recording', node_read_deadline_s: 6 } } });
  const { api, db } = host;

  const registered = await api.post('/api/bandwidth/agents').send({ name: 'hv1', url: agent.url, token: TOKEN });
  assert.equal(registered.status, 201, registered.text);
  assert.ok(!registered.text.includes(TOKEN), 'the token is never answered');
  const agentId = registered.body.agent.id as number;
  const status = async () => (await api.get(`/api/bandwidth/agents/${agentId}/status`)).body.status as { state: string; version: string | null; ledger_lag: number | null };
  await waitUntil('the node is connected', async () => (await status()).state === 'connected');

  const network = await created(api.post('/api/networks').send({ name: 'gw-hv1', interface: 'wg-hv1', node: 'hv1' }), 'network');
  const peer = await created(
    api.post(`/api/networks/${network.id}/peers`).send({ name: 'alice', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'], bandwidth_up_kbps: 2000, bandwidth_down_kbps: 8000 }),
    'peer',
  );
  // The node's agent holds the state (and, a dry run, answers `pending`/`dry_run` for it).
  const held = await agent.core.interfaceState('wg-hv1', null);
  assert.deepEqual(held?.subjects.map((s) => [s.type, s.id, s.upKbps, s.downKbps, s.addresses]), [['peer', String(peer.id), 2000, 8000, ['10.8.0.2/32']]]);
  const row = await db('bw_limits').where({ subject_type: 'peer', subject_id: String(peer.id) }).first();
  assert.deepEqual([row.node, row.status, row.reason], ['hv1', 'pending', 'dry_run']);

  // Ledger: ingested once, with the node's name, however often the head is announced.
  // Within the raw retention of the panel's clock (the clock layer moves it by ±400 days).
  const end = Math.floor(Date.now() / 60_000) * 60_000 - 3_600_000;
  await agent.record([{ subjectId: String(peer.id), up: 1000, down: 5000, end }, { subjectId: String(peer.id), up: 7, down: 9, end: end + 60_000 }]);
  const sums = async () => {
    const [sum] = await db('bw_usage').where({ subject_type: 'peer', subject_id: String(peer.id), node: 'hv1' }).sum({ up: 'up_bytes', down: 'down_bytes' }).count({ n: '*' });
    return { up: Number(sum?.up ?? 0), down: Number(sum?.down ?? 0), rows: Number(sum?.n ?? 0) };
  };
  await waitUntil('the ledger is ingested', async () => (await sums()).rows === 2);
  agent.core.emit('ledger', { head: await agent.core.ledgerHead() });
  await api.post('/api/bandwidth/reconcile'); // its poll pulls every connected node again
  assert.deepEqual(await sums(), { up: 1007, down: 5009, rows: 2 });
  const daily = await db('bw_usage_daily').where({ subject_type: 'peer', subject_id: String(peer.id) }).sum({ up: 'up_bytes', down: 'down_bytes' });
  assert.deepEqual([Number(daily[0]?.up), Number(daily[0]?.down)], [1007, 5009]);
  assert.equal((await status()).ledger_lag, 0);

  // The node goes away: a cap typed now is stored, pending with node_unreachable, and not lost.
  await agent.stop();
  await waitUntil('the node is unreachable', async () => (await status()).state === 'unreachable');
  await waitUntil('its subjects show pending, node_unreachable', async () => {
    const now = await db('bw_limits').where({ subject_type: 'peer', subject_id: String(peer.id) }).first();
    return now.status === 'pending' && now.reason === 'node_unreachable';
  });
  const changed = await api.put(`/api/bandwidth/limits/peer/${peer.id}`).send({ bandwidth_down_kbps: 12_000 });
  assert.equal(changed.status, 200, changed.text);
  assert.deepEqual([changed.body.limit.bandwidth_status, changed.body.limit.bandwidth_reason, changed.body.limit.bandwidth_down_kbps], ['pending', 'node_unreachable', 12_000]);
  assert.equal((await agent.core.interfaceState('wg-hv1', null))?.subjects[0]?.downKbps, 8000, 'the agent has not heard of it yet');

  // Back: the panel reconnects by itself and pushes the node's state again.
  await agent.resume();
  await waitUntil('the cap reaches the node', async () => (await agent.core.interfaceState('wg-hv1', null))?.subjects[0]?.downKbps === 12_000, 15_000);
  await waitUntil('the status says what the node answered', async () => {
    const now = await db('bw_limits').where({ subject_type: 'peer', subject_id: String(peer.id) }).first();
    return now.reason === 'dry_run';
  });
  assert.equal((await status()).state, 'connected');
});

test('a subject on a node nobody registered is pending with node_unreachable, and applied once the node is added', { timeout: 60_000 }, async (t) => {
  const host = await startPanel(t, { pluginOptions: { bandwidth: { executor: 'recording' } } });
  const { api, db } = host;
  const network = await created(api.post('/api/networks').send({ name: 'gw-later', interface: 'wg-later', node: 'hv1' }), 'network');
  const peer = await created(
    api.post(`/api/networks/${network.id}/peers`).send({ name: 'bob', public_key: wgKey(2), allowed_ips: ['10.9.0.2/32'], bandwidth_up_kbps: 1000, bandwidth_down_kbps: 0 }),
    'peer',
  );
  const before = await db('bw_limits').where({ subject_type: 'peer', subject_id: String(peer.id) }).first();
  assert.deepEqual([before.status, before.reason, before.up_kbps], ['pending', 'node_unreachable', 1000]);
  assert.match(String(before.last_error), /hv1/);

  const agent = await startAgent(t);
  const registered = await api.post('/api/bandwidth/agents').send({ name: 'hv1', url: agent.url, token: TOKEN });
  assert.equal(registered.status, 201, registered.text);
  await waitUntil('the state reaches the new node', async () => (await agent.core.interfaceState('wg-later', null))?.subjects[0]?.upKbps === 1000);
  await waitUntil('the status says what the node answered', async () => (await db('bw_limits').where({ subject_type: 'peer', subject_id: String(peer.id) }).first()).reason === 'dry_run');
});

test('a network deleted while its node is away loses its tree on the node when the node is back', { timeout: 60_000 }, async (t) => {
  const agent = await startAgent(t);
  const host = await startPanel(t, { pluginOptions: { bandwidth: { executor: 'recording' } } });
  const { api } = host;
  const registered = await api.post('/api/bandwidth/agents').send({ name: 'hv1', url: agent.url, token: TOKEN });
  assert.equal(registered.status, 201, registered.text);
  const agentId = registered.body.agent.id as number;
  const state = async () => (await api.get(`/api/bandwidth/agents/${agentId}/status`)).body.status.state as string;
  await waitUntil('the node is connected', async () => (await state()) === 'connected');
  const network = await created(api.post('/api/networks').send({ name: 'gw-gone', interface: 'wg-gone', node: 'hv1' }), 'network');
  await created(api.post(`/api/networks/${network.id}/peers`).send({ name: 'carol', public_key: wgKey(3), allowed_ips: ['10.7.0.2/32'], bandwidth_up_kbps: 3000 }), 'peer');
  assert.deepEqual((await agent.core.interfaces()).map((held) => held.interface), ['wg-gone']);

  await agent.stop();
  await waitUntil('the node is unreachable', async () => (await state()) === 'unreachable');
  assert.equal((await api.delete(`/api/networks/${network.id}`)).status, 204);
  assert.deepEqual((await agent.core.interfaces()).map((held) => held.interface), ['wg-gone'], 'the node could not hear of it');

  await agent.resume();
  await waitUntil('the node forgets the interface', async () => (await agent.core.interfaces()).length === 0, 15_000);
});

test('a peer on a node that uses up its quota is throttled on that node right after its ledger is ingested, and a manual reset restores its own caps there', { timeout: 60_000 }, async (t) => {
  const agent = await startAgent(t);
  const host = await startPanel(t, { pluginOptions: { bandwidth: { executor: 'recording' } } });
  const { api, db } = host;
  const registered = await api.post('/api/bandwidth/agents').send({ name: 'hv1', url: agent.url, token: TOKEN });
  assert.equal(registered.status, 201, registered.text);
  await waitUntil('the node is connected', async () => (await api.get(`/api/bandwidth/agents/${registered.body.agent.id}/status`)).body.status.state === 'connected');
  const network = await created(api.post('/api/networks').send({ name: 'gw-hv1', interface: 'wg-hv1', node: 'hv1' }), 'network');
  const peer = await created(
    api.post(`/api/networks/${network.id}/peers`).send({ name: 'alice', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'], bandwidth_down_kbps: 8000 }),
    'peer',
  );
  const quota = await api.put(`/api/bandwidth/quotas/peer/${peer.id}`).send({ allowance_bytes: 1_000_000, throttle_up_kbps: 1000, throttle_down_kbps: 1000 });
  assert.equal(quota.status, 200, quota.text);
  const caps = async () => (await agent.core.interfaceState('wg-hv1', null))?.subjects.map((s) => [s.upKbps, s.downKbps])[0];
  assert.deepEqual(await caps(), [0, 8000]);

  // The node counts 1.2 MB for the peer in the current cycle (a calendar month in UTC).
  const cycleStart = Date.parse(quota.body.cycle_start as string);
  const end = Math.max(cycleStart + 1, Date.now() - 1000);
  await agent.record([{ subjectId: String(peer.id), up: 200_000, down: 1_000_000, end }]);
  await waitUntil('the node holds the throttle: min(own cap, 1000) down, 1000 up where it had none', async () => {
    const now = await caps();
    return now?.[0] === 1000 && now[1] === 1000;
  });
  const state = await api.get(`/api/bandwidth/quotas/peer/${peer.id}`);
  assert.deepEqual([state.body.state, state.body.used_bytes, state.body.throttled], ['exceeded', 1_200_000, true]);
  const row = await db('bw_limits').where({ subject_type: 'peer', subject_id: String(peer.id) }).first();
  assert.deepEqual([row.up_kbps, row.down_kbps], [0, 8000], 'the configured caps are untouched');

  const reset = await api.post(`/api/bandwidth/quotas/peer/${peer.id}/reset`).send({});
  assert.equal(reset.status, 200, reset.text);
  assert.deepEqual([reset.body.state, reset.body.used_bytes, reset.body.throttled], ['ok', 0, false]);
  await waitUntil('the node holds the peer\u2019s own caps again', async () => {
    const now = await caps();
    return now?.[0] === 0 && now[1] === 8000;
  });
});
