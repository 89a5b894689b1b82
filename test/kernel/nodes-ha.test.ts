/**
 * Issue 10, kernel layer: two panel processes on one MariaDB or PostgreSQL database (high
 * availability) drive the same agents. Neither may ingest a ledger entry the other has, nor undo
 * a cap the other pushed. Each engine gets its own database (`pbw_nodes_<pid>_<engine>`), dropped
 * at the end, and its own gateway node of the lab.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';

import type { Knex } from 'knex';

import { connect } from '../../src/db/connect.js';
import { readTree } from '../../src/shaping/read.js';
import { inCI, requireOrSkip } from '../support/layer.js';
import { iperf, labRequirements, waitFor } from '../support/lab.js';
import { startPanelProcess, type ApiResponse, type PanelProcess } from '../support/lab-panel.js';
import { createNodeLab, idlePoint, type LabNode, type NodeLab } from '../support/node-lab.js';

const { available, reason } = labRequirements();

const ENGINES = [
  { id: 'mysql', base: process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test', admin: '' },
  { id: 'postgres', base: process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test', admin: 'postgres' },
] as const;

function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

const withDatabase = (url: string, name: string): string => {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
};

/**
 * Creates a database of its own on the engine's server; undefined (with the reason) when the
 * server cannot be reached. `drop()` removes it (PostgreSQL: also the connections a killed panel left).
 */
async function ownDatabase(engine: (typeof ENGINES)[number]): Promise<{ url: string; drop: () => Promise<void> } | { unreachable: string }> {
  const name = `pbw_nodes_${process.pid}_${engine.id}`;
  const admin = connect(withDatabase(engine.base, engine.admin));
  const quote = (text: string) => (engine.id === 'mysql' ? `\`${text}\`` : `"${text}"`);
  const dropSql = `DROP DATABASE IF EXISTS ${quote(name)}${engine.id === 'postgres' ? ' WITH (FORCE)' : ''}`;
  try {
    await admin.raw(dropSql);
    await admin.raw(`CREATE DATABASE ${quote(name)}`);
  } catch (error) {
    await admin.destroy();
    return { unreachable: `${engine.id} server not reachable at ${engine.base}: ${(error as Error).message}` };
  }
  return {
    url: withDatabase(engine.base, name),
    drop: async () => {
      try {
        await admin.raw(dropSql);
      } finally {
        await admin.destroy();
      }
    },
  };
}

/** Every usage row of a node up to `untilMs`, as `type:id|periodEnd|up|down`, sorted. */
async function panelRows(db: Knex, node: string, untilMs: number): Promise<string[]> {
  const rows = (await db('bw_usage').where({ node }).andWhere('period_end', '<=', untilMs)) as Record<string, unknown>[];
  return rows.map((r) => `${String(r.subject_type)}:${String(r.subject_id)}|${Number(r.period_end)}|${String(r.up_bytes)}|${String(r.down_bytes)}`).sort();
}

async function agentRows(node: LabNode, untilMs: number): Promise<string[]> {
  const page = await node.agent.request('GET', '/v1/ledger?after=0&limit=10000');
  assert.equal(page.status, 200, page.text);
  return (page.body.entries as Record<string, unknown>[])
    .filter((e) => Number(e.periodEnd) <= untilMs)
    .map((e) => `${String(e.subjectType)}:${String(e.subjectId)}|${Number(e.periodEnd)}|${String(e.upBytes)}|${String(e.downBytes)}`)
    .sort();
}

