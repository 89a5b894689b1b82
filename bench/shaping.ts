/**
 * Shaping engine benchmark (root): `npm run bench:shaping` (tsx bench/shaping.ts).
 * Everything runs in throwaway namespaces (veth devices; this kernel has no dummy driver), cleaned up.
 * Prints a Markdown report; docs/performance.md holds the figures of a run.
 *
 * 1. full apply of N limited peers (both directions): engine (read + plan + tc -batch) vs the bare
 *    `tc -batch` of the same commands (floor) vs one tc process per command (naive; extrapolated from
 *    a measured subset, said so in the output);
 * 2. one subject's rate change among 10,000: operations and wall time;
 * 3. forwarding throughput through HTB with 5,000 limited subjects vs 1 (iperf3 over veth, the flow
 *    in the default class).
 */
import { release } from 'node:os';
import { cpus } from 'node:os';
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
import { reconcileInterface, removeInterface } from '../src/shaping/reconcile.js';
import { iperf, Lab, labRequirements } from '../test/support/lab.js';

const NAIVE_SAMPLE = Number(process.env.BENCH_NAIVE_SAMPLE ?? 1500);

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
  const requirements = labRequirements();
  if (!requirements.available) {
    console.error(`skipped: ${requirements.reason}`);
    process.exitCode = 2;
    return;
  }
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
    const ns = await lab.namespace('bench');
    const peerNs = await lab.namespace('bpeer');
    const dev = `pb${lab.id}a`;
    await lab.veth({ ns, name: dev, addresses: ['10.99.0.1/24'] }, { ns: peerNs, name: `pb${lab.id}b`, addresses: ['10.99.0.2/24'] });

    // 1 + 2. Full applies and a rate change.
    log('| limited peers (both directions) | tc operations | engine: read + plan + apply | bare `tc -batch` (floor) | engine / floor | one process per command (naive) | naive / engine |');
    log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    let rateChange = '';
    for (const count of [1000, 10_000]) {
      const desired = peers(dev, ns, count);
      const operations = planInterface(desired, emptyActual(dev, ifbNameFor(dev, ns), true, ns), caps);

      await removeInterface(dev, ns, lab.executor);
      let start = performance.now();
      await bareBatch(operations, ns);
      const floor = ms(start);

      await removeInterface(dev, ns, lab.executor);
      start = performance.now();
      const result = await reconcileInterface(desired, lab.executor, caps);
      const engine = ms(start);
      if (result.operations.length !== operations.length) throw new Error('engine and floor applied different plans');

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
        target.downKbps += 700;
        start = performance.now();
        const change = await reconcileInterface(desired, lab.executor, caps);
        const total = ms(start);
        rateChange = [
          `one subject's rate change among 10,000 (both directions limited: 20,000 classes): ${change.operations.length} operation(s) (\`${change.operations.map((o) => o.argv.slice(0, 2).join(' ')).join(', ')}\`)`,
          `- full reconcile (read + diff + apply): ${fmt(total)} ms`,
          `- of which, measured separately: read ${fmt(readMs)} ms, plan ${fmt(planMs)} ms, apply ${fmt(applyMs)} ms (${plan.length} op)`,
        ].join('\n');
      }
    }
    log('');
    log(rateChange);
    log('');

    // 3. Forwarding throughput: a flow in the default class with 1 vs 5,000 limited subjects on the egress.
    const runs = Number(process.env.BENCH_IPERF_RUNS ?? 3);
    const throughput = async (): Promise<number> => {
      const results: number[] = [];
      for (let i = 0; i < runs; i += 1) {
        results.push((await iperf(lab, { serverNs: peerNs, clientNs: ns, target: '10.99.0.2', seconds: 3, omitSeconds: 1 })).bitsPerSecond);
      }
      return results.sort((a, b) => a - b)[Math.floor(results.length / 2)] ?? 0;
    };
    const measured: Record<string, number> = {};
    for (const count of [1, 5000]) {
      await removeInterface(dev, ns, lab.executor);
      // Down only: the flow crosses the egress tree; subjects' last bytes cover every bucket, including the flow's (2).
      await reconcileInterface(peers(dev, ns, count, false), lab.executor, caps);
      measured[count] = await throughput();
    }
    await removeInterface(dev, ns, lab.executor);
    const bare = await throughput();
    const one = measured[1] ?? 0;
    const many = measured[5000] ?? 0;
    log(`forwarding throughput (iperf3 TCP over veth, flow in the default class 1:ffff, median of ${runs} × 3 s):`);
    log(`- no qdisc: ${fmt(bare / 1e9)} Gbit/s`);
    log(`- HTB with 1 limited subject: ${fmt(one / 1e9)} Gbit/s`);
    log(`- HTB with 5,000 limited subjects (u32 hashed): ${fmt(many / 1e9)} Gbit/s = ${((many / one) * 100).toFixed(1)}% of 1 subject`);
  } finally {
    await lab.close();
  }
}

await main();
