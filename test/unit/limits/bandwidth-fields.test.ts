import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bandwidthInput, parseKbps } from '../../../src/hooks/bandwidth-fields.js';
import { formatCaps, formatKbps } from '../../../src/views/format.js';

test('caps accept whole kbps from 0 to 100,000,000, as numbers or digit strings', () => {
  for (const [value, expected] of [[0, 0], [1, 1], [100_000_000, 100_000_000], ['0', 0], ['20000', 20000], ['100000000', 100_000_000]] as const) {
    assert.equal(parseKbps('bandwidth_up_kbps', value), expected);
  }
});

test('anything else is an issue naming the field and showing what was sent', () => {
  const bad: unknown[] = [-1, 1.5, 100_000_001, Number.NaN, Infinity, '-1', '1.5', '1e3', '10 mbit', ' 10', '', '0x10', '1000000000', null, true, [], [10], {}, { kbps: 1 }];
  for (const value of bad) {
    const issue = parseKbps('bandwidth_down_kbps', value);
    assert.equal(typeof issue, 'object', `${JSON.stringify(value)} must be rejected`);
    assert.equal((issue as { field: string }).field, 'bandwidth_down_kbps');
    assert.match((issue as { message: string }).message, /^`bandwidth_down_kbps` must be a whole number of kbps from 0 \(unlimited\) to 100000000, got /);
  }
  assert.match((parseKbps('x', '10 mbit') as { message: string }).message, /got `10 mbit`$/);
  assert.match((parseKbps('x', null) as { message: string }).message, /got null$/);
  assert.match((parseKbps('x', [1]) as { message: string }).message, /got an array$/);
});

test('an input only changes the directions it mentions; the Unlimited boxes win', () => {
  assert.deepEqual(bandwidthInput({ name: 'x' }), { issues: [] });
  assert.deepEqual(bandwidthInput({ bandwidth_up_kbps: '5000' }), { upKbps: 5000, issues: [] });
  assert.deepEqual(bandwidthInput({ bandwidth_up_kbps: '5000', bandwidth_up_unlimited: '1', bandwidth_down_kbps: 7 }), { upKbps: 0, downKbps: 7, issues: [] });
  const both = bandwidthInput({ bandwidth_up_kbps: 'x', bandwidth_down_kbps: -2 });
  assert.deepEqual(both.issues.map((i) => i.field), ['bandwidth_up_kbps', 'bandwidth_down_kbps']);
});

test('caps read the way a table shows them', () => {
  assert.equal(formatCaps(0, 0), 'Unlimited');
  assert.equal(formatCaps(10_000, 50_000), '10 / 50 Mbps');
  assert.equal(formatCaps(512, 2000), '512 kbps / 2 Mbps');
  assert.equal(formatCaps(0, 50_000), 'Unlimited / 50 Mbps');
  assert.equal(formatCaps(2_500_000, 10_000_000), '2.5 / 10 Gbps');
  assert.equal(formatKbps(1500), '1.5 Mbps');
});
