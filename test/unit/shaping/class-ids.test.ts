import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClassMinorsExhaustedError, isAssignableClassMinor, nextClassMinor } from '../../../src/shaping/class-ids.js';

test('the first subject gets minor 2 (0 is no class, 1 would clash with the root qdisc 1:)', () => {
  assert.equal(nextClassMinor([]), 2);
});

test('the allocator fills the lowest gap', () => {
  assert.equal(nextClassMinor([2, 3, 5]), 4);
  assert.equal(nextClassMinor(new Set([2, 3, 4])), 5);
});

test('reserved minors passed by the caller are skipped', () => {
  assert.equal(nextClassMinor([2], [3, 4]), 5);
});

test('0xffff (the unlimited class) is never handed out, 0xfffe is the last minor', () => {
  const used = Array.from({ length: 0xfffe - 2 }, (_, i) => i + 2); // 2..0xfffd
  assert.equal(nextClassMinor(used), 0xfffe);
});

test('past 0xfffe the allocator fails with a clear error', () => {
  const used = Array.from({ length: 0xfffe - 1 }, (_, i) => i + 2); // 2..0xfffe
  assert.throws(() => nextClassMinor(used), (error: unknown) => {
    assert.ok(error instanceof ClassMinorsExhaustedError);
    assert.match(error.message, /No free HTB class minor left: 2\.\.0xfffe/);
    return true;
  });
});

test('isAssignableClassMinor rejects reserved and out-of-range minors', () => {
  assert.deepEqual([0, 1, 2, 0xfffe, 0xffff, 1.5, -3].map(isAssignableClassMinor), [false, false, true, true, false, false, false]);
});
