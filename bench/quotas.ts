/**
 * `npm run bench:quotas` (tsx bench/quotas.ts): what quotas (issue 11) cost ingestion and the
 * enforcer, with BENCH_SUBJECTS peers (default 10,000; at least 100) on one interface, each engine
 * of BENCH_ENGINES (default `sqlite,mysql,postgres`; a server that does not answer is skipped with
 * a line; BENCH_MYSQL_URL, BENCH_POSTGRES_URL name the server, their database is replaced).
 *
 * Every engine gets two databases of this run's own, created and dropped here:
 * `pbw_bench_quotas_<pid>_<engine>` (every subject under a plugin-wide default quota) and
 * `pbw_bench_quotas_<pid>_<engine>_noquota` (no quota anywhere); SQLite files in a temporary
 * directory. Both hold the same peers and 7 days of hourly roll-ups per peer (bulk-inserted by
 * the database itself) before anything is measured; PostgreSQL's are analyzed after the bulk loads
 * (see `analyze`; BENCH_ANALYZE=0 leaves that out).
 *
 * 1. One collector-tick page (one entry per subject) through `ingestPage`, without and with quotas:
 *    pages alternate between the two databases (a warm-up page each, then BENCH_PAGES each,
 *    default 5), median ms per page and the ratio.
 * 2. `QuotaEnforcer.afterIngest()` after such a page, every cycle dirty: nothing crossed, and 1 % of
 *    the subjects crossing 100 % (notices audited, throttles stored; `applyInterface` records only,
 *    so the kernel is out of it). Median of BENCH_ROUNDS runs (default 3), one run only when it
 *    took longer than BENCH_SLOW_MS (default 10,000 ms: a full run stays under ~5 minutes).
 * 3. `sync()` with nothing changed (the same rounds).
 * 4. Opening every subject's cycle at once: the first `sync()` after the default quota is put (its
 *    cycle already holds the 7 days of history), and the `sync()` of a new month (the clock moved
 *    past the cycle's end; the 7 days are then the old cycle's).
 *
 * The clock is injected (2026-11-20T12:00Z plus offsets). Each figure also counts the statements
 * knex sent and their time (from the `query` to the `query-response` event); the rest of the wall
 * time is JavaScript in this process (on SQLite, which runs on libuv's threads, part of the
 * statements' time is the database engine itself). Prints a Markdown table for docs/performance.md,
 * the statements that took longest per figure, and one JSON line per figure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';

import { HOUR_MS } from '../src/accounting/buckets.js';
import { connect } from '../src/db/connect.js';
import { recordEvent } from '../src/db/events.js';
import { putQuota } from '../src/db/quotas.js';
import { ingestPage } from '../src/nodes/panel/ingest.js';
import type { LedgerEntry, LedgerPage } from '../src/nodes/protocol.js';
import type { HookBus, Logger } from '../src/plugin-api.js';
import { QuotaEnforcer } from '../src/quotas/enforcer.js';
import { quotaNotifier } from '../src/quotas/notify.js';
import { QUOTA_DEFAULTS } from '../src/quotas/rules.js';
import { freshDatabase, median, seedPeers } from './support.js';

/** A positive integer from the environment (at least `min`), or `fallback` when unset. */
function envInteger(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new TypeError(`Expected \`${name}\` to be an integer >= ${min}, got \`${raw}\``);
  return value;
}

