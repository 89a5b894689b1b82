import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { DesiredSubject } from '../../../src/shaping/model.js';
import { MAX_BURST_BYTES } from '../../../src/shaping/model.js';
import { UNLIMITED_KBPS } from '../../../src/shaping/rates.js';
import {
  guarantees,
  hasClassOn,
  MIN_SHARE_KBPS,
  TBF_LIMIT_BYTES,
  tbfArgs,
  tbfDepthBytes,
  tbfOptions,
  totalOn,
  treeShape,
} from '../../../src/shaping/tree-shape.js';
import { fixtureActual } from './fixtures.js';

const subject = (minor: number, upKbps: number, downKbps: number, extra: Partial<DesiredSubject> = {}): DesiredSubject => ({
  type: 'peer',
  id: `p${minor}`,
  classMinor: minor,
  addresses: [`10.0.0.${minor}/32`],
  upKbps,
  downKbps,
  ...extra,
});
/** `minor: rate..ceil[ tbf kbps/depth]` for each subject of a shape, in minor order. */
const summary = (shape: ReturnType<typeof treeShape>): string[] =>
  [...shape.subjects]
    .sort((a, b) => a[0] - b[0])
    .map(([minor, s]) => `${minor}: ${s.rateKbps}..${s.ceilKbps}${s.tbf ? ` tbf ${s.tbf.kbps}/${s.tbf.depthBytes}` : ''}`);

test('the network cap of a side: down on the egress, up on the IFB, none when absent or 0', () => {
  assert.equal(totalOn({ totalDownKbps: 30_000, totalUpKbps: 20_000 }, 'egress'), 30_000);
  assert.equal(totalOn({ totalDownKbps: 30_000, totalUpKbps: 20_000 }, 'ifb'), 20_000);
  assert.equal(totalOn({}, 'egress'), 0);
  assert.equal(totalOn({ totalUpKbps: 0 }, 'ifb'), 0);
});

test('a subject has a class on a side where it is capped, or where the side has a network cap', () => {
  const downOnly = subject(2, 0, 8000);
  assert.equal(hasClassOn(downOnly, 'egress', 0), true);
  assert.equal(hasClassOn(downOnly, 'ifb', 0), false);
  assert.equal(hasClassOn(downOnly, 'ifb', 20_000), true);
  assert.equal(hasClassOn(subject(3, 0, 0, { minKbps: 500, burst: { kbps: 9000, bytes: 1000 } }), 'egress', 0), false, 'a minimum or a burst alone is no class');
});

test('without a network cap 1:1 and 1:ffff are unlimited and a class is a hard cap (rate = ceil)', () => {
  const shape = treeShape({}, 'egress', [subject(2, 4000, 8000), subject(3, 0, 1)]);
  assert.deepEqual([shape.totalKbps, shape.root, shape.unlimited], [
    0,
    { rateKbps: UNLIMITED_KBPS, ceilKbps: UNLIMITED_KBPS },
    { rateKbps: UNLIMITED_KBPS, ceilKbps: UNLIMITED_KBPS },
  ]);
  assert.deepEqual(summary(shape), ['2: 8000..8000', '3: 1..1']);
  assert.deepEqual(summary(treeShape({}, 'ifb', [subject(2, 4000, 8000)])), ['2: 4000..4000']);
  // A minimum means nothing without a network cap.
  assert.deepEqual(summary(treeShape({}, 'egress', [subject(2, 0, 8000, { minKbps: 3000 })])), ['2: 8000..8000']);
});

test('under a network cap: 1:1 = the cap, 1:ffff a small guarantee up to it, subjects share it and borrow up to their own cap', () => {
  const shape = treeShape({ totalDownKbps: 30_000 }, 'egress', [subject(2, 0, 0), subject(3, 0, 5000), subject(4, 0, 0), subject(5, 0, 40_000)]);
  assert.deepEqual([shape.root, shape.unlimited], [
    { rateKbps: 30_000, ceilKbps: 30_000 },
    { rateKbps: MIN_SHARE_KBPS, ceilKbps: 30_000 },
  ]);
  // (30000 − 8) / 4 = 7498; a cap above the network cap is the network cap.
  assert.deepEqual(summary(shape), ['2: 7498..30000', '3: 5000..5000', '4: 7498..30000', '5: 7498..30000']);
  // A network cap below 8 kbit/s still leaves 1:ffff a rate within its ceil.
  assert.deepEqual(treeShape({ totalDownKbps: 5 }, 'egress', []).unlimited, { rateKbps: 5, ceilKbps: 5 });
});

