import type { Knex } from 'knex';
import { toBigInt } from '../db/bigint.js';
import { dialectOf } from '../db/dialect.js';
import type { Logger } from '../plugin-api.js';
import { computeDelta, DEFAULT_CEILING_BITS_PER_SECOND, type DeltaResult } from './deltas.js';
import { seriesKeyOf, type Sample, type SourceName } from './sample.js';
import { bucketOf, DAY_MS, HOUR_MS } from './buckets.js';
import { countTick, DEFAULT_COUNT_OPTIONS, type BillingBytes, type SeriesDelta, type SubjectCount } from './billing.js';

/** What one tick wrote. */
export interface TickResult {
  samples: number;
  deltas: number;
  resets: number;
  discarded: number;
  usageRows: number;
  /** Per subject (`type:id`): its billed and class bytes this tick, with the measured times. */
  counted: Map<string, SubjectCount>;
}

export interface TickOptions {
  ceilingBitsPerSecond?: bigint;
  logger?: Logger;
  /** Only these sources feed usage roll-ups (others keep counters only). @default wireguard, sysfs */
  billedSources?: readonly SourceName[];
  /** Which bytes a peer's bill counts (see {@link BillingBytes}). @default 'wire' */
  billing?: BillingBytes;
}

type Row = Record<string, unknown>;

/** A `bw_counters` row as the reading it stores. */
export function storedSample(row: Row): Sample {
  return {
    identity: {
      node: String(row.node),
      source: row.source as SourceName,
      interface: String(row.interface),
      seriesKey: String(row.series_key),
      ifindex: row.ifindex === null ? null : Number(row.ifindex),
      bootId: String(row.boot_id),
    },
    subjectType: (row.subject_type as Sample['subjectType']) ?? null,
    subjectId: row.subject_id === null ? null : String(row.subject_id),
    rxBytes: toBigInt(row.rx_bytes) as bigint,
    txBytes: toBigInt(row.tx_bytes) as bigint,
    rxPackets: toBigInt(row.rx_packets),
    txPackets: toBigInt(row.tx_packets),
    at: Number(row.sampled_at),
  };
}

/** A stored reading, with the delta it made (null for a baseline or a discarded one), for readers of rates. */
function counterValues(sample: Sample, delta: DeltaResult): Row {
  const counted = delta.kind === 'delta' || delta.kind === 'reset';
  return {
    delta_kind: counted ? delta.kind : null,
    delta_rx_bytes: counted ? delta.rxBytes.toString() : null,
    delta_tx_bytes: counted ? delta.txBytes.toString() : null,
    delta_ms: counted ? delta.elapsedMs : null,
    subject_type: sample.subjectType,
    subject_id: sample.subjectId,
    ifindex: sample.identity.ifindex,
    boot_id: sample.identity.bootId,
    rx_bytes: sample.rxBytes.toString(),
    tx_bytes: sample.txBytes.toString(),
    rx_packets: sample.rxPackets?.toString() ?? null,
    tx_packets: sample.txPackets?.toString() ?? null,
    sampled_at: sample.at,
  };
}

/** `col = col + <new value>` for an upsert's update, per dialect. */
export function increment(knex: Knex, table: string, column: string): Knex.Raw {
  switch (dialectOf(knex)) {
    case 'mysql':
      return knex.raw('?? + VALUES(??)', [column, column]);
    case 'postgres':
      return knex.raw('??.?? + EXCLUDED.??', [table, column, column]);
    case 'sqlite':
      return knex.raw('?? + excluded.??', [column, column]);
  }
}

export type Rollups = Map<string, { subjectType: string; subjectId: string; bucket: number; up: bigint; down: bigint }>;

/** Adds a delta to the UTC hour and day buckets that hold its end (see {@link bucketOf}). */
export function addToRollups(rollups: { hourly: Rollups; daily: Rollups }, subjectType: string, subjectId: string, end: number, up: bigint, down: bigint) {
  for (const [map, bucketMs] of [
    [rollups.hourly, HOUR_MS],
    [rollups.daily, DAY_MS],
  ] as const) {
    const bucket = bucketOf(end, bucketMs);
    const key = `${subjectType}\u0000${subjectId}\u0000${bucket}`;
    const entry = map.get(key) ?? { subjectType, subjectId, bucket, up: 0n, down: 0n };
    entry.up += up;
    entry.down += down;
    map.set(key, entry);
  }
}

