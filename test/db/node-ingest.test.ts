/**
 * Exactly-once ingestion of nodes' ledgers (src/nodes/panel/ingest.ts) on every engine, with two
 * panel processes on one database (two knex pools): pages replayed, late, overlapping, raced, a
 * replaced agent state (a new ledger) — the usage tables end with every entry once, and the cursor
 * at the head. Model-based: fast-check draws the schedules; the seed is printed and `PBW_SEED`
 * replays it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Knex } from 'knex';

import { connect } from '../../src/db/connect.js';
import { AgentCore } from '../../src/nodes/agent/core.js';
import { LocalLink } from '../../src/nodes/link.js';
import { ingestNode, ingestPage, readCursor } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry, LedgerPage } from '../../src/nodes/protocol.js';
import { dryRunExecutor } from '../../src/limits/executor-choice.js';
import { ENGINES, openMigrated } from '../support/databases.js';

const T0 = Date.UTC(2026, 4, 10, 23, 30, 0);
const MINUTE = 60_000;

/** A ledger of `count` entries over a few subjects, one minute apart, crossing an hour and a day. */
function ledgerOf(count: number, salt: number): LedgerEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    seq: i + 1,
    subjectType: i % 3 === 2 ? 'vm' : 'peer',
    subjectId: String(1 + (i % 3)),
    source: i % 3 === 2 ? 'sysfs' : 'wireguard',
    interface: i % 3 === 2 ? 'tap1' : 'wg0',
    periodStart: T0 + i * MINUTE - MINUTE,
    periodEnd: T0 + i * MINUTE,
    upBytes: String(1000 * (i + 1) + salt),
    downBytes: String(7 * (i + 1) + salt),
  }));
}

const pageOf = (ledgerId: string, ledger: LedgerEntry[], after: number, limit: number): LedgerPage => ({
  node: 'hv1', ledgerId, head: ledger.length, oldest: ledger.length > 0 ? 1 : null, entries: ledger.filter((e) => e.seq > after).slice(0, limit),
});

async function totals(db: Knex, node: string) {
  const rows = (await db('bw_usage').where({ node }).select('subject_type', 'subject_id').sum({ up: 'up_bytes', down: 'down_bytes' }).groupBy('subject_type', 'subject_id').orderBy(['subject_type', 'subject_id'])) as Record<string, unknown>[];
  return rows.map((row) => [row.subject_type, String(row.subject_id), BigInt(String(row.up)), BigInt(String(row.down))]);
}

function expected(ledgers: LedgerEntry[][]) {
  const sums = new Map<string, [string, string, bigint, bigint]>();
  for (const entry of ledgers.flat()) {
    const key = `${entry.subjectType}\u0000${entry.subjectId}`;
    const sum = sums.get(key) ?? [entry.subjectType, entry.subjectId, 0n, 0n];
    sum[2] += BigInt(entry.upBytes);
    sum[3] += BigInt(entry.downBytes);
    sums.set(key, sum);
  }
  return [...sums.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, sum]) => sum);
}

