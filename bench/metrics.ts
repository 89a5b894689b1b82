/**
 * `npx tsx bench/metrics.ts`: what one `/metrics` scrape costs the database with two years of daily
 * roll-ups (BENCH_SUBJECTS × BENCH_DAYS rows; 2,000 × 730 = 1.46 M by default, the size the
 * hardening pass measured), before and after the maintained totals (migration 0018):
 *  - `before`: the queries the scrape ran until then (a SUM over every daily row, grouped by
 *    subject; the caps; two GROUP BYs over bw_limits);
 *  - `after_reads`: the database reads of a scrape now (bw_limits, and bw_usage_totals joined to
 *    it: one row per subject each); `after`: a whole scrape now, rendering the text included
 *    (`createMetrics(db, null).scrape()`);
 *  - `backfill`: migration 0018 carrying the daily rows over once;
 *  - `concurrent`: 4 scrapes at once, before and after (the wall time of all four).
 * Prints one JSON line per figure (median of BENCH_RUNS, default 5).
 *
 * BENCH_ENGINES: comma-separated `sqlite`, `mysql`, `postgres` (default `sqlite`); BENCH_MYSQL_URL,
 * BENCH_POSTGRES_URL (defaults: the test servers). The databases' plugin tables are dropped first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { createMetrics, readSnapshot } from '../src/routes/metrics.js';
import { sumBigint } from '../src/db/bigint.js';
import * as createTotals from '../migrations/0018_create_bw_usage_totals.js';
import { dialectOf } from '../src/db/dialect.js';
import { DAY, freshDatabase, median, seedPeers, seedRollups } from './support.js';

const SUBJECTS = Number(process.env.BENCH_SUBJECTS ?? 2_000);
const DAYS = Number(process.env.BENCH_DAYS ?? 730);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const ENGINES = (process.env.BENCH_ENGINES ?? 'sqlite').split(',').map((name) => name.trim()).filter(Boolean);

/** The database reads of one scrape before maintained totals (src/routes/metrics.ts at 3e287a7). */
async function scrapeBefore(db: Knex): Promise<number> {
  const limited = (q: Knex.QueryBuilder) => q.where((w) => w.where('up_kbps', '>', 0).orWhere('down_kbps', '>', 0));
  const [bytes] = await Promise.all([
    db('bw_usage_daily').select('subject_type', 'subject_id', sumBigint(db, 'up_bytes', 'up'), sumBigint(db, 'down_bytes', 'down')).groupBy('subject_type', 'subject_id'),
    db('bw_limits').select('subject_type', 'subject_id', 'up_kbps', 'down_kbps'),
    limited(db('bw_limits')).whereNotNull('status').select('status').count({ n: '*' }).groupBy('status'),
    limited(db('bw_limits')).whereNotNull('reason').select('reason').count({ n: '*' }).groupBy('reason'),
  ]);
  return (bytes as unknown[]).length;
}

/** BENCH_DAYS daily rows per peer, made inside the database (seedRollups speaks SQLite and MariaDB). */
async function seedDaily(db: Knex, now: number): Promise<void> {
  if (dialectOf(db) !== 'postgres') {
    await seedRollups(db, SUBJECTS, DAYS, now, 1);
    return;
  }
  await db.raw(
    `INSERT INTO bw_usage_daily (subject_type, subject_id, day_start, up_bytes, down_bytes)
     SELECT 'peer', s::text, ?::bigint - b * ?::bigint, 24000000 + s, 216000000 + b
     FROM generate_series(1, ?) s CROSS JOIN generate_series(0, ?) b`,
    [Math.floor(now / DAY) * DAY, DAY, SUBJECTS, DAYS - 1],
  );
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function medianOf(fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm the cache and the pool
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) times.push(await timed(fn));
  return median(times);
}

function print(engine: string, figure: string, ms: number, extra: Record<string, unknown> = {}) {
  console.log(JSON.stringify({ bench: 'metrics', engine, figure, ms: Number(ms.toFixed(2)), subjects: SUBJECTS, daily_rows: SUBJECTS * DAYS, runs: RUNS, ...extra }));
}

function urlOf(engine: string, dir: string): string {
  switch (engine) {
    case 'sqlite':
      return `sqlite:${join(dir, 'bench.sqlite')}`;
    case 'mysql':
      return process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
    case 'postgres':
      return process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    default:
      throw new TypeError(`Expected BENCH_ENGINES to list sqlite, mysql or postgres, got \`${engine}\``);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'pbw-bench-metrics-'));
try {
  for (const engine of ENGINES) {
    const db = await freshDatabase(urlOf(engine, dir));
    try {
      const now = Date.now();
      await seedPeers(db, SUBJECTS, now);
      const seedMs = await timed(() => seedDaily(db, now));
      print(engine, 'seed', seedMs);
      await createTotals.down(db);
      print(engine, 'backfill', await timed(() => createTotals.up(db)));

      const metrics = createMetrics(db, null);
      const text = await metrics.scrape();
      const series = text.split('\n').filter((line) => line.startsWith('panel_bandwidth_subject_bytes_total{')).length;
      if (series !== 2 * SUBJECTS || (await scrapeBefore(db)) !== SUBJECTS) throw new Error(`expected ${2 * SUBJECTS} byte series, got ${series}`);
      print(engine, 'before', await medianOf(() => scrapeBefore(db)));
      print(engine, 'after_reads', await medianOf(() => readSnapshot(db)));
      print(engine, 'after', await medianOf(() => metrics.scrape()), { bytes: text.length });
      print(engine, 'concurrent_before', await medianOf(() => Promise.all(Array.from({ length: 4 }, () => scrapeBefore(db)))), { scrapers: 4 });
      // Four separate registries (four panel processes): the single-flight within one process would otherwise hide the cost.
      const four = Array.from({ length: 4 }, () => createMetrics(db, null));
      print(engine, 'concurrent_after', await medianOf(() => Promise.all(four.map((m) => m.scrape()))), { scrapers: 4 });
    } finally {
      await db.destroy();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