test('guarantees: explicit minimums first (at most the ceil), the rest split what is left, never below 8 kbit/s', () => {
  const g = (total: number, list: [number, number, number][]): number[] => {
    const out = guarantees(total, list.map(([minor, minKbps, ceilKbps]) => ({ minor, minKbps, ceilKbps })));
    return list.map(([minor]) => out.get(minor) ?? -1);
  };
  assert.deepEqual(g(30_000, [[2, 0, 30_000], [3, 0, 30_000], [4, 0, 30_000]]), [9997, 9997, 9997]);
  assert.deepEqual(g(30_000, [[2, 10_000, 30_000], [3, 0, 30_000], [4, 0, 30_000]]), [10_000, 9996, 9996]);
  assert.deepEqual(g(30_000, [[2, 10_000, 4000], [3, 0, 30_000]]), [4000, 25_992], 'a minimum above the subject\'s ceil counts as its ceil');
  assert.deepEqual(g(30_000, [[2, 0, 1], [3, 0, 30_000]]), [MIN_SHARE_KBPS, 14_996], 'the floor, even above a tiny ceil (treeShape clamps the rate to the ceil)');
  // Minimums over the budget are scaled to fit it: 8000 + 10000 = 18000 into 9992.
  const scaled = g(10_000, [[2, 8000, 10_000], [3, 12_000, 10_000], [4, 0, 10_000]]);
  assert.deepEqual(scaled, [4440, 5551, MIN_SHARE_KBPS]);
  assert.ok(scaled[0]! + scaled[1]! <= 10_000 - MIN_SHARE_KBPS);
  assert.deepEqual(g(30_000, []), []);
});

test('burst: the class ceil is the burst rate (at most the network cap); the tbf holds the cap; no tbf where the burst is not above the ceil', () => {
  const burst = { kbps: 20_000, bytes: 2_000_000 };
  assert.deepEqual(summary(treeShape({}, 'egress', [subject(2, 4000, 8000, { burst })])), ['2: 20000..20000 tbf 8000/1200000']);
  assert.deepEqual(summary(treeShape({}, 'ifb', [subject(2, 4000, 8000, { burst })])), ['2: 20000..20000 tbf 4000/1600000']);
  assert.deepEqual(summary(treeShape({ totalDownKbps: 30_000 }, 'egress', [subject(2, 0, 8000, { burst }), subject(3, 0, 0)])), ['2: 8000..20000 tbf 8000/1200000', '3: 14996..30000']);
  assert.deepEqual(summary(treeShape({ totalDownKbps: 8000 }, 'egress', [subject(2, 0, 8000, { burst })])), ['2: 7992..8000'], 'network cap = own cap: nothing to burst into');
  assert.deepEqual(summary(treeShape({}, 'egress', [subject(2, 0, 8000, { burst: { kbps: 8000, bytes: 1000 } })])), ['2: 8000..8000']);
  assert.deepEqual(summary(treeShape({ totalUpKbps: 30_000 }, 'ifb', [subject(2, 0, 8000, { burst })])), ['2: 29992..30000'], 'no cap on the side: no burst');
});

test('tbf depth: bytes × (1 − cap/burst), floored, never below the HTB burst at the cap', () => {
  assert.equal(tbfDepthBytes(8000, { kbps: 20_000, bytes: 2_000_000 }), 1_200_000);
  assert.equal(tbfDepthBytes(3000, { kbps: 7000, bytes: 1_000_001 }), 571_429);
  // 1000 × (1 − 3/7) = 571 is below 10 ms at 3000 kbit/s (3750 bytes).
  assert.equal(tbfDepthBytes(3000, { kbps: 7000, bytes: 1000 }), 3750);
});

test('tbf depth fits the kernel: a bucket is at most 2^32 ticks of 64 ns (274.9 s) at the cap', () => {
  // Measured: `tbf rate 1000kbit burst 95000000` is held as 26280523 bytes (760 s wrapped), and drifts forever.
  const maxAt = (kbps: number): number => Math.floor((kbps * 125 * 2 ** 32 * 64) / 1e9);
  assert.ok(tbfDepthBytes(1000, { kbps: 20_000, bytes: 100_000_000 }) <= maxAt(1000));
  assert.ok(tbfDepthBytes(1, { kbps: 20_000, bytes: 1_200_000 }) <= maxAt(1));
  assert.ok(tbfDepthBytes(100_000, { kbps: 1_000_000, bytes: MAX_BURST_BYTES }) <= maxAt(100_000));
});

test('tbf options are what `tc -j qdisc show` printed for the captured leaf; its argv is what built it', () => {
  const tbf = { kbps: 8000, depthBytes: 1_200_000 };
  const captured = fixtureActual('netcap-').egress?.qdiscs.find((q) => q.kind === 'tbf');
  // The bucket is deeper than the queue: iproute2 6.1 prints `limit` (a shorter one prints `lat` instead).
  const { latUs, ...printed } = tbfOptions(tbf);
  assert.deepEqual(printed, captured?.options);
  assert.ok(latUs < 0);
  assert.equal(tbfOptions({ kbps: 10_000, depthBytes: 12_345 }).latUs, 230_124, 'tc printed "lat":230125 for this leaf (its burst rounded to 12343)');
  assert.deepEqual(tbfArgs(tbf), ['tbf', 'rate', '8000kbit', 'burst', '1200000', 'limit', String(TBF_LIMIT_BYTES)]);
  assert.equal(TBF_LIMIT_BYTES, 300_000);
});
