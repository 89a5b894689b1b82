/**
 * Quota cycle counters (src/db/quota-cycles.ts) fed by ledger ingestion (src/nodes/panel/ingest.ts)
 * on every engine: a cycle's bytes are exactly the deltas whose period ends in (counted_from, end],
 * whenever the cycle is opened, wherever it starts (Asia/Kathmandu, +05:45, starts it off the
 * hour), after raw rows expired, with pages replayed, and with a second panel process ingesting
 * while the cycle is opened. Values pass 2^53.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { Knex } from 'knex';

import { bigintColumn, toBigInt } from '../../src/db/bigint.js';
import { addExtraBytes, openCycle, resetCycle, type SubjectRef } from '../../src/db/quota-cycles.js';
import { enforceRetention } from '../../src/accounting/store.js';
import { DAY_MS, HOUR_MS } from '../../src/accounting/buckets.js';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry, LedgerPage } from '../../src/nodes/protocol.js';
import { cycleAt } from '../../src/quotas/cycle.js';
import { ENGINES, type Engine } from '../support/databases.js';
import { openOwnMigrated } from '../support/own-database.js';

const MINUTE = 60_000;
const KATHMANDU = { cycleDay: 1, timeZone: 'Asia/Kathmandu' };
/** Local midnight of 1 December 2026 in Kathmandu (+05:45): 18:15 UTC, a quarter past an hour. */
const START = Date.UTC(2026, 10, 30, 18, 15);
const END = Date.UTC(2026, 11, 31, 18, 15);
const PREVIOUS = Date.UTC(2026, 9, 31, 18, 15);
const BIG = 2n ** 53n;

interface Delta {
  subjectType: 'peer' | 'vm';
  subjectId: string;
  periodEnd: number;
  up: bigint;
  down: bigint;
}

/** One node's ledger: every push appends entries and returns the page that holds them. */
class Ledger {
  readonly entries: LedgerEntry[] = [];
  constructor(readonly node: string, readonly ledgerId = `${node}-ledger`) {}

  push(deltas: Delta[]): LedgerPage {
    const first = this.entries.length;
    for (const delta of deltas) {
      const isVm = delta.subjectType === 'vm';
      this.entries.push({
        seq: this.entries.length + 1, subjectType: delta.subjectType, subjectId: delta.subjectId,
        source: isVm ? 'sysfs' : 'wireguard', interface: isVm ? 'tap1' : 'wg0',
        periodStart: delta.periodEnd - MINUTE, periodEnd: delta.periodEnd, upBytes: delta.up.toString(), downBytes: delta.down.toString(),
      });
    }
    return this.page(first, this.entries.length - first);
  }

  /** The entries after `after`, at most `limit`, as the agent answers. */
  page(after: number, limit: number): LedgerPage {
    return { node: this.node, ledgerId: this.ledgerId, head: this.entries.length, oldest: this.entries.length > 0 ? 1 : null, entries: this.entries.slice(after, after + limit) };
  }
}

const key = (type: string, id: string) => `${type}:${id}`;

/** The bytes a cycle must hold: the deltas of the subject whose period ends in (from, end]. */
function expectedBytes(deltas: Delta[], subject: SubjectRef, from: number, end: number): { up: bigint; down: bigint } {
  let up = 0n;
  let down = 0n;
  for (const delta of deltas) {
    if (delta.subjectType !== subject.type || delta.subjectId !== subject.id || delta.periodEnd <= from || delta.periodEnd > end) continue;
    up += delta.up;
    down += delta.down;
  }
  return { up, down };
}

interface StoredCycle {
  id: number;
  start: number;
  end: number;
  countedFrom: number;
  up: bigint;
  down: bigint;
  extra: bigint;
  version: number;
}

/** Every stored cycle, read with its own query (not the module under test), by subject key then start. */
async function storedCycles(db: Knex): Promise<Map<string, StoredCycle[]>> {
  const rows = (await db('bw_quota_cycles')
    .select('id', 'subject_type', 'subject_id', 'cycle_start', 'cycle_end', 'counted_from', 'version', bigintColumn(db, 'up_bytes'), bigintColumn(db, 'down_bytes'), bigintColumn(db, 'extra_bytes'))
    .orderBy('cycle_start')) as Record<string, unknown>[];
  const found = new Map<string, StoredCycle[]>();
  for (const row of rows) {
    const cycles = found.get(key(String(row.subject_type), String(row.subject_id))) ?? [];
    cycles.push({
      id: Number(row.id), start: Number(row.cycle_start), end: Number(row.cycle_end), countedFrom: Number(row.counted_from),
      up: toBigInt(row.up_bytes)!, down: toBigInt(row.down_bytes)!, extra: toBigInt(row.extra_bytes)!, version: Number(row.version),
    });
    found.set(key(String(row.subject_type), String(row.subject_id)), cycles);
  }
  return found;
}

