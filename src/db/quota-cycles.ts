/**
 * Each subject's bytes in its billing cycles (`bw_quota_cycles`). A cycle [start, end) holds the
 * deltas whose period ends in (counted_from, end] (the roll-ups' convention, src/accounting/buckets.ts),
 * where counted_from is the cycle's start or the time of a manual reset in it.
 *
 * The counters are added to by ledger ingestion in the transaction that writes the usage rows, so
 * a cycle's usage stays exact after raw rows expire and wherever the cycle starts (a time zone at
 * +05:45 starts it off the hour). A cycle is opened with what history holds since its start
 * ({@link openCycle}). Both take turns on the `quotas` lock row: a cycle opened while a page is
 * being ingested counts that page either from history or from the page, never both, never neither.
 */
import type { Knex } from 'knex';
import { bigintColumn, fromBigInt, sumBigint, toBigInt } from './bigint.js';
import { dialectOf } from './dialect.js';
import { increment } from '../accounting/store.js';
import { HOUR_MS } from '../accounting/buckets.js';
import type { QuotaState } from '../quotas/rules.js';

export interface CycleRow {
  id: number;
  subjectType: string;
  subjectId: string;
  cycleStart: number;
  cycleEnd: number;
  countedFrom: number;
  upBytes: bigint;
  downBytes: bigint;
  extraBytes: bigint;
  fired: number[];
  /** `fired` as stored (the evaluator's conditional update compares it). */
  firedText: string;
  state: QuotaState;
  version: number;
  dirty: boolean;
}

/** A subject as cycles key it. */
export interface SubjectRef {
  type: string;
  id: string;
}

export const subjectKey = (type: string, id: string): string => `${type}:${id}`;

const columns = (db: Knex) => [
  'id', 'subject_type', 'subject_id', 'cycle_start', 'cycle_end', 'counted_from', bigintColumn(db, 'up_bytes'), bigintColumn(db, 'down_bytes'),
  bigintColumn(db, 'extra_bytes'), 'fired', 'state', 'version', 'dirty',
];

function toCycleRow(row: Record<string, unknown>): CycleRow {
  return {
    id: Number(row.id),
    subjectType: String(row.subject_type),
    subjectId: String(row.subject_id),
    cycleStart: Number(row.cycle_start),
    cycleEnd: Number(row.cycle_end),
    countedFrom: Number(row.counted_from),
    upBytes: toBigInt(row.up_bytes) as bigint,
    downBytes: toBigInt(row.down_bytes) as bigint,
    extraBytes: toBigInt(row.extra_bytes) as bigint,
    fired: JSON.parse(String(row.fired)) as number[],
    firedText: String(row.fired),
    state: String(row.state) as QuotaState,
    version: Number(row.version),
    dirty: Boolean(row.dirty),
  };
}

/**
 * Rows of these (type, id) pairs, as one `subject_id IN (…)` per type. PostgreSQL answers a list of
 * pairs by testing each row against the whole list instead of looking the subjects up in the index
 * (1.3-2.1 s against 0.12-0.18 s for a 10,000-subject page, bench/quotas.ts).
 */
function subjectsIn(pairs: string[][]): (query: Knex.QueryBuilder) => void {
  const byType = new Map<string, string[]>();
  for (const [type, id] of pairs) {
    const ids = byType.get(type!);
    if (ids) ids.push(id!);
    else byType.set(type!, [id!]);
  }
  return (query) => {
    if (byType.size === 0) query.whereRaw('1 = 0');
    for (const [type, ids] of byType) query.orWhere((typed) => typed.where('subject_type', type).whereIn('subject_id', ids));
  };
}

/** Takes the quotas turn for the rest of the transaction (a write first: SQLite upgrades to its write lock at once). */
async function takeTurn(trx: Knex.Transaction, now: number): Promise<void> {
  await trx('bw_locks').where({ name: 'quotas' }).update({ held_at: now });
}

/**
 * The newest cycle of each subject (all subjects with one, or the ones given), by subject key.
 * Cycles that ended before `since` are not looked at.
 */
