import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeDelta } from '../../../src/accounting/deltas.js';
import { subjectDirections, type Sample } from '../../../src/accounting/sample.js';

const BOOT = '8b71c558-fc6a-4673-a1fc-4586c5796406';
const sample = (rx: bigint, tx: bigint, at: number, over: { ifindex?: number; bootId?: string } = {}): Sample => ({
  identity: { node: 'local', source: 'wireguard', interface: 'wg0', seriesKey: 'k', ifindex: over.ifindex ?? 7, bootId: over.bootId ?? BOOT },
  subjectType: 'peer', subjectId: '1', rxBytes: rx, txBytes: tx, rxPackets: null, txPackets: null, at,
});

test('the delta engine, case by case', () => {
  const base = sample(1000n, 5000n, 60_000);
  const table: [string, Sample | undefined, Sample, unknown][] = [
    ['a first sample counts nothing', undefined, base, { kind: 'first' }],
    ['normal growth is new − old', base, sample(1500n, 9000n, 120_000), { kind: 'delta', rxBytes: 500n, txBytes: 4000n, elapsedMs: 60_000 }],
    ['equal counters are a zero delta', base, sample(1000n, 5000n, 120_000), { kind: 'delta', rxBytes: 0n, txBytes: 0n, elapsedMs: 60_000 }],
    ['a replayed sample (same time) is stale', base, sample(1000n, 5000n, 60_000), { kind: 'stale' }],
    ['an older sample is stale', base, sample(900n, 4000n, 30_000), { kind: 'stale' }],
    ['a smaller value is a reset, counted from zero — never a wrap', base, sample(300n, 9000n, 120_000),
      { kind: 'reset', rxBytes: 300n, txBytes: 9000n, elapsedMs: 60_000, reason: 'a counter went down (reset)' }],
    ['a new ifindex with larger values is still a reset', base, sample(2000n, 6000n, 120_000, { ifindex: 9 }),
      { kind: 'reset', rxBytes: 2000n, txBytes: 6000n, elapsedMs: 60_000, reason: 'the interface was re-created (ifindex 7 → 9)' }],
    ['a new boot id with larger values is a reset', base, sample(2000n, 6000n, 120_000, { bootId: 'other' }),
      { kind: 'reset', rxBytes: 2000n, txBytes: 6000n, elapsedMs: 60_000, reason: 'the machine rebooted (new boot id)' }],
  ];
  for (const [story, previous, next, expected] of table) assert.deepEqual(computeDelta(previous, next), expected, story);
});

test('counters above 2^53 and near 2^64 subtract exactly', () => {
  const high = 2n ** 64n - 10_000n;
  const result = computeDelta(sample(2n ** 53n + 1n, high, 0), sample(2n ** 53n + 12_346n, high + 9_999n, 60_000));
  assert.deepEqual(result, { kind: 'delta', rxBytes: 12_345n, txBytes: 9_999n, elapsedMs: 60_000 });
});

test('a delta faster than the ceiling is discarded, also after a reset', () => {
  // 1 Gbit/s ceiling, 1 s: at most 125,000,000 bytes.
  const ceiling = 1_000_000_000n;
  assert.equal(computeDelta(sample(0n, 0n, 0), sample(125_000_000n, 0n, 1000), ceiling).kind, 'delta');
  const tooMuch = computeDelta(sample(0n, 0n, 0), sample(125_000_001n, 0n, 1000), ceiling);
  assert.equal(tooMuch.kind, 'discarded');
  assert.match((tooMuch as { reason: string }).reason, /125000001 bytes in 1000 ms exceed the ceiling of 1000000000 bit\/s/);
  const wrapGuess = computeDelta(sample(2n ** 64n - 5n, 0n, 0), sample(10n, 0n, 60_000));
  assert.deepEqual(wrapGuess, { kind: 'reset', rxBytes: 10n, txBytes: 0n, elapsedMs: 60_000, reason: 'a counter went down (reset)' }, 'not 15 bytes of wrap');
  const rebootBurst = computeDelta(sample(0n, 0n, 0), sample(10n ** 15n, 0n, 1000, { bootId: 'x' }), ceiling);
  assert.equal(rebootBurst.kind, 'discarded');
});

test('directions become the subject’s: host rx is the peer’s/VM’s up, host tx its down', () => {
  assert.deepEqual(subjectDirections({ rx: 10n, tx: 99n }), { up: 10n, down: 99n });
});
