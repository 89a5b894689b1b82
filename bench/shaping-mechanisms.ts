/**
 * Which kernel mechanism gives a subject its BURST, and does the fair-share tree share (issue 14)?
 * Root: `npm run bench:mechanisms` (tsx bench/shaping-mechanisms.ts). Plain `tc` on one veth pair
 * between two throwaway namespaces; iperf3 TCP in reverse mode (-R), so every 0.5 s interval is what
 * the receiver got. Prints human lines and one JSON line per figure. `BENCH_PARTS` picks parts
 * (default all): burst, capped, limits, refill, fair, change.
 *
 * burst:   cap 5 Mbit/s, burst 20 Mbit/s, 5,000,000 burst bytes, after 5 s idle, three mechanisms:
 *          A. HTB class rate=ceil=burst rate, leaf tbf rate=cap burst=depth;
 *          B. HTB class S rate=ceil=cap cburst=depth, child ceil=burst rate, leaf pfifo;
 *          C. one HTB class rate=cap burst=depth ceil=burst rate.
 * capped:  the same under a network cap of 30 Mbit/s with a saturating sibling (rate 25 or 15, ceil 30).
 * limits:  the largest tbf burst tc accepts at 5 Mbit/s and 1 Gbit/s, what the kernel keeps, and an
 *          HTB cburst past 2^32 scheduler ticks.
 * refill:  does `tc qdisc change … tbf` / `tc class change … htb` refill an emptied bucket?
 * fair:    three classes rate 10 ceil 30 under 1:1 at 30; one flow stops; one class capped at 5.
 * change:  `tc class change` of 1:1 and of one class: the other classes' counters keep counting.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { execa } from 'execa';

import { parseClassText } from '../src/shaping/parse-class-text.js';
import { burstBytes, quantumBytes } from '../src/shaping/rates.js';
import { Lab, waitFor } from '../test/support/lab.js';
import { labOrSkip } from './support.js';

const PARTS = (process.env.BENCH_PARTS ?? 'burst,capped,limits,refill,fair,change').split(',');
const CAP_KBPS = 5000;
const BURST_KBPS = 20_000;
const BURST_BYTES = 5_000_000;
/** What the token bucket must hold so that BURST_BYTES leave at the burst rate while it refills at the cap. */
const DEPTH = Math.round(BURST_BYTES * (1 - CAP_KBPS / BURST_KBPS));
const TBF_LIMIT = 300_000;
const IDLE_MS = 5000;
const INTERVAL_S = 0.5;
const UNLIMITED_KBPS = 10_000_000;

const SENDER = '10.97.0.1';
const RECEIVERS = ['10.97.0.2', '10.97.0.3', '10.97.0.4'] as const;

function figure(part: string, metric: string, value: number, extra: Record<string, number | string | boolean> = {}): void {
  console.log(JSON.stringify({ bench: 'shaping-mechanisms', part, metric, value: Math.round(value * 100) / 100, ...extra }));
}

/** HTB class arguments the way the engine writes them: explicit quantum, burst/cburst of 10 ms (≥ 2 frames) unless given. */
function htb(rateKbps: number, ceilKbps: number, depth: { burst?: number; cburst?: number } = {}): string[] {
  return [
    'htb', 'rate', `${rateKbps}kbit`, 'ceil', `${ceilKbps}kbit`, 'quantum', String(quantumBytes(rateKbps)),
    'burst', String(depth.burst ?? burstBytes(rateKbps)), 'cburst', String(depth.cburst ?? burstBytes(ceilKbps)),
  ];
}

const mbps = (values: number[]): string => values.map((v) => v.toFixed(1)).join(' ');
const mean = (values: number[]): number => (values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length);

/** One veth pair: the sender's end carries the trees under test; the receiver holds three addresses. */
class Bench {
  readonly lab = new Lab();
  tx = '';
  rx = '';
  dev = '';
  private port = 5400;
  /** Every tc argv run by a part, printed so the report can quote what worked. */
  readonly argvLog: string[][] = [];

