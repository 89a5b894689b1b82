import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDecimalBytes, formatInZone, formatUtc, usageText, usedPercent } from '../../../src/views/quota.js';
import { eventChange, eventSubject } from '../../../src/views/event-change.js';

test('quota amounts are decimal units, rounded down to a tenth, exact past 2^53', () => {
  assert.deepEqual(
    [0n, 999n, 1000n, 7_249_999_999n, 12_000_000_000n, 2n ** 63n - 1n].map(formatDecimalBytes),
    ['0 B', '999 B', '1 kB', '7.2 GB', '12 GB', '9.2 EB'],
  );
});

test('usage reads in the limit\'s unit with a whole percent that reaches 100 only when used up', () => {
  assert.equal(usageText(7_200_000_000n, 12_000_000_000n), '7.2 of 12 GB (60 %)');
  assert.equal(usageText(11_999_999_999n, 12_000_000_000n), '11.9 of 12 GB (99 %)');
  assert.equal(usageText(900_000_000n, 12_000_000_000n), '0.9 of 12 GB (7 %)');
  assert.equal(usedPercent(1n, 0n), 0, 'a zero limit is 0 %, not a division by zero');
});

test('cycle bounds on the quota\'s wall clock and in UTC, across a DST change', () => {
  assert.equal(formatInZone(Date.UTC(2026, 1, 28, 23), 'Europe/Berlin'), '2026-03-01 00:00');
  assert.equal(formatInZone(Date.UTC(2026, 2, 31, 22), 'Europe/Berlin'), '2026-04-01 00:00');
  assert.equal(formatInZone(Date.UTC(2026, 2, 31, 18, 15), 'Asia/Kathmandu'), '2026-04-01 00:00');
  assert.equal(formatUtc(Date.UTC(2026, 2, 31, 22)), '2026-03-31 22:00');
});

test('quota audit events read as sentences; limit events keep their caps', () => {
  const settings = { allowance_bytes: '12000000000', counted: 'down', cycle_day: 15, time_zone: 'UTC', warn_percents: [80], action: 'notify', throttle_up_kbps: 0, throttle_down_kbps: 0 };
  assert.equal(eventChange({ action: 'limit.set', oldValue: { up_kbps: 0, down_kbps: 0 }, newValue: { up_kbps: 1000, down_kbps: 2000 } }), 'Unlimited → 1 / 2 Mbps');
  assert.equal(eventChange({ action: 'quota.set', oldValue: null, newValue: { target: { type: 'default', id: '' }, ...settings } }), 'set: 12 GB down a month from day 15 (UTC), warn at 80 %, then notify only');
  assert.equal(eventChange({ action: 'quota.extra', oldValue: { extra_bytes: '0' }, newValue: { extra_bytes: '5000000000', added_bytes: '5000000000' } }), 'traffic block of 5 GB for this cycle (extra now 5 GB)');
  assert.equal(eventChange({ action: 'quota.reset', oldValue: null, newValue: { reason: 'cycle', cycle_start: '2026-04-01T00:00:00.000Z' } }), 'a new cycle began 2026-04-01 00:00 UTC; counting from 0');
  assert.equal(eventChange({ action: 'quota.manual_reset', oldValue: { used_bytes: 'not a number' }, newValue: null }), 'reset by hand: ? → 0 B', 'a malformed value does not throw');
  assert.equal(eventSubject({ action: 'quota.set', subjectType: null, subjectId: null, oldValue: null, newValue: { target: { type: 'default', id: '' } } }), 'every subject (plugin-wide default)');
  assert.equal(eventSubject({ action: 'node.added', subjectType: null, subjectId: null, oldValue: null, newValue: { node: 'hv1' } }), 'node hv1');
});
