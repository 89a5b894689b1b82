import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketOf, HOUR_MS, DAY_MS } from '../../../src/accounting/buckets.js';
import { planRange } from '../../../src/accounting/queries.js';

const T0 = Date.UTC(2026, 10, 20, 0, 0, 0);

test('a delta belongs to the bucket holding its end; an end on the boundary belongs to the bucket before', () => {
  assert.equal(bucketOf(T0 + 60_000, HOUR_MS), T0);
  assert.equal(bucketOf(T0 + HOUR_MS, HOUR_MS), T0);
  assert.equal(bucketOf(T0 + HOUR_MS + 1, HOUR_MS), T0 + HOUR_MS);
  assert.equal(bucketOf(T0 + DAY_MS, DAY_MS), T0);
});

test('a range is served from days, then hours, then raw rows at the ragged edges', () => {
  const from = T0 + 22 * HOUR_MS + 15 * 60_000; // 22:15 on day 0
  const to = T0 + 3 * DAY_MS + 2 * HOUR_MS + 5 * 60_000; // 02:05 on day 3
  assert.deepEqual(planRange(from, to).map((p) => [p.table, p.from - T0, p.to - T0]), [
    ['bw_usage', from - T0, 23 * HOUR_MS],
    ['bw_usage_hourly', 23 * HOUR_MS, DAY_MS],
    ['bw_usage_daily', DAY_MS, 3 * DAY_MS],
    ['bw_usage_hourly', 3 * DAY_MS, 3 * DAY_MS + 2 * HOUR_MS],
    ['bw_usage', 3 * DAY_MS + 2 * HOUR_MS, to - T0],
  ]);
  assert.deepEqual(planRange(T0 + 60_000, T0 + 120_000).map((p) => p.table), ['bw_usage']);
  assert.deepEqual(planRange(T0, T0 + 5 * HOUR_MS).map((p) => p.table), ['bw_usage_hourly']);
  assert.deepEqual(planRange(T0, T0), []);
});

test('any range counts every delta exactly once, whichever tables serve it', () => {
  // Deltas ending every 37 s for three days, some of them on exact hour boundaries.
  const ends: number[] = [];
  for (let t = T0 + 37_000; t < T0 + 3 * DAY_MS; t += 37_000) ends.push(t);
  for (let h = 1; h < 72; h += 5) ends.push(T0 + h * HOUR_MS);
  const bytes = (end: number) => BigInt((end / 1000) % 9973) + 1n;
  const hourly = new Map<number, bigint>();
  const daily = new Map<number, bigint>();
  for (const end of ends) {
    hourly.set(bucketOf(end, HOUR_MS), (hourly.get(bucketOf(end, HOUR_MS)) ?? 0n) + bytes(end));
    daily.set(bucketOf(end, DAY_MS), (daily.get(bucketOf(end, DAY_MS)) ?? 0n) + bytes(end));
  }
  const served = (from: number, to: number) => {
    let sum = 0n;
    for (const piece of planRange(from, to)) {
      if (piece.table === 'bw_usage') for (const end of ends) { if (end > piece.from && end <= piece.to) sum += bytes(end); }
      const buckets = piece.table === 'bw_usage_hourly' ? hourly : piece.table === 'bw_usage_daily' ? daily : null;
      if (buckets) for (const [start, value] of buckets) if (start >= piece.from && start < piece.to) sum += value;
    }
    return sum;
  };
  const exact = (from: number, to: number) => ends.filter((end) => end > from && end <= to).reduce((sum, end) => sum + bytes(end), 0n);
  for (const [from, to] of [
    [T0, T0 + 3 * DAY_MS],
    [T0 + HOUR_MS - 2_000, T0 + 2 * HOUR_MS + 3_000],
    [T0 + 5 * HOUR_MS, T0 + 29 * HOUR_MS],
    [T0 + 123_456, T0 + 2 * DAY_MS + 7 * HOUR_MS + 5_000],
    [T0 + 59 * 60_000, T0 + 61 * 60_000],
  ]) {
    assert.equal(served(from!, to!), exact(from!, to!), `range ${from! - T0}..${to! - T0}`);
  }
});
