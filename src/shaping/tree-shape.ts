import { capOn, type TreeSide } from './directions.js';
import type { DesiredInterface, DesiredSubject } from './model.js';
import { bytesPerSecond, burstBytes, MTU_BYTES, UNLIMITED_KBPS } from './rates.js';
import { PFIFO_LIMIT_PACKETS } from './leaf.js';

/**
 * The numbers of one tree (one side of an interface), computed in one place for the planner and
 * the rate-change fast path:
 *
 * ```
 * 1:      htb default ffff
 * └ 1:1   rate = ceil = the network cap on this side (UNLIMITED_KBPS without one)
 *   ├ 1:<minor>  a subject: rate = ceil = its cap; under a network cap rate = its guaranteed share,
 *   │            ceil = its cap (the network cap when it has none); bursting: ceil = the burst rate
 *   │            and a tbf leaf holds the cap once the burst bucket is empty
 *   └ 1:ffff     traffic of subjects without a class: unlimited, or under a network cap a small
 *                guarantee and the network cap as ceil
 * ```
 *
 * 1:1 is there even without a network cap, so setting one later changes classes, not the tree.
 */

/** Minor of the class every other class hangs under (`1:1`; minor 1 is never a subject's). */
export const ROOT_CLASS_MINOR = 1;
/** The smallest guarantee a class gets under a network cap (HTB needs a rate > 0). */
export const MIN_SHARE_KBPS = 8;
/** What the default class `1:ffff` is guaranteed under a network cap: traffic of no subject is rare. */
export const DEFAULT_SHARE_KBPS = MIN_SHARE_KBPS;
/** A tbf leaf queues at most this many bytes: as many full frames as a pfifo leaf holds packets. */
export const TBF_LIMIT_BYTES = PFIFO_LIMIT_PACKETS * MTU_BYTES;

/** A tbf leaf that holds a bursting subject to its cap once `depthBytes` are spent. */
export interface TbfSpec {
  kbps: number;
  depthBytes: number;
}

/** One subject's class on one side. */
export interface SubjectShape {
  rateKbps: number;
  ceilKbps: number;
  /** Present when the subject bursts on this side. */
  tbf?: TbfSpec;
}

export interface TreeShape {
  side: TreeSide;
  /** The network cap on this side, 0 = none. */
  totalKbps: number;
  root: { rateKbps: number; ceilKbps: number };
  unlimited: { rateKbps: number; ceilKbps: number };
  /** By class minor, only subjects that have a class on this side. */
  subjects: Map<number, SubjectShape>;
}

/** The network cap of `desired` on `side` (0 = none). */
export function totalOn(desired: Pick<DesiredInterface, 'totalUpKbps' | 'totalDownKbps'>, side: TreeSide): number {
  return (side === 'egress' ? desired.totalDownKbps : desired.totalUpKbps) ?? 0;
}

/** Whether `subject` has a class on `side`: it is capped there, or the side has a network cap. */
export function hasClassOn(subject: DesiredSubject, side: TreeSide, totalKbps: number): boolean {
  return totalKbps > 0 || capOn(subject, side) > 0;
}

/**
 * The tbf bucket that lets `bytes` through at `burstKbps` before the cap holds: while the class sends
 * at the burst rate the bucket refills at the cap, so it empties after depth / (burst − cap) seconds,
 * in which depth × burst / (burst − cap) bytes went out. Never below HTB's own burst at the cap.
 */
export function tbfDepthBytes(capKbps: number, burst: { kbps: number; bytes: number }): number {
  const depth = Math.floor(burst.bytes * (1 - capKbps / burst.kbps));
  return Math.min(maxTbfDepthBytes(capKbps), Math.max(burstBytes(capKbps), depth));
}

/**
 * sch_tbf keeps its bucket as time at the rate, in 32-bit units of 64 ns: at most 2^32 × 64 ns ≈ 274.9 s
 * of the cap (a deeper bucket wraps around to a small one). One second is left as margin.
 */
export const MAX_TBF_BUCKET_SECONDS = 273;

/** The deepest tbf bucket the kernel holds at `capKbps`. */
export function maxTbfDepthBytes(capKbps: number): number {
  return Math.floor(bytesPerSecond(capKbps) * MAX_TBF_BUCKET_SECONDS);
}

/** The most `burst_bytes` a subject capped at `capKbps` may burst at `burstKbps` (see {@link tbfDepthBytes}). */
export function maxBurstBytes(capKbps: number, burstKbps: number): number {
  return burstKbps <= capKbps ? 0 : Math.floor(maxTbfDepthBytes(capKbps) / (1 - capKbps / burstKbps));
}

/**
 * Guarantees under a network cap of `totalKbps`: a subject with a minimum gets it (at most its ceil),
 * the others split what is left equally (at most their ceil); when the minimums add up to more than
 * the network cap leaves, they are scaled down to fit. Every guarantee is at least {@link MIN_SHARE_KBPS}.
 */