export async function latestCycles(db: Knex, since: number, subjects?: SubjectRef[]): Promise<Map<string, CycleRow>> {
  const found = new Map<string, CycleRow>();
  const keep = (rows: Record<string, unknown>[]) => {
    for (const row of rows.map(toCycleRow)) {
      const key = subjectKey(row.subjectType, row.subjectId);
      const seen = found.get(key);
      if (!seen || seen.cycleStart < row.cycleStart) found.set(key, row);
    }
  };
  if (!subjects) {
    keep(await db('bw_quota_cycles').select(columns(db)).where('cycle_end', '>', since));
    return found;
  }
  for (let i = 0; i < subjects.length; i += 500) {
    const pairs = subjects.slice(i, i + 500).map((s) => [s.type, s.id]);
    keep(await db('bw_quota_cycles').select(columns(db)).where(subjectsIn(pairs)).where('cycle_end', '>', since));
  }
  return found;
}

/** Cycles written to since they were last evaluated. */
export async function dirtyCycles(db: Knex): Promise<CycleRow[]> {
  return ((await db('bw_quota_cycles').select(columns(db)).where({ dirty: true })) as Record<string, unknown>[]).map(toCycleRow);
}

/**
 * What history holds of each subject in (`from`, `to`] (deltas ending in it): raw rows for the parts
 * of `from`'s and `to`'s hours, hourly roll-ups for the whole hours between.
 */
async function usageBetween(trx: Knex.Transaction, subjects: SubjectRef[], from: number, to: number): Promise<Map<string, { up: bigint; down: bigint }>> {
  const sums = new Map<string, { up: bigint; down: bigint }>();
  const add = (rows: Record<string, unknown>[]) => {
    for (const row of rows) {
      const key = subjectKey(String(row.subject_type), String(row.subject_id));
      const sum = sums.get(key) ?? { up: 0n, down: 0n };
      sum.up += toBigInt(row.up) as bigint;
      sum.down += toBigInt(row.down) as bigint;
      sums.set(key, sum);
    }
  };
  // Hour bucket h holds the deltas that ended in (h, h + 1h]: buckets [first, last) hold (first, last].
  const first = Math.ceil(from / HOUR_MS) * HOUR_MS;
  const last = Math.floor(to / HOUR_MS) * HOUR_MS;
  const raw: [number, number][] = first < last ? [[from, first], [last, to]] : [[from, to]];
  for (let i = 0; i < subjects.length; i += 500) {
    const pairs = subjects.slice(i, i + 500).map((s) => [s.type, s.id]);
    for (const [after, upTo] of raw) {
      if (upTo <= after) continue;
      add(await trx('bw_usage').select('subject_type', 'subject_id', sumBigint(trx, 'up_bytes', 'up'), sumBigint(trx, 'down_bytes', 'down'))
        .where(subjectsIn(pairs)).where('period_end', '>', after).where('period_end', '<=', upTo).groupBy('subject_type', 'subject_id'));
    }
    if (first < last) {
      add(await trx('bw_usage_hourly').select('subject_type', 'subject_id', sumBigint(trx, 'up_bytes', 'up'), sumBigint(trx, 'down_bytes', 'down'))
        .where(subjectsIn(pairs)).where('hour_start', '>=', first).where('hour_start', '<', last).groupBy('subject_type', 'subject_id'));
    }
  }
  return sums;
}

/**
 * Opens cycle [start, end) for these subjects, counting what history holds of it: the deltas that
 * ended in (start, end], none of the next cycle's (exact while raw rows of its first and last hours
 * are kept; a quota set later than that counts from the first whole hour). Rows of the subjects that overlap it (a cycle whose day or time zone changed) are
 * replaced. A subject whose cycle another process opened meanwhile keeps that one.
 * @returns the subjects this call opened the cycle for.
 */
