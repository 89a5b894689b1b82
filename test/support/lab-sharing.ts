/**
 * Reading rates out of iperf3 interval reports, and the hitless checks, for the kernel test of
 * network caps, fair shares and bursts (test/kernel/sharing.test.ts).
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

import type { Executor } from '../../src/shaping/executor.js';
import type { Operation } from '../../src/shaping/operations.js';
import { readActual } from '../../src/shaping/read.js';
import type { IperfInterval, IperfReport } from './lab.js';
import { assertHoldsCap } from './lab-shaping.js';

/** Interval ends are printed as 0.500123 s: a window edge this close still takes the interval. */
const EDGE_SECONDS = 0.05;
/** The receiver's last report can cover a few milliseconds after the sender stopped: no rate to read. */
const SHORTEST_INTERVAL_SECONDS = 0.05;

/** `wallMs` (a `Date.now()`) on the timeline of `report`'s intervals, in seconds. */
export function secondsInto(report: IperfReport, wallMs: number): number {
  return (wallMs - report.startedAt) / 1000;
}

/** The intervals lying wholly inside [from, to] seconds of the transfer. */
export function intervalsBetween(report: IperfReport, from: number, to: number): IperfInterval[] {
  return report.intervals.filter((i) => i.start >= from - EDGE_SECONDS && i.end <= to + EDGE_SECONDS && i.end - i.start >= SHORTEST_INTERVAL_SECONDS);
}

/** Receiver goodput (bit/s) over the intervals inside [from, to]; fails when the window holds none. */
export function rateBetween(report: IperfReport, from: number, to: number): number {
  const inside = intervalsBetween(report, from, to);
  assert.ok(inside.length > 0, `no whole interval between ${from.toFixed(2)} s and ${to.toFixed(2)} s`);
  const bytes = inside.reduce((sum, i) => sum + i.bytes, 0);
  const seconds = inside.reduce((sum, i) => sum + (i.end - i.start), 0);
  return (bytes * 8) / seconds;
}

/** The first interval that starts at or after `from` seconds; fails when the transfer ended before. */
export function firstIntervalFrom(report: IperfReport, from: number): IperfInterval {
  const found = report.intervals.find((i) => i.start >= from);
  assert.ok(found, `no interval starts at or after ${from.toFixed(2)} s`);
  return found;
}

/**
 * How long the receiver took to get its first `bytes`, from the start of the transfer, and the
 * goodput over that time. Inside the interval where the count crosses `bytes` the rate is taken
 * as even.
 */
export function timeToBytes(report: IperfReport, bytes: number): { seconds: number; bitsPerSecond: number } {
  let received = 0;
  for (const i of report.intervals) {
    if (received + i.bytes >= bytes) {
      const seconds = i.start + ((bytes - received) / i.bytes) * (i.end - i.start);
      return { seconds, bitsPerSecond: (bytes * 8) / seconds };
    }
    received += i.bytes;
  }
  assert.fail(`the transfer ended after ${received} bytes, before ${bytes}`);
}

/**
 * The leading intervals above `thresholdBits` (a burst before it falls to the cap): their bytes
 * and goodput. Fails when the first interval is already below.
 */
export function leadingAbove(report: IperfReport, thresholdBits: number): { seconds: number; bytes: number; bitsPerSecond: number } {
  const end = report.intervals.findIndex((i) => i.bitsPerSecond <= thresholdBits);
  const leading = report.intervals.slice(0, end === -1 ? undefined : end);
  const last = leading.at(-1);
  assert.ok(last, `the transfer starts below ${(thresholdBits / 1e6).toFixed(1)} Mbit/s`);
  const bytes = leading.reduce((sum, i) => sum + i.bytes, 0);
  return { seconds: last.end, bytes, bitsPerSecond: (bytes * 8) / last.end };
}

/**
 * The receiver's goodput as one line, `0.0-0.5 19.9, 0.5-1.0 19.2, …` (Mbit/s), its reports merged
 * into steps of `stepSeconds` (at least one report each) when given.
 */
export function formatIntervals(report: IperfReport, stepSeconds?: number): string {
  const steps: IperfInterval[] = [];
  for (const i of report.intervals) {
    const last = steps.at(-1);
    if (last && stepSeconds !== undefined && Math.floor(i.start / stepSeconds + 1e-6) === Math.floor(last.start / stepSeconds + 1e-6)) {
      last.end = i.end;
      last.bytes += i.bytes;
    } else {
      steps.push({ ...i });
    }
  }
  return steps.map((i) => `${i.start.toFixed(1)}-${i.end.toFixed(1)} ${((i.bytes * 8) / (i.end - i.start) / 1e6).toFixed(1)}`).join(', ');
}

/** One measured figure and the rate it should have. */
export interface Figure {
  label: string;
  bitsPerSecond: number;
  expectedKbps: number;
}

/**
 * Prints every figure (one `t.diagnostic` line each, for docs/shaping.md), then fails naming each
 * one outside 85%-102% of its expected rate (the band of {@link assertHoldsCap}).
 */
export function assertFigures(t: TestContext, figures: Figure[]): void {
  const misses: string[] = [];
  for (const figure of figures) {
    try {
      t.diagnostic(assertHoldsCap({ bitsPerSecond: figure.bitsPerSecond, bytes: 0 }, figure.expectedKbps, figure.label));
    } catch (error) {
      const message = (error as Error).message;
      t.diagnostic(`${message} (MISSED)`);
      misses.push(message);
    }
  }
  assert.deepEqual(misses, [], 'every figure within 85%-102% of its expected rate');
}

/** `tc class change`, `tc qdisc add`, `ip link add`: what each operation does, for assertions. */
export function operationKinds(operations: readonly Operation[]): string[] {
  return operations.map((o) => `${o.tool} ${o.argv[0] ?? ''} ${o.argv[1] ?? ''}`);
}

/** Byte counters of every HTB class of the interface and its IFB, by `<device> <classid>`. */
export async function classBytes(executor: Executor, ifname: string, netns: string): Promise<Map<string, bigint>> {
  const actual = await readActual(executor, ifname, netns);
  const bytes = new Map<string, bigint>();
  for (const tree of [actual.egress, actual.ifb.tree]) {
    for (const c of tree?.classes ?? []) if (c.kind === 'htb') bytes.set(`${tree?.device ?? '?'} ${c.classid}`, c.counters?.bytes ?? -1n);
  }
  return bytes;
}

/** Every class of `before` is still there with at least its bytes (a rebuilt class starts again from 0). */
export function assertCountersKept(before: Map<string, bigint>, after: Map<string, bigint>, step: string): void {
  const lost: string[] = [];
  for (const [classid, bytes] of before) {
    const now = after.get(classid);
    if (now === undefined || now < bytes) lost.push(`${classid}: ${bytes} → ${now ?? 'gone'}`);
  }
  assert.deepEqual(lost, [], `${step}: every class keeps its byte counter`);
}