  async open(): Promise<void> {
    this.tx = await this.lab.namespace('mtx');
    this.rx = await this.lab.namespace('mrx');
    this.dev = `pm${this.lab.id}a`;
    await this.lab.veth(
      { ns: this.tx, name: this.dev, addresses: [`${SENDER}/24`] },
      { ns: this.rx, name: `pm${this.lab.id}b`, addresses: RECEIVERS.map((a) => `${a}/24`) },
    );
  }

  async tc(args: string[]): Promise<string> {
    this.argvLog.push(['tc', ...args]);
    return this.lab.tc(this.tx, args);
  }

  /** `tc` that may fail: exit status and output, for the limit probes. */
  async tryTc(args: string[]): Promise<{ ok: boolean; output: string }> {
    const result = await execa('tc', ['-n', this.tx, ...args], { reject: false, timeout: 10_000 });
    return { ok: result.exitCode === 0, output: `${result.stdout}${result.stderr}`.trim() };
  }

  async reset(): Promise<void> {
    this.argvLog.length = 0;
    await this.tryTc(['qdisc', 'del', 'dev', this.dev, 'root']);
  }

  /** Root HTB, 1:1 at `rootKbps`, and u32 filters sending each receiver address to `1:<minor>`. */
  async root(rootKbps: number, flows: { address: string; minor: number }[]): Promise<void> {
    await this.tc(['qdisc', 'add', 'dev', this.dev, 'root', 'handle', '1:', 'htb', 'default', 'ffff']);
    await this.tc(['class', 'add', 'dev', this.dev, 'parent', '1:', 'classid', '1:1', ...htb(rootKbps, rootKbps)]);
    for (const [i, flow] of flows.entries()) {
      await this.tc(['filter', 'add', 'dev', this.dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'handle', `800::${(i + 1).toString(16)}`,
        'u32', 'match', 'ip', 'dst', `${flow.address}/32`, 'flowid', `1:${flow.minor.toString(16)}`]);
    }
  }

  /**
   * TCP flows from the sender to receiver addresses, measured at the receiver every 0.5 s. Each flow
   * starts `delayMs` after the first; returns Mbit/s per interval and each flow's start (ms, shared clock).
   */
  async flows(specs: { to: string; seconds: number; delayMs?: number }[]): Promise<{ series: number[][]; startMs: number[] }> {
    const ports = specs.map(() => String((this.port += 1)));
    const servers = ports.map((port) => this.lab.spawn(this.tx, ['iperf3', '-s', '-1', '-p', port]));
    for (const port of ports) {
      await waitFor(`iperf3 server on :${port}`, async () => (await this.lab.executor.run(['ss', '-Hltn', `sport = :${port}`], { netns: this.tx })).stdout.trim() !== '');
    }
    const t0 = performance.now();
    const startMs: number[] = specs.map(() => 0);
    const series = await Promise.all(specs.map(async (spec, i) => {
      if (spec.delayMs) await sleep(spec.delayMs);
      startMs[i] = performance.now() - t0;
      const { stdout } = await this.lab.executor.run(
        ['iperf3', '-c', SENDER, '-B', spec.to, '-p', ports[i]!, '-R', '-t', String(spec.seconds), '-i', String(INTERVAL_S), '-J'],
        { netns: this.rx, timeoutMs: (spec.seconds + 20) * 1000 },
      );
      const report = JSON.parse(stdout) as { error?: string; intervals?: { sum: { bits_per_second: number } }[] };
      if (report.error) throw new Error(`iperf3 to ${spec.to}: ${report.error}`);
      return (report.intervals ?? []).map((interval) => interval.sum.bits_per_second / 1e6);
    }));
    await Promise.all(servers);
    return { series, startMs };
  }

  async classBytes(): Promise<Map<string, number>> {
    // iproute2 6.1 prints `tc -j class show` as text: the engine's parser reads it.
    const classes = parseClassText(await this.lab.tc(this.tx, ['-s', 'class', 'show', 'dev', this.dev]));
    return new Map(classes.map((c) => [c.classid, Number(c.counters?.bytes ?? 0n)]));
  }

