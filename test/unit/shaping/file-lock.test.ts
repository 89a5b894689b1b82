import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';

import { execa, type ResultPromise } from 'execa';

import { FileLocks, LockError } from '../../../src/shaping/file-lock.js';
import { interfaceLockKey, KeyedMutex } from '../../../src/shaping/lock.js';
import { waitFor } from '../../support/lab.js';

const HOLDER = join(import.meta.dirname, '..', '..', 'support', 'lock-holder.ts');

/** A fresh lock directory and log for one test, removed when it ends. */
function scratch(t: TestContext): { dir: string; log: string } {
  const root = mkdtempSync(join(tmpdir(), 'pbw-lock-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return { dir: join(root, 'locks'), log: join(root, 'log') };
}

type Holder = ResultPromise<{ stdin: 'pipe'; stdout: 'pipe'; stderr: 'pipe'; timeout: number }> & {
  /** The next line it prints (read from the start: a line printed before anyone asks is kept). */
  nextLine(): Promise<string>;
};

/** Starts `test/support/lock-holder.ts` in its own node process; killed by its PID when the test ends. */
function holder(t: TestContext, dir: string, args: string[]): Holder {
  const child = execa(process.execPath, ['--import', 'tsx', HOLDER, ...args], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    timeout: 120_000,
    env: { PANEL_BANDWIDTH_LOCK_DIR: dir },
  });
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await child.catch(() => undefined);
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return Object.assign(child, {
    nextLine: async () => {
      const { value, done } = await lines.next();
      if (done) throw new Error(`lock-holder ${child.pid} ended without printing a line`);
      return value;
    },
  });
}

/** Processes the kernel has blocked in flock(2) on `path` (`->` lines of /proc/locks). */
function flockWaiters(path: string): number {
  const inode = statSync(path).ino;
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((line) => / -> FLOCK /.test(line) && line.split(/\s+/).some((field) => field.endsWith(`:${inode}`))).length;
}

const entries = (log: string) =>
  readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [what, pid, at] = line.split(' ');
      return { what, pid: Number(pid), at: Number(at) };
    });

test('a second process waits for the interface until the first one is done with it', { timeout: 120_000 }, async (t) => {
  const { dir, log } = scratch(t);
  const first = holder(t, dir, ['hold', 'wg0', log]);
  assert.equal(await first.nextLine(), 'held');
  const second = holder(t, dir, ['hold', 'wg0', log]);
  // The kernel itself says the second process is blocked on the lock file, not merely slow to start.
  const file = join(dir, `${encodeURIComponent(interfaceLockKey('wg0'))}.lock`);
  await waitFor('the second process to block on the lock file', async () => flockWaiters(file) === 1, 60_000);
  assert.deepEqual(entries(log).map((e) => [e.what, e.pid]), [['start', first.pid]], 'the second has not started');

  first.stdin.write('done\n');
  await first;
  assert.equal(await second.nextLine(), 'held');
  second.stdin.write('done\n');
  await second;

  const seen = entries(log);
  assert.deepEqual(seen.map((e) => [e.what, e.pid]), [['start', first.pid], ['end', first.pid], ['start', second.pid], ['end', second.pid]]);
  assert.ok(seen[2]!.at >= seen[1]!.at, 'the second started after the first ended');
});

test('a holder that is killed releases the lock: the waiting process gets it', { timeout: 120_000 }, async (t) => {
  const { dir, log } = scratch(t);
  const first = holder(t, dir, ['hold', 'wg0', log]);
  assert.equal(await first.nextLine(), 'held');
  const second = holder(t, dir, ['hold', 'wg0', log]);
  const file = join(dir, `${encodeURIComponent(interfaceLockKey('wg0'))}.lock`);
  await waitFor('the second process to block on the lock file', async () => flockWaiters(file) === 1, 60_000);

  first.kill('SIGKILL');
  await assert.rejects(first, { signal: 'SIGKILL' });
  assert.equal(await second.nextLine(), 'held', 'the kernel dropped the dead holder’s lock');
  second.stdin.write('done\n');
  await second;
  assert.deepEqual(entries(log).map((e) => [e.what, e.pid]), [['start', first.pid], ['start', second.pid], ['end', second.pid]]);
});