export async function openCycle(db: Knex, subjects: SubjectRef[], cycle: { start: number; end: number }, now: number): Promise<Set<string>> {
  const opened = new Set<string>();
  if (subjects.length === 0) return opened;
  await db.transaction(async (trx) => {
    await takeTurn(trx, now);
    const pairs = subjects.map((s) => [s.type, s.id]);
    const existing = new Set<string>();
    // What a cycle this one replaces (the quota's day or time zone changed mid-cycle) had bought and
    // notified stays with the subject: its traffic blocks, its fired thresholds, its manual reset.
    const carried = new Map<string, { extra: bigint; fired: Set<number>; countedFrom: number }>();
    for (let i = 0; i < pairs.length; i += 500) {
      const rows = (await trx('bw_quota_cycles').select('subject_type', 'subject_id', 'cycle_start', 'cycle_end', 'counted_from', bigintColumn(trx, 'extra_bytes'), 'fired')
        .where(subjectsIn(pairs.slice(i, i + 500))).where('cycle_end', '>', cycle.start).where('cycle_start', '<', cycle.end)) as Record<string, unknown>[];
      for (const row of rows) {
        const key = subjectKey(String(row.subject_type), String(row.subject_id));
        if (Number(row.cycle_start) === cycle.start && Number(row.cycle_end) === cycle.end) {
          existing.add(key);
          continue;
        }
        const carry = carried.get(key) ?? { extra: 0n, fired: new Set<number>(), countedFrom: cycle.start };
        carry.extra += toBigInt(row.extra_bytes) as bigint;
        for (const percent of JSON.parse(String(row.fired)) as number[]) carry.fired.add(percent);
        // A manual reset (counted_from past its cycle's start) inside the new cycle still holds.
        const countedFrom = Number(row.counted_from);
        if (countedFrom > Number(row.cycle_start) && countedFrom > carry.countedFrom && countedFrom < cycle.end) carry.countedFrom = countedFrom;
        carried.set(key, carry);
      }
    }
    const fresh = subjects.filter((s) => !existing.has(subjectKey(s.type, s.id)));
    const freshPairs = fresh.map((s) => [s.type, s.id]);
    for (let i = 0; i < freshPairs.length; i += 500) {
      await trx('bw_quota_cycles').where(subjectsIn(freshPairs.slice(i, i + 500))).where('cycle_end', '>', cycle.start).where('cycle_start', '<', cycle.end).delete();
    }
    // History is read once per distinct start of counting (the cycle's start for nearly all of them).
    const byFrom = new Map<number, SubjectRef[]>();
    for (const s of fresh) {
      const from = carried.get(subjectKey(s.type, s.id))?.countedFrom ?? cycle.start;
      byFrom.set(from, [...(byFrom.get(from) ?? []), s]);
    }
    const usage = new Map<string, { up: bigint; down: bigint }>();
    for (const [from, group] of byFrom) for (const [key, sum] of await usageBetween(trx, group, from, cycle.end)) usage.set(key, sum);
    const rows = fresh.map((s) => {
      const key = subjectKey(s.type, s.id);
      const sum = usage.get(key);
      const carry = carried.get(key);
      opened.add(key);
      return {
        subject_type: s.type, subject_id: s.id, cycle_start: cycle.start, cycle_end: cycle.end, counted_from: carry?.countedFrom ?? cycle.start,
        up_bytes: fromBigInt(sum?.up ?? 0n), down_bytes: fromBigInt(sum?.down ?? 0n), extra_bytes: fromBigInt(carry?.extra ?? 0n),
        fired: JSON.stringify([...(carry?.fired ?? [])].sort((a, b) => a - b)), state: 'ok',
        version: 1, dirty: true, created_at: now, updated_at: now,
      };
    });
    for (let i = 0; i < rows.length; i += 500) await trx('bw_quota_cycles').insert(rows.slice(i, i + 500));
  });
  return opened;
}

/** One usage delta as ingestion writes it. */
export interface CountedDelta {
  subjectType: string;
  subjectId: string;
  periodEnd: number;
  up: bigint;
  down: bigint;
}

/** `version + 1` in an upsert's update, per dialect. */
function bump(trx: Knex.Transaction): Knex.Raw {
  return dialectOf(trx) === 'postgres' ? trx.raw('??.?? + 1', ['bw_quota_cycles', 'version']) : trx.raw('?? + 1', ['version']);
}