  async kernelLog(): Promise<string[]> {
    const { stdout } = await execa('dmesg', [], { reject: false, timeout: 10_000 });
    return stdout.split('\n');
  }
}

/** Burst phase = the leading intervals above 1.5 × cap; steady = the mean after it (one interval of transition skipped). */
function analyseBurst(series: number[]): { burstIntervals: number; burstMbps: number; burstBytes: number; steadyMbps: number; excessBytes: number; atBurstBytes: number } {
  const capMbps = CAP_KBPS / 1000;
  let end = 0;
  while (end < series.length && series[end]! > 1.5 * capMbps) end += 1;
  const burstPhase = series.slice(0, end);
  const steady = series.slice(end + 1);
  // Bytes above the steady rate over the whole flow = what the bucket gave (ideally depth), scaled from goodput
  // to wire bytes by cap / steady (the shapers count headers: 5 Mbit/s on the wire is ~4.8 of TCP goodput).
  const steadyMbps = steady.length === 0 ? Number.NaN : mean(steady);
  const floor = Number.isNaN(steadyMbps) ? capMbps : steadyMbps;
  const total = series.reduce((sum, v) => sum + (v * 1e6 * INTERVAL_S) / 8, 0);
  const excessBytes = (total - (floor * 1e6 * series.length * INTERVAL_S) / 8) * (capMbps / floor);
  return {
    burstIntervals: end,
    burstMbps: mean(burstPhase.slice(0, Math.max(1, end - 1))),
    burstBytes: burstPhase.reduce((sum, v) => sum + (v * 1e6 * INTERVAL_S) / 8, 0),
    steadyMbps,
    excessBytes,
    atBurstBytes: excessBytes / (1 - CAP_KBPS / BURST_KBPS),
  };
}

type Mechanism = 'A' | 'B' | 'C';

/** The subject's classes under 1:1; traffic to RECEIVERS[0] goes to the returned flowid minor. */
async function buildBurst(bench: Bench, mechanism: Mechanism, rateKbps: number, ceilKbps: number): Promise<number> {
  const dev = bench.dev;
  switch (mechanism) {
    case 'A':
      await bench.tc(['class', 'add', 'dev', dev, 'parent', '1:1', 'classid', '1:10', ...htb(rateKbps, ceilKbps)]);
      await bench.tc(['qdisc', 'add', 'dev', dev, 'parent', '1:10', 'handle', '10:', 'tbf', 'rate', `${CAP_KBPS}kbit`, 'burst', String(DEPTH), 'limit', String(TBF_LIMIT)]);
      return 0x10;
    case 'B':
      await bench.tc(['class', 'add', 'dev', dev, 'parent', '1:1', 'classid', '1:10', ...htb(CAP_KBPS, CAP_KBPS, { cburst: DEPTH })]);
      await bench.tc(['class', 'add', 'dev', dev, 'parent', '1:10', 'classid', '1:11', ...htb(Math.min(rateKbps, CAP_KBPS), ceilKbps)]);
      await bench.tc(['qdisc', 'add', 'dev', dev, 'parent', '1:11', 'handle', '11:', 'pfifo', 'limit', '300']);
      return 0x11;
    case 'C':
      await bench.tc(['class', 'add', 'dev', dev, 'parent', '1:1', 'classid', '1:10', ...htb(CAP_KBPS, ceilKbps, { burst: DEPTH })]);
      await bench.tc(['qdisc', 'add', 'dev', dev, 'parent', '1:10', 'handle', '10:', 'pfifo', 'limit', '300']);
      return 0x10;
  }
}

function printArgv(bench: Bench, label: string): void {
  console.log(`  tc argv (${label}):`);
  for (const argv of bench.argvLog) if (argv[1] !== 'filter') console.log(`    ${JSON.stringify(argv)}`);
}

