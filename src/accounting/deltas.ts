import type { Sample } from './sample.js';

/** What the delta engine made of a new sample. */
export type DeltaResult =
  | { kind: 'first' }
  | { kind: 'stale' }
  | { kind: 'delta'; rxBytes: bigint; txBytes: bigint; elapsedMs: number }
  | { kind: 'reset'; rxBytes: bigint; txBytes: bigint; elapsedMs: number; reason: string }
  | { kind: 'discarded'; reason: string; elapsedMs: number };

/** The default ceiling: no interface here carries more than 100 Gbit/s. */
export const DEFAULT_CEILING_BITS_PER_SECOND = 100_000_000_000n;

/**
 * The positive bytes between the last stored sample of a series and a new one. Pure, on bigint.
 *
 * - No previous sample: `first` — it only sets the baseline, it counts nothing.
 * - Not newer than the previous one: `stale` (a replayed or out-of-order reading) — nothing.
 * - Same identity and no counter went down: `delta` = new − old.
 * - Another boot id or ifindex, or a counter that went down: `reset` — the counter restarted at
 *   zero, so the new value is what was transferred since; never guessed as a 32/64-bit wrap.
 * - More bytes than the ceiling allows in the measured time: `discarded` (the caller logs it).
 */
export function computeDelta(
  previous: Sample | undefined,
  next: Sample,
  ceilingBitsPerSecond: bigint = DEFAULT_CEILING_BITS_PER_SECOND,
): DeltaResult {
  if (!previous) return { kind: 'first' };
  const elapsedMs = next.at - previous.at;
  if (elapsedMs <= 0) return { kind: 'stale' };
  let rxBytes: bigint;
  let txBytes: bigint;
  let reason: string | undefined;
  if (previous.identity.bootId !== next.identity.bootId) reason = 'the machine rebooted (new boot id)';
  else if (previous.identity.ifindex !== next.identity.ifindex) reason = `the interface was re-created (ifindex ${previous.identity.ifindex} → ${next.identity.ifindex})`;
  else if (next.rxBytes < previous.rxBytes || next.txBytes < previous.txBytes) reason = 'a counter went down (reset)';
  if (reason) {
    rxBytes = next.rxBytes;
    txBytes = next.txBytes;
  } else {
    rxBytes = next.rxBytes - previous.rxBytes;
    txBytes = next.txBytes - previous.txBytes;
  }
  // bytes * 8 * 1000 > ceiling * ms  ⇔  the rate exceeds the ceiling; integer-only.
  const limit = ceilingBitsPerSecond * BigInt(elapsedMs);
  const largest = rxBytes > txBytes ? rxBytes : txBytes;
  if (largest * 8_000n > limit) {
    return {
      kind: 'discarded',
      elapsedMs,
      reason: `${largest} bytes in ${elapsedMs} ms exceed the ceiling of ${ceilingBitsPerSecond} bit/s${reason ? ` (after ${reason})` : ''}`,
    };
  }
  return reason ? { kind: 'reset', rxBytes, txBytes, elapsedMs, reason } : { kind: 'delta', rxBytes, txBytes, elapsedMs };
}