test('two panel processes on one database drive the same agents: no ledger entry twice, no cap undone', { timeout: 300_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const nodes: NodeLab = await createNodeLab({ peersPerGateway: 2, vms: 1 });
  t.after(() => nodes.close());
  const gateways = { mysql: nodes.gwA, postgres: nodes.gwB };

  for (const engine of ENGINES) {
    await t.test(`on ${engine.id === 'mysql' ? 'MariaDB' : 'PostgreSQL'}`, async (t) => {
      const database = await ownDatabase(engine);
      if ('unreachable' in database) {
        if (inCI) throw new Error(`required in CI but unavailable: ${database.unreachable}`);
        t.skip(database.unreachable);
        return;
      }
      t.after(() => database.drop());
      const node = gateways[engine.id];
      const wg = node.wg!;
      // One machine, one database: both panels share the key of the agents' tokens and the panel machine's own node state.
      const dir = await mkdtemp(join(tmpdir(), 'pbw-ha-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const env = { PANEL_BANDWIDTH_SECRET_KEY: randomBytes(32).toString('hex'), PANEL_BANDWIDTH_LOCAL_STATE: join(dir, 'local-agent.sqlite') };
      const options = { databaseUrl: database.url, env, logLevel: 'info', bandwidth: { executor: 'local', reconcile_interval_s: 5, collect_interval_s: 5, node_read_deadline_s: 6 } };
      let failed = false;
      const panels: PanelProcess[] = [];
      t.after(() => {
        if (failed) for (const [i, panel] of panels.entries()) console.error(`--- panel ${i + 1} (${engine.id}) ---\n${panel.output().slice(-6000)}`);
      });
      const story = (name: string, fn: (t: TestContext) => Promise<void>, options: { todo?: string } = {}) =>
        t.test(name, options, async (t) => {
          try {
            await fn(t);
          } catch (error) {
            if (!options.todo) failed = true;
            throw error;
          }
        });
      // One after the other: the first one migrates the database.
      const one = await startPanelProcess(t, options);
      panels.push(one);
      const db = connect(database.url);
      t.after(() => db.destroy());

      const registered = await one.post('/api/bandwidth/agents', { name: node.name, url: node.agent.url, token: node.agent.token });
      expectStatus(registered, 201, 'POST /api/bandwidth/agents');
      const agentId = registered.body.agent.id as number;
      const two = await startPanelProcess(t, options);
      panels.push(two);
      const connectedOn = (panel: PanelProcess, name: string, id: number) =>
        waitFor(`${name} connected in panel ${panels.indexOf(panel) + 1}`, async () => (await panel.get(`/api/bandwidth/agents/${id}/status`)).body?.status?.state === 'connected', 30_000, 100);
      await Promise.all([connectedOn(one, node.name, agentId), connectedOn(two, node.name, agentId)]);

      const network = await one.post('/api/networks', { name: 'tunnel', interface: wg.ifname, node: node.name });
      expectStatus(network, 201, 'POST /api/networks');
      const peers: { id: string; publicKey: string; ns: string; target: string }[] = [];
      for (const [i, peer] of wg.peers.entries()) {
        const created = await (i === 0 ? one : two).post(`/api/networks/${network.body.network.id}/peers`, {
          name: `peer${i + 1}`, public_key: peer.publicKey, allowed_ips: [`${peer.addresses[0]}/32`], bandwidth_up_kbps: 20_000, bandwidth_down_kbps: 20_000,
        });
        expectStatus(created, 201, `POST peer ${i + 1} through panel ${i + 1}`);
        assert.equal(created.body.peer.bandwidth_status, 'applied', String(created.body.peer.bandwidth_error));
        peers.push({ id: String(created.body.peer.id), publicKey: peer.publicKey, ns: peer.ns, target: peer.addresses[0]! });
      }

      await story('both panels pull the same ledger: each entry is in the database once, and each peer\'s bytes equal the wg show dump deltas exactly', async (t) => {
        const from = await idlePoint(node);
        await Promise.all([
          iperf(node.lab, { serverNs: peers[0]!.ns, clientNs: node.ns, target: peers[0]!.target, seconds: 5 }),
          iperf(node.lab, { serverNs: peers[1]!.ns, clientNs: node.ns, target: peers[1]!.target, seconds: 5, reverse: true }),
        ]);
        const to = await idlePoint(node);
        await waitFor('the ledger ingested', async () => Number((await db('bw_node_cursors').where({ node: node.name }).max({ seq: 'seq' }).first())?.seq ?? 0) >= to.head, 30_000, 100);
        const stored = await panelRows(db, node.name, to.tickEnd);
        assert.deepEqual(stored, await agentRows(node, to.tickEnd), 'the database holds each ledger entry once');
        for (const peer of peers) {
          let up = 0n;
          let down = 0n;
          for (const row of stored) {
            const [key, end, u, d] = row.split('|');
            if (key !== `peer:${peer.id}` || Number(end) <= from.tickEnd) continue;
            up += BigInt(u!);
            down += BigInt(d!);
          }
          const expected = { up: to.reading.get(peer.publicKey)!.rx - from.reading.get(peer.publicKey)!.rx, down: to.reading.get(peer.publicKey)!.tx - from.reading.get(peer.publicKey)!.tx };
          t.diagnostic(`peer ${peer.id}: up ${up} B, down ${down} B (wg: ${expected.up}, ${expected.down})`);
          assert.deepEqual({ up, down }, expected);
          assert.ok(expected.up + expected.down > 1_000_000n, 'the peer carried traffic');
        }
        // (first row − 1 ms, to.tickEnd]: raw rows only, the range is shorter than an hour.
        const first = Math.min(...stored.map((row) => Number(row.split('|')[1])));
        const range = `from=${new Date(first - 1).toISOString()}&to=${new Date(to.tickEnd).toISOString()}`;
        for (const panel of panels) {
          const usage = await panel.get(`/api/bandwidth/agents/${agentId}/bandwidth?${range}`);
          expectStatus(usage, 200, 'GET node bandwidth');
          const total = stored.reduce((sum, row) => sum + BigInt(row.split('|')[2]!) + BigInt(row.split('|')[3]!), 0n);
          assert.equal(BigInt(usage.body.totals.up_bytes) + BigInt(usage.body.totals.down_bytes), total, `panel ${panels.indexOf(panel) + 1} shows the node's total once`);
        }
      });

      await story('a cap changed through one panel stays in the kernel through both panels\' reconcile loops: they never push an older state', async (t) => {
        const minor = parseInt(String(((await one.get('/api/bandwidth/limits?subject_type=peer&per_page=100')).body.limits as Record<string, unknown>[])
          .find((l) => l.subject_id === peers[0]!.id)?.class_id).slice(2), 16);
        const rate = async () => (await readTree(node.lab.executor, wg.ifname, node.ns))?.classes.find((c) => c.kind === 'htb' && c.minor === minor)?.rateBits;
        assert.equal(await rate(), 20_000_000);
        const seen = new Map<number | undefined, number>();
        for (const [i, [panel, kbps]] of ([[two, 7000], [one, 9000]] as const).entries()) {
          const changed = await panel.put(`/api/bandwidth/limits/peer/${peers[0]!.id}`, { bandwidth_down_kbps: kbps });
          expectStatus(changed, 200, `PUT limit ${i + 1}`);
          assert.equal(changed.body.limit.bandwidth_status, 'applied');
          // Watch for longer than a reconcile interval: each panel pushes the interface every 5 s.
          const until = performance.now() + 7000;
          seen.clear();
          while (performance.now() < until) {
            const now = await rate();
            seen.set(now, (seen.get(now) ?? 0) + 1);
          }
          t.diagnostic(`after PUT ${kbps} kbit/s through panel ${panels.indexOf(panel) + 1}: rates seen ${JSON.stringify([...seen])}`);
          assert.deepEqual([...seen.keys()], [kbps * 1000], 'only the new rate was ever in the kernel');
        }
      });

      if (engine.id === 'mysql') {
        await story('an agent registered through one panel is driven by the other as well: it connects, and a VM on it stays applied through both panels\' reconciles', async (t) => {
          const hv = nodes.hv;
          const added = await two.post('/api/bandwidth/agents', { name: hv.name, url: hv.agent.url, token: hv.agent.token });
          expectStatus(added, 201, 'POST hv through panel 2');
          const hvId = added.body.agent.id as number;
          // Panel 1 reads the registry again every 10 s: it connects to the agent by itself.
          await waitFor('panel 1 connects to the agent panel 2 registered', async () => (await one.get(`/api/bandwidth/agents/${hvId}/status`)).body?.status?.state === 'connected', 20_000, 200);
          const vm = await two.post('/api/vms', { name: hv.vms[0]!.name, interface: hv.vms[0]!.tap, node: hv.name, bandwidth_down_kbps: 5000 });
          expectStatus(vm, 201, 'POST VM through panel 2');
          const vmId = String(vm.body.vm.id);
          const statuses = new Set<string>();
          const until = performance.now() + 7000;
          while (performance.now() < until) {
            const row = (await db('bw_limits').where({ subject_type: 'vm', subject_id: vmId }).first()) as Record<string, unknown>;
            statuses.add(`${String(row.status)}${row.reason ? ` (${String(row.reason)}: ${String(row.last_error)})` : ''}`);
          }
          const inOne = (await one.get(`/api/bandwidth/agents/${hvId}/status`)).body?.status;
          t.diagnostic(`VM statuses seen: ${[...statuses].join('; ')}; panel 1 says hv is ${String(inOne?.state)} (${String(inOne?.last_error)})`);
          assert.equal(inOne?.state, 'connected', 'panel 1 connects to an agent panel 2 registered');
          assert.deepEqual([...statuses], ['applied'], 'the VM stays applied');
        });
      }
    });
  }
});