async function partBurst(bench: Bench): Promise<void> {
  console.log(`\n## 1. Burst: cap ${CAP_KBPS / 1000} Mbit/s, burst ${BURST_KBPS / 1000} Mbit/s, ${BURST_BYTES} bytes (depth ${DEPTH}), after ${IDLE_MS / 1000} s idle, no network cap`);
  for (const mechanism of ['A', 'B', 'C'] as const) {
    await bench.reset();
    const before = (await bench.kernelLog()).length;
    const minor = await buildBurstTree(bench, mechanism, UNLIMITED_KBPS, BURST_KBPS);
    await sleep(IDLE_MS);
    const { series } = await bench.flows([{ to: RECEIVERS[0], seconds: 10 }]);
    const r = analyseBurst(series[0]!);
    const log = (await bench.kernelLog()).slice(before).filter((line) => /work.conserving/i.test(line));
    console.log(`- ${mechanism}: burst phase ${r.burstIntervals * INTERVAL_S} s at ${r.burstMbps.toFixed(1)} Mbit/s (${(r.burstMbps / (BURST_KBPS / 1000) * 100).toFixed(0)}% of burst rate), ` +
      `${(r.burstBytes / 1e6).toFixed(2)} MB in it; wire bytes above the steady rate ${(r.excessBytes / 1e6).toFixed(2)} MB (depth ${DEPTH / 1e6}) → ${(r.atBurstBytes / 1e6).toFixed(2)} MB at burst rate = ${(r.atBurstBytes / BURST_BYTES * 100).toFixed(0)}% of ${BURST_BYTES}; ` +
      `steady ${r.steadyMbps.toFixed(2)} Mbit/s = ${(r.steadyMbps / (CAP_KBPS / 1000) * 100).toFixed(0)}% of cap; flowid 1:${minor.toString(16)}`);
    console.log(`  per 0.5 s: ${mbps(series[0]!)}`);
    console.log(`  kernel log "work conserving" lines: ${log.length === 0 ? 'none' : log.join(' | ')}`);
    printArgv(bench, mechanism);
    figure('burst', 'burst_phase_s', r.burstIntervals * INTERVAL_S, { mechanism });
    figure('burst', 'burst_mbps', r.burstMbps, { mechanism, pct: Math.round((r.burstMbps / (BURST_KBPS / 1000)) * 100) });
    figure('burst', 'bytes_at_burst_rate', r.atBurstBytes, { mechanism, pct: Math.round((r.atBurstBytes / BURST_BYTES) * 100), intervalBytes: Math.round(r.burstBytes) });
    figure('burst', 'steady_mbps', r.steadyMbps, { mechanism, pct: Math.round((r.steadyMbps / (CAP_KBPS / 1000)) * 100) });
    figure('burst', 'nonwc_log_lines', log.length, { mechanism });
  }
}

async function buildBurstTree(bench: Bench, mechanism: Mechanism, rootKbps: number, ceilKbps: number, rateKbps = ceilKbps): Promise<number> {
  const minor = mechanism === 'B' ? 0x11 : 0x10;
  await bench.root(rootKbps, [{ address: RECEIVERS[0], minor }, { address: RECEIVERS[1], minor: 0x20 }]);
  await buildBurst(bench, mechanism, mechanism === 'A' ? rateKbps : CAP_KBPS, ceilKbps);
  return minor;
}

