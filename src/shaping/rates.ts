/** Ethernet MTU: HTB's quantum must not be below one full packet, or a class can starve its siblings. */
export const MTU_BYTES = 1500;
/** HTB warns ("quantum of class is big") and hurts fairness above this. */
export const MAX_QUANTUM_BYTES = 60_000;
/** The kernel's own divisor when no quantum is given (`r2q`); we apply it ourselves, then clamp. */
const R2Q = 10;
/** Token bucket depth in time: enough for TCP to keep the pipe full, short enough to keep the cap honest. */
export const BURST_MS = 10;
/** A burst is never below two full-size frames. */
export const MIN_BURST_BYTES = 2 * 1514;
/** The rate of the `1:ffff` class: traffic of unlimited subjects only needs to never be held back. */
export const UNLIMITED_KBPS = 100_000_000;

/** kbit/s (1000 bit) → bytes per second. */
export function bytesPerSecond(kbps: number): number {
  return kbps * 125;
}

/**
 * Explicit HTB quantum: rate / r2q, clamped to [1500, 60000] bytes, so the kernel never picks an
 * out-of-range quantum itself (and never prints a warning).
 */
export function quantumBytes(kbps: number): number {
  return Math.min(MAX_QUANTUM_BYTES, Math.max(MTU_BYTES, Math.floor(bytesPerSecond(kbps) / R2Q)));
}

/**
 * Explicit burst and cburst: {@link BURST_MS} worth of bytes at the rate, at least two frames.
 * iproute2 ≤ 6.14 computes its default burst from the rate and rounds it down (at 10 Gbit/s
 * `tc class show` prints `burst 0b`), so we never rely on the default.
 */
export function burstBytes(kbps: number): number {
  return Math.max(MIN_BURST_BYTES, Math.ceil((bytesPerSecond(kbps) * BURST_MS) / 1000));
}

/**
 * The HTB arguments of a class guaranteed `rateKbps` that may borrow up to `ceilKbps` (default: the
 * rate, a hard cap). The quantum follows the rate (clamped, see {@link quantumBytes}): classes that
 * borrow share what is idle in proportion to their guarantees below ~4.8 Mbit/s and equally above;
 * burst and cburst hold {@link BURST_MS} at the rate and at the ceil.
 */
export function htbClassArgs(rateKbps: number, ceilKbps = rateKbps): string[] {
  return [
    'rate', `${rateKbps}kbit`, 'ceil', `${ceilKbps}kbit`, 'quantum', String(quantumBytes(rateKbps)),
    'burst', String(burstBytes(rateKbps)), 'cburst', String(burstBytes(ceilKbps)),
  ];
}

/**
 * The bit rate `tc class show` will print for a class set to `kbps`, parsed back to bit/s.
 * iproute2 6.1 (`print_rate`) divides by 1000 while the value is ≥ 1000 and either exact or ≥ 10^6,
 * truncating: 1234567 kbit/s prints as `1234Mbit`. Drift detection compares against this.
 */
export function printedRateBits(kbps: number): number {
  let rate = kbps * 1000;
  let scale = 1;
  for (let i = 0; i < 4; i += 1) {
    if (rate < 1000) break;
    if (rate % 1000 !== 0 && rate < 1_000_000) break;
    rate = Math.floor(rate / 1000);
    scale *= 1000;
  }
  return rate * scale;
}
