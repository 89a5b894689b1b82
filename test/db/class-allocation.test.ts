/**
 * Issue 12, item 1, db layer: writers that cap subjects on one interface at the same time — from
 * several pools, as several panel processes would — never get the same HTB class minor, and none
 * fails. Each engine runs on a database of its own (`pbw_alloc_<pid>_<engine>`).
 *
 * The model-based test prints its seed; replay with PBW_SEED=<seed> (PBW_RUNS=<n> for more runs).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Knex } from 'knex';

import { deleteLimit, getLimit, isLimited, saveLimit, toLimitRow, type LimitRow, type SubjectLimit } from '../../src/db/limits.js';
import { refreshLimits } from '../../src/db/resync-limits.js';
import { ENGINES } from '../support/databases.js';
import { openOwnMigrated } from '../support/own-database.js';

/** Pools writing at once: separate knex instances, like separate panel processes on one database. */
const POOLS = 3;
const CONCURRENT = 200;

function subject(id: number, caps: { up: number; down: number }, iface = 'wg0'): SubjectLimit {
  return {
    subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, networkId: '1', interface: iface, netns: null,
    interfaceKind: 'wireguard', addresses: [`10.8.${id >> 8}.${id & 255}/32`], publicKey: null, upKbps: caps.up, downKbps: caps.down,
  };
}

async function allRows(db: Knex): Promise<LimitRow[]> {
  return ((await db('bw_limits').orderBy('id')) as Record<string, unknown>[]).map(toLimitRow);
}

/** Minors given twice on one interface, as `node/interface:minor` (empty when none). */
function duplicateMinors(rows: LimitRow[]): string[] {
  const seen = new Set<string>();
  const twice: string[] = [];
  for (const row of rows) {
    if (row.classMinor === null) continue;
    const key = `${row.node}/${row.interface}:${row.classMinor}`;
    if (seen.has(key)) twice.push(key);
    seen.add(key);
  }
  return twice;
}

function seedFromEnv(): number {
  const text = process.env.PBW_SEED;
  if (text === undefined || text === '') return Math.floor(Math.random() * 2 ** 31);
  const seed = Number(text);
  if (!Number.isInteger(seed)) throw new TypeError(`Expected PBW_SEED to be an integer, got ${JSON.stringify(text)}`);
  return seed;
}