const SUBJECTS = envInteger('BENCH_SUBJECTS', 10_000, 100);
const PAGES = envInteger('BENCH_PAGES', 5, 1);
const ROUNDS = envInteger('BENCH_ROUNDS', 3, 1);
/** A figure whose run took longer than this is not repeated (the run stays under ~5 minutes). */
const SLOW_MS = envInteger('BENCH_SLOW_MS', 10_000, 0);
const ENGINES = (process.env.BENCH_ENGINES ?? 'sqlite,mysql,postgres').split(',').map((id) => id.trim()).filter(Boolean);
/** PostgreSQL: ANALYZE after the bulk loads, as autovacuum would within its minute (0: measure before it). */
const ANALYZE = process.env.BENCH_ANALYZE !== '0';
const MYSQL_URL = process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const MINUTE = 60_000;
/** The injected clock's origin: every timestamp of the data is this plus an offset. */
const T0 = Date.UTC(2026, 10, 20, 12, 0);
/** The end of T0's cycle under the default quota (cycle day 1, UTC). */
const CYCLE_END = Date.UTC(2026, 11, 1);
const HISTORY_HOURS = 7 * 24;
const GB = 1_000_000_000n;
/** Far above a bench's usage: nothing crosses a threshold unless a page sends a crossing entry. */
const ALLOWANCE = 100n * GB;
const NODE = 'node-bench';
const LEDGER = 'ledger-bench';
/** 1 % of the subjects cross 100 % in one page of the crossing rounds. */
const CROSSING_EVERY = 100;

const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits;
const group = (n: number): string => n.toLocaleString('en-US');
const ms = (value: number): string => (value >= 100 ? group(Math.round(value)) : value.toFixed(1));

// ---------------------------------------------------------------------------------------------
// Statements: count and time what knex sends, grouped by statement shape.

class StatementLog {
  private readonly open = new Map<string, { shape: string; at: number }>();
  private byShape = new Map<string, { count: number; ms: number }>();

  attach(db: Knex): void {
    db.on('query', (query: { __knexQueryUid: string; sql: string }) => this.open.set(query.__knexQueryUid, { shape: shapeOf(query.sql), at: performance.now() }));
    const end = (query: { __knexQueryUid: string }) => {
      const started = this.open.get(query.__knexQueryUid);
      if (!started) return;
      this.open.delete(query.__knexQueryUid);
      const entry = this.byShape.get(started.shape) ?? { count: 0, ms: 0 };
      entry.count += 1;
      entry.ms += performance.now() - started.at;
      this.byShape.set(started.shape, entry);
    };
    db.on('query-response', (_response: unknown, query: { __knexQueryUid: string }) => end(query));
    db.on('query-error', (_error: unknown, query: { __knexQueryUid: string }) => end(query));
  }

  /** What was sent since the last call, and starts over. */
  take(): Map<string, { count: number; ms: number }> {
    const taken = this.byShape;
    this.byShape = new Map();
    return taken;
  }
}

