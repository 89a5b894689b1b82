import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitOverBuckets, HOUR_MS, DAY_MS } from '../../../src/accounting/split.js';
import { planRange } from '../../../src/accounting/queries.js';

const T0 = Date.UTC(2026, 10, 20, 0, 0, 0);

test('a delta inside one hour stays in that hour', () => {
  assert.deepEqual(splitOverBuckets(1000n, T0 + 60_000, T0 + 120_000, HOUR_MS), [{ bucketStart: T0, bytes: 1000n }]);
});

test('a delta across hours is split by time, and the shares add up exactly', () => {
  const shares = splitOverBuckets(1001n, T0 + HOUR_MS - 30 * 60_000, T0 + 2 * HOUR_MS + 30 * 60_000, HOUR_MS);
  assert.deepEqual(shares.map((s) => s.bucketStart - T0), [0, HOUR_MS, 2 * HOUR_MS]);
  assert.deepEqual(shares.map((s) => s.bytes), [250n, 500n, 251n]);
  assert.equal(shares.reduce((sum, s) => sum + s.bytes, 0n), 1001n);
  const huge = splitOverBuckets(2n ** 62n + 7n, T0 + 1, T0 + 3 * DAY_MS - 1, DAY_MS);
  assert.equal(huge.reduce((sum, s) => sum + s.bytes, 0n), 2n ** 62n + 7n);
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