async function partCapped(bench: Bench): Promise<void> {
  const total = 30_000;
  // Sibling's guaranteed rate: the rest of the cap (rates sum to T), or the spec's equal split of T over two subjects.
  for (const siblingRate of [total - CAP_KBPS, total / 2]) {
    console.log(`\n## 1b. Burst under a network cap of ${total / 1000} Mbit/s: burst class rate ${CAP_KBPS / 1000}, sibling rate ${siblingRate / 1000} ceil ${total / 1000} saturating from t=0, burst flow from t=${IDLE_MS / 1000} s`);
    for (const mechanism of ['A', 'B', 'C'] as const) {
      await bench.reset();
      await buildBurstTree(bench, mechanism, total, BURST_KBPS, CAP_KBPS);
      await bench.tc(['class', 'add', 'dev', bench.dev, 'parent', '1:1', 'classid', '1:20', ...htb(siblingRate, total)]);
      await bench.tc(['qdisc', 'add', 'dev', bench.dev, 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '300']);
      const { series, startMs } = await bench.flows([{ to: RECEIVERS[1], seconds: 17 }, { to: RECEIVERS[0], seconds: 10, delayMs: IDLE_MS }]);
      const burst = series[1]!;
      const sibling = series[0]!;
      const r = analyseBurst(burst);
      // The sibling's intervals on the burst flow's clock (both measured from their own start).
      const offset = Math.round((startMs[1]! - startMs[0]!) / 1000 / INTERVAL_S);
      const before = sibling.slice(2, offset);
      const duringEnd = Math.max(1, r.burstIntervals > 0 ? r.burstIntervals - 1 : 4);
      const during = sibling.slice(offset, offset + duringEnd);
      const burstDuring = mean(burst.slice(0, duringEnd));
      const after = sibling.slice(offset + Math.max(r.burstIntervals, 4) + 1, offset + burst.length);
      const label = `${mechanism}, sibling rate ${siblingRate / 1000}`;
      console.log(`- ${label}: burst flow: burst phase ${r.burstIntervals * INTERVAL_S} s at ${r.burstMbps.toFixed(1)} Mbit/s (${(r.burstMbps / (BURST_KBPS / 1000) * 100).toFixed(0)}% of burst rate), ` +
        `${(r.atBurstBytes / 1e6).toFixed(2)} MB at burst rate (${(r.atBurstBytes / BURST_BYTES * 100).toFixed(0)}%), steady ${r.steadyMbps.toFixed(2)} Mbit/s (${(r.steadyMbps / (CAP_KBPS / 1000) * 100).toFixed(0)}% of cap)`);
      console.log(`  sibling: alone ${mean(before).toFixed(1)}, during the first ${duringEnd * INTERVAL_S} s of the burst flow ${mean(during).toFixed(1)} (sum with it ${(mean(during) + burstDuring).toFixed(1)} of ${total / 1000}), after ${mean(after).toFixed(1)} (sum ${(mean(after) + r.steadyMbps).toFixed(1)})`);
      console.log(`  burst flow per 0.5 s: ${mbps(burst)}`);
      console.log(`  sibling    per 0.5 s: ${mbps(sibling)} (burst flow started at interval ${offset})`);
      printArgv(bench, label);
      const extra = { mechanism, siblingRate: siblingRate / 1000 };
      figure('capped', 'burst_mbps', r.burstMbps, { ...extra, pct: Math.round((r.burstMbps / (BURST_KBPS / 1000)) * 100), burstPhaseS: r.burstIntervals * INTERVAL_S });
      figure('capped', 'bytes_at_burst_rate', r.atBurstBytes, { ...extra, pct: Math.round((r.atBurstBytes / BURST_BYTES) * 100) });
      figure('capped', 'steady_mbps', r.steadyMbps, { ...extra, pct: Math.round((r.steadyMbps / (CAP_KBPS / 1000)) * 100) });
      figure('capped', 'sum_during_burst_mbps', mean(during) + burstDuring, { ...extra, cap: total / 1000 });
      figure('capped', 'sibling_mbps', mean(after), { ...extra, phase: 'after', alone: Math.round(mean(before) * 10) / 10, during: Math.round(mean(during) * 10) / 10 });
    }
  }
}

