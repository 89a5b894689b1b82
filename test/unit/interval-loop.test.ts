import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntervalLoop } from '../../src/interval-loop.js';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

test('the loop never overlaps itself: a run requested during a run waits for it', async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const loop = new IntervalLoop('reconcile', async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    runs++;
    await gate;
    active--;
  }, 60_000, silent);
  const first = loop.runOnce();
  const second = loop.runOnce();
  assert.equal(first, second, 'a second request joins the run in progress');
  release();
  await first;
  await loop.runOnce();
  await loop.stop();
  assert.equal(maxActive, 1);
  assert.equal(runs, 2);
});

test('a failing run is logged and the loop keeps going', async () => {
  const errors: string[] = [];
  let calls = 0;
  const loop = new IntervalLoop('reconcile', async () => {
    calls++;
    if (calls === 1) throw new Error('tc exploded');
  }, 60_000, { ...silent, error: (message: string, fields?: Record<string, unknown>) => void errors.push(`${message}: ${String(fields?.error)}`) });
  await loop.runOnce();
  await loop.runOnce();
  await loop.stop();
  assert.deepEqual(errors, ['reconcile failed: tc exploded']);
  assert.equal(calls, 2);
});

test('a bad interval is refused at once', () => {
  assert.throws(() => new IntervalLoop('reconcile', async () => {}, 0, silent), /Expected `intervalMs` to be a finite number > 0, got `0`/);
});