/** Upserts a tick's roll-ups, adding to what the buckets already hold. */
export async function writeRollups(trx: Knex.Transaction, table: 'bw_usage_hourly' | 'bw_usage_daily', column: string, rollups: Rollups) {
  const rows = [...rollups.values()].map((entry) => ({
    subject_type: entry.subjectType,
    subject_id: entry.subjectId,
    [column]: entry.bucket,
    up_bytes: entry.up.toString(),
    down_bytes: entry.down.toString(),
  }));
  for (let i = 0; i < rows.length; i += 500) {
    await trx(table)
      .insert(rows.slice(i, i + 500))
      .onConflict(['subject_type', 'subject_id', column])
      .merge({ up_bytes: increment(trx, table, 'up_bytes'), down_bytes: increment(trx, table, 'down_bytes') });
  }
}

/**
 * Adds a tick's bytes to each subject's all-time totals (`bw_usage_totals`, read by /metrics). Called
 * with the daily roll-ups in the same transaction that writes them, so the totals hold exactly the
 * bytes the roll-ups received and a rolled-back tick adds to neither.
 */
export async function writeTotals(trx: Knex.Transaction, daily: Rollups) {
  const bySubject = new Map<string, { subject_type: string; subject_id: string; up: bigint; down: bigint }>();
  for (const entry of daily.values()) {
    const key = `${entry.subjectType}\u0000${entry.subjectId}`;
    const total = bySubject.get(key) ?? { subject_type: entry.subjectType, subject_id: entry.subjectId, up: 0n, down: 0n };
    total.up += entry.up;
    total.down += entry.down;
    bySubject.set(key, total);
  }
  const rows = [...bySubject.values()].map(({ up, down, ...subject }) => ({ ...subject, up_bytes: up.toString(), down_bytes: down.toString() }));
  for (let i = 0; i < rows.length; i += 500) {
    await trx('bw_usage_totals')
      .insert(rows.slice(i, i + 500))
      .onConflict(['subject_type', 'subject_id'])
      .merge({ up_bytes: increment(trx, 'bw_usage_totals', 'up_bytes'), down_bytes: increment(trx, 'bw_usage_totals', 'down_bytes') });
  }
}

/**
 * Writes one collector tick in one transaction: the new last samples (`bw_counters`), a usage row
 * per positive delta (`bw_usage`) and the hourly and daily roll-ups, each as a few multi-row
 * statements. The transaction first takes the collector lock row, so a second collector running at
 * the same time reads the first one's counters and finds its own readings stale: a replayed tick,
 * a retry or a concurrent collector adds nothing twice.
 */
export async function writeTick(db: Knex, samples: Sample[], options: TickOptions = {}): Promise<TickResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await writeTickOnce(db, samples, options);
    } catch (error) {
      // Two SQLite writers that both began by reading cannot both upgrade: SQLite answers BUSY at
      // once instead of waiting. The transaction rolled back, so the whole tick is simply retried.
      if (attempt >= 8 || !/SQLITE_BUSY|database is locked/.test((error as Error).message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
    }
  }
}