test('two processes incrementing one file under the lock lose no update and never overlap', { timeout: 180_000 }, async (t) => {
  const { dir, log } = scratch(t);
  const counter = join(dirname(log), 'counter');
  writeFileSync(counter, '0');
  const rounds = 40;
  const a = holder(t, dir, ['count', 'wg0', log, counter, String(rounds)]);
  const b = holder(t, dir, ['count', 'wg0', log, counter, String(rounds)]);
  await Promise.all([a, b]);
  assert.equal(readFileSync(counter, 'utf8'), String(2 * rounds));
  const seen = entries(log);
  for (let i = 0; i < seen.length; i += 2) {
    assert.deepEqual([seen[i]!.what, seen[i + 1]!.what, seen[i + 1]!.pid], ['start', 'end', seen[i]!.pid], `critical sections interleaved at line ${i + 1}`);
  }
  assert.deepEqual(new Set(seen.map((e) => e.pid)), new Set([a.pid, b.pid]));
});

test('within one process: mutexes take turns on a file, and a nested lock of the same interface does not wait for itself', async (t) => {
  const { dir } = scratch(t);
  const files = new FileLocks({ directory: dir });
  const applier = new KeyedMutex({ fileLocks: files });
  const engine = new KeyedMutex({ fileLocks: files });
  const events: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const outer = applier.run(interfaceLockKey('wg0'), async () => {
    events.push('applier start');
    // What the applier does: the engine's own lock on the same interface, inside the applier's.
    await engine.run(interfaceLockKey('wg0'), async () => events.push('nested'));
    await gate;
    events.push('applier end');
  });
  const other = engine.run(interfaceLockKey('wg0'), async () => events.push('engine'));
  const elsewhere = engine.run(interfaceLockKey('wg1'), async () => events.push('wg1'));
  await elsewhere;
  await waitFor('the nested lock to run', async () => events.includes('nested'));
  release();
  await Promise.all([outer, other]);
  assert.deepEqual(events.filter((e) => e !== 'wg1'), ['applier start', 'nested', 'applier end', 'engine']);
});

test('the lock directory is created with mode 0700; one that cannot be used is a clear error', async (t) => {
  const { dir } = scratch(t);
  const files = new FileLocks({ directory: dir });
  const lock = await files.acquire('/wg0');
  try {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.match(readFileSync(lock.path, 'utf8'), new RegExp(`^pid ${process.pid} since `), 'the file names its holder');
  } finally {
    await lock.release();
  }
  const blocked = join(dir, 'a-file');
  writeFileSync(blocked, '');
  await assert.rejects(new FileLocks({ directory: join(blocked, 'locks') }).acquire('/wg0'), (error: unknown) => {
    assert.ok(error instanceof LockError);
    assert.match(error.message, /^cannot use the lock directory .*a-file\/locks: ENOTDIR/);
    return true;
  });
  assert.throws(() => new FileLocks({ directory: 'relative/locks' }), /Expected `directory` to be an absolute path, got `relative\/locks`/);
});

test('a wait that outlasts `waitMs` names the holder', { timeout: 120_000 }, async (t) => {
  const { dir, log } = scratch(t);
  const first = holder(t, dir, ['hold', 'wg0', log]);
  assert.equal(await first.nextLine(), 'held');
  await assert.rejects(new FileLocks({ directory: dir, waitMs: 200 }).acquire(interfaceLockKey('wg0')), (error: unknown) => {
    assert.ok(error instanceof LockError);
    assert.match(error.message, new RegExp(`^another process holds .*%2Fwg0\\.lock \\(pid ${first.pid} since [^)]+\\); gave up after waiting 0\\.2 s$`));
    return true;
  });
  first.stdin.write('done\n');
  await first;
});