export function guarantees(totalKbps: number, subjects: readonly { minor: number; minKbps: number; ceilKbps: number }[]): Map<number, number> {
  const out = new Map<number, number>();
  const budget = Math.max(0, totalKbps - DEFAULT_SHARE_KBPS);
  const explicit = subjects.filter((s) => s.minKbps > 0);
  const wanted = explicit.reduce((sum, s) => sum + Math.min(s.minKbps, s.ceilKbps), 0);
  const scale = wanted > budget ? budget / wanted : 1;
  let given = 0;
  for (const s of explicit) {
    const rate = Math.max(MIN_SHARE_KBPS, Math.floor(Math.min(s.minKbps, s.ceilKbps) * scale));
    out.set(s.minor, rate);
    given += rate;
  }
  const rest = subjects.filter((s) => !(s.minKbps > 0));
  const share = rest.length === 0 ? 0 : Math.floor(Math.max(0, budget - given) / rest.length);
  for (const s of rest) out.set(s.minor, Math.max(MIN_SHARE_KBPS, Math.min(share, s.ceilKbps)));
  return out;
}

/**
 * The shape of the tree on `side` for `subjects` (those that have a class there, see
 * {@link hasClassOn}; the caller leaves out rejected ones).
 */
export function treeShape(desired: Pick<DesiredInterface, 'totalUpKbps' | 'totalDownKbps'>, side: TreeSide, subjects: readonly DesiredSubject[]): TreeShape {
  const totalKbps = totalOn(desired, side);
  const shapes = new Map<number, SubjectShape>();
  const ceilings = subjects.map((subject) => {
    const cap = capOn(subject, side);
    const capped = cap > 0 ? (totalKbps > 0 ? Math.min(cap, totalKbps) : cap) : totalKbps;
    const bursting = subject.burst !== undefined && cap > 0 && subject.burst.kbps > cap;
    const ceilKbps = bursting && subject.burst ? (totalKbps > 0 ? Math.min(subject.burst.kbps, totalKbps) : subject.burst.kbps) : capped;
    // The bucket empties at (ceil − cap): a burst clamped by the network cap gets a shallower one, so
    // it still lets `bytes` through, not more.
    const tbf = bursting && subject.burst && ceilKbps > cap ? { kbps: cap, depthBytes: tbfDepthBytes(cap, { kbps: ceilKbps, bytes: subject.burst.bytes }) } : undefined;
    return { subject, cap, capped, ceilKbps, tbf };
  });
  const shares =
    totalKbps > 0
      ? guarantees(totalKbps, ceilings.map((c) => ({ minor: c.subject.classMinor, minKbps: c.subject.minKbps ?? 0, ceilKbps: c.capped })))
      : new Map<number, number>();
  for (const c of ceilings) {
    // Without a network cap a class cannot borrow (1:1 is unlimited): its rate is its ceil.
    const rateKbps = totalKbps > 0 ? (shares.get(c.subject.classMinor) ?? MIN_SHARE_KBPS) : c.ceilKbps;
    const shape: SubjectShape = { rateKbps: Math.min(rateKbps, c.ceilKbps), ceilKbps: c.ceilKbps };
    if (c.tbf) shape.tbf = c.tbf;
    shapes.set(c.subject.classMinor, shape);
  }
  const root = totalKbps > 0 ? totalKbps : UNLIMITED_KBPS;
  return {
    side,
    totalKbps,
    root: { rateKbps: root, ceilKbps: root },
    unlimited: totalKbps > 0 ? { rateKbps: Math.min(DEFAULT_SHARE_KBPS, totalKbps), ceilKbps: totalKbps } : { rateKbps: UNLIMITED_KBPS, ceilKbps: UNLIMITED_KBPS },
    subjects: shapes,
  };
}

/**
 * The tbf leaf's options as `tc -j qdisc show` prints them: rate in bytes/s, burst in bytes, and
 * either `limit` in bytes (iproute2 6.1 prints it only when the queue is shorter than the bucket) or
 * `lat`, the queue's length in µs at the rate beyond the bucket.
 */
export function tbfOptions(tbf: TbfSpec): { rate: number; burst: number; limit: number; latUs: number } {
  const rate = bytesPerSecond(tbf.kbps);
  return { rate, burst: tbf.depthBytes, limit: TBF_LIMIT_BYTES, latUs: Math.floor((1e6 * (TBF_LIMIT_BYTES - tbf.depthBytes)) / rate) };
}

/** The qdisc spec of a tbf leaf (after `handle <minor>:`). */
export function tbfArgs(tbf: TbfSpec): string[] {
  return ['tbf', 'rate', `${tbf.kbps}kbit`, 'burst', String(tbf.depthBytes), 'limit', String(TBF_LIMIT_BYTES)];
}
