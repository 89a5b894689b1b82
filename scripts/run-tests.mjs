#!/usr/bin/env node
// Runs the test layers one after another (node --test through tsx) and prints one closing line.
// Usage: node scripts/run-tests.mjs [layer ...]   (default: every layer)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Layers in order; `serial` layers share servers or kernel names, so their files run one at a time. */
const LAYERS = [
  { name: 'unit', serial: false },
  { name: 'db', serial: true },
  { name: 'http', serial: false },
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

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !LAYERS.some((layer) => layer.name === name));
if (unknown.length > 0) {
  console.error(`Unknown test layer(s): ${unknown.join(', ')}. Known: ${LAYERS.map((l) => l.name).join(', ')}`);
  process.exit(2);
}
const layers = wanted.length > 0 ? LAYERS.filter((layer) => wanted.includes(layer.name)) : LAYERS;
const scratch = mkdtempSync(join(tmpdir(), 'pbw-test-'));
const total = { passed: 0, failed: 0, skipped: 0 };
const perLayer = [];
let exitCode = 0;

for (const layer of layers) {
  const files = testFiles(join('test', layer.name));
  if (files.length === 0) {
    perLayer.push(`${layer.name}: no tests`);
    continue;
  }
  const summaryFile = join(scratch, `${layer.name}.json`);
  console.log(`\n=== ${layer.name} layer (${files.length} file${files.length === 1 ? '' : 's'}) ===`);
  const args = [
    '--import', 'tsx',
    '--test',
    `--test-concurrency=${layer.serial ? 1 : 2}`,
    // A hung test fails after 3 minutes instead of holding CI until its own limit.
    '--test-timeout=180000',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=./scripts/summary-reporter.mjs', `--test-reporter-destination=${summaryFile}`,
    ...files,
  ];
  // A layer whose process never exits (a handle left open) is killed after 20 minutes.
  const run = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, TEST_LAYER: layer.name }, timeout: 20 * 60_000, killSignal: 'SIGKILL' });
  if (run.error || run.signal) console.error(`${layer.name} layer did not finish: ${run.error?.message ?? `killed by ${run.signal}`}`);
  const counts = existsSync(summaryFile)
    ? JSON.parse(readFileSync(summaryFile, 'utf8').trim() || '{"passed":0,"failed":0,"skipped":0}')
    : { passed: 0, failed: 0, skipped: 0 };
  if (run.status !== 0 && counts.failed === 0) counts.failed = 1; // the runner itself failed (crash, load error)
  for (const key of Object.keys(total)) total[key] += counts[key];
  perLayer.push(`${layer.name}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  if (run.status !== 0) exitCode = 1;
}

console.log('\n=== summary ===');
for (const line of perLayer) console.log(line);
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(exitCode);
