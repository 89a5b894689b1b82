export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/**
 * Splits bytes transferred during [start, end) over the UTC buckets (hours or days) it touches,
 * in proportion to the time spent in each; integer shares whose sum is exactly `bytes`.
 */
export function splitOverBuckets(bytes: bigint, start: number, end: number, bucketMs: number): { bucketStart: number; bytes: bigint }[] {
  const first = Math.floor(start / bucketMs) * bucketMs;
  if (end <= start || end <= first + bucketMs) return [{ bucketStart: first, bytes }];
  const total = BigInt(end - start);
  const shares: { bucketStart: number; bytes: bigint }[] = [];
  let given = 0n;
  for (let bucket = first; bucket < end; bucket += bucketMs) {
    const overlap = BigInt(Math.min(end, bucket + bucketMs) - Math.max(start, bucket));
    const share = (bytes * overlap) / total;
    shares.push({ bucketStart: bucket, bytes: share });
    given += share;
  }
  // Integer division leaves at most one byte per bucket: the last bucket takes the remainder.
  const last = shares[shares.length - 1]!;
  last.bytes += bytes - given;
  return shares;
}