async function cycleOf(db: Knex, subject: SubjectRef, start = START): Promise<StoredCycle> {
  const cycle = (await storedCycles(db)).get(key(subject.type, subject.id))?.find((row) => row.start === start);
  assert.ok(cycle, `${key(subject.type, subject.id)} has a cycle starting at ${new Date(start).toISOString()}`);
  return cycle;
}

async function assertExact(db: Knex, deltas: Delta[], subjects: SubjectRef[], message: string, start = START, end = END): Promise<void> {
  for (const subject of subjects) {
    const cycle = await cycleOf(db, subject, start);
    assert.deepEqual({ up: cycle.up, down: cycle.down }, expectedBytes(deltas, subject, cycle.countedFrom, end), `${message}: ${key(subject.type, subject.id)}`);
  }
}

/** Deltas of these subjects ending at `at`, above 2^53 and distinct per subject and instant. */
function deltasAt(subjects: SubjectRef[], at: number, salt = 0): Delta[] {
  return subjects.map((subject, index) => ({
    subjectType: subject.type as 'peer' | 'vm', subjectId: subject.id, periodEnd: at,
    up: BIG + BigInt((Math.floor(at / 1000) % 100_003) * 31 + index * 7 + salt), down: 4n * BIG + BigInt(index + salt),
  }));
}

async function open(t: TestContext, engine: Engine, count = 1): Promise<Knex[] | undefined> {
  return openOwnMigrated(t, engine, 'qcycles', count);
}

