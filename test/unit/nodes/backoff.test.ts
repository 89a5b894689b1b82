import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, decorrelatedDelay, fullJitterDelay } from '../../../src/nodes/panel/backoff.js';
import { seededRandom } from '../../support/seeded-random.js';

/** The largest value Math.random can return. */
const ALMOST_ONE = 1 - 2 ** -53;

test('full jitter: the ceiling doubles from 1 s each attempt and stops at 60 s', () => {
  const highest = Array.from({ length: 10 }, (_, attempt) => fullJitterDelay(attempt, 1000, 60_000, ALMOST_ONE));
  assert.deepEqual(highest, [999, 1999, 3999, 7999, 15_999, 31_999, 59_999, 59_999, 59_999, 59_999]);
  assert.equal(fullJitterDelay(0, 1000, 60_000, 0), 0);
  assert.equal(fullJitterDelay(5000, 1000, 60_000, 0.5), 30_000, 'a huge attempt count still caps (2^5000 is Infinity)');
});

test('decorrelated jitter: never below 1 s, at most three times the previous delay, never above 60 s', () => {
  assert.equal(decorrelatedDelay(1000, 1000, 60_000, 0), 1000);
  assert.equal(decorrelatedDelay(1000, 1000, 60_000, ALMOST_ONE), 2999);
  assert.equal(decorrelatedDelay(30_000, 1000, 60_000, ALMOST_ONE), 59_999);
  assert.equal(decorrelatedDelay(59_999, 1000, 60_000, 0.5), 30_500);
});

for (const jitter of ['full', 'decorrelated'] as const) {
  test(`${jitter} jitter: 10,000 random delays stay within their bounds`, () => {
    const backoff = new Backoff({ jitter, random: seededRandom(10) });
    let previous = 1000;
    for (let i = 0; i < 10_000; i++) {
      const attempt = backoff.attempts;
      const delay = backoff.next();
      assert.ok(Number.isInteger(delay), `delay ${delay} is whole milliseconds`);
      if (jitter === 'full') {
        assert.ok(delay >= 0 && delay < Math.min(60_000, 1000 * 2 ** attempt), `attempt ${attempt}: ${delay}`);
      } else {
        assert.ok(delay >= 1000 && delay <= Math.min(60_000, previous * 3), `after ${previous}: ${delay}`);
      }
      previous = delay;
      if (i % 100 === 99) backoff.reset();
    }
  });
}

test('delays grow while failures go on and reach the cap', () => {
  const full = new Backoff({ jitter: 'full', random: () => ALMOST_ONE });
  assert.deepEqual(Array.from({ length: 8 }, () => full.next()), [999, 1999, 3999, 7999, 15_999, 31_999, 59_999, 59_999]);
  const decorrelated = new Backoff({ random: () => ALMOST_ONE });
  assert.deepEqual(Array.from({ length: 6 }, () => decorrelated.next()), [2999, 8996, 26_987, 59_999, 59_999, 59_999]);
  // With a fair random source the median delay of the 7th attempt is far above the first's.
  const medians = [0, 6].map((attempt) => {
    const random = seededRandom(attempt + 1);
    const delays = Array.from({ length: 501 }, () => {
      const backoff = new Backoff({ jitter: 'full', random });
      for (let i = 0; i < attempt; i++) backoff.next();
      return backoff.next();
    }).sort((a, b) => a - b);
    return delays[250]!;
  });
  assert.ok(medians[1]! > 10 * medians[0]!, `medians ${medians.join(' → ')}`);
});

test('a success resets the backoff: the next failure waits as little as the first', () => {
  for (const jitter of ['full', 'decorrelated'] as const) {
    const backoff = new Backoff({ jitter, random: () => ALMOST_ONE });
    const first = backoff.next();
    for (let i = 0; i < 20; i++) backoff.next();
    assert.equal(backoff.attempts, 21);
    assert.equal(backoff.next(), 59_999, `${jitter}: at the cap before the reset`);
    backoff.reset();
    assert.equal(backoff.attempts, 0);
    assert.equal(backoff.next(), first, `${jitter}: back to the first delay`);
  }
});

test('a custom scale and cap are honoured (the tests of the manager use milliseconds)', () => {
  const backoff = new Backoff({ initialMs: 50, maxMs: 200, random: () => ALMOST_ONE });
  assert.deepEqual(Array.from({ length: 4 }, () => backoff.next()), [149, 199, 199, 199]);
});

test('bad options fail at once with a message naming the option', () => {
  assert.throws(() => new Backoff({ initialMs: 0 }), { name: 'TypeError', message: 'Expected `initialMs` to be a finite number > 0, got `0` (number)' });
  assert.throws(() => new Backoff({ maxMs: Number.NaN }), { message: /`maxMs` to be a finite number > 0, got `NaN`/ });
  assert.throws(() => new Backoff({ initialMs: 5000, maxMs: 1000 }), { message: 'Expected `maxMs` to be >= `initialMs` (5000), got `1000`' });
  assert.throws(() => new Backoff({ jitter: 'none' as 'full' }), { message: /`jitter` to be 'full' or 'decorrelated', got `none`/ });
});
