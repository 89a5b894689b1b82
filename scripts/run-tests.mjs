#!/usr/bin/env node
// Runs the test layers one after another (node --test through tsx) and prints one closing line.
// Usage: node scripts/run-tests.mjs [option ...] [layer ...]   (default: every layer)
//
// The `clock` layer runs the unit, db and http layers twice more, with the wall clock moved by
// +400 days and by -400 days, so a test or a code path that depends on today's date fails today
// instead of on the day it ages out. The two shifted runs go side by side, one test file at a
// time each, with their own MariaDB/PostgreSQL databases (`test_plus400d_<pid>`, …, dropped at
// the end) and lock directory, at nice 10, beside the layers after it (kernel, browser: they
// wait on traffic and timers more than on the CPU, and win it when both want it); at the end
// each prints its summary, and its whole output when it failed. The clock is moved
// with libfaketime (Debian package `faketime`): LD_PRELOAD=libfaketime.so.1, FAKETIME=+400d,
// FAKETIME_DONT_FAKE_MONOTONIC=1 on the test processes, so `Date.now()` and `new Date()` move and
// timers keep real time. Before running, a probe checks that the shift really moves `Date.now()`
// in node. Without libfaketime the layer skips with a reason; under CI=true it fails, and so does
// any failing shifted run.
//
// Options (the `clock` layer uses them for its runs; handy alone to reproduce one):
//   --clock=<shift>    run the given layers with the wall clock moved by <shift> (+400d, -400d, -3h …)
//   --own-databases    create this run's own MariaDB/PostgreSQL databases and drop them at the end
//                      (the default whenever the db layer runs; --shared-databases uses TEST_*_URL as given)
//   --jobs=<n>         test files run at once in a non-serial layer (default 2)
//   --report=<file>    write this run's per-layer counts as JSON (used by the `clock` layer)
// Example: node scripts/run-tests.mjs --clock=-400d --own-databases db
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkShift, findLibfaketime, shiftedEnv } from './clock-shift.mjs';
import { createRunDatabases } from './run-databases.mjs';

/** Layers in order; `serial` layers share servers or kernel names, so their files run one at a time. */
const LAYERS = [
  { name: 'unit', serial: false },
  { name: 'db', serial: true },
  { name: 'http', serial: false },
  { name: 'clock', serial: false, shifted: ['unit', 'db', 'http'] },
  { name: 'kernel', serial: true },
  { name: 'browser', serial: true },
];

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return testFiles(path);
      return entry.endsWith('.test.ts') ? [path] : [];
    })
    .sort();
}

/** The two shifts of the `clock` layer: far enough that every fixed date in a test ages out of any retention or range. */
const CLOCK_SHIFTS = ['+400d', '-400d'];
const inCI = process.env.CI === 'true' || process.env.CI === '1';

const argv = process.argv.slice(2);
const option = (name) => argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
const badOptions = argv.filter((arg) => arg.startsWith('--') && !/^--(clock|jobs|report)=.|^--(own|shared)-databases$/.test(arg));
const wanted = argv.filter((arg) => !arg.startsWith('--'));
const unknown = wanted.filter((name) => !LAYERS.some((layer) => layer.name === name));
if (unknown.length > 0 || badOptions.length > 0) {
  console.error(`Unknown test layer(s) or option(s): ${[...unknown, ...badOptions].join(', ')}. Known layers: ${LAYERS.map((l) => l.name).join(', ')}`);
  process.exit(2);
}
const clockShift = option('clock');
const jobs = Number(option('jobs') ?? 2);
if (!Number.isInteger(jobs) || jobs < 1) {
  console.error(`Expected --jobs to be an integer >= 1, got \`${option('jobs')}\``);
  process.exit(2);
}
const layers = wanted.length > 0 ? LAYERS.filter((layer) => wanted.includes(layer.name)) : LAYERS;
if (clockShift !== undefined && layers.some((layer) => layer.shifted)) {
  console.error('The clock layer cannot run inside a --clock run');
  process.exit(2);
}
const scratch = mkdtempSync(join(tmpdir(), 'pbw-test-'));
const total = { passed: 0, failed: 0, skipped: 0 };
const perLayer = [];
let exitCode = 0;

/** Environment every layer's test processes get: the shifted clock and this run's databases. */
const layerEnv = {};
if (clockShift !== undefined) {
  const lib = findLibfaketime();
  const problem = lib ? checkShift(lib, clockShift) : 'libfaketime.so.1 not found (Debian package `faketime`, or set FAKETIME_LIB)';
  if (problem) {
    console.error(`--clock=${clockShift}: ${problem}`);
    process.exit(1);
  }
  Object.assign(layerEnv, shiftedEnv(lib, clockShift));
  console.log(`wall clock of the test processes moved by ${clockShift} (${lib})`);
}
let runDatabases;
// Every run gets its own databases, so runs at the same time (two checkouts, a bench) never drop each other's tables.
if (!argv.includes('--shared-databases') && layers.some((layer) => layer.name === 'db')) {
  const tag = `${(clockShift ?? 'now').replace('+', 'plus').replace('-', 'minus').replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${process.pid}`;
  runDatabases = await createRunDatabases(tag);
  Object.assign(layerEnv, runDatabases.env);
  if (runDatabases.names.length > 0) console.log(`databases of this run: ${runDatabases.names.join(', ')}`);
}

/**
 * Starts the `clock` layer: this script again, once per shift, side by side, each on its own
 * databases and lock directory, one test file at a time, at a lower CPU priority (nice 10), so it
 * can go on beside the layers after it (kernel, browser) and take only the CPU they leave idle.
 * Their output is kept in files. Returns the function that waits for the runs and reports them.
 */
