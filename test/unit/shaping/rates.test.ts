import assert from 'node:assert/strict';
import { test } from 'node:test';

import { burstBytes, htbClassArgs, printedRateBits, quantumBytes } from '../../../src/shaping/rates.js';

test('at 1 kbit/s quantum is clamped up to one MTU and burst to two frames', () => {
  assert.equal(quantumBytes(1), 1500);
  assert.equal(burstBytes(1), 3028);
});

test('at 10 Mbit/s quantum is clamped to 60000 and burst is 10 ms of traffic', () => {
  assert.equal(quantumBytes(10_000), 60_000);
  assert.equal(burstBytes(10_000), 12_500);
});

test('at 10 Gbit/s quantum stays 60000 and burst is 12.5 MB (10 ms)', () => {
  assert.equal(quantumBytes(10_000_000), 60_000);
  assert.equal(burstBytes(10_000_000), 12_500_000);
});

test('between the clamps quantum is rate / r2q (10)', () => {
  assert.equal(quantumBytes(2_000), 25_000);
});

test('class arguments set rate = ceil and explicit quantum, burst and cburst', () => {
  assert.deepEqual(htbClassArgs(8000), ['rate', '8000kbit', 'ceil', '8000kbit', 'quantum', '60000', 'burst', '10000', 'cburst', '10000']);
});

test('printed rates follow iproute2 6.1, which truncates big odd rates', () => {
  assert.equal(printedRateBits(8000), 8_000_000); // 8Mbit
  assert.equal(printedRateBits(8500), 8_500_000); // 8500Kbit
  assert.equal(printedRateBits(1), 1000); // 1Kbit
  assert.equal(printedRateBits(1_234_567), 1_234_000_000); // 1234Mbit
  assert.equal(printedRateBits(100_000_000), 100_000_000_000); // 100Gbit
});
