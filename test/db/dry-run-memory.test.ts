// clock layer: not rerun (a thousand reconciles for a heap reading; nothing in it reads the date).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { saveLimit } from '../../src/db/limits.js';
import { LimitApplier } from '../../src/limits/applier.js';
import { chooseExecutor } from '../../src/limits/executor-choice.js';
import { LimitsService } from '../../src/limits/service.js';
import { ENGINES, openMigrated } from '../support/databases.js';

// A full collection before each reading, so heapUsed is what is still reachable, not garbage.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

const PEERS = 260;
const RECONCILES = 1_000;
const MB = 1024 * 1024;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test(`${RECONCILES} dry-run reconciles of ${PEERS} capped peers keep the heap flat`, { timeout: 600_000 }, async (t) => {
  const knex = await openMigrated(t, ENGINES.find((engine) => engine.id === 'sqlite')!);
  if (!knex) return;
  for (let i = 0; i < PEERS; i++) {
    await saveLimit(knex, {
      subjectType: 'peer', subjectId: String(i + 1), name: `peer-${i + 1}`, networkId: '1', interface: 'wg-mem0', netns: null,
      interfaceKind: 'wireguard', addresses: [`10.9.${Math.floor(i / 200)}.${(i % 200) + 2}/32`], upKbps: 1_000 + i, downKbps: 5_000 + i,
    });
  }
  // The executor the plugin builds for a dry run: the kernel never changes, so every reconcile
  // plans (and records) the full tree again.
  const choice = chooseExecutor('recording');
  const applier = new LimitApplier({
    db: knex, executor: choice.executor, mode: choice.mode, reason: choice.reason, capabilities: async () => ({ leaf: 'fq_codel' }), logger: quiet,
  });
  const service = new LimitsService(knex, applier, quiet);

  const reconcile = async () => {
    const [outcome] = await service.reconcileAll('test');
    return outcome;
  };
  const first = await reconcile();
  assert.equal(first?.status, "pending", `a dry run leaves the caps pending: ${first?.error}`);
  assert.ok((first?.operations.length ?? 0) > 4 * PEERS, `the dry run planned the whole tree (${first?.operations.length} operations)`);
  for (let i = 0; i < 20; i++) await reconcile(); // warm up: JIT, statement caches, pools
  const before = heapAfterGc();
  for (let i = 0; i < RECONCILES; i++) await reconcile();
  const after = heapAfterGc();
  const growth = (after - before) / MB;
  t.diagnostic(`heapUsed ${(before / MB).toFixed(1)} MB -> ${(after / MB).toFixed(1)} MB after ${RECONCILES} reconciles (${growth.toFixed(2)} MB)`);
  assert.ok(growth < 4, `heap grew ${growth.toFixed(1)} MB over ${RECONCILES} dry-run reconciles`);
});