function startClockLayer(layer) {
  console.log(`\n=== clock layer (${layer.shifted.join(', ')} with the wall clock moved by ${CLOCK_SHIFTS.join(' and ')}; goes on beside the next layers, reported at the end) ===`);
  const lib = findLibfaketime();
  if (!lib) {
    const reason = 'libfaketime.so.1 not found (Debian package `faketime`, or set FAKETIME_LIB)';
    if (inCI) {
      console.error(`clock layer required in CI but unavailable: ${reason}`);
      perLayer.push(`clock: failed (${reason})`);
      total.failed++;
      exitCode = 1;
    } else {
      console.log(`clock layer skipped: ${reason}`);
      perLayer.push(`clock: skipped (${reason})`);
    }
    return async () => {};
  }
  const started = Date.now();
  const running = Promise.all(CLOCK_SHIFTS.map((shift) => new Promise((resolve) => {
    const log = join(scratch, `clock${shift}.log`);
    const report = join(scratch, `clock${shift}.json`);
    const out = openSync(log, 'w');
    const runner = [process.execPath, process.argv[1], `--clock=${shift}`, '--own-databases', '--jobs=1', `--report=${report}`, ...layer.shifted];
    const child = spawn('nice', ['-n', '10', ...runner], {
      stdio: ['ignore', out, out],
      // Lock files of their own: the kernel layer's reconciles never wait for theirs, nor they for each other's.
      env: { ...process.env, PANEL_BANDWIDTH_LOCK_DIR: join(scratch, `locks${shift}`) },
    });
    child.on('error', (error) => writeFileSync(log, `could not start the ${shift} run: ${error.message}\n`, { flag: 'a' }));
    child.on('close', (status, signal) => {
      closeSync(out);
      resolve({ shift, status, signal, log, report, seconds: Math.round((Date.now() - started) / 1000) });
    });
  })));
  return async () => reportClockRuns(await running);
}

function reportClockRuns(runs) {
  for (const run of runs) {
    const output = readFileSync(run.log, 'utf8');
    const report = existsSync(run.report) ? JSON.parse(readFileSync(run.report, 'utf8')) : null;
    const passed = run.status === 0 && report !== null;
    console.log(`\n--- clock ${run.shift}: ${passed ? 'passed' : 'FAILED'} in ${run.seconds} s ---`);
    // A passing run shows its summary; a failing one everything it printed.
    console.log(passed ? output.slice(output.lastIndexOf('=== summary ===')).trimEnd() : output.trimEnd());
    const counts = report?.total ?? { passed: 0, failed: 1, skipped: 0 };
    if (!passed && counts.failed === 0) counts.failed = 1;
    for (const key of Object.keys(total)) total[key] += counts[key];
    perLayer.push(...(report?.perLayer ?? [`(no report${run.signal ? `, killed by ${run.signal}` : ''})`]).map((line) => `clock ${run.shift} ${line}`));
    if (!passed) exitCode = 1;
  }
}

/** Waits for the clock layer's runs and reports them, once the layers after it are done. */
let finishClockLayer = async () => {};
for (const layer of layers) {
  if (layer.shifted) {
    finishClockLayer = startClockLayer(layer);
    continue;
  }
  // A shifted run leaves out the files that say, in their first lines, `clock layer: not rerun`
  // with the reason (a minutes-long load test that reads no date): they run once, unshifted.
  const files = testFiles(join('test', layer.name)).filter((file) => !clockShift || !readFileSync(file, 'utf8').slice(0, 600).includes('clock layer: not rerun'));
  if (files.length === 0) {
    perLayer.push(`${layer.name}: no tests`);
    continue;
  }
  const summaryFile = join(scratch, `${layer.name}.json`);
  console.log(`\n=== ${layer.name} layer (${files.length} file${files.length === 1 ? '' : 's'}${clockShift ? `, clock ${clockShift}` : ''}) ===`);
  const args = [
    '--import', 'tsx',
    '--test',
    `--test-concurrency=${layer.serial ? 1 : jobs}`,
    // A hung test fails after 3 minutes (8 in the kernel layer, whose model-based test runs its
    // 300 steps for up to 7) instead of holding CI until its own limit.
    `--test-timeout=${layer.name === 'kernel' ? 480_000 : 180_000}`,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=./scripts/summary-reporter.mjs', `--test-reporter-destination=${summaryFile}`,
    ...files,
  ];
  // A layer whose process never exits (a handle left open) is killed after 20 minutes.
  const run = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, ...layerEnv, TEST_LAYER: layer.name }, timeout: 20 * 60_000, killSignal: 'SIGKILL' });
  if (run.error || run.signal) console.error(`${layer.name} layer did not finish: ${run.error?.message ?? `killed by ${run.signal}`}`);
  const counts = existsSync(summaryFile)
    ? JSON.parse(readFileSync(summaryFile, 'utf8').trim() || '{"passed":0,"failed":0,"skipped":0}')
    : { passed: 0, failed: 0, skipped: 0 };
  if (run.status !== 0 && counts.failed === 0) counts.failed = 1; // the runner itself failed (crash, load error)
  for (const key of Object.keys(total)) total[key] += counts[key];
  perLayer.push(`${layer.name}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  if (run.status !== 0) exitCode = 1;
}

await finishClockLayer();
await runDatabases?.drop();
const report = option('report');
if (report) writeFileSync(report, JSON.stringify({ total, perLayer }));
console.log('\n=== summary ===');
for (const line of perLayer) console.log(line);
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(exitCode);