async function partLimits(bench: Bench): Promise<void> {
  console.log('\n## 1c. Limits of tbf burst (iproute2 sends TCA_TBF_BURST in bytes; the dump also carries the bucket in 2^32 scheduler ticks)');
  for (const rate of ['5mbit', '1gbit']) {
    const results: string[] = [];
    for (const burst of [100_000_000, 171_000_000, 172_000_000, 1_000_000_000, 4_294_967_295, 4_294_967_296]) {
      await bench.reset();
      const set = await bench.tryTc(['qdisc', 'add', 'dev', bench.dev, 'root', 'handle', '1:', 'tbf', 'rate', rate, 'burst', String(burst), 'limit', String(TBF_LIMIT)]);
      const shown = set.ok ? (/burst (\S+)/.exec(await bench.lab.tc(bench.tx, ['qdisc', 'show', 'dev', bench.dev]))?.[1] ?? '?') : `rejected (${set.output.split('\n')[0]})`;
      results.push(`${burst} → ${shown}`);
      figure('limits', 'tbf_burst_accepted', set.ok ? 1 : 0, { rate, burst, shown });
    }
    console.log(`- tbf rate ${rate}: ${results.join('; ')}`);
  }
  // Does the kernel keep the bytes (TCA_TBF_BURST) or the wrapped tick count? At 1 Mbit/s, 2^32 ticks of 64 ns
  // are 34,359,738 bytes: a 40,000,000-byte bucket shows as ~5.6 MB. Send unshaped-fast for 3 s and count.
  await bench.reset();
  const big = 40_000_000;
  await bench.root(UNLIMITED_KBPS, [{ address: RECEIVERS[0], minor: 0x10 }]);
  await bench.tc(['class', 'add', 'dev', bench.dev, 'parent', '1:1', 'classid', '1:10', ...htb(UNLIMITED_KBPS, UNLIMITED_KBPS)]);
  await bench.tc(['qdisc', 'add', 'dev', bench.dev, 'parent', '1:10', 'handle', '10:', 'tbf', 'rate', '1mbit', 'burst', String(big), 'limit', String(TBF_LIMIT)]);
  const shown = /burst (\S+)/.exec(await bench.lab.tc(bench.tx, ['qdisc', 'show', 'dev', bench.dev]))?.[1] ?? '?';
  const { series } = await bench.flows([{ to: RECEIVERS[0], seconds: 4 }]);
  const got = series[0]!.reduce((sum, v) => sum + (v * 1e6 * INTERVAL_S) / 8, 0) - 4 * 125_000;
  console.log(`- tbf rate 1mbit burst ${big} (shown as ${shown}): bytes above 1 Mbit/s in 4 s = ${(got / 1e6).toFixed(1)} MB → the kernel keeps ${got > 30e6 ? 'the full burst (only the dump wraps)' : 'the wrapped value'}`);
  figure('limits', 'tbf_past_tick_wrap_bytes', got, { burst: big, shown });

  await bench.reset();
  await bench.root(UNLIMITED_KBPS, [{ address: RECEIVERS[0], minor: 0x10 }]);
  const htbSet = await bench.tryTc(['class', 'add', 'dev', bench.dev, 'parent', '1:1', 'classid', '1:10', ...htb(1000, 1000, { burst: big, cburst: big })]);
  const htbShown = /cburst (\S+)/.exec(await bench.lab.tc(bench.tx, ['class', 'show', 'dev', bench.dev, 'classid', '1:10']))?.[1] ?? '?';
  await bench.tc(['qdisc', 'add', 'dev', bench.dev, 'parent', '1:10', 'handle', '10:', 'pfifo', 'limit', '300']);
  await sleep(1000);
  const htbRun = await bench.flows([{ to: RECEIVERS[0], seconds: 4 }]);
  const htbGot = htbRun.series[0]!.reduce((sum, v) => sum + (v * 1e6 * INTERVAL_S) / 8, 0) - 4 * 125_000;
  console.log(`- htb class rate=ceil 1mbit burst=cburst ${big}: tc ${htbSet.ok ? 'accepted' : `rejected (${htbSet.output})`}, cburst shown as ${htbShown}; bytes above 1 Mbit/s in 4 s = ${(htbGot / 1e6).toFixed(1)} MB`);
  figure('limits', 'htb_past_tick_wrap_bytes', htbGot, { burst: big, shown: htbShown });
}

