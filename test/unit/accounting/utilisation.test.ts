import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Rate } from '../../../src/accounting/rates.js';
import { directionUtilisation, utilisation } from '../../../src/accounting/utilisation.js';

const rate = (over: Partial<Rate>): Rate => ({ upKbps: 0, downKbps: 0, classUpKbps: null, classDownKbps: null, at: 0, ...over });

test('a peer at its cap: WireGuard\'s bytes say 104%, its class says 99%, and utilisation is the class\'s', () => {
  const atCap = rate({ upKbps: 200, downKbps: 8_320, classUpKbps: 150, classDownKbps: 7_950 });
  assert.deepEqual(utilisation({ upKbps: 8_000, downKbps: 8_000 }, atCap), { percent: 99, basis: 'class' });
});

test('the fuller capped direction wins; an uncapped direction never counts, however busy', () => {
  const busyUp = rate({ upKbps: 90_000, downKbps: 3_000, classUpKbps: null, classDownKbps: 2_000 });
  assert.deepEqual(utilisation({ upKbps: 0, downKbps: 4_000 }, busyUp), { percent: 50, basis: 'class' });
  assert.deepEqual(utilisation({ upKbps: 1_000, downKbps: 4_000 }, rate({ classUpKbps: 900, classDownKbps: 2_000 })), { percent: 90, basis: 'class' });
});

test('an unlimited subject has no utilisation (nothing to fill): null, not 0', () => {
  assert.equal(utilisation({ upKbps: 0, downKbps: 0 }, rate({ upKbps: 50_000, downKbps: 50_000 })), null);
  assert.equal(directionUtilisation(0, rate({ downKbps: 5 }), 'down'), null);
});

test('a capped direction whose class was not counted (cap pending, class just created) falls back to the billed rate, and says so', () => {
  const pending = rate({ upKbps: 100, downKbps: 12_000 });
  assert.deepEqual(utilisation({ upKbps: 1_000, downKbps: 8_000 }, pending), { percent: 150, basis: 'counted' });
  // One side counted by its class, the other not: the whole figure is marked as not like with like.
  assert.deepEqual(utilisation({ upKbps: 1_000, downKbps: 8_000 }, rate({ upKbps: 500, downKbps: 4_200, classDownKbps: 4_000 })), { percent: 50, basis: 'counted' });
  assert.deepEqual(directionUtilisation(8_000, rate({ downKbps: 4_200, classDownKbps: 4_000 }), 'down'), { ratio: 0.5, basis: 'class' });
});

test('no rate yet (no tick since start) is 0% of a cap', () => {
  assert.deepEqual(utilisation({ upKbps: 1_000, downKbps: 0 }, undefined), { percent: 0, basis: 'counted' });
});
