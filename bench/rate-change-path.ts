/**
 * One subject's rate change among N on one interface, through the path the panel takes since the
 * nodes work (NodeApplier → the in-process agent → the engine's LimitApplier) and through the
 * engine's LimitApplier on the panel's database alone (the path before it), side by side, with the
 * recording executor (no kernel: this measures what the node path adds, not tc). One JSON line per figure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { connect } from '../src/db/connect.js';
import { migrateLatest } from '../src/db/migrate.js';
import { limitsOnInterface, saveLimit } from '../src/db/limits.js';
import { LimitApplier } from '../src/limits/applier.js';
import { AgentCore } from '../src/nodes/agent/core.js';
import { LocalLink } from '../src/nodes/link.js';
import { NodeApplier } from '../src/nodes/panel/applier.js';
import { RecordingExecutor } from '../src/shaping/recording-executor.js';

const N = Number(process.env.SUBJECTS ?? 10_000);
const RUNS = 7;
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), 'pbw-rc-'));
const db = connect(`sqlite:${join(dir, 'panel.sqlite')}`);
try {
  await migrateLatest(db);
  const rows = Array.from({ length: N }, (_, i) => ({
    subject_type: 'peer', subject_id: String(i + 1), name: `p${i + 1}`, node: 'local', network_id: '1', interface: 'wg0', netns: null,
    interface_kind: 'wireguard', addresses: JSON.stringify([`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`]), public_key: null,
    up_kbps: 1000 + (i % 50), down_kbps: 5000, class_minor: i + 2, status: 'applied', created_at: 0, updated_at: 0,
  }));
  for (let i = 0; i < rows.length; i += 500) await db('bw_limits').insert(rows.slice(i, i + 500));

  const core = await AgentCore.open({ node: 'local', statePath: join(dir, 'agent.sqlite'), executor: new RecordingExecutor({ history: 'latest' }), mode: 'recording', logger: silent });
  const local = new LocalLink(core);
  const nodeApplier = new NodeApplier({ db, link: () => local, logger: silent, mode: 'recording' });
  const engine = new LimitApplier({ db, executor: new RecordingExecutor({ history: 'latest' }), mode: 'recording', reason: 'bench', capabilities: async () => ({ leaf: 'fq_codel' }), logger: silent });

  let started = performance.now();
  await nodeApplier.applyInterface('wg0', null);
  const firstPush = performance.now() - started;
  // The agent answers `pending` (a dry run): the fast path needs the subject `applied` on the agent.
  await core.db('bw_limits').update({ status: 'applied' });
  await db('bw_limits').update({ status: 'applied' });

  const target = (await limitsOnInterface(db, 'local', 'wg0', null))[N >> 1]!;
  const nodeTimes: number[] = [];
  const engineTimes: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const [path, times] of [['node', nodeTimes], ['engine', engineTimes]] as const) {
      const previous = (await limitsOnInterface(db, 'local', 'wg0', null)).find((row) => row.id === target.id)!;
      const { current } = await saveLimit(db, { ...previous, upKbps: previous.upKbps + 1 });
      await db('bw_limits').where({ id: current.id }).update({ status: 'applied' });
      started = performance.now();
      if (path === 'node') await nodeApplier.applyInterface('wg0', null, { subjectId: current.subjectId, previous });
      else await engine.applyInterface('wg0', null, { subjectId: current.subjectId, previous });
      times.push(performance.now() - started);
      await core.db('bw_limits').update({ status: 'applied' });
    }
  }
  const figures = [
    { figure: 'node_first_push_ms', subjects: N, value: Math.round(firstPush) },
    { figure: 'rate_change_node_path_ms', subjects: N, median: Number(median(nodeTimes).toFixed(1)), runs: nodeTimes.map((t) => Number(t.toFixed(1))) },
    { figure: 'rate_change_engine_only_ms', subjects: N, median: Number(median(engineTimes).toFixed(1)), runs: engineTimes.map((t) => Number(t.toFixed(1))) },
    { figure: 'rate_change_node_over_engine', subjects: N, ratio: Number((median(nodeTimes) / median(engineTimes)).toFixed(2)) },
  ];
  for (const figure of figures) console.log(JSON.stringify({ bench: 'rate-change-path', ...figure }));
  await core.close();
} finally {
  await db.destroy();
  rmSync(dir, { recursive: true, force: true });
}