async function partRefill(bench: Bench): Promise<void> {
  console.log('\n## 1d. Does a `change` refill an emptied bucket? (drain 4 s, change at once, send again 4 s)');
  for (const kind of ['tbf change', 'tbf no change', 'htb class change (B, S)'] as const) {
    await bench.reset();
    const mechanism: Mechanism = kind.startsWith('htb') ? 'B' : 'A';
    await buildBurstTree(bench, mechanism, UNLIMITED_KBPS, BURST_KBPS);
    await sleep(1000);
    await bench.flows([{ to: RECEIVERS[0], seconds: 4 }]);
    if (kind === 'tbf change') {
      await bench.tc(['qdisc', 'change', 'dev', bench.dev, 'parent', '1:10', 'handle', '10:', 'tbf', 'rate', `${CAP_KBPS}kbit`, 'burst', String(DEPTH), 'limit', String(TBF_LIMIT)]);
    } else if (kind.startsWith('htb')) {
      await bench.tc(['class', 'change', 'dev', bench.dev, 'parent', '1:1', 'classid', '1:10', ...htb(CAP_KBPS, CAP_KBPS, { cburst: DEPTH })]);
    }
    const { series } = await bench.flows([{ to: RECEIVERS[0], seconds: 4 }]);
    const r = analyseBurst(series[0]!);
    console.log(`- ${kind}: bytes above the cap after it ${(r.excessBytes / 1e6).toFixed(2)} MB (full bucket ${DEPTH / 1e6}) → ${r.excessBytes > DEPTH / 2 ? 'refilled' : 'not refilled'}; per 0.5 s: ${mbps(series[0]!)}`);
    figure('refill', 'excess_bytes_after_change', r.excessBytes, { kind, refilled: r.excessBytes > DEPTH / 2 });
  }
}

/** Three classes under 1:1 at 30 Mbit/s, one per receiver address. */
async function fairTree(bench: Bench, rates: [number, number][]): Promise<void> {
  await bench.reset();
  await bench.root(30_000, RECEIVERS.map((address, i) => ({ address, minor: 0x10 * (i + 1) })));
  for (const [i, [rate, ceil]] of rates.entries()) {
    const minor = (0x10 * (i + 1)).toString(16);
    await bench.tc(['class', 'add', 'dev', bench.dev, 'parent', '1:1', 'classid', `1:${minor}`, ...htb(rate, ceil)]);
    await bench.tc(['qdisc', 'add', 'dev', bench.dev, 'parent', `1:${minor}`, 'handle', `${minor}:`, 'pfifo', 'limit', '300']);
  }
}

