import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseQuotaBody, quotaChange } from '../../../src/quotas/input.js';
import { QUOTA_DEFAULTS } from '../../../src/quotas/rules.js';

test('a quota body needs only the allowance; the rest are the documented defaults', () => {
  assert.deepEqual(parseQuotaBody({ allowance_bytes: 12_000_000_000 }), { settings: { ...QUOTA_DEFAULTS, allowanceBytes: 12_000_000_000n } });
});

test('every field is read, percentages sorted and de-duplicated, allowances exact past 2^53 as strings', () => {
  const parsed = parseQuotaBody({
    allowance_bytes: '9223372036854775807', counted: 'down', cycle_day: 31, time_zone: 'Asia/Kathmandu', warn_percents: [90, 50, 90],
    action: 'notify', throttle_up_kbps: 0, throttle_down_kbps: 0,
  });
  assert.deepEqual(parsed.settings, {
    allowanceBytes: 9223372036854775807n, counted: 'down', cycleDay: 31, timeZone: 'Asia/Kathmandu', warnPercents: [50, 90], action: 'notify', throttleUpKbps: 0, throttleDownKbps: 0,
  });
});

const refusals: [string, unknown, string][] = [
  ['no body', null, 'body'],
  ['an array body', [], 'body'],
  ['no allowance', { counted: 'up' }, 'allowance_bytes'],
  ['a zero allowance', { allowance_bytes: 0 }, 'allowance_bytes'],
  ['a negative allowance', { allowance_bytes: -1 }, 'allowance_bytes'],
  ['a fractional allowance', { allowance_bytes: 1.5 }, 'allowance_bytes'],
  ['an allowance with a unit', { allowance_bytes: '12 GB' }, 'allowance_bytes'],
  ['an allowance past 2^63', { allowance_bytes: '9223372036854775808' }, 'allowance_bytes'],
  ['an unsafe number', { allowance_bytes: 2 ** 60 }, 'allowance_bytes'],
  ['counted sideways', { allowance_bytes: 1, counted: 'both' }, 'counted'],
  ['cycle day 0', { allowance_bytes: 1, cycle_day: 0 }, 'cycle_day'],
  ['cycle day 32', { allowance_bytes: 1, cycle_day: 32 }, 'cycle_day'],
  ['a zone Intl does not know', { allowance_bytes: 1, time_zone: 'Mars/Base' }, 'time_zone'],
  ['an empty zone', { allowance_bytes: 1, time_zone: '' }, 'time_zone'],
  ['a percentage above 100', { allowance_bytes: 1, warn_percents: [80, 101] }, 'warn_percents'],
  ['a percentage of 0', { allowance_bytes: 1, warn_percents: [0] }, 'warn_percents'],
  ['eleven percentages', { allowance_bytes: 1, warn_percents: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }, 'warn_percents'],
  ['an unknown action', { allowance_bytes: 1, action: 'block' }, 'action'],
  ['a negative throttle', { allowance_bytes: 1, throttle_up_kbps: -5 }, 'throttle_up_kbps'],
  ['a throttle above 100 Gbit/s', { allowance_bytes: 1, throttle_down_kbps: 100_000_001 }, 'throttle_down_kbps'],
  ['a throttle of 0/0 with the throttle action', { allowance_bytes: 1, throttle_up_kbps: 0, throttle_down_kbps: 0 }, 'throttle_down_kbps'],
  ['an unknown field', { allowance_bytes: 1, allowance_gb: 3 }, 'allowance_gb'],
];
for (const [what, body, field] of refusals) {
  test(`a quota body with ${what} is refused, naming \`${field}\``, () => {
    const parsed = parseQuotaBody(body);
    assert.ok(parsed.issues, 'refused');
    assert.equal(parsed.issues[0]!.field, field);
    assert.match(parsed.issues[0]!.message, new RegExp(field === 'body' ? 'body' : `\`${field}\``));
  });
}

test('a peer body without quota fields keeps what is stored', () => {
  assert.deepEqual(quotaChange({ name: 'laptop', bandwidth_up_kbps: 100 }, undefined), { change: { kind: 'keep' }, issues: [] });
});

test('a form\u2019s gigabytes become bytes, and its empty optional fields keep the defaults', () => {
  const { change, issues } = quotaChange({ quota_allowance_gb: '12.5', quota_counted: 'total', quota_cycle_day: '', quota_time_zone: 'Europe/Berlin', quota_warn_percents: '80, 90' }, undefined);
  assert.deepEqual(issues, []);
  assert.deepEqual(change, { kind: 'set', settings: { ...QUOTA_DEFAULTS, allowanceBytes: 12_500_000_000n, timeZone: 'Europe/Berlin', warnPercents: [80, 90] } });
});

test('an empty allowance removes the subject\u2019s own quota; other fields alone change the stored one', () => {
  assert.deepEqual(quotaChange({ quota_allowance_gb: '' }, undefined).change, { kind: 'remove' });
  assert.deepEqual(quotaChange({ quota_allowance_bytes: null }, undefined).change, { kind: 'remove' });
  const stored = { ...QUOTA_DEFAULTS, allowanceBytes: 5n };
  assert.deepEqual(quotaChange({ quota_action: 'notify' }, stored).change, { kind: 'set', settings: { ...stored, action: 'notify' } });
});

test('quota fields without any allowance to apply to are refused, naming the allowance', () => {
  assert.equal(quotaChange({ quota_action: 'notify' }, undefined).issues[0]?.field, 'quota_allowance_bytes');
});

test('bad quota fields in a peer body are named with their prefix', () => {
  assert.equal(quotaChange({ quota_allowance_bytes: 'lots' }, undefined).issues[0]?.field, 'quota_allowance_bytes');
  assert.equal(quotaChange({ quota_allowance_gb: '-3' }, undefined).issues[0]?.field, 'quota_allowance_gb');
  assert.equal(quotaChange({ quota_allowance_gb: '1', quota_cycle_day: '40' }, undefined).issues[0]?.field, 'quota_cycle_day');
  assert.equal(quotaChange({ quota_allowance_gb: '1', quota_colour: 'red' }, undefined).issues[0]?.field, 'quota_colour');
  assert.equal(quotaChange({ quota_allowance_gb: '1', quota_throttle_up_kbps: '0', quota_throttle_down_kbps: '0' }, undefined).issues[0]?.field, 'quota_throttle_down_kbps');
});

test('a form\u2019s emptied optional fields go back to their defaults; an allowance of spaces removes the own quota', () => {
  const stored = { ...QUOTA_DEFAULTS, allowanceBytes: 5n, cycleDay: 15, timeZone: 'Europe/Berlin', warnPercents: [50] };
  const { change } = quotaChange({ quota_allowance_gb: '1', quota_cycle_day: '', quota_time_zone: ' ', quota_warn_percents: '' }, stored);
  assert.deepEqual(change, { kind: 'set', settings: { ...stored, allowanceBytes: 1_000_000_000n, cycleDay: 1, timeZone: 'UTC', warnPercents: [80, 90, 100] } });
  assert.deepEqual(quotaChange({ quota_allowance_gb: '  ' }, stored).change, { kind: 'remove' });
});
