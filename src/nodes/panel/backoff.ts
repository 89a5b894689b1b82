/**
 * How long the panel waits before it tries an unreachable node again: exponential backoff with
 * jitter, so a fleet of panels (or one panel's many nodes) that lost the network together do not
 * all knock again in the same second. Pure: the random source is passed in.
 */

/** Jitter strategies (AWS Architecture Blog, "Exponential Backoff And Jitter"). */
export type Jitter = 'full' | 'decorrelated';

export interface BackoffOptions {
  /** The first delay's scale, and the least a decorrelated delay can be. @default 1000 */
  initialMs?: number;
  /** No delay is longer. @default 60000 */
  maxMs?: number;
  /**
   * `full`: a uniform delay in [0, min(max, initial·2^attempt)).
   * `decorrelated`: a uniform delay in [initial, min(max, 3·previous)), never below `initialMs`.
   * @default 'decorrelated'
   */
  jitter?: Jitter;
  /** A number in [0, 1). @default Math.random */
  random?: () => number;
}

/** Delay before retry number `attempt` (0 = the first retry) with full jitter. */
export function fullJitterDelay(attempt: number, initialMs: number, maxMs: number, random: number): number {
  // 2^attempt overflows to Infinity past ~1024; min() caps it either way.
  const ceiling = Math.min(maxMs, initialMs * 2 ** attempt);
  return Math.floor(random * ceiling);
}

/** Delay after `previousMs` with decorrelated jitter (the first delay passes `initialMs` as previous). */
export function decorrelatedDelay(previousMs: number, initialMs: number, maxMs: number, random: number): number {
  const upper = Math.min(maxMs, Math.max(initialMs, previousMs * 3));
  return initialMs + Math.floor(random * (upper - initialMs));
}

function positive(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`Expected \`${name}\` to be a finite number > 0, got \`${value}\` (${typeof value})`);
  }
}

/** The delays of one node's retries: `next()` after each failure, `reset()` after a success. */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly jitter: Jitter;
  private readonly random: () => number;
  private attempt = 0;
  private previousMs: number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 1000;
    this.maxMs = options.maxMs ?? 60_000;
    this.jitter = options.jitter ?? 'decorrelated';
    this.random = options.random ?? Math.random;
    positive('initialMs', this.initialMs);
    positive('maxMs', this.maxMs);
    if (this.maxMs < this.initialMs) throw new TypeError(`Expected \`maxMs\` to be >= \`initialMs\` (${this.initialMs}), got \`${this.maxMs}\``);
    if (this.jitter !== 'full' && this.jitter !== 'decorrelated') throw new TypeError(`Expected \`jitter\` to be 'full' or 'decorrelated', got \`${String(this.jitter)}\``);
    this.previousMs = this.initialMs;
  }

  /** Failures since the last success. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next try; each call counts one more failure. */
  next(): number {
    const random = Math.min(Math.max(this.random(), 0), 1);
    const delay = this.jitter === 'full'
      ? fullJitterDelay(this.attempt, this.initialMs, this.maxMs, random)
      : decorrelatedDelay(this.previousMs, this.initialMs, this.maxMs, random);
    this.attempt++;
    this.previousMs = delay;
    return delay;
  }

  /** After a success: the next failure waits as little as the first one did. */
  reset(): void {
    this.attempt = 0;
    this.previousMs = this.initialMs;
  }
}