/**
 * Adds deltas to the cycles that hold them (in the caller's ingestion transaction, so a page is
 * counted exactly when it is written). Deltas of subjects without a cycle, or outside every cycle
 * they have, count nowhere: a cycle opened later reads them from history.
 * @returns how many cycles were added to.
 */
export async function countIntoCycles(trx: Knex.Transaction, deltas: CountedDelta[], now: number): Promise<number> {
  if (deltas.length === 0) return 0;
  await takeTurn(trx, now);
  const bySubject = new Map<string, CountedDelta[]>();
  let earliest = Infinity;
  for (const delta of deltas) {
    const key = subjectKey(delta.subjectType, delta.subjectId);
    const list = bySubject.get(key);
    if (list) list.push(delta);
    else bySubject.set(key, [delta]);
    earliest = Math.min(earliest, delta.periodEnd);
  }
  const keys = [...bySubject.keys()];
  const sums = new Map<number, { row: CycleRow; up: bigint; down: bigint }>();
  for (let i = 0; i < keys.length; i += 500) {
    const pairs = keys.slice(i, i + 500).map((key) => {
      const delta = bySubject.get(key)![0]!;
      return [delta.subjectType, delta.subjectId];
    });
    const query = trx('bw_quota_cycles').select(columns(trx)).where(subjectsIn(pairs)).where('cycle_end', '>=', earliest);
    // A locking read sees the newest committed cycles (MariaDB's repeatable read would otherwise keep an older snapshot).
    const rows = ((await (dialectOf(trx) === 'sqlite' ? query : query.forUpdate())) as Record<string, unknown>[]).map(toCycleRow);
    const cycles = new Map<string, CycleRow[]>();
    for (const row of rows) {
      const key = subjectKey(row.subjectType, row.subjectId);
      cycles.set(key, [...(cycles.get(key) ?? []), row]);
    }
    for (const [key, list] of cycles) {
      for (const delta of bySubject.get(key) ?? []) {
        const row = list.find((cycle) => delta.periodEnd > cycle.countedFrom && delta.periodEnd <= cycle.cycleEnd);
        if (!row) continue;
        const sum = sums.get(row.id) ?? { row, up: 0n, down: 0n };
        sum.up += delta.up;
        sum.down += delta.down;
        sums.set(row.id, sum);
      }
    }
  }
  const updates = [...sums.values()].filter((sum) => sum.up > 0n || sum.down > 0n).map(({ row, up, down }) => ({
    subject_type: row.subjectType, subject_id: row.subjectId, cycle_start: row.cycleStart, cycle_end: row.cycleEnd, counted_from: row.countedFrom,
    up_bytes: fromBigInt(up), down_bytes: fromBigInt(down), created_at: now, updated_at: now,
  }));
  for (let i = 0; i < updates.length; i += 500) {
    // Every row exists (read above under the turn): the insert always meets its unique key and adds.
    await trx('bw_quota_cycles').insert(updates.slice(i, i + 500)).onConflict(['subject_type', 'subject_id', 'cycle_start']).merge({
      up_bytes: increment(trx, 'bw_quota_cycles', 'up_bytes'),
      down_bytes: increment(trx, 'bw_quota_cycles', 'down_bytes'),
      version: bump(trx),
      dirty: true,
      updated_at: now,
    });
  }
  return updates.length;
}

/**
 * Records an evaluation, unless the cycle changed since it was read (new bytes, another panel's
 * evaluation): exactly one evaluator wins each change, so each threshold is notified once.
 */
export async function markEvaluated(db: Knex, row: CycleRow, result: { state: QuotaState; fired: number[] }, now: number): Promise<boolean> {
  const changed = await db('bw_quota_cycles')
    .where({ id: row.id, version: row.version, fired: row.firedText })
    .update({ state: result.state, fired: JSON.stringify(result.fired), dirty: false, updated_at: now });
  return changed === 1;
}

/**
 * Clears the flag of these subjects' ended cycles: late deltas still count there, but nothing is
 * decided in a cycle that is over, and a flag left set would have every later pass evaluate them.
 * `latest` (the ids of the subjects' latest cycles) are left to the evaluation that records them.
 * The rows are found first and updated by id in the quotas turn: a range update on MariaDB locks
 * every dirty row through the `dirty` index and deadlocked with another panel's pass.
 */