for (const engine of ENGINES) {
  describe(`quota cycles on ${engine.id}`, () => {
    test('a cycle starting at a quarter past an hour holds exactly its deltas, whenever it is opened, also after raw rows expired', { timeout: 120_000 }, async (t) => {
      const [db] = (await open(t, engine)) ?? [];
      if (!db) return;
      assert.deepEqual(cycleAt(KATHMANDU, START + HOUR_MS), { start: START, end: END }, 'the cycle of the test is the one the rule gives');
      // Three groups of subjects, their cycle opened before the start, a minute after it, five hours after it.
      const groups = [START - 30 * MINUTE, START + MINUTE, START + 5 * HOUR_MS].map((openAt, g) => ({
        openAt,
        subjects: [{ type: 'peer', id: `${g}-1` }, { type: 'peer', id: `${g}-2` }, { type: 'vm', id: `${g}-3` }] as SubjectRef[],
      }));
      const all = groups.flatMap((group) => group.subjects);
      const ledger = new Ledger('hv1');
      const deltas: Delta[] = [];
      const ingest = async (at: number, salt = 0) => {
        const batch = deltasAt(all, at, salt);
        deltas.push(...batch);
        await ingestPage(db, ledger.node, ledger.push(batch), { now: at });
      };
      // Ticks every 7 minutes (never on the quarter hour) from two hours before the start, and the instants around it.
      const ticks = [...Array.from({ length: 70 }, (_, i) => START - 2 * HOUR_MS + i * 7 * MINUTE + 13), START - 1, START, START + 1, START + HOUR_MS - 1]
        .sort((a, b) => a - b);
      const opens = [...groups];
      for (const at of ticks) {
        while (opens.length > 0 && opens[0]!.openAt <= at) {
          const group = opens.shift()!;
          assert.equal((await openCycle(db, group.subjects, { start: START, end: END }, group.openAt)).size, 3);
        }
        await ingest(at);
      }
      await assertExact(db, deltas, all, 'while raw rows are kept');

      // A week later the raw rows of the cycle's first day are gone; the counters stay, and go on counting.
      const later = START + 8 * DAY_MS;
      const expired = await enforceRetention(db, later);
      assert.ok(expired.raw >= ticks.length * all.length, `raw rows were deleted (${expired.raw})`);
      assert.equal(Number((await db('bw_usage').where('period_end', '<=', START + HOUR_MS).count({ n: '*' }))[0]!.n), 0, 'no raw row of the first hour is left');
      for (let i = 0; i < 5; i++) await ingest(later + i * 11 * MINUTE + 1, i);
      // The cycle's last instant belongs to it; the next one to the next cycle.
      await ingest(END, 9);
      await ingest(END + 1, 10);
      await assertExact(db, deltas, all, 'after retention');
      const sample = await cycleOf(db, all[0]!);
      assert.ok(sample.up > BIG * 10n, `the counters are past 2^53 many times over (${sample.up})`);
    });

    test('a delta ending at the cycle start belongs to the cycle before; one ending a millisecond later to the new one (counted by ingestion and from history)', async (t) => {
      const [db] = (await open(t, engine)) ?? [];
      if (!db) return;
      const counted = { type: 'peer', id: 'counted' };
      const history = { type: 'peer', id: 'history' };
      const ledger = new Ledger('hv1');
      // `counted`: both cycles open first, ingestion adds to them.
      await openCycle(db, [counted], { start: PREVIOUS, end: START }, START - HOUR_MS);
      await openCycle(db, [counted], { start: START, end: END }, START - HOUR_MS);
      const deltas = [START - 1, START, START + 1].flatMap((at, i) => deltasAt([counted, history], at, i));
      await ingestPage(db, ledger.node, ledger.push(deltas), { now: START + 1 });
      // `history`: the cycles are opened afterwards and read what the usage tables hold.
      await openCycle(db, [history], { start: PREVIOUS, end: START }, START + 2);
      await openCycle(db, [history], { start: START, end: END }, START + 2);
      for (const subject of [counted, history]) {
        const before = await cycleOf(db, subject, PREVIOUS);
        const current = await cycleOf(db, subject, START);
        const ended = (at: number) => deltas.filter((d) => d.subjectId === subject.id && d.periodEnd === at).map((d) => d.up);
        assert.deepEqual(before.up, [...ended(START - 1), ...ended(START)].reduce((a, b) => a + b), `${subject.id}: the previous cycle holds the deltas ending at start - 1 ms and at start`);
        assert.deepEqual(current.up, ended(START + 1)[0], `${subject.id}: the new cycle holds the delta ending at start + 1 ms`);
      }
    });

    test('regression: a cycle opened from history stops at its end (a delta of the next cycle, in the same hourly roll-up, was counted in it)', async (t) => {
      const [db] = (await open(t, engine)) ?? [];
      if (!db) return;
      // A node whose clock runs ahead: its delta ending after the cycle's end is ingested before the cycle is opened.
      const subject = { type: 'vm', id: 'ahead' };
      const ledger = new Ledger('hv1');
      const deltas = [...deltasAt([subject], END - MINUTE), ...deltasAt([subject], END + MINUTE, 1)];
      await ingestPage(db, 'hv1', ledger.push(deltas), { now: END - 30_000 });
      await openCycle(db, [subject], { start: START, end: END }, END - 30_000);
      assert.deepEqual((await cycleOf(db, subject)).up, deltas[0]!.up);
    });

    test('replayed and overlapping pages add nothing twice to a cycle', async (t) => {
      const [db] = (await open(t, engine)) ?? [];
      if (!db) return;
      const subjects: SubjectRef[] = [{ type: 'peer', id: '1' }, { type: 'vm', id: '2' }];
      await openCycle(db, subjects, { start: START, end: END }, START);
      const ledger = new Ledger('hv1');
      const deltas: Delta[] = [];
      const first = deltasAt(subjects, START + MINUTE).concat(deltasAt(subjects, START + 2 * MINUTE));
      deltas.push(...first);
      const page = ledger.push(first);
      assert.equal((await ingestPage(db, 'hv1', page, { now: START + 2 * MINUTE })).cycles, 2);
      const again = await ingestPage(db, 'hv1', page, { now: START + 3 * MINUTE });
      assert.deepEqual([again.written, again.cycles], [0, 0], 'a replayed page writes nothing and counts nothing');
      const more = deltasAt(subjects, START + 3 * MINUTE, 5);
      deltas.push(...more);
      ledger.push(more);
      // A page from an older cursor: two entries already counted, two new ones.
      const overlapping = await ingestPage(db, 'hv1', ledger.page(2, 10), { now: START + 3 * MINUTE });
      assert.equal(overlapping.written, 2, 'the page held two entries already written');
      await ingestPage(db, 'hv1', ledger.page(0, 10), { now: START + 4 * MINUTE });
      await assertExact(db, deltas, subjects, 'after replays');
      const versions = [...(await storedCycles(db)).values()].map((rows) => rows[0]!.version);
      assert.deepEqual(versions, [3, 3], 'opened (1), then two pages added to each cycle');
    });

    test('a cycle opened while another panel process ingests counts every delta exactly once', { timeout: 180_000 }, async (t) => {
      const pools = await open(t, engine, 2);
      if (!pools) return;
      const [a, b] = pools as [Knex, Knex];
      const iterations = engine.id === 'sqlite' ? 60 : 40;
      const ledger = new Ledger('hv1');
      const deltas: Delta[] = [];
      const subjects: SubjectRef[] = [];
      let cursor = 0;
      let clock = START + MINUTE;
      for (let i = 0; i < iterations; i++) {
        const mine: SubjectRef[] = [{ type: 'peer', id: `race-${i}` }, { type: 'vm', id: `race-${i}` }];
        subjects.push(...mine);
        // History the opening reads, then two pages written by process b while process a opens the cycle.
        const before = deltasAt(mine, (clock += 7 * MINUTE), i);
        deltas.push(...before);
        cursor = (await ingestPage(b, 'hv1', ledger.push(before), { now: clock })).cursor;
        const pages = [deltasAt(mine, clock + 1, i), deltasAt(mine, clock + 2, i)];
        deltas.push(...pages.flat());
        for (const page of pages) ledger.push(page);
        const ingestBoth = async () => {
          for (let p = 0; p < 2; p++) cursor = (await ingestPage(b, 'hv1', ledger.page(cursor, 2), { now: clock + 2 })).cursor;
        };
        const opening = () => openCycle(a, mine, { start: START, end: END }, clock + 1);
        await Promise.all(i % 2 === 0 ? [opening(), ingestBoth()] : [ingestBoth(), opening()]);
      }
      assert.equal(cursor, ledger.entries.length);
      await assertExact(a, deltas, subjects, 'raced');
    });

    test('a reset counts from its instant on; traffic blocks add exactly and outlive the reset', async (t) => {
      const [db] = (await open(t, engine)) ?? [];
      if (!db) return;
      const subject = { type: 'peer', id: '7' };
      const ledger = new Ledger('hv1');
      const deltas: Delta[] = [];
      const ingest = async (ends: number[], now: number) => {
        const batch = ends.flatMap((at, i) => deltasAt([subject], at, i));
        deltas.push(...batch);
        await ingestPage(db, 'hv1', ledger.push(batch), { now });
      };
      await openCycle(db, [subject], { start: START, end: END }, START + MINUTE);
      await ingest([START + MINUTE, START + 2 * HOUR_MS], START + 2 * HOUR_MS);
      const id = (await cycleOf(db, subject)).id;
      const block = 2n ** 60n + 12_345n;
      await addExtraBytes(db, id, block, START + 2 * HOUR_MS);
      // Reset at an instant off every hour and minute; late deltas ending before it, or at it, stay out.
      const reset = START + 3 * HOUR_MS + 17_321;
      await resetCycle(db, id, reset);
      assert.deepEqual(await cycleOf(db, subject).then((c) => [c.countedFrom, c.up, c.down]), [reset, 0n, 0n]);
      await ingest([reset - 5 * MINUTE, reset, reset + 1, reset + MINUTE], reset + MINUTE);
      await addExtraBytes(db, id, block + 1n, reset + MINUTE);
      // Opening the same cycle again (another process's pass) keeps the reset and the blocks.
      assert.equal((await openCycle(db, [subject], { start: START, end: END }, reset + 2 * MINUTE)).size, 0);
      await ingest([reset + 2 * HOUR_MS], reset + 2 * HOUR_MS);
      const cycle = await cycleOf(db, subject);
      assert.equal(cycle.countedFrom, reset);
      assert.deepEqual({ up: cycle.up, down: cycle.down }, expectedBytes(deltas, subject, reset, END));
      assert.equal(cycle.extra, 2n * block + 1n);
    });
  });
}
