// Moves the wall clock of test processes with libfaketime (Debian package `faketime`), for
// scripts/run-tests.mjs --clock=<shift>. LD_PRELOAD and FAKETIME are inherited by every process
// node --test starts, so each test file sees the shifted `Date.now()` and `new Date()`.
// CLOCK_MONOTONIC is left alone (FAKETIME_DONT_FAKE_MONOTONIC=1): node's timers, setTimeout,
// performance.now() and the runner's own timeouts keep real time.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A libfaketime relative offset in milliseconds, or undefined when the text is not one.
 * @example shiftMs('+400d') // 34_560_000_000
 */
export function shiftMs(shift) {
  const match = /^([+-])(\d+)([smhd])$/.exec(shift);
  if (!match) return undefined;
  return (match[1] === '-' ? -1 : 1) * Number(match[2]) * UNIT_MS[match[3]];
}

/** The path of libfaketime.so.1: `FAKETIME_LIB`, else where Debian and `make install` put it. */
export function findLibfaketime() {
  if (process.env.FAKETIME_LIB) return existsSync(process.env.FAKETIME_LIB) ? process.env.FAKETIME_LIB : null;
  const dirs = ['/usr/lib/faketime', '/usr/local/lib/faketime'];
  // Debian: /usr/lib/<multiarch triplet>/faketime/.
  if (existsSync('/usr/lib')) for (const entry of readdirSync('/usr/lib')) if (entry.includes('-linux-')) dirs.push(join('/usr/lib', entry, 'faketime'));
  return dirs.map((dir) => join(dir, 'libfaketime.so.1')).find((path) => existsSync(path)) ?? null;
}

/** The environment that shifts a process's wall clock by `shift` (e.g. `+400d`), timers untouched. */
export function shiftedEnv(lib, shift) {
  const preload = process.env.LD_PRELOAD ? `${lib} ${process.env.LD_PRELOAD}` : lib;
  return { LD_PRELOAD: preload, FAKETIME: shift, FAKETIME_DONT_FAKE_MONOTONIC: '1', TEST_CLOCK_SHIFT: shift };
}

/**
 * Proves the shift takes in node here: a child node with the shifted environment reports its
 * `Date.now()` and whether a 50 ms timer fires in real time. Returns a reason when it does not.
 */
export function checkShift(lib, shift) {
  const expected = shiftMs(shift);
  if (expected === undefined) return `\`${shift}\` is not a shift such as +400d or -400d`;
  const probe = 'const wall = Date.now(); const t = performance.now(); setTimeout(() => process.stdout.write(JSON.stringify({ wall, timerMs: performance.now() - t })), 50);';
  const before = Date.now();
  const run = spawnSync(process.execPath, ['-e', probe], { env: { ...process.env, ...shiftedEnv(lib, shift) }, encoding: 'utf8', timeout: 10_000 });
  const after = Date.now();
  if (run.status !== 0) return `node with libfaketime (${lib}) failed: ${run.error?.message ?? run.stderr.trim()}`;
  let answer;
  try {
    answer = JSON.parse(run.stdout);
  } catch {
    return `node with libfaketime printed ${JSON.stringify(run.stdout)}`;
  }
  const moved = answer.wall - (before + after) / 2;
  if (Math.abs(moved - expected) > Math.max(60_000, after - before)) {
    return `libfaketime (${lib}) did not move Date.now() by ${shift}: it moved by ${Math.round(moved / 1000)} s`;
  }
  if (answer.timerMs < 45 || answer.timerMs > 5000) return `under libfaketime a 50 ms timer fired after ${Math.round(answer.timerMs)} ms`;
  return null;
}
