import { test } from 'node:test';
import assert from 'node:assert/strict';
import { takeClock } from '../../src/clock.js';

test('`now` is taken out of register\'s options; the rest are the settings', () => {
  const now = () => Date.UTC(2026, 2, 1);
  const taken = takeClock({ executor: 'recording', now });
  assert.equal(taken.now, now);
  assert.deepEqual(taken.settings, { executor: 'recording' });
});

test('without `now` the clock is the real one and the options pass through untouched', () => {
  const options = { executor: 'recording' };
  assert.equal(takeClock(options).now, Date.now);
  assert.equal(takeClock(options).settings, options);
  // Not an object: left for the settings check, which names what it got.
  assert.equal(takeClock('fast').settings, 'fast');
});

test('a `now` that is not a function is refused, naming what it got', () => {
  assert.throws(() => takeClock({ now: 1_795_000_000_000 }), {
    name: 'TypeError',
    message: 'Expected `now` to be a function returning epoch milliseconds, got `1795000000000` (number)',
  });
  assert.throws(() => takeClock({ now: null }), /got `null` \(null\)$/);
});
