/**
 * The wall clock, in epoch milliseconds. Code that dates usage or picks a time range (the last
 * 24 hours, retention, a default `to`) reads the time through one of these, passed in, so tests
 * and replays can fix it; timers and durations keep using node's monotonic clock.
 */
export type Clock = () => number;

/**
 * Splits `register`'s options into the clock (`now`, a {@link Clock}; not a setting of
 * plugin.json) and the settings.
 * @example takeClock({ executor: 'recording', now: () => Date.UTC(2026, 10, 20) }).now() // 1795132800000
 */
export function takeClock(options: unknown): { now: Clock; settings: unknown } {
  if (typeof options !== 'object' || options === null || Array.isArray(options) || !('now' in options)) return { now: Date.now, settings: options };
  const { now, ...settings } = options as Record<string, unknown>;
  if (typeof now !== 'function') {
    throw new TypeError(`Expected \`now\` to be a function returning epoch milliseconds, got \`${String(now)}\` (${now === null ? 'null' : typeof now})`);
  }
  return { now: now as Clock, settings };
}