for (const engine of ENGINES) {
  describe(`class minors on ${engine.id}`, () => {
    test(`${CONCURRENT} concurrent first caps on one interface from ${POOLS} pools get ${CONCURRENT} different minors`, async (t) => {
      const pools = await openOwnMigrated(t, engine, 'alloc', POOLS);
      if (!pools) return;
      const results = await Promise.allSettled(
        Array.from({ length: CONCURRENT }, (_, i) => saveLimit(pools[i % POOLS]!, subject(i + 1, { up: 1000 + i, down: 5000 + i }))),
      );
      const failed = results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).message] : []));
      assert.deepEqual(failed, [], 'no writer failed');
      const rows = await allRows(pools[0]!);
      assert.equal(rows.length, CONCURRENT);
      assert.deepEqual(duplicateMinors(rows), []);
      // Lowest free first: with nothing freed, the minors are exactly 2..201.
      assert.deepEqual(rows.map((row) => row.classMinor).sort((a, b) => a! - b!), Array.from({ length: CONCURRENT }, (_, i) => i + 2));
      for (const row of rows) assert.deepEqual([row.upKbps, row.downKbps], [1000 + Number(row.subjectId) - 1, 5000 + Number(row.subjectId) - 1]);
    });

    test(`${CONCURRENT} concurrent updates capping unlimited subjects get different minors, next to new subjects on the interface`, async (t) => {
      const pools = await openOwnMigrated(t, engine, 'alloc', POOLS);
      if (!pools) return;
      for (let i = 1; i <= CONCURRENT; i += 1) await saveLimit(pools[0]!, subject(i, { up: 0, down: 0 }));
      assert.ok((await allRows(pools[0]!)).every((row) => row.classMinor === null), 'unlimited subjects hold no minor');
      // Half update existing subjects, half create new ones on the same interface, all at once.
      const results = await Promise.allSettled(
        Array.from({ length: CONCURRENT }, (_, i) => saveLimit(pools[i % POOLS]!, subject(i < CONCURRENT / 2 ? i + 1 : CONCURRENT + i, { up: 2000, down: 0 }))),
      );
      assert.deepEqual(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])), []);
      const rows = await allRows(pools[0]!);
      assert.equal(rows.filter((row) => isLimited(row)).length, CONCURRENT);
      assert.ok(rows.filter((row) => isLimited(row)).every((row) => row.classMinor !== null), 'every capped subject has a minor');
      assert.deepEqual(duplicateMinors(rows), []);
    });

    test('a resync moving capped subjects onto an interface while others are capped there gives no minor twice', async (t) => {
      const pools = await openOwnMigrated(t, engine, 'alloc', POOLS);
      if (!pools) return;
      for (let i = 1; i <= 60; i += 1) await saveLimit(pools[0]!, subject(i, { up: 1000, down: 1000 }, 'wg1'));
      const moving = await allRows(pools[0]!);
      const results = await Promise.allSettled([
        refreshLimits(pools[1]!, moving.map((row) => ({ row, subject: subject(Number(row.subjectId), { up: 1000, down: 1000 }, 'wg0') }))),
        ...Array.from({ length: 60 }, (_, i) => saveLimit(pools[i % 2 === 0 ? 0 : 2]!, subject(100 + i, { up: 3000, down: 0 }, 'wg0'))),
      ]);
      assert.deepEqual(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])), []);
      const rows = await allRows(pools[0]!);
      assert.deepEqual(rows.map((row) => row.interface).filter((iface) => iface !== 'wg0'), [], 'every subject is on wg0 now');
      assert.ok(rows.every((row) => row.classMinor !== null));
      assert.deepEqual(duplicateMinors(rows), []);
    });

    test('model-based: concurrent caps, clears, moves and deletes never give a minor twice and keep every typed cap', { timeout: 600_000 }, async (t) => {
      const pools = await openOwnMigrated(t, engine, 'alloc', POOLS);
      if (!pools) return;
      const seed = seedFromEnv();
      const numRuns = Number(process.env.PBW_RUNS ?? 6);
      t.diagnostic(`seed ${seed} (replay: PBW_SEED=${seed} node --import tsx --test test/db/class-allocation.test.ts)`);
      console.log(`class-allocation model-based on ${engine.id}: seed ${seed}, ${numRuns} runs`);
      const iface = fc.constantFrom('wg0', 'wg1');
      const caps = fc.record({ up: fc.constantFrom(0, 0, 500, 1000), down: fc.constantFrom(0, 1000, 8000) });
      const op = fc.oneof(
        fc.record({ kind: fc.constant('set' as const), id: fc.integer({ min: 1, max: 40 }), iface, caps }),
        fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 40 }) }),
        fc.record({ kind: fc.constant('move' as const), id: fc.integer({ min: 1, max: 40 }), iface }),
      );
      // A batch runs at once; one operation per subject in a batch, so the outcome is determined.
      const batch = fc.uniqueArray(op, { minLength: 1, maxLength: 40, selector: (o) => o.id });
      await fc.assert(
        fc.asyncProperty(fc.array(batch, { minLength: 1, maxLength: 6 }), async (batches) => {
          await pools[0]!('bw_limits').delete();
          const model = new Map<number, { iface: string; up: number; down: number }>();
          const minors = new Map<number, number | null>();
          for (const ops of batches) {
            const rowsBefore: LimitRow[] = await allRows(pools[0]!);
            const before = new Map<number, LimitRow>(rowsBefore.map((row) => [Number(row.subjectId), row]));
            await Promise.all(
              ops.map(async (o, n) => {
                const db = pools[n % POOLS]!;
                if (o.kind === 'set') {
                  await saveLimit(db, subject(o.id, o.caps, o.iface));
                  model.set(o.id, { iface: o.iface, ...o.caps });
                } else if (o.kind === 'delete') {
                  await deleteLimit(db, 'peer', String(o.id));
                  model.delete(o.id);
                } else {
                  const row = before.get(o.id);
                  const wanted = model.get(o.id);
                  if (!row || !wanted) return;
                  await refreshLimits(db, [{ row, subject: subject(o.id, { up: row.upKbps, down: row.downKbps }, o.iface) }]);
                  model.set(o.id, { ...wanted, iface: o.iface });
                }
              }),
            );
            const rows = await allRows(pools[0]!);
            assert.deepEqual(duplicateMinors(rows), [], 'no minor twice on an interface');
            const stored = new Map(rows.map((row) => [Number(row.subjectId), row]));
            assert.deepEqual([...stored.keys()].sort((a, b) => a - b), [...model.keys()].sort((a, b) => a - b), 'the subjects stored');
            for (const [id, wanted] of model) {
              const row = stored.get(id)!;
              assert.deepEqual([row.interface, row.upKbps, row.downKbps], [wanted.iface, wanted.up, wanted.down], `peer ${id} keeps its typed caps`);
              if (isLimited(row)) assert.notEqual(row.classMinor, null, `capped peer ${id} has a minor`);
              const previous: LimitRow | undefined = before.get(id);
              if (previous && previous.interface === row.interface && previous.classMinor !== null && isLimited(row)) {
                assert.equal(row.classMinor, previous.classMinor, `peer ${id} keeps its class on its interface`);
              }
              minors.set(id, row.classMinor);
            }
          }
          for (const id of minors.keys()) if (!model.has(id)) assert.equal(await getLimit(pools[0]!, 'peer', String(id)), undefined);
        }),
        { seed, numRuns },
      );
    });
  });
}
