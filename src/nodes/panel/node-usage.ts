/**
 * A node's bytes: the usage of the subjects the panel places on it (`bw_limits.node`), over the
 * same tables and ranges as a subject's (src/accounting/queries.ts). A subject moved to another
 * node brings its history with it: totals follow where subjects are now.
 */
import type { Knex } from 'knex';
import { planRange, type SeriesPoint, type Totals } from '../../accounting/queries.js';
import { DAY_MS, HOUR_MS } from '../../accounting/buckets.js';
import { sumBigint, toBigInt } from '../../db/bigint.js';

type UsageTable = 'bw_usage' | 'bw_usage_hourly' | 'bw_usage_daily';

/** Rows of `table` that belong to subjects on `node`. */
function onNode(db: Knex, table: UsageTable, node: string): Knex.QueryBuilder {
  return db(table)
    .join('bw_limits', (on) => {
      on.on(`${table}.subject_type`, '=', 'bw_limits.subject_type').andOn(`${table}.subject_id`, '=', 'bw_limits.subject_id');
    })
    .where('bw_limits.node', node);
}

/** How many subjects are on `node`. */
export async function subjectsOnNode(db: Knex, node: string): Promise<number> {
  const [row] = await db('bw_limits').where({ node }).count({ n: '*' });
  return Number(row?.n ?? 0);
}

/** Bytes of every subject on `node` over [from, to), from the roll-ups where they cover the range. */
export async function nodeTotals(db: Knex, node: string, from: number, to: number): Promise<Totals> {
  const total: Totals = { upBytes: 0n, downBytes: 0n };
  for (const piece of planRange(from, to)) {
    const column = `${piece.table}.${piece.column}`;
    const [row] = (await onNode(db, piece.table, node)
      .select(sumBigint(db, `${piece.table}.up_bytes`, 'up'), sumBigint(db, `${piece.table}.down_bytes`, 'down'))
      .where(column, piece.table === 'bw_usage' ? '>' : '>=', piece.from)
      .andWhere(column, piece.table === 'bw_usage' ? '<=' : '<', piece.to)) as Record<string, unknown>[];
    total.upBytes += toBigInt(row?.up) ?? 0n;
    total.downBytes += toBigInt(row?.down) ?? 0n;
  }
  return total;
}

/** Bytes of every subject on `node` per hour or day over [from, to), every bucket present (zeros included). */
export async function nodeSeries(db: Knex, node: string, from: number, to: number, step: 'hour' | 'day'): Promise<SeriesPoint[]> {
  const [table, bucket, bucketMs] = step === 'hour' ? (['bw_usage_hourly', 'hour_start', HOUR_MS] as const) : (['bw_usage_daily', 'day_start', DAY_MS] as const);
  const column = `${table}.${bucket}`;
  const first = Math.floor(from / bucketMs) * bucketMs;
  const rows = (await onNode(db, table, node)
    .select(db.raw('?? AS ??', [column, 'bucket']), sumBigint(db, `${table}.up_bytes`, 'up'), sumBigint(db, `${table}.down_bytes`, 'down'))
    .where(column, '>=', first)
    .andWhere(column, '<', to)
    .groupBy(column)) as Record<string, unknown>[];
  const found = new Map(rows.map((row) => [Number(row.bucket), row]));
  const points: SeriesPoint[] = [];
  for (let start = first; start < to; start += bucketMs) {
    const row = found.get(start);
    points.push({ start, upBytes: toBigInt(row?.up) ?? 0n, downBytes: toBigInt(row?.down) ?? 0n });
  }
  return points;
}
