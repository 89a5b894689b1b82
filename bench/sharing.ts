/**
 * What sharing (issue 14: network caps, guaranteed shares, defaults) costs the shaping engine.
 * Root: `npm run bench:sharing` (tsx bench/sharing.ts). The engine's LocalExecutor on veth devices in
 * throwaway namespaces (removed afterwards, also on failure). Prints a human line and one JSON line
 * per figure; docs/performance.md ("Sharing (issue 14)") holds the figures of runs.
 *
 * For N peers (`BENCH_SUBJECTS`, default 1000,10000; /32 IPv4 each, class minor i + 2), caps 5000 down
 * / 1000 up kbit/s (as a network default would give them), network cap T = 30 kbit/s × N on both sides
 * (30 Mbit/s per 1,000 peers: each share is 29 kbit/s, above HTB's 8 kbit/s floor, so it moves when T does):
 *
 * 1. full apply from an empty interface: capped peers, no network cap (the tree as before) / the same
 *    under the network cap / N peers without caps under the network cap (each now gets a class);
 * 2. the network cap T → 0.8 T and back on the down side (every share moves: class changes only) vs a
 *    reconcile of the unchanged interface; at more than 1,000 peers also 30,000 → 24,000 kbit/s;
 * 3. a default change of every peer (5000/1000 → 4000/800) through changeSubjectRates (no read) vs the
 *    same change through reconcileInterface (read + diff), and the fast path split into its planning
 *    alone (a recording executor) and the bare `tc -batch` of its class changes;
 * 4. forwarding: one iperf3 TCP flow to an uncapped peer through the N-peer tree without a network cap
 *    (the flow is in 1:ffff) vs with a network cap far above the flow (the peer has a class that borrows).
 *
 * `BENCH_PARTS` picks parts (default apply,forward); `BENCH_ROUNDS` the runs of a timed figure (default
 * 5 below 10,000 peers, 3 from there), `BENCH_IPERF_RUNS` the forwarding runs (default 5).
 */
import { cpus, release } from 'node:os';
import { performance } from 'node:perf_hooks';

import { execa } from 'execa';

import type { DesiredInterface } from '../src/shaping/model.js';
import type { Operation } from '../src/shaping/operations.js';
import { probeCapabilities } from '../src/shaping/probe.js';
import { changeSubjectRates, type RateChange } from '../src/shaping/rate-change.js';
import { reconcileInterface, removeInterface } from '../src/shaping/reconcile.js';
import { RecordingExecutor } from '../src/shaping/recording-executor.js';
import { DEFAULT_SHARE_KBPS, MIN_SHARE_KBPS } from '../src/shaping/tree-shape.js';
import { iperf, Lab } from '../test/support/lab.js';
import { labOrSkip, median } from './support.js';

const SIZES = (process.env.BENCH_SUBJECTS ?? '1000,10000').split(',').map(Number);
const PARTS = (process.env.BENCH_PARTS ?? 'apply,forward').split(',');
const IPERF_RUNS = Number(process.env.BENCH_IPERF_RUNS ?? 5);
const rounds = (count: number): number => Number(process.env.BENCH_ROUNDS ?? (count >= 10_000 ? 3 : 5));

const DOWN_KBPS = 5000;
const UP_KBPS = 1000;
const NEW_DEFAULT = { downKbps: 4000, upKbps: 800 };
/** Network cap per peer (30 Mbit/s per 1,000): shares of 29 kbit/s, moved to 23 by 0.8 T. */
const TOTAL_PER_PEER_KBPS = 30;
/** Network cap of the forwarding trees: far above what one flow over veth reaches here (12-20 Gbit/s without a qdisc). */
const FORWARD_TOTAL_KBPS = 50_000_000;
const FLOW_TARGET = '10.98.0.2';

/** One machine-readable line per figure, beside the human one. */
function figure(subjects: number, metric: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ bench: 'sharing', subjects, metric, value: Math.round(value * 1000) / 1000, unit, ...extra }));
}

interface TreeOptions {
  capped: boolean;
  /** Network cap on both sides (0 = none). */
  totalKbps: number;
  /** Peer 0's address instead of 10.1.0.0/32, uncapped: the forwarding flow's destination. */
  flowPeer?: string;
}