export async function settleEndedCycles(db: Knex, subjects: SubjectRef[], at: number, latest: Set<number>): Promise<void> {
  const ids: number[] = [];
  for (let i = 0; i < subjects.length; i += 500) {
    const rows = (await db('bw_quota_cycles').select('id').where(subjectsIn(subjects.slice(i, i + 500).map((s) => [s.type, s.id])))
      .where('cycle_end', '<=', at).where({ dirty: true })) as { id: number | string }[];
    for (const row of rows) if (!latest.has(Number(row.id))) ids.push(Number(row.id));
  }
  if (ids.length === 0) return;
  await db.transaction(async (trx) => {
    await takeTurn(trx, at);
    for (let i = 0; i < ids.length; i += 500) await trx('bw_quota_cycles').whereIn('id', ids.slice(i, i + 500)).where({ dirty: true }).update({ dirty: false });
  });
}

/**
 * Records many evaluations that notify nothing (the usual case after a tick: bytes added, no
 * threshold crossed), a few statements per state in one transaction. A row whose version moved
 * since it was read (new bytes, a reset) is left dirty for the next pass; its fired thresholds
 * cannot have moved without its version, so the state written is the one they imply.
 */
export async function settleCycles(db: Knex, evaluated: { row: CycleRow; state: QuotaState }[], now: number): Promise<void> {
  if (evaluated.length === 0) return;
  const byState = new Map<QuotaState, CycleRow[]>();
  for (const { row, state } of evaluated) byState.set(state, [...(byState.get(state) ?? []), row]);
  await db.transaction(async (trx) => {
    // In the quotas turn: ingestion locks cycle rows in its own order, and two multi-row writers
    // that lock the same rows in different orders deadlock (MariaDB, PostgreSQL).
    await takeTurn(trx, now);
    for (const [state, rows] of byState) {
      for (let i = 0; i < rows.length; i += 300) {
        await trx('bw_quota_cycles').whereIn(['id', 'version'], rows.slice(i, i + 300).map((row) => [row.id, row.version]))
          .update({ state, dirty: false, updated_at: now });
      }
    }
  });
}

/** A manual reset: the cycle counts again from now, its thresholds re-armed. */
export async function resetCycle(db: Knex, id: number, now: number): Promise<void> {
  await db('bw_quota_cycles').where({ id }).update({
    counted_from: now, up_bytes: '0', down_bytes: '0', fired: '[]', state: 'ok', version: db.raw('?? + 1', ['version']), dirty: true, updated_at: now,
  });
}

/**
 * Adds a traffic block to a cycle (`bytes` is a bigint: its digits go into the statement as a literal, exact on every engine).
 * @returns false when the cycle's blocks would pass 2^63-1 bytes (nothing added).
 */
export async function addExtraBytes(db: Knex, id: number, bytes: bigint, now: number): Promise<boolean> {
  // Only while the sum stays a BIGINT (SQLite would store a larger one as a lossy REAL), checked in
  // the statement itself so two blocks added at once cannot pass it together.
  const changed = await db('bw_quota_cycles').where({ id }).where('extra_bytes', '<=', db.raw(fromBigInt(MAX_CYCLE_BYTES - bytes))).update({
    extra_bytes: db.raw(`?? + ${fromBigInt(bytes)}`, ['extra_bytes']), version: db.raw('?? + 1', ['version']), dirty: true, updated_at: now,
  });
  return changed === 1;
}

/** The largest byte count a cycle column holds (signed 64-bit). */
const MAX_CYCLE_BYTES = 2n ** 63n - 1n;

/** Forgets the cycles of subjects that no longer have a quota or no longer exist, and cycles older than `before`. */
export async function deleteCycles(db: Knex, subjects: SubjectRef[], before: number): Promise<void> {
  for (let i = 0; i < subjects.length; i += 500) {
    await db('bw_quota_cycles').where(subjectsIn(subjects.slice(i, i + 500).map((s) => [s.type, s.id]))).delete();
  }
  await db('bw_quota_cycles').where('cycle_end', '<', before).delete();
}