for (const engine of ENGINES) {
  describe(`node ledgers on ${engine.id}`, () => {
    test('two panels ingesting replayed, late, overlapping and raced pages write every entry once; a new ledger counts from its start', { timeout: 240_000 }, async (t) => {
      const a = await openMigrated(t, engine);
      if (!a) return;
      // The second panel process: its own pool on the same database.
      const url = (a.client as { config: { connection: unknown } }).config.connection;
      const b = connect(typeof url === 'object' && url !== null && 'filename' in url ? `sqlite:${String((url as { filename: string }).filename)}` : engine.url());
      t.after(() => b.destroy());
      const seed = Number(process.env.PBW_SEED ?? Date.now() % 1_000_000);
      t.diagnostic(`seed ${seed} (PBW_SEED=${seed} replays this run)`);
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 0, max: 30 }),
          fc.array(fc.record({ panel: fc.boolean(), after: fc.nat({ max: 45 }), limit: fc.integer({ min: 1, max: 12 }), second: fc.boolean() }), { minLength: 1, maxLength: 25 }),
          async (firstCount, secondCount, schedule) => {
            run++;
            const node = `hv${run}`;
            const first = ledgerOf(firstCount, run);
            const second = ledgerOf(secondCount, run + 1000);
            const ids = [`ledger-a-${run}`, `ledger-b-${run}`];
            // Random pages (any cursor a panel may have held, replays included), raced in pairs.
            for (let i = 0; i < schedule.length; i += 2) {
              await Promise.all(schedule.slice(i, i + 2).map((step) => {
                const ledger = step.second ? second : first;
                const page = { ...pageOf(step.second ? ids[1]! : ids[0]!, ledger, step.after, step.limit), node };
                return ingestPage(step.panel ? a : b, node, page);
              }));
            }
            // Then both panels catch up from their cursors, at the same time.
            for (const [index, ledger] of [first, second].entries()) {
              const ledgerId = ids[index]!;
              await Promise.all([a, b].map(async (db) => {
                for (;;) {
                  const after = await readCursor(db, node, ledgerId);
                  if (after >= ledger.length) return;
                  await ingestPage(db, node, { ...pageOf(ledgerId, ledger, after, 7), node });
                }
              }));
              assert.equal(await readCursor(a, node, ledgerId), ledger.length);
            }
            // Both ledgers end their deltas at the same times: the second's add to the first's rows.
            assert.deepEqual(await totals(a, node), expected([first, second]));
          },
        ),
        { seed, numRuns: engine.id === 'sqlite' ? 40 : 15 },
      );
      // Roll-ups of every run: each run's entries once, whatever the schedule (summed over all runs' nodes).
      const [raw] = await a('bw_usage').sum({ up: 'up_bytes', down: 'down_bytes' });
      const [daily] = await a('bw_usage_daily').sum({ up: 'up_bytes', down: 'down_bytes' });
      const [hourly] = await a('bw_usage_hourly').sum({ up: 'up_bytes', down: 'down_bytes' });
      assert.deepEqual([String(daily?.up), String(daily?.down)], [String(raw?.up), String(raw?.down)]);
      assert.deepEqual([String(hourly?.up), String(hourly?.down)], [String(raw?.up), String(raw?.down)]);
    });

    test('regression (found by the model test): a page that starts beyond the cursor writes nothing, instead of leaving a hole behind it', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const ledger = ledgerOf(3, 1);
      const ahead = await ingestPage(db, 'hv1', { ...pageOf('L', ledger, 1, 5), node: 'hv1' });
      assert.deepEqual([ahead.written, ahead.cursor], [0, 0]);
      const inOrder = await ingestPage(db, 'hv1', { ...pageOf('L', ledger, 0, 5), node: 'hv1' });
      assert.deepEqual([inOrder.written, inOrder.cursor], [3, 3]);
      assert.deepEqual(await totals(db, 'hv1'), expected([ledger]));
      // Below the agent's oldest entry nothing is left to wait for: the run starts there.
      const pruned = ledgerOf(6, 2);
      const page = { node: 'hv2', ledgerId: 'M', head: 6, oldest: 4, entries: pruned.slice(3) };
      assert.deepEqual((await ingestPage(db, 'hv2', page)).cursor, 6);
    });

    test('regression (found by the model test): two ledgers of one node ending deltas in the same millisecond add up, instead of failing the page forever', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const first = ledgerOf(2, 1);
      const second = ledgerOf(2, 2);
      await ingestPage(db, 'local', { ...pageOf('machine-a', first, 0, 5), node: 'local' });
      const written = await ingestPage(db, 'local', { ...pageOf('machine-b', second, 0, 5), node: 'local' });
      assert.equal(written.written, 2);
      assert.deepEqual(await totals(db, 'local'), expected([first, second]));
    });

    test('regression (found by the quota model test): two deltas of one series ending in the same millisecond within one page add up (PostgreSQL refused the page)', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const [one] = ledgerOf(1, 3);
      const twin = { ...one!, seq: 2, upBytes: '7', downBytes: '9' };
      const written = await ingestPage(db, 'hv1', { node: 'hv1', ledgerId: 'twins', head: 2, oldest: 1, entries: [one!, twin] });
      assert.equal(written.written, 2);
      assert.deepEqual(await totals(db, 'hv1'), expected([[one!, twin]]));
      const [row] = await db('bw_usage').where({ node: 'hv1' }).count({ n: '*' });
      assert.equal(Number(row?.n), 1, 'one row holds both');
    });

    test('a real agent core’s ledger, pulled by two panels at once through its link, lands once', { timeout: 60_000 }, async (t) => {
      const a = await openMigrated(t, engine);
      if (!a) return;
      const url = (a.client as { config: { connection: unknown } }).config.connection;
      const b = connect(typeof url === 'object' && url !== null && 'filename' in url ? `sqlite:${String((url as { filename: string }).filename)}` : engine.url());
      t.after(() => b.destroy());
      const silent = { debug() {}, info() {}, warn() {}, error() {} };
      const core = await AgentCore.open({ node: 'hv-real', statePath: ':memory:', executor: dryRunExecutor(null), mode: 'recording', logger: silent });
      t.after(() => core.close());
      const ledger = ledgerOf(130, 5);
      await core.db('bw_usage').insert(ledger.map((e) => ({
        subject_type: e.subjectType, subject_id: e.subjectId, node: 'local', source: e.source, interface: e.interface,
        period_start: e.periodStart, period_end: e.periodEnd, up_bytes: e.upBytes, down_bytes: e.downBytes,
      })));
      const link = new LocalLink(core);
      const results = await Promise.all([ingestNode(a, link, { pageSize: 16 }), ingestNode(b, link, { pageSize: 9 }), ingestNode(a, link, { pageSize: 50 })]);
      assert.equal(results.reduce((sum, r) => sum + r.written, 0), 130, 'the three pulls wrote 130 entries between them');
      assert.deepEqual(await totals(a, 'hv-real'), expected([ledger]));
      assert.equal(await readCursor(b, 'hv-real', core.ledgerId), 130);
      // Retention on the node deleted old entries: nothing repeats, the head stays.
      await core.db('bw_usage').where('id', '<=', 100).delete();
      assert.equal((await ingestNode(b, link)).written, 0);
      assert.equal(await core.ledgerHead(), 130);
    });
  });
}