function tree(name: string, netns: string, count: number, options: TreeOptions): DesiredInterface {
  return {
    name,
    netns,
    kind: 'wireguard',
    ...(options.totalKbps > 0 ? { totalDownKbps: options.totalKbps, totalUpKbps: options.totalKbps } : {}),
    subjects: Array.from({ length: count }, (_, i) => {
      const flow = i === 0 && options.flowPeer !== undefined;
      return {
        type: 'peer' as const,
        id: `p${i}`,
        classMinor: i + 2,
        addresses: [flow ? `${options.flowPeer}/32` : `10.1.${i >> 8}.${i & 255}/32`],
        downKbps: options.capped && !flow ? DOWN_KBPS : 0,
        upKbps: options.capped && !flow ? UP_KBPS : 0,
      };
    }),
  };
}

const ms = (start: number): number => performance.now() - start;
const fmt = (value: number): string => (value >= 100 ? value.toFixed(0) : value.toFixed(1));
const list = (values: number[]): string => values.map(fmt).join(', ');
const rounded = (values: number[]): number[] => values.map((v) => Math.round(v * 10) / 10);
/** The equal share of `count` peers without a minimum under a network cap of `totalKbps` (see `guarantees` in tree-shape.ts). */
const shareOf = (totalKbps: number, count: number): number => Math.max(MIN_SHARE_KBPS, Math.floor((totalKbps - DEFAULT_SHARE_KBPS) / count));

/** `class change` count; throws when the plan holds anything else. */
function classChangesOnly(operations: readonly Operation[], what: string): number {
  const other = operations.find((o) => o.argv[0] !== 'class' || o.argv[1] !== 'change');
  if (other) throw new Error(`${what}: expected class changes only, got \`${other.tool} ${other.argv.join(' ')}\``);
  return operations.length;
}

async function timed<T>(action: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await action();
  return { value, ms: ms(start) };
}

