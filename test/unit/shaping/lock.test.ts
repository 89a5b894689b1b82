import assert from 'node:assert/strict';
import { test } from 'node:test';

import { interfaceLockKey, KeyedMutex } from '../../../src/shaping/lock.js';

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('changes to the same interface run one after another, in call order', async () => {
  const mutex = new KeyedMutex();
  const events: string[] = [];
  const job = (name: string, ms: number) => async () => {
    events.push(`start ${name}`);
    await tick(ms);
    events.push(`end ${name}`);
    return name;
  };
  const results = await Promise.all([mutex.run('wg0', job('a', 20)), mutex.run('wg0', job('b', 1)), mutex.run('wg0', job('c', 1))]);
  assert.deepEqual(results, ['a', 'b', 'c']);
  assert.deepEqual(events, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  assert.equal(mutex.size, 0, 'keys are forgotten when idle');
});

test('different interfaces do not wait for each other; a failure does not block the queue', async () => {
  const mutex = new KeyedMutex();
  const events: string[] = [];
  const slow = mutex.run('wg0', async () => {
    await tick(30);
    events.push('wg0');
  });
  await mutex.run('wg1', async () => {
    events.push('wg1');
  });
  await slow;
  assert.deepEqual(events, ['wg1', 'wg0']);
  await assert.rejects(mutex.run('wg0', async () => Promise.reject(new Error('tc failed'))), /tc failed/);
  assert.equal(await mutex.run('wg0', async () => 'next'), 'next');
});

test('the key includes the namespace', () => {
  assert.notEqual(interfaceLockKey('wg0', 'a'), interfaceLockKey('wg0', 'b'));
  assert.notEqual(interfaceLockKey('wg0'), interfaceLockKey('wg0', 'a'));
});
