import type { Knex } from 'knex';
import { toBigInt } from '../db/bigint.js';
import { countTick, type CountOptions, type SeriesDelta, type SubjectCount } from './billing.js';
import { kbpsOf } from './sample.js';
import { storedSample } from './store.js';

/** Live rate of one subject, from its last two readings and the measured time between them. */
export interface Rate {
  /** kbit/s of the billed bytes (see `billing_bytes`): what the totals count. */
  upKbps: number;
  downKbps: number;
  /**
   * kbit/s through the subject's HTB class, the bytes its cap governs; `null` where the
   * direction had no class counted over the interval (unlimited, cap not in the kernel yet).
   */
  classUpKbps: number | null;
  classDownKbps: number | null;
  /** When the newer reading was taken (epoch ms). */
  at: number;
}

/** A subject's rates from what it did in one tick. */
export function rateOf(count: SubjectCount): Rate {
  return {
    upKbps: count.up ? kbpsOf(count.up.bytes, count.up.elapsedMs) : 0,
    downKbps: count.down ? kbpsOf(count.down.bytes, count.down.elapsedMs) : 0,
    classUpKbps: count.classUp ? kbpsOf(count.classUp.bytes, count.classUp.elapsedMs) : null,
    classDownKbps: count.classDown ? kbpsOf(count.classDown.bytes, count.classDown.elapsedMs) : null,
    at: count.at,
  };
}

/**
 * Rates for subjects without a collector in this process (another process, such as the `collect`
 * timer, writes the ticks): each counter series keeps its last delta in `bw_counters`, and the
 * subject's series of its last tick are counted again exactly as that tick counted them.
 */
export async function lastRates(
  db: Knex,
  keys: { subjectType: string; subjectId: string }[],
  options: CountOptions,
): Promise<Map<string, Rate>> {
  const rows: Record<string, unknown>[] = [];
  for (const type of new Set(keys.map((k) => k.subjectType))) {
    const ids = [...new Set(keys.filter((k) => k.subjectType === type).map((k) => k.subjectId))];
    for (let i = 0; i < ids.length; i += 500) {
      rows.push(...((await db('bw_counters').where({ subject_type: type }).whereIn('subject_id', ids.slice(i, i + 500)).whereNotNull('delta_kind')) as Record<string, unknown>[]));
    }
  }
  const bySubject = new Map<string, SeriesDelta[]>();
  for (const row of rows) {
    const kind = row.delta_kind;
    if (kind !== 'delta' && kind !== 'reset') continue;
    const delta: SeriesDelta = {
      sample: storedSample(row),
      kind,
      rxBytes: toBigInt(row.delta_rx_bytes) ?? 0n,
      txBytes: toBigInt(row.delta_tx_bytes) ?? 0n,
      elapsedMs: Number(row.delta_ms),
    };
    const key = `${String(row.subject_type)}:${String(row.subject_id)}`;
    const list = bySubject.get(key);
    if (list) list.push(delta);
    else bySubject.set(key, [delta]);
  }
  // Only the series read in the subject's last tick: a series that stopped (a class removed, a
  // re-keyed peer) keeps its old delta in its row.
  const latest: SeriesDelta[] = [];
  for (const list of bySubject.values()) {
    const newest = list.reduce((a, b) => (b.sample.at > a.sample.at ? b : a));
    latest.push(...list.filter((d) => d.sample.at > newest.sample.at - newest.elapsedMs / 2));
  }
  const rates = new Map<string, Rate>();
  for (const [key, count] of countTick(latest, options)) rates.set(key, rateOf(count));
  return rates;
}

/** Live rates from the collector in this process, else from each subject's last tick in the database. */
export async function currentRates(
  db: Knex,
  collector: { rates(): ReadonlyMap<string, Rate> } | null,
  keys: { subjectType: string; subjectId: string }[],
  options: CountOptions,
): Promise<ReadonlyMap<string, Rate>> {
  return collector ? collector.rates() : lastRates(db, keys, options);
}
