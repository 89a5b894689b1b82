import assert from 'node:assert/strict';
import { test } from 'node:test';

import { burstBytes, bytesPerSecond, htbClassArgs, printedRateBits, quantumBytes } from '../../../src/shaping/rates.js';

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

test('a class that borrows: quantum and burst follow the rate, cburst the ceil (as the kernel printed them under a network cap)', () => {
  // test/fixtures/tc/netcap-class-egress: `rate 5Mbit ceil 30Mbit burst 6250b cburst 37500b`, 1:ffff `rate 8Kbit ceil 30Mbit burst 3028b cburst 37500b`.
  assert.deepEqual(htbClassArgs(5000, 30_000), ['rate', '5000kbit', 'ceil', '30000kbit', 'quantum', '60000', 'burst', '6250', 'cburst', '37500']);
  assert.deepEqual(htbClassArgs(8, 30_000), ['rate', '8kbit', 'ceil', '30000kbit', 'quantum', '1500', 'burst', '3028', 'cburst', '37500']);
  assert.deepEqual(htbClassArgs(3330, 20_000), ['rate', '3330kbit', 'ceil', '20000kbit', 'quantum', '41625', 'burst', '4163', 'cburst', '25000']);
});

test('bytes per second: 1 kbit/s is 125 bytes/s (what tbf prints as its rate)', () => {
  assert.equal(bytesPerSecond(8000), 1_000_000);
  assert.equal(bytesPerSecond(1), 125);
});

test('printed rates follow iproute2 6.1, which truncates big odd rates', () => {
  assert.equal(printedRateBits(8000), 8_000_000); // 8Mbit
  assert.equal(printedRateBits(8500), 8_500_000); // 8500Kbit
  assert.equal(printedRateBits(1), 1000); // 1Kbit
  assert.equal(printedRateBits(1_234_567), 1_234_000_000); // 1234Mbit
  assert.equal(printedRateBits(100_000_000), 100_000_000_000); // 100Gbit
  assert.equal(printedRateBits(8330), 8_330_000); // 8330Kbit (a share under a network cap)
  assert.equal(printedRateBits(4997), 4_997_000); // 4997Kbit
});