async function writeTickOnce(db: Knex, samples: Sample[], options: TickOptions): Promise<TickResult> {
  const counting = { billing: options.billing ?? DEFAULT_COUNT_OPTIONS.billing, billedSources: options.billedSources ?? DEFAULT_COUNT_OPTIONS.billedSources };
  const ceiling = options.ceilingBitsPerSecond ?? DEFAULT_CEILING_BITS_PER_SECOND;
  const result: TickResult = { samples: samples.length, deltas: 0, resets: 0, discarded: 0, usageRows: 0, counted: new Map() };
  if (samples.length === 0) return result;
  await db.transaction(async (trx) => {
    // The lock row first: a second collector waits here, then reads what the first one wrote and
    // finds its own readings stale. On SQLite this first write also takes the database's write lock.
    await trx('bw_locks').where({ name: 'collector' }).update({ held_at: Date.now() });
    const previous = new Map<string, Sample>();
    const byNode = new Map<string, Sample[]>();
    for (const sample of samples) {
      const list = byNode.get(sample.identity.node);
      if (list) list.push(sample);
      else byNode.set(sample.identity.node, [sample]);
    }
    for (const [node, nodeSamples] of byNode) {
      const interfaces = [...new Set(nodeSamples.map((s) => s.identity.interface))];
      for (let i = 0; i < interfaces.length; i += 200) {
        const rows = (await trx('bw_counters').where({ node }).whereIn('interface', interfaces.slice(i, i + 200))) as Row[];
        for (const row of rows) {
          const sample = storedSample(row);
          previous.set(seriesKeyOf(sample.identity), sample);
        }
      }
    }

    const counterRows: Row[] = [];
    const usageRows: Row[] = [];
    const rollups = { hourly: new Map() as Rollups, daily: new Map() as Rollups };
    const deltas: SeriesDelta[] = [];
    const seen = new Set<string>();
    for (const sample of samples) {
      const key = seriesKeyOf(sample.identity);
      if (seen.has(key)) continue; // one reading per series and tick
      seen.add(key);
      const stored = previous.get(key);
      const delta: DeltaResult = computeDelta(stored, sample, ceiling);
      if (delta.kind === 'stale') continue;
      counterRows.push({ node: sample.identity.node, source: sample.identity.source, interface: sample.identity.interface, series_key: sample.identity.seriesKey, ...counterValues(sample, delta) });
      if (delta.kind === 'first' || !stored) continue;
      if (delta.kind === 'discarded') {
        result.discarded++;
        options.logger?.warn('discarded an impossible delta', { series: sample.identity.seriesKey, interface: sample.identity.interface, reason: delta.reason });
        continue;
      }
      if (delta.kind === 'reset') {
        result.resets++;
        options.logger?.info('counter reset', { series: sample.identity.seriesKey, interface: sample.identity.interface, reason: delta.reason });
      } else {
        result.deltas++;
      }
      deltas.push({ sample, kind: delta.kind, rxBytes: delta.rxBytes, txBytes: delta.txBytes, elapsedMs: delta.elapsedMs });
    }
    for (const [key, count] of countTick(deltas, counting)) {
      result.counted.set(key, count);
      for (const row of count.rows) {
        if (row.up === 0n && row.down === 0n) continue;
        usageRows.push({
          subject_type: count.subjectType,
          subject_id: count.subjectId,
          node: row.node,
          source: row.source,
          interface: row.interface,
          period_start: row.periodStart,
          period_end: row.periodEnd,
          up_bytes: row.up.toString(),
          down_bytes: row.down.toString(),
        });
        addToRollups(rollups, count.subjectType, count.subjectId, row.periodEnd, row.up, row.down);
      }
    }
    for (let i = 0; i < counterRows.length; i += 500) {
      await trx('bw_counters').insert(counterRows.slice(i, i + 500)).onConflict(['node', 'source', 'interface', 'series_key']).merge();
    }
    for (let i = 0; i < usageRows.length; i += 500) await trx('bw_usage').insert(usageRows.slice(i, i + 500));
    await writeRollups(trx, 'bw_usage_hourly', 'hour_start', rollups.hourly);
    await writeRollups(trx, 'bw_usage_daily', 'day_start', rollups.daily);
    await writeTotals(trx, rollups.daily);
    result.usageRows = usageRows.length;
  });
  return result;
}

/** Retention per table, in days. */
export interface Retention {
  rawDays: number;
  hourlyDays: number;
  dailyDays: number;
}

export const DEFAULT_RETENTION: Retention = { rawDays: 7, hourlyDays: 90, dailyDays: 730 };

/** Deletes usage rows older than the retention of their table; returns how many went. */
export async function enforceRetention(db: Knex, now: number, retention: Retention = DEFAULT_RETENTION): Promise<{ raw: number; hourly: number; daily: number }> {
  return {
    raw: await db('bw_usage').where('period_end', '<', now - retention.rawDays * DAY_MS).delete(),
    hourly: await db('bw_usage_hourly').where('hour_start', '<', now - retention.hourlyDays * DAY_MS).delete(),
    daily: await db('bw_usage_daily').where('day_start', '<', now - retention.dailyDays * DAY_MS).delete(),
  };
}