async function main(): Promise<void> {
  if (!labOrSkip()) return;
  const lab = new Lab();
  try {
    const executor = lab.executor;
    const caps = await probeCapabilities(executor);
    const tcVersion = (await execa('tc', ['-V'])).stdout.trim();
    const commit = (await execa('git', ['rev-parse', '--short', 'HEAD'], { reject: false })).stdout.trim();
    console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Linux ${release()}, ${tcVersion}, node ${process.version}, leaf ${caps.leaf}, commit ${commit}, ${new Date().toISOString()}`);

    if (PARTS.includes('apply')) {
      const ns = await lab.namespace('share');
      const peerNs = await lab.namespace('speer');
      const dev = `ps${lab.id}a`;
      await lab.veth({ ns, name: dev, addresses: ['10.99.0.1/24'] }, { ns: peerNs, name: `ps${lab.id}b`, addresses: ['10.99.0.2/24'] });

      for (const count of SIZES) {
        const total = TOTAL_PER_PEER_KBPS * count;
        const runs = rounds(count);

        // 1. Full applies, the three trees interleaved; the network-capped one last, so that 2 and 3 start from it.
        const variants = [
          { metric: 'apply_capped_ms', label: 'capped peers, no network cap (as before)', desired: tree(dev, ns, count, { capped: true, totalKbps: 0 }) },
          { metric: 'apply_uncapped_under_network_cap_ms', label: `uncapped peers under a network cap of ${total} kbit/s`, desired: tree(dev, ns, count, { capped: false, totalKbps: total }) },
          { metric: 'apply_capped_under_network_cap_ms', label: `capped peers under a network cap of ${total} kbit/s`, desired: tree(dev, ns, count, { capped: true, totalKbps: total }) },
        ];
        const times = variants.map(() => [] as number[]);
        const operations = variants.map(() => 0);
        for (let round = 0; round < runs; round += 1) {
          for (const [index, variant] of variants.entries()) {
            await removeInterface(dev, ns, executor);
            const { value, ms: took } = await timed(() => reconcileInterface(variant.desired, executor, caps));
            times[index]?.push(took);
            operations[index] = value.operations.length;
          }
        }
        const base = median(times[0] ?? []);
        for (const [index, variant] of variants.entries()) {
          const value = median(times[index] ?? []);
          const ratio = value / base;
          console.log(`${count} peers, full apply, ${variant.label}: ${operations[index]} operations, median ${fmt(value)} ms (${list(times[index] ?? [])}) = ${ratio.toFixed(2)}× the first`);
          figure(count, variant.metric, value, 'ms', { operations: operations[index], runs: rounded(times[index] ?? []), ratio: Math.round(ratio * 100) / 100 });
        }

        // 2. Network cap T → 0.8 T and back (down side) vs a reconcile of the unchanged interface.
        const capped = variants[2]?.desired;
        if (!capped) throw new Error('no network-capped tree');
        const unchanged: number[] = [];
        for (let round = 0; round < runs; round += 1) {
          const { value, ms: took } = await timed(() => reconcileInterface(capped, executor, caps));
          if (value.operations.length !== 0) throw new Error(`unchanged reconcile applied ${value.operations.length} operations`);
          unchanged.push(took);
        }
        const changeTimes: number[] = [];
        let changeOps = 0;
        for (let round = 0; round < runs; round += 1) {
          for (const to of [Math.round(total * 0.8), total]) {
            const { value, ms: took } = await timed(() => reconcileInterface({ ...capped, totalDownKbps: to }, executor, caps));
            changeOps = classChangesOnly(value.operations, `network cap → ${to}`);
            changeTimes.push(took);
          }
        }
        const unchangedMs = median(unchanged);
        const changeMs = median(changeTimes);
        console.log(`${count} peers, reconcile of the unchanged interface: median ${fmt(unchangedMs)} ms (${list(unchanged)}), 0 operations`);
        figure(count, 'reconcile_unchanged_ms', unchangedMs, 'ms', { operations: 0, runs: rounded(unchanged) });
        console.log(
          `${count} peers, network cap ${total} ↔ ${Math.round(total * 0.8)} kbit/s (down; shares ${shareOf(total, count)} ↔ ${shareOf(Math.round(total * 0.8), count)} kbit/s): ${changeOps} class changes, median ${fmt(changeMs)} ms (${list(changeTimes)}) = ${(changeMs / unchangedMs).toFixed(2)}× the unchanged reconcile`,
        );
        figure(count, 'network_cap_change_ms', changeMs, 'ms', { operations: changeOps, from: total, to: Math.round(total * 0.8), runs: rounded(changeTimes), ratio: Math.round((changeMs / unchangedMs) * 100) / 100 });

        // 3. A default change of every peer: the fast path (no read) vs a reconcile (read + diff), alternating.
        const moved = (state: DesiredInterface, to: { downKbps: number; upKbps: number }): DesiredInterface => ({
          ...state,
          subjects: state.subjects.map((subject) => ({ ...subject, ...to })),
        });
        const before = { downKbps: DOWN_KBPS, upKbps: UP_KBPS };
        const changed = moved(capped, NEW_DEFAULT);
        const fast: number[] = [];
        const slow: number[] = [];
        const plan: number[] = [];
        const batch: number[] = [];
        let fastOps = 0;
        let slowOps = 0;
        for (let round = 0; round < runs; round += 1) {
          const changes: RateChange[] = changed.subjects.map((subject) => ({ subjectId: subject.id, previous: before }));
          const a = await timed(() => changeSubjectRates(changed, changes, executor, caps));
          if (!a.value.fastPath) throw new Error('the default change fell back to a reconcile');
          fastOps = classChangesOnly(a.value.operations, 'default change (fast path)');
          fast.push(a.ms);
          const b = await timed(() => reconcileInterface(capped, executor, caps));
          slowOps = classChangesOnly(b.value.operations, 'default change (reconcile)');
          slow.push(b.ms);
          // Where the fast path's time goes: its planning alone (a recording executor, no kernel), and
          // the bare `tc -batch` of its class changes (then the reconcile's, back to where it was).
          const p = await timed(() => changeSubjectRates(changed, changes, new RecordingExecutor({ history: 'latest' }), caps));
          plan.push(p.ms);
          const bare = await timed(() => executor.batch(a.value.operations, ns));
          batch.push(bare.ms);
          await executor.batch(b.value.operations, ns);
        }
        const fastMs = median(fast);
        const slowMs = median(slow);
        console.log(`${count} peers, default ${before.downKbps}/${before.upKbps} → ${NEW_DEFAULT.downKbps}/${NEW_DEFAULT.upKbps} kbit/s, changeSubjectRates (no read): ${fastOps} class changes, median ${fmt(fastMs)} ms (${list(fast)})`);
        console.log(`${count} peers, the same change back through reconcileInterface (read + diff): ${slowOps} class changes, median ${fmt(slowMs)} ms (${list(slow)}) = ${(slowMs / fastMs).toFixed(2)}× the fast path`);
        console.log(`${count} peers, of the fast path: planning alone (no kernel) median ${fmt(median(plan))} ms (${list(plan)}), the bare \`tc -batch\` of its ${fastOps} class changes median ${fmt(median(batch))} ms (${list(batch)})`);
        figure(count, 'default_change_fast_ms', fastMs, 'ms', { operations: fastOps, runs: rounded(fast), plan: Math.round(median(plan)), batch: Math.round(median(batch)) });
        figure(count, 'default_change_reconcile_ms', slowMs, 'ms', { operations: slowOps, runs: rounded(slow), ratio: Math.round((slowMs / fastMs) * 100) / 100 });

        // 2b. 30,000 → 24,000 kbit/s whatever the size: from ~3,750 peers every share sits at the 8 kbit/s floor and only 1:1 and 1:ffff move.
        if (count > 1000) {
          await reconcileInterface({ ...capped, totalDownKbps: 30_000 }, executor, caps);
          const literal: number[] = [];
          let literalOps = 0;
          for (let round = 0; round < runs; round += 1) {
            for (const to of [24_000, 30_000]) {
              const { value, ms: took } = await timed(() => reconcileInterface({ ...capped, totalDownKbps: to }, executor, caps));
              literalOps = classChangesOnly(value.operations, `network cap → ${to}`);
              literal.push(took);
            }
          }
          const literalMs = median(literal);
          console.log(`${count} peers, network cap 30000 ↔ 24000 kbit/s (down; shares ${shareOf(30_000, count)} ↔ ${shareOf(24_000, count)} kbit/s): ${literalOps} class changes, median ${fmt(literalMs)} ms (${list(literal)})`);
          figure(count, 'network_cap_change_floor_ms', literalMs, 'ms', { operations: literalOps, from: 30_000, to: 24_000, runs: rounded(literal), ratio: Math.round((literalMs / unchangedMs) * 100) / 100 });
        }
      }
      await removeInterface(dev, ns, executor);
    }

    // 4. Forwarding: one flow to an uncapped peer through N capped peers' trees, without and with a
    // network cap; a pair without a qdisc for reference. Pairs built once, measured interleaved.
    if (PARTS.includes('forward')) {
      const pairs: { label: string; subjects: number; metric: string; ns: string; peerNs: string }[] = [];
      const layouts = [{ subjects: 0, totalKbps: 0 }, ...SIZES.flatMap((subjects) => [{ subjects, totalKbps: 0 }, { subjects, totalKbps: FORWARD_TOTAL_KBPS }])];
      for (const [index, layout] of layouts.entries()) {
        const a = await lab.namespace(`f${index}a`);
        const b = await lab.namespace(`f${index}b`);
        const name = `pf${lab.id}${index}`;
        await lab.veth({ ns: a, name, addresses: ['10.98.0.1/24'] }, { ns: b, name: `${name}b`, addresses: [`${FLOW_TARGET}/24`] });
        if (layout.subjects > 0) await reconcileInterface(tree(name, a, layout.subjects, { capped: true, totalKbps: layout.totalKbps, flowPeer: FLOW_TARGET }), executor, caps);
        const label = layout.subjects === 0 ? 'no qdisc' : layout.totalKbps > 0 ? `network cap ${layout.totalKbps / 1e6} Gbit/s (the flow's peer has a class)` : 'no network cap (the flow in 1:ffff)';
        pairs.push({ label, subjects: layout.subjects, metric: layout.subjects === 0 ? 'forward_no_qdisc_gbps' : layout.totalKbps > 0 ? 'forward_network_cap_gbps' : 'forward_gbps', ns: a, peerNs: b });
      }
      const results = pairs.map(() => [] as number[]);
      for (let run = 0; run < IPERF_RUNS; run += 1) {
        for (const [index, pair] of pairs.entries()) {
          const r = await iperf(lab, { serverNs: pair.peerNs, clientNs: pair.ns, target: FLOW_TARGET, seconds: 2, omitSeconds: 1 });
          results[index]?.push(r.bitsPerSecond / 1e9);
        }
      }
      for (const [index, pair] of pairs.entries()) {
        const value = median(results[index] ?? []);
        const without = pair.metric === 'forward_network_cap_gbps' ? median(results[index - 1] ?? []) : 0;
        const ratio = without > 0 ? ` = ${((value / without) * 100).toFixed(1)}% of the tree without it` : '';
        console.log(`forwarding, ${pair.subjects} capped peers, ${pair.label}: median ${value.toFixed(2)} Gbit/s (${(results[index] ?? []).map((v) => v.toFixed(1)).join(', ')})${ratio}`);
        figure(pair.subjects, pair.metric, value, 'Gbit/s', { runs: (results[index] ?? []).map((v) => Math.round(v * 100) / 100), ...(without > 0 ? { ratio: Math.round((value / without) * 1000) / 1000 } : {}) });
      }
    }
  } finally {
    await lab.close();
  }
}

await main();