async function partFair(bench: Bench): Promise<void> {
  console.log('\n## 2. Fair share: 1:1 rate=ceil 30 Mbit/s; classes rate 10 ceil 30; three TCP flows (the third stops at 8 s)');
  await fairTree(bench, [[10_000, 30_000], [10_000, 30_000], [10_000, 30_000]]);
  const { series } = await bench.flows(RECEIVERS.map((to, i) => ({ to, seconds: i === 2 ? 8 : 16 })));
  const steady = series.map((s) => mean(s.slice(2, 16)));
  console.log(`- three flows (1-8 s): ${steady.map((v) => `${v.toFixed(2)} (${(v / 10 * 100).toFixed(0)}%)`).join(', ')} Mbit/s`);
  steady.forEach((v, i) => figure('fair', 'goodput_mbps', v, { flow: i + 1, expected: 10, pct: Math.round(v * 10) }));
  const stop = 16;
  const recovered = series[0]!.findIndex((v, i) => i >= stop && v >= 13.5 && (series[1]![i] ?? 0) >= 13.5);
  const afterStop = [0, 1].map((f) => mean(series[f]!.slice(stop + 4, 32)));
  console.log(`- after flow 3 stops (interval ${stop}): both others ≥ 13.5 Mbit/s (90% of 15) ${recovered < 0 ? 'never' : `${((recovered - stop + 1) * INTERVAL_S).toFixed(1)} s after`}; then ${afterStop.map((v) => `${v.toFixed(2)} (${(v / 15 * 100).toFixed(0)}%)`).join(', ')}`);
  console.log(`  per 0.5 s: flow 1 ${mbps(series[0]!)}\n             flow 2 ${mbps(series[1]!)}\n             flow 3 ${mbps(series[2]!)}`);
  figure('fair', 'recovery_s', recovered < 0 ? Number.NaN : (recovered - stop + 1) * INTERVAL_S, { threshold: 13.5 });
  afterStop.forEach((v, i) => figure('fair', 'goodput_two_mbps', v, { flow: i + 1, expected: 15, pct: Math.round((v / 15) * 100) }));
  printArgv(bench, 'fair share');

  for (const others of [12_500, 10_000]) {
    await fairTree(bench, [[CAP_KBPS, CAP_KBPS], [others, 30_000], [others, 30_000]]);
    const run = await bench.flows(RECEIVERS.map((to) => ({ to, seconds: 8 })));
    const rates = run.series.map((s) => mean(s.slice(2, 16)));
    const expected = [5, 12.5, 12.5];
    console.log(`- class 1 rate=ceil 5, others rate ${others / 1000} ceil 30: ${rates.map((v, i) => `${v.toFixed(2)} (${(v / expected[i]! * 100).toFixed(0)}% of ${expected[i]})`).join(', ')}`);
    rates.forEach((v, i) => figure('fair', 'goodput_one_capped_mbps', v, { flow: i + 1, othersRate: others / 1000, expected: expected[i]!, pct: Math.round((v / expected[i]!) * 100) }));
  }
}

async function partChange(bench: Bench): Promise<void> {
  console.log('\n## 3. `tc class change` keeps the other classes\' counters');
  await fairTree(bench, [[10_000, 30_000], [10_000, 30_000], [10_000, 30_000]]);
  const running = bench.flows(RECEIVERS.map((to) => ({ to, seconds: 6 })));
  await sleep(2500);
  const before = await bench.classBytes();
  await bench.tc(['class', 'change', 'dev', bench.dev, 'parent', '1:', 'classid', '1:1', ...htb(24_000, 24_000)]);
  const afterRoot = await bench.classBytes();
  await bench.tc(['class', 'change', 'dev', bench.dev, 'parent', '1:1', 'classid', '1:10', ...htb(4000, 8000)]);
  const afterClass = await bench.classBytes();
  await running;
  const end = await bench.classBytes();
  for (const handle of ['1:1', '1:10', '1:20', '1:30']) {
    const values = [before, afterRoot, afterClass, end].map((m) => m.get(handle) ?? 0);
    const monotonic = values.every((v, i) => i === 0 || v >= values[i - 1]!);
    console.log(`- ${handle}: bytes ${values.join(' → ')} ${monotonic ? '(kept counting)' : '(RESET)'}`);
    figure('change', 'counter_monotonic', monotonic ? 1 : 0, { class: handle, before: values[0]!, end: values[3]! });
  }
}

async function main(): Promise<void> {
  if (!labOrSkip()) return;
  const bench = new Bench();
  try {
    await bench.open();
    const tcVersion = (await execa('tc', ['-V'], { timeout: 10_000 })).stdout.trim();
    const kernel = (await execa('uname', ['-r'], { timeout: 10_000 })).stdout.trim();
    console.log(`machine: Linux ${kernel}, ${tcVersion}, iperf3 TCP -R, intervals ${INTERVAL_S} s`);
    if (PARTS.includes('burst')) await partBurst(bench);
    if (PARTS.includes('capped')) await partCapped(bench);
    if (PARTS.includes('limits')) await partLimits(bench);
    if (PARTS.includes('refill')) await partRefill(bench);
    if (PARTS.includes('fair')) await partFair(bench);
    if (PARTS.includes('change')) await partChange(bench);
  } finally {
    await bench.lab.close();
  }
}

await main();
