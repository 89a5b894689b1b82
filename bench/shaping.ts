/**
 * Shaping engine benchmark (root): `npm run bench:shaping` (tsx bench/shaping.ts).
 * Everything runs in throwaway namespaces (veth devices; this kernel has no dummy driver), cleaned up.
 * Prints a Markdown report and one JSON line per measurement; docs/performance.md holds the figures of runs.
 *
 * 1. full apply of N limited peers (both directions): engine (read + plan + tc -batch) vs the bare
 *    `tc -batch` of the same commands (floor) vs one tc process per command (naive; extrapolated from
 *    a measured subset, said so in the output);
 * 2. one subject's rate change among 10,000: operations and wall time;
 * 3. forwarding throughput through HTB with 5,000 limited subjects vs 1 (iperf3 over veth, the flow
 *    in the default class).
 */
import { cpus, release } from 'node:os';
import { performance } from 'node:perf_hooks';

import { execa } from 'execa';

import { emptyActual } from '../src/shaping/actual.js';
import { batchScript, groupForBatch } from '../src/shaping/executor.js';
import { ifbNameFor } from '../src/shaping/ifb-name.js';
import type { DesiredInterface } from '../src/shaping/model.js';
import { commandLine, type Operation } from '../src/shaping/operations.js';
import { planInterface } from '../src/shaping/plan.js';
import { probeCapabilities } from '../src/shaping/probe.js';
import { readActual } from '../src/shaping/read.js';
import { changeSubjectRate } from '../src/shaping/rate-change.js';
import { reconcileInterface, removeInterface } from '../src/shaping/reconcile.js';
import { iperf, Lab } from '../test/support/lab.js';
import { labOrSkip } from './support.js';

const NAIVE_SAMPLE = Number(process.env.BENCH_NAIVE_SAMPLE ?? 1500);

/** One machine-readable line per measurement, beside the Markdown report. */
function figure(subjects: number, metric: string, value: number, extra: Record<string, number | string> = {}): void {
  console.log(JSON.stringify({ bench: 'shaping', subjects, metric, value: Math.round(value * 10) / 10, ...extra }));
}

function peers(name: string, netns: string, count: number, withUp = true): DesiredInterface {
  return {
    name,
    netns,
    kind: 'wireguard',
    subjects: Array.from({ length: count }, (_, i) => ({
      type: 'peer' as const,
      id: `p${i}`,
      classMinor: i + 2,
      addresses: [`10.1.${i >> 8}.${i & 255}/32`],
      downKbps: 1000 + (i % 50) * 100,
      upKbps: withUp ? 500 + (i % 20) * 100 : 0,
    })),
  };
}

const ms = (start: number): number => performance.now() - start;
const fmt = (value: number): string => (value >= 100 ? value.toFixed(0) : value.toFixed(1));

async function bareBatch(operations: readonly Operation[], netns: string): Promise<void> {
  for (const group of groupForBatch(operations, netns)) {
    await execa(group.tool, ['-n', netns, '-batch', '-'], { input: batchScript(group.operations), timeout: 120_000 });
  }
}

async function naive(operations: readonly Operation[]): Promise<void> {
  for (const operation of operations) {
    const [file, ...args] = commandLine(operation);
    await execa(file ?? 'tc', args, { timeout: 10_000 });
  }
}

