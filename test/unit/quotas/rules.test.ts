import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assess, effectiveQuota, projectedBytes, QUOTA_DEFAULTS, throttleFor, usedBytes, type QuotaSettings } from '../../../src/quotas/rules.js';
import { effectiveCaps, isThrottled } from '../../../src/limits/effective.js';

const GB = 1_000_000_000n;
const quota = (allowanceBytes: bigint, overrides: Partial<QuotaSettings> = {}): QuotaSettings => ({ ...QUOTA_DEFAULTS, allowanceBytes, ...overrides });

test('the counted bytes are up, down or both, from the subject\u2019s side', () => {
  assert.equal(usedBytes('up', 3n, 5n), 3n);
  assert.equal(usedBytes('down', 3n, 5n), 5n);
  assert.equal(usedBytes('total', 2n ** 62n, 2n ** 62n), 2n ** 63n, 'exact past 2^53');
});

test('a subject\u2019s own quota wins over its network\u2019s, which wins over the default', () => {
  const own = quota(1n);
  const network = quota(2n);
  const fallback = quota(3n);
  assert.deepEqual(effectiveQuota(own, network, fallback), { settings: own, source: 'subject' });
  assert.deepEqual(effectiveQuota(undefined, network, fallback), { settings: network, source: 'network' });
  assert.deepEqual(effectiveQuota(undefined, undefined, fallback), { settings: fallback, source: 'default' });
  assert.equal(effectiveQuota(undefined, undefined, undefined), null);
});

test('thresholds fire in order as usage grows, each once per cycle, 100 % when the allowance is used', () => {
  const fired: number[] = [];
  const states: string[] = [];
  for (const used of [0n, 79n, 80n, 85n, 90n, 99n, 100n, 150n]) {
    const result = assess({ allowanceBytes: 100n, extraBytes: 0n, used, warnPercents: [80, 90, 100], fired });
    fired.push(...result.toFire);
    states.push(result.state);
  }
  assert.deepEqual(fired, [80, 90, 100]);
  assert.deepEqual(states, ['ok', 'ok', 'warning', 'warning', 'warning', 'warning', 'exceeded', 'exceeded']);
});

test('a jump past several thresholds fires all of them at once, ascending', () => {
  assert.deepEqual(assess({ allowanceBytes: 100n, extraBytes: 0n, used: 1000n, warnPercents: [50, 80, 90], fired: [] }).toFire, [50, 80, 90, 100]);
});

test('exceeded is notified even when 100 is not among the warning percentages', () => {
  const result = assess({ allowanceBytes: 10n, extraBytes: 0n, used: 10n, warnPercents: [], fired: [] });
  assert.equal(result.state, 'exceeded');
  assert.deepEqual(result.toFire, [100]);
});

test('a traffic block raises the limit: the state goes back, and what was notified is not notified again', () => {
  const before = assess({ allowanceBytes: 100n, extraBytes: 0n, used: 120n, warnPercents: [80, 90, 100], fired: [] });
  assert.equal(before.state, 'exceeded');
  const after = assess({ allowanceBytes: 100n, extraBytes: 100n, used: 190n, warnPercents: [80, 90, 100], fired: before.toFire });
  assert.equal(after.limitBytes, 200n);
  assert.equal(after.state, 'warning');
  assert.deepEqual(after.toFire, []);
  assert.equal(after.remaining, 10n);
});

test('ratios and remaining bytes stay exact with allowances past 2^53', () => {
  const allowance = 2n ** 60n;
  const result = assess({ allowanceBytes: allowance, extraBytes: 0n, used: allowance / 4n, warnPercents: [80], fired: [] });
  assert.equal(result.ratio, 0.25);
  assert.equal(result.remaining, allowance - allowance / 4n);
});

test('only an exceeded quota with the throttle action throttles, and a 0/0 throttle throttles nothing', () => {
  assert.deepEqual(throttleFor(quota(GB), 'exceeded'), { upKbps: 1000, downKbps: 1000 });
  assert.equal(throttleFor(quota(GB), 'warning'), null);
  assert.equal(throttleFor(quota(GB, { action: 'notify' }), 'exceeded'), null);
  assert.equal(throttleFor(quota(GB, { throttleUpKbps: 0, throttleDownKbps: 0 }), 'exceeded'), null);
  assert.equal(throttleFor(null, 'exceeded'), null);
});

test('the effective cap is min(configured, throttle); an unlimited direction is throttled; the own cap below the throttle stays', () => {
  assert.deepEqual(effectiveCaps({ upKbps: 0, downKbps: 0, throttleUpKbps: 1000, throttleDownKbps: 1000 }), { upKbps: 1000, downKbps: 1000, source: { up: 'throttle', down: 'throttle' } });
  assert.deepEqual(effectiveCaps({ upKbps: 500, downKbps: 8000, throttleUpKbps: 1000, throttleDownKbps: 1000 }), { upKbps: 500, downKbps: 1000, source: { up: 'own', down: 'throttle' } });
  assert.deepEqual(effectiveCaps({ upKbps: 500, downKbps: 0, throttleUpKbps: null, throttleDownKbps: null }), { upKbps: 500, downKbps: 0, source: { up: 'own', down: 'none' } });
  assert.deepEqual(effectiveCaps({ upKbps: 0, downKbps: 0, throttleUpKbps: 0, throttleDownKbps: 2000 }), { upKbps: 0, downKbps: 2000, source: { up: 'none', down: 'throttle' } });
  assert.equal(isThrottled({ upKbps: 0, downKbps: 0, throttleUpKbps: 0, throttleDownKbps: 2000 }), true);
  assert.equal(isThrottled({ upKbps: 10, downKbps: 0 }), false);
});

test('the projection extends the average rate since the cycle began to its end', () => {
  const start = Date.UTC(2026, 10, 1);
  const end = Date.UTC(2026, 11, 1);
  const tenDays = start + 10 * 86_400_000;
  assert.equal(projectedBytes(10n * GB, start, end, tenDays), 30n * GB);
  assert.equal(projectedBytes(5n * GB, start, end, start), null, 'no time has passed');
  assert.equal(projectedBytes(30n * GB, start, end, end + 5), 30n * GB, 'after the end: what was used');
});
