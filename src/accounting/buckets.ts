export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/**
 * The roll-up bucket of a delta: the one holding its end, with the end itself belonging to the
 * bucket before (a bucket [h, h+1h) holds the deltas that ended in (h, h+1h]). Raw usage rows are
 * matched by their end in (from, to] the same way, so a range read partly from raw rows and partly
 * from roll-ups counts every delta exactly once. A delta is never split across buckets: with one
 * tick a minute that places bytes at most a minute late on the charts, and keeps totals exact.
 */
export function bucketOf(periodEnd: number, bucketMs: number): number {
  return Math.floor((periodEnd - 1) / bucketMs) * bucketMs;
}