async function main(): Promise<void> {
  if (!labOrSkip()) return;
  const lab = new Lab();
  const out: string[] = [];
  const log = (line: string): void => {
    out.push(line);
    console.log(line);
  };
  try {
    const caps = await probeCapabilities(lab.executor);
    const tcVersion = (await execa('tc', ['-V'])).stdout.trim();
    log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Linux ${release()}, ${tcVersion}, node ${process.version}, leaf ${caps.leaf}`);
    log('');
    const parts = (process.env.BENCH_PARTS ?? 'apply,throughput').split(',');
    const ns = await lab.namespace('bench');
    const peerNs = await lab.namespace('bpeer');
    const dev = `pb${lab.id}a`;
    await lab.veth({ ns, name: dev, addresses: ['10.99.0.1/24'] }, { ns: peerNs, name: `pb${lab.id}b`, addresses: ['10.99.0.2/24'] });

    // 1 + 2. Full applies and a rate change.
    if (parts.includes('apply')) {
    log('| limited peers (both directions) | tc operations | engine: read + plan + apply | bare `tc -batch` (floor) | engine / floor | one process per command (naive) | naive / engine |');
    log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    let rateChange = '';
    for (const count of [1000, 10_000]) {
      const desired = peers(dev, ns, count);
      const operations = planInterface(desired, emptyActual(dev, ifbNameFor(dev, ns), true, ns), caps);

      // Side by side, alternating, best of two each: removing a big tree leaves the kernel busy for a while.
      let floor = Infinity;
      let engine = Infinity;
      let start = 0;
      for (let round = 0; round < 2; round += 1) {
        await removeInterface(dev, ns, lab.executor);
        start = performance.now();
        await bareBatch(operations, ns);
        floor = Math.min(floor, ms(start));

        await removeInterface(dev, ns, lab.executor);
        start = performance.now();
        const result = await reconcileInterface(desired, lab.executor, caps);
        engine = Math.min(engine, ms(start));
        if (result.operations.length !== operations.length) throw new Error('engine and floor applied different plans');
      }

      // Naive: one process per command, measured on the first NAIVE_SAMPLE operations of the same plan.
      await removeInterface(dev, ns, lab.executor);
      const sample = operations.slice(0, Math.min(NAIVE_SAMPLE, operations.length));
      start = performance.now();
      await naive(sample);
      const naiveMs = (ms(start) / sample.length) * operations.length;
      const naiveNote = sample.length < operations.length ? ` (extrapolated from ${sample.length} measured)` : '';
      log(
        `| ${count} | ${operations.length} | ${fmt(engine)} ms | ${fmt(floor)} ms | ${(engine / floor).toFixed(2)}× | ${fmt(naiveMs / 1000)} s${naiveNote} | ${(naiveMs / engine).toFixed(0)}× |`,
      );
      figure(count, 'apply_ms', engine, { floor: Math.round(floor), naive: Math.round(naiveMs), operations: operations.length });

      if (count === 10_000) {
        await removeInterface(dev, ns, lab.executor);
        await reconcileInterface(desired, lab.executor, caps);
        const target = desired.subjects[5000];
        if (!target) throw new Error('no subject 5000');
        target.downKbps += 700;
        start = performance.now();
        const actual = await readActual(lab.executor, dev, ns);
        const readMs = ms(start);
        start = performance.now();
        const plan = planInterface(desired, actual, caps);
        const planMs = ms(start);
        start = performance.now();
        await lab.executor.batch(plan, ns);
        const applyMs = ms(start);
        start = performance.now();
        await execa('tc', ['-n', ns, '-s', 'class', 'show', 'dev', dev]);
        await execa('tc', ['-n', ns, '-j', 'filter', 'show', 'dev', dev, 'parent', '1:']);
        const rawReadMs = ms(start);
        target.downKbps += 700;
        start = performance.now();
        const change = await reconcileInterface(desired, lab.executor, caps);
        const total = ms(start);
        const previous = { downKbps: target.downKbps, upKbps: target.upKbps };
        target.downKbps += 700;
        const fastTimes: number[] = [];
        let fast = await changeSubjectRate(desired, target.id, previous, lab.executor, caps);
        for (let i = 0; i < 5; i += 1) {
          const before = { downKbps: target.downKbps, upKbps: target.upKbps };
          target.downKbps += 100;
          start = performance.now();
          fast = await changeSubjectRate(desired, target.id, before, lab.executor, caps);
          fastTimes.push(ms(start));
        }
        const shown = await lab.tc(ns, ['class', 'show', 'dev', dev, 'classid', `1:${target.classMinor.toString(16)}`]);
        if (!shown.includes(`rate ${target.downKbps}Kbit`)) throw new Error(`fast path did not apply: ${shown}`);
        fastTimes.sort((a, b) => a - b);
        figure(count, 'rate_change_fast_ms', fastTimes[2] ?? 0, { operations: fast.operations.length });
        figure(count, 'reconcile_one_change_ms', total, { read: Math.round(readMs), plan: Math.round(planMs), apply: Math.round(applyMs), floor: Math.round(rawReadMs) });
        rateChange = [
          `one subject's rate change among 10,000, fast path (\`changeSubjectRate\`, no read): ${fast.operations.length} operation(s), median ${fmt(fastTimes[2] ?? 0)} ms (5 runs: ${fastTimes.map(fmt).join(', ')} ms)`,
          `one subject's rate change among 10,000 (both directions limited: 20,000 classes): ${change.operations.length} operation(s) (\`${change.operations.map((o) => o.argv.slice(0, 2).join(' ')).join(', ')}\`)`,
          `- full reconcile (read + diff + apply): ${fmt(total)} ms`,
          `- of which, measured separately: read ${fmt(readMs)} ms, plan ${fmt(planMs)} ms, apply ${fmt(applyMs)} ms (${plan.length} op)`,
          `- tc alone printing the interface's classes and filters (no parsing): ${fmt(rawReadMs)} ms`,
        ].join('\n');
      }
    }
    log('');
    log(rateChange);
    log('');
    }

    // 3. Forwarding throughput: a flow in the default class, HTB with 1 vs 5,000 limited subjects on the
    // egress. Two veth pairs built once, measured alternately (the 2-core machine is noisy), medians.
    if (parts.includes('throughput')) {
      const runs = Number(process.env.BENCH_IPERF_RUNS ?? 5);
      const pairs: { label: string; count: number; ns: string; peerNs: string }[] = [];
      for (const [index, count] of [0, 1, 5000].entries()) {
        const a = await lab.namespace(`t${index}a`);
        const b = await lab.namespace(`t${index}b`);
        const name = `pt${lab.id}${index}`;
        await lab.veth({ ns: a, name, addresses: ['10.98.0.1/24'] }, { ns: b, name: `pt${lab.id}${index}b`, addresses: ['10.98.0.2/24'] });
        // Down only: the flow (to 10.98.0.2) crosses the egress tree; with 5,000 subjects its bucket (2) holds ~20 hosts.
        if (count > 0) await reconcileInterface(peers(name, a, count, false), lab.executor, caps);
        pairs.push({ label: count === 0 ? 'no qdisc' : `HTB, ${count} limited subject${count > 1 ? 's' : ''}`, count, ns: a, peerNs: b });
      }
      const results = new Map<number, number[]>();
      for (let i = 0; i < runs; i += 1) {
        for (const pair of pairs) {
          const r = await iperf(lab, { serverNs: pair.peerNs, clientNs: pair.ns, target: '10.98.0.2', seconds: 2, omitSeconds: 1 });
          results.set(pair.count, [...(results.get(pair.count) ?? []), r.bitsPerSecond]);
        }
      }
      const median = (values: number[]): number => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? 0;
      log(`forwarding throughput (iperf3 TCP over veth, flow in the default class 1:ffff, median of ${runs} × 2 s, runs interleaved):`);
      const one = median(results.get(1) ?? []);
      for (const pair of pairs) {
        const value = median(results.get(pair.count) ?? []);
        const all = (results.get(pair.count) ?? []).map((v) => (v / 1e9).toFixed(1)).join(', ');
        log(`- ${pair.label}: ${(value / 1e9).toFixed(2)} Gbit/s${pair.count > 1 ? ` = ${((value / one) * 100).toFixed(1)}% of 1 subject` : ''} (runs: ${all})`);
        figure(pair.count, 'forward_gbps', value / 1e9, pair.count > 1 ? { floor: Math.round((one / 1e9) * 100) / 100, ratio: Math.round((value / one) * 1000) / 1000 } : {});
      }
    }
  } finally {
    await lab.close();
  }
}

await main();