/** A statement with its value lists folded (`(?, ?, …), (…)` → `(…)×`), at most 110 characters. */
function shapeOf(sql: string): string {
  return sql
    .replace(/\s+/g, ' ')
    .replace(/\((?:\s*(?:\?|\$\d+)\s*,?)+\)/g, '(…)')
    .replace(/(?:\(…\)\s*,\s*)+\(…\)/g, '(…)×')
    .replace(/[`"]/g, '')
    .slice(0, 110);
}

interface Measured {
  ms: number;
  statements: number;
  statementMs: number;
  top: [string, { count: number; ms: number }][];
}

async function measure(log: StatementLog, work: () => Promise<unknown>): Promise<Measured> {
  log.take();
  const started = performance.now();
  await work();
  const elapsed = performance.now() - started;
  const shapes = log.take();
  const all = [...shapes.values()];
  return {
    ms: elapsed,
    statements: all.reduce((sum, s) => sum + s.count, 0),
    statementMs: all.reduce((sum, s) => sum + s.ms, 0),
    top: [...shapes].sort((a, b) => b[1].ms - a[1].ms).slice(0, 4),
  };
}

// ---------------------------------------------------------------------------------------------
// Databases

interface Engine {
  id: string;
  label: string;
  /** Every subject under the plugin-wide default quota. */
  quota: Knex;
  /** No quota anywhere. */
  noQuota: Knex;
  close(): Promise<void>;
}

async function openEngine(id: string, dir: string): Promise<Engine | string> {
  const names = [`pbw_bench_quotas_${process.pid}_${id}`, `pbw_bench_quotas_${process.pid}_${id}_noquota`];
  if (id === 'sqlite') {
    const [quota, noQuota] = await Promise.all(names.map((name) => freshDatabase(`sqlite:${join(dir, `${name}.sqlite`)}`)));
    return { id, label: 'SQLite', quota: quota!, noQuota: noQuota!, close: async () => void (await Promise.all([quota!.destroy(), noQuota!.destroy()])) };
  }
  if (id !== 'mysql' && id !== 'postgres') return `unknown engine \`${id}\` (sqlite, mysql, postgres)`;
  const adminUrl = id === 'mysql' ? MYSQL_URL : POSTGRES_URL;
  const admin = connect(adminUrl);
  try {
    await admin.raw('select 1');
  } catch (error) {
    await admin.destroy();
    return `${id} skipped: ${adminUrl.replace(/:[^:@/]*@/, ':***@')} does not answer (${(error as Error).message})`;
  }
  const answer = (await admin.raw('select version() as v')) as { rows?: { v: string }[] } & { v: string }[][];
  const version = String((id === 'mysql' ? answer[0]?.[0]?.v : answer.rows?.[0]?.v) ?? '?');
  const dbs: Knex[] = [];
  const close = async () => {
    await Promise.all(dbs.map((db) => db.destroy()));
    for (const name of names) await admin.raw('DROP DATABASE IF EXISTS ??', [name]);
    await admin.destroy();
  };
  try {
    for (const name of names) {
      await admin.raw('DROP DATABASE IF EXISTS ??', [name]);
      await admin.raw('CREATE DATABASE ??', [name]);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      dbs.push(await freshDatabase(url.toString()));
    }
  } catch (error) {
    await close();
    throw error;
  }
  return {
    id,
    label: id === 'mysql' ? `MariaDB ${version.split('-')[0]}` : `PostgreSQL ${version.split(' ')[1] ?? version}`,
    quota: dbs[0]!,
    noQuota: dbs[1]!,
    close,
  };
}

/**
 * `hours` hourly roll-up rows per peer (ids 1..count), the last one starting at `lastHour`,
 * generated by the database (a recursive CTE) so millions of rows take seconds.
 */
async function seedHourly(db: Knex, count: number, lastHour: number, hours: number): Promise<void> {
  const mysql = db.client.dialect === 'mysql' || db.client.dialect === 'mysql2';
  const text = mysql ? 'CAST(s.n AS CHAR)' : "'' || s.n";
  await db.transaction(async (trx) => {
    // MariaDB stops recursive CTEs after 1,000 iterations by default.
    if (mysql) await trx.raw('SET SESSION max_recursive_iterations = 1000000');
    // The times are this bench's own integers, written as literals: PostgreSQL would type a bound
    // parameter beside an integer column as a 32-bit integer.
    await trx.raw(
      `INSERT INTO bw_usage_hourly (subject_type, subject_id, hour_start, up_bytes, down_bytes)
       WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ${count}),
                      b(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM b WHERE k < ${hours - 1})
       SELECT 'peer', ${text}, ${lastHour} - b.k * ${HOUR_MS}, 1000000 + s.n, 9000000 + b.k FROM s CROSS JOIN b`,
    );
  });
}

/**
 * PostgreSQL plans from statistics a freshly bulk-loaded table does not have yet: the cycles'
 * `(subject_type, subject_id) IN (…)` reads then filter every row of the range through the
 * 500-pair list (seconds per statement). Autovacuum analyzes such a table within about a minute;
 * the bench does it at once (BENCH_ANALYZE=0 leaves it out). SQLite and MariaDB keep their own.
 */
async function analyze(db: Knex): Promise<void> {
  if (ANALYZE && db.client.dialect === 'postgresql') await db.raw('ANALYZE');
}

/** Bytes of one table's rows, summed in the database (exactness check). */
async function sumBytes(db: Knex, table: string, where: (query: Knex.QueryBuilder) => Knex.QueryBuilder): Promise<bigint> {
  const row = (await where(db(table).sum({ up: 'up_bytes', down: 'down_bytes' })).first()) as Record<string, unknown>;
  return BigInt(String(row.up ?? 0)) + BigInt(String(row.down ?? 0));
}

// ---------------------------------------------------------------------------------------------
// Pages

/**
 * Ledger page `k` (from 1): one entry per subject for the minute ending at T0 + k minutes. Subjects
 * in `crossing` send 60 + 60 GB in it (over the 100 GB allowance).
 */
function pageOf(k: number, crossing: (index: number) => boolean = () => false): LedgerPage {
  const periodEnd = T0 + k * MINUTE;
  const entries: LedgerEntry[] = [];
  for (let i = 0; i < SUBJECTS; i++) {
    const big = crossing(i);
    entries.push({
      seq: (k - 1) * SUBJECTS + i + 1, subjectType: 'peer', subjectId: String(i + 1), source: 'wireguard', interface: 'wg0',
      periodStart: periodEnd - MINUTE, periodEnd,
      upBytes: big ? String(60n * GB) : String(1_000_000 + i), downBytes: big ? String(60n * GB) : String(9_000_000 + 7 * i),
    });
  }
  return { node: NODE, ledgerId: LEDGER, head: k * SUBJECTS, oldest: 1, entries };
}

// ---------------------------------------------------------------------------------------------

interface Figure {
  engine: Engine;
  metric: string;
  variant: string;
  label: string;
  runs: Measured[];
  extra?: Record<string, number | string>;
}

/** The order figures are printed in (brief's order). */
const ORDER = ['ingest_page_ms:no_quota', 'ingest_page_ms:quota', 'after_ingest_ms:all_dirty', 'after_ingest_ms:crossing_1pct', 'sync_ms:unchanged', 'open_cycles_ms:new_month', 'open_cycles_ms:quota_put_7d_history'];
const rank = (f: Figure): number => ORDER.indexOf(`${f.metric}:${f.variant}`);

/**
 * Up to ROUNDS runs of `work`, each after its `prepare` (unmeasured), fewer once a run took longer
 * than SLOW_MS: a median where a run is cheap, the run's duration kept where it is not.
 */
async function rounds(log: StatementLog, prepare: (round: number) => Promise<void>, work: () => Promise<unknown>): Promise<Measured[]> {
  const runs: Measured[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    await prepare(r);
    runs.push(await measure(log, work));
    if (runs.at(-1)!.ms > SLOW_MS) break;
  }
  return runs;
}

const typical = (runs: Measured[]): Measured => [...runs].sort((a, b) => a.ms - b.ms)[Math.floor((runs.length - 1) / 2)]!;

async function benchEngine(engine: Engine, figures: Figure[]): Promise<void> {
  let clock = T0 - 2 * 86_400_000;
  const now = () => clock;
  const warnings: string[] = [];
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: (message, fields) => void warnings.push(`${message} ${JSON.stringify(fields ?? {})}`),
    error: (message, fields) => void warnings.push(`${message} ${JSON.stringify(fields ?? {})}`),
  };
  const log = new StatementLog();
  log.attach(engine.quota);
  log.attach(engine.noQuota);
  const add = (metric: string, variant: string, label: string, runs: Measured[], extra?: Record<string, number | string>) =>
    figures.push({ engine, metric, variant, label, runs, ...(extra ? { extra } : {}) });

  // The panel's wiring (src/index.ts) without the kernel and the webhook: notices are audited and
  // emitted to a recording host bus, throttle changes audited, interfaces recorded instead of applied.
  const emitted: string[] = [];
  const applied: string[] = [];
  let throttleChanges = 0;
  const hooks: HookBus = { on: () => () => {}, emit: (name) => void emitted.push(name) };
  const db = engine.quota;
  const notifier = quotaNotifier({ db, hooks, logger, now, webhook: null, deliverer: null });
  const enforcer = new QuotaEnforcer({
    db, logger, now,
    record: notifier.record,
    notify: async (notice) => (notice.name === 'bandwidth.quota.reset' ? notifier.notify(notice) : notifier.announce(notice)),
    applyInterface: async (iface, _netns, node) => void applied.push(`${node}/${iface}`),
    throttled: async (change) => {
      throttleChanges += 1;
      await recordEvent(db, {
        actor: 'quota', subjectType: change.subject.type, subjectId: change.subject.id, action: change.throttle ? 'quota.throttled' : 'quota.restored',
        newValue: change.throttle ? { up_kbps: change.throttle.upKbps, down_kbps: change.throttle.downKbps } : null, result: 'ok',
      }, now());
    },
  });
  const counts = () => ({ notices: emitted.length, throttle_changes: throttleChanges, interfaces_applied: applied.length });
  const since = (before: ReturnType<typeof counts>) => {
    const after = counts();
    return { notices: after.notices - before.notices, throttle_changes: after.throttle_changes - before.throttle_changes, interfaces_applied: after.interfaces_applied - before.interfaces_applied };
  };

  // Same peers and 7 days of hourly history (ending just before T0) in both databases.
  const started = performance.now();
  for (const one of [engine.quota, engine.noQuota]) {
    await seedPeers(one, SUBJECTS, clock);
    await seedHourly(one, SUBJECTS, T0 - HOUR_MS, HISTORY_HOURS);
    await analyze(one);
  }
  console.log(`${engine.label}: ${group(SUBJECTS)} peers and ${group(SUBJECTS * HISTORY_HOURS)} hourly roll-up rows in each database: ${ms(performance.now() - started)} ms`);

  // 4a. A plugin-wide default quota put mid-cycle: the first full pass opens every subject's cycle,
  //     counting the cycle's history so far (the 7 days).
  clock = T0 - MINUTE;
  await putQuota(db, { type: 'default', id: '' }, { ...QUOTA_DEFAULTS, allowanceBytes: ALLOWANCE }, clock);
  let before = counts();
  const firstOpen = await measure(log, () => enforcer.sync());
  const cycles = Number(((await db('bw_quota_cycles').count({ n: '*' }).first()) as Record<string, unknown>).n);
  if (cycles !== SUBJECTS) throw new Error(`${engine.label}: the first sync opened ${cycles} cycles, expected ${SUBJECTS}`);
  await analyze(db);
  add('open_cycles_ms', 'quota_put_7d_history', `open ${group(SUBJECTS)} cycles: first sync() after a default quota is put, 7 days of the cycle in history`, [firstOpen], since(before));

  // 1. Pages, alternating between the databases (the order alternates too).
  let k = 1;
  for (const one of [engine.noQuota, engine.quota]) await ingestPage(one, NODE, pageOf(k), { now: T0 + k * MINUTE + 2000, logger });
  const runs: { no_quota: Measured[]; quota: Measured[] } = { no_quota: [], quota: [] };
  for (let p = 0; p < PAGES; p++) {
    k += 1;
    const page = pageOf(k);
    clock = T0 + k * MINUTE + 2000;
    const order = p % 2 === 0 ? (['no_quota', 'quota'] as const) : (['quota', 'no_quota'] as const);
    for (const variant of order) {
      let counted = -1;
      runs[variant].push(await measure(log, async () => {
        const result = await ingestPage(variant === 'quota' ? engine.quota : engine.noQuota, NODE, page, { now: clock, logger });
        if (result.written !== SUBJECTS) throw new Error(`${engine.label}: page ${k} wrote ${result.written} entries, expected ${SUBJECTS}`);
        counted = result.cycles;
      }));
      const expected = variant === 'quota' ? SUBJECTS : 0;
      if (counted !== expected) throw new Error(`${engine.label}: page ${k} (${variant}) counted into ${counted} cycles, expected ${expected}`);
    }
  }
  // Every byte of the cycle is in the cycles: history plus the pages, nothing twice.
  const inCycles = await sumBytes(db, 'bw_quota_cycles', (q) => q);
  const inHistory = await sumBytes(db, 'bw_usage_hourly', (q) => q.where('hour_start', '>=', Date.UTC(2026, 10, 1)));
  if (inCycles !== inHistory) throw new Error(`${engine.label}: the cycles hold ${inCycles} bytes, the hourly roll-ups ${inHistory}`);
  add('ingest_page_ms', 'no_quota', `ingestPage, ${group(SUBJECTS)} entries: no quota anywhere`, runs.no_quota);
  add('ingest_page_ms', 'quota', `ingestPage, ${group(SUBJECTS)} entries: every subject under a quota`, runs.quota);

  // 2. afterIngest after a page: every cycle dirty, nothing crossed; then 1 % crossing 100 %.
  const nextPage = async (crossing?: (index: number) => boolean) => {
    k += 1;
    clock = T0 + k * MINUTE + 2000;
    await ingestPage(db, NODE, pageOf(k, crossing), { now: clock, logger });
  };
  before = counts();
  const quiet = await rounds(log, () => nextPage(), () => enforcer.afterIngest());
  const quietCounts = since(before);
  if (quietCounts.notices !== 0 || quietCounts.throttle_changes !== 0) throw new Error(`${engine.label}: nothing crossed, yet ${JSON.stringify(quietCounts)}`);
  add('after_ingest_ms', 'all_dirty', `afterIngest(), ${group(SUBJECTS)} dirty cycles, no threshold crossed`, quiet, quietCounts);

  const crossed = SUBJECTS / CROSSING_EVERY;
  before = counts();
  const crossing = await rounds(log, (r) => nextPage((i) => i % CROSSING_EVERY === r), () => enforcer.afterIngest());
  const crossingCounts = since(before);
  const throttled = Number(((await db('bw_limits').whereNotNull('throttle_up_kbps').count({ n: '*' }).first()) as Record<string, unknown>).n);
  if (Math.abs(throttled - crossed * crossing.length) > crossing.length) throw new Error(`${engine.label}: ${throttled} throttles stored, expected ~${crossed * crossing.length}`);
  add('after_ingest_ms', 'crossing_1pct', `afterIngest(), ${group(SUBJECTS)} dirty cycles, 1 % (${group(crossed)}) crossing 100 %: 3 notices each, throttled`, crossing, crossingCounts);

  // 3. A full pass with nothing changed.
  before = counts();
  const full = await rounds(log, async () => void (clock += 1000), () => enforcer.sync());
  const fullCounts = since(before);
  if (fullCounts.notices !== 0 || fullCounts.throttle_changes !== 0) throw new Error(`${engine.label}: nothing changed, yet ${JSON.stringify(fullCounts)}`);
  add('sync_ms', 'unchanged', `sync(), ${group(SUBJECTS)} subjects, nothing changed`, full, fullCounts);

  // 4b. A new month: every cycle ends at once; the next pass opens them all (the 7 days of history
  //     are the old cycle's), restores the throttled subjects and tells each one's reset.
  clock = CYCLE_END + 5 * MINUTE;
  before = counts();
  const rollover = await measure(log, () => enforcer.sync());
  const opened = Number(((await db('bw_quota_cycles').where({ cycle_start: CYCLE_END }).count({ n: '*' }).first()) as Record<string, unknown>).n);
  if (opened !== SUBJECTS) throw new Error(`${engine.label}: the new month's sync opened ${opened} cycles, expected ${SUBJECTS}`);
  add('open_cycles_ms', 'new_month', `open ${group(SUBJECTS)} cycles: sync() past the cycle's end (restores ${group(throttled)} throttled)`, [rollover], since(before));

  await enforcer.idle();
  if (warnings.length > 0) console.log(`${engine.label}: ${warnings.length} warnings, the first: ${warnings[0]}`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-bench-quotas-'));
  const benchStarted = performance.now();
  const figures: Figure[] = [];
  const engines: Engine[] = [];
  try {
    console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Linux ${release()}, node ${process.version}; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log(`${group(SUBJECTS)} peers, ${PAGES} measured pages per variant, ${ROUNDS} rounds of afterIngest and sync; SQLite files in ${dir}\n`);
    for (const id of ENGINES) {
      const opened = await openEngine(id, dir);
      if (typeof opened === 'string') {
        console.log(opened);
        continue;
      }
      engines.push(opened);
      try {
        await benchEngine(opened, figures);
      } finally {
        await opened.close();
        engines.splice(engines.indexOf(opened), 1);
      }
    }

    figures.sort((a, b) => ENGINES.indexOf(a.engine.id) - ENGINES.indexOf(b.engine.id) || rank(a) - rank(b));
    console.log(`\n### Quotas with ${group(SUBJECTS)} subjects (median ms; statements sent by knex, and their share of the time)\n`);
    console.log('| engine | figure | median | runs | statements | in statements |');
    console.log('| --- | --- | ---: | --- | ---: | ---: |');
    for (const f of figures) {
      const t = typical(f.runs);
      const value = median(f.runs.map((r) => r.ms));
      console.log(`| ${f.engine.label} | ${f.label} | **${ms(value)} ms** | ${f.runs.map((r) => ms(r.ms)).join(', ')} | ${group(t.statements)} | ${Math.round((t.statementMs / t.ms) * 100)} % |`);
    }
    console.log('\n| engine | ingestPage with quotas / without |');
    console.log('| --- | ---: |');
    const ratios: { engine: Engine; ratio: number }[] = [];
    for (const engine of new Set(figures.map((f) => f.engine))) {
      const of = (variant: string) => median(figures.find((f) => f.engine === engine && f.metric === 'ingest_page_ms' && f.variant === variant)!.runs.map((r) => r.ms));
      const ratio = of('quota') / of('no_quota');
      ratios.push({ engine, ratio });
      console.log(`| ${engine.label} | **${ratio.toFixed(2)}×** |`);
    }

    console.log('\nWhere the time goes (the median run of each figure: the statements that took longest, count × shape):');
    for (const f of figures) {
      const t = typical(f.runs);
      console.log(`- ${f.engine.label}, ${f.metric} ${f.variant}: ${ms(t.ms)} ms, ${ms(t.statementMs)} ms in ${group(t.statements)} statements; ${t.top.map(([shape, s]) => `${group(s.count)} × \`${shape}\` ${ms(s.ms)} ms`).join('; ')}`);
    }
    console.log('');
    for (const f of figures) {
      const t = typical(f.runs);
      console.log(JSON.stringify({
        bench: 'quotas', engine: f.engine.id, subjects: SUBJECTS, metric: f.metric, variant: f.variant, value: round(median(f.runs.map((r) => r.ms))),
        runs: f.runs.map((r) => round(r.ms)), statements: t.statements, statement_ms: round(t.statementMs), ...f.extra,
      }));
    }
    for (const { engine, ratio } of ratios) {
      console.log(JSON.stringify({ bench: 'quotas', engine: engine.id, subjects: SUBJECTS, metric: 'ingest_page_ratio', variant: 'quota_over_no_quota', value: round(ratio, 2) }));
    }
    console.log(`\nload average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; bench took ${ms((performance.now() - benchStarted) / 1000)} s`);
  } finally {
    for (const engine of engines) await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
