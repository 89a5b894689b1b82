import type { Knex } from 'knex';
import { sumBigint, toBigInt } from '../db/bigint.js';
import type { SubjectType } from '../plugin-api.js';
import { DAY_MS, HOUR_MS } from './buckets.js';

export interface Totals {
  upBytes: bigint;
  downBytes: bigint;
}

interface Piece {
  table: 'bw_usage' | 'bw_usage_hourly' | 'bw_usage_daily';
  column: string;
  from: number;
  to: number;
}

/**
 * Covers [from, to) with the coarsest table that fits: whole UTC days from the daily roll-up, whole
 * hours from the hourly one, and the partial hours at either end from raw usage rows.
 */
export function planRange(from: number, to: number): Piece[] {
  if (to <= from) return [];
  const pieces: Piece[] = [];
  const hourStart = Math.ceil(from / HOUR_MS) * HOUR_MS;
  const hourEnd = Math.floor(to / HOUR_MS) * HOUR_MS;
  if (hourEnd <= hourStart) return [{ table: 'bw_usage', column: 'period_end', from, to }];
  if (from < hourStart) pieces.push({ table: 'bw_usage', column: 'period_end', from, to: hourStart });
  const dayStart = Math.ceil(hourStart / DAY_MS) * DAY_MS;
  const dayEnd = Math.floor(hourEnd / DAY_MS) * DAY_MS;
  if (dayEnd > dayStart) {
    if (hourStart < dayStart) pieces.push({ table: 'bw_usage_hourly', column: 'hour_start', from: hourStart, to: dayStart });
    pieces.push({ table: 'bw_usage_daily', column: 'day_start', from: dayStart, to: dayEnd });
    if (dayEnd < hourEnd) pieces.push({ table: 'bw_usage_hourly', column: 'hour_start', from: dayEnd, to: hourEnd });
  } else {
    pieces.push({ table: 'bw_usage_hourly', column: 'hour_start', from: hourStart, to: hourEnd });
  }
  if (hourEnd < to) pieces.push({ table: 'bw_usage', column: 'period_end', from: hourEnd, to });
  return pieces;
}

/**
 * Totals per subject over [from, to), from the roll-ups where they cover the range. Raw rows are
 * placed by their period end; hourly and daily rows by their bucket start.
 */
export async function totalsBySubject(
  db: Knex,
  from: number,
  to: number,
  filter: { subjectType?: SubjectType; subjectIds?: string[] } = {},
): Promise<Map<string, Totals>> {
  const totals = new Map<string, Totals>();
  for (const piece of planRange(from, to)) {
    const query = db(piece.table)
      .select('subject_type', 'subject_id', sumBigint(db, 'up_bytes', 'up'), sumBigint(db, 'down_bytes', 'down'))
      .where(piece.column, piece.table === 'bw_usage' ? '>' : '>=', piece.from)
      .andWhere(piece.column, piece.table === 'bw_usage' ? '<=' : '<', piece.to)
      .groupBy('subject_type', 'subject_id');
    // With ids, the (type, id, bucket) index answers by seeks. Without, a range scan of the covering
    // (bucket, …) index is cheapest; an equality on the type would tempt planners (SQLite without
    // statistics) into scanning the whole (type, id, bucket) index instead, so the type is filtered here.
    if (filter.subjectIds) {
      if (filter.subjectType) query.where({ subject_type: filter.subjectType });
      query.whereIn('subject_id', filter.subjectIds);
    }
    for (const row of (await query) as Record<string, unknown>[]) {
      if (filter.subjectType && row.subject_type !== filter.subjectType) continue;
      const key = `${String(row.subject_type)}:${String(row.subject_id)}`;
      const entry = totals.get(key) ?? { upBytes: 0n, downBytes: 0n };
      entry.upBytes += toBigInt(row.up) ?? 0n;
      entry.downBytes += toBigInt(row.down) ?? 0n;
      totals.set(key, entry);
    }
  }
  return totals;
}

/** One bucket of a usage series. */
export interface SeriesPoint {
  start: number;
  upBytes: bigint;
  downBytes: bigint;
}

/** A subject's usage per hour or day over [from, to), every bucket present (zeros included). */
export async function usageSeries(
  db: Knex,
  subjectType: SubjectType,
  subjectId: string,
  from: number,
  to: number,
  step: 'hour' | 'day',
): Promise<SeriesPoint[]> {
  const [table, column, bucketMs] = step === 'hour' ? (['bw_usage_hourly', 'hour_start', HOUR_MS] as const) : (['bw_usage_daily', 'day_start', DAY_MS] as const);
  const first = Math.floor(from / bucketMs) * bucketMs;
  const rows = (await db(table)
    .select(column, sumBigint(db, 'up_bytes', 'up'), sumBigint(db, 'down_bytes', 'down'))
    .where({ subject_type: subjectType, subject_id: subjectId })
    .andWhere(column, '>=', first)
    .andWhere(column, '<', to)
    .groupBy(column)) as Record<string, unknown>[];
  const found = new Map(rows.map((row) => [Number(row[column]), row]));
  const points: SeriesPoint[] = [];
  for (let start = first; start < to; start += bucketMs) {
    const row = found.get(start);
    points.push({ start, upBytes: toBigInt(row?.up) ?? 0n, downBytes: toBigInt(row?.down) ?? 0n });
  }
  return points;
}

/** Bytes over [from, to) summed over every subject (the overview's cards). */
export async function grandTotals(db: Knex, from: number, to: number): Promise<Totals> {
  const total: Totals = { upBytes: 0n, downBytes: 0n };
  for (const piece of planRange(from, to)) {
    const [row] = (await db(piece.table)
      .select(sumBigint(db, 'up_bytes', 'up'), sumBigint(db, 'down_bytes', 'down'))
      .where(piece.column, piece.table === 'bw_usage' ? '>' : '>=', piece.from)
      .andWhere(piece.column, piece.table === 'bw_usage' ? '<=' : '<', piece.to)) as Record<string, unknown>[];
    total.upBytes += toBigInt(row?.up) ?? 0n;
    total.downBytes += toBigInt(row?.down) ?? 0n;
  }
  return total;
}
