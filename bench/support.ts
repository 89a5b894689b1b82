import type { Knex } from 'knex';
import { connect } from '../src/db/connect.js';
import { migrateLatest } from '../src/db/migrate.js';
import { dropPluginTables } from '../test/support/databases.js';
import { labRequirements } from '../test/support/lab.js';

export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** A fresh database of this kind with the plugin's tables (dropping what a previous run left). */
export async function freshDatabase(url: string): Promise<Knex> {
  const db = connect(url);
  await dropPluginTables(db);
  await migrateLatest(db);
  return db;
}

/** Inserts rows in chunks inside one transaction. */
export async function insertChunked(db: Knex, table: string, rows: Record<string, unknown>[], chunk = 500): Promise<void> {
  await db.transaction(async (trx) => {
    for (let i = 0; i < rows.length; i += chunk) await trx(table).insert(rows.slice(i, i + chunk));
  });
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A WireGuard-shaped public key for subject n (deterministic). */
export function keyOf(n: number): string {
  return `${Buffer.from(`peer-${n}`.padEnd(31, '.')).toString('base64').slice(0, 42)}A=`;
}

/** Seeds `count` peers in bw_limits on one interface. */
export async function seedPeers(db: Knex, count: number, now: number): Promise<void> {
  const rows = Array.from({ length: count }, (_, i) => ({
    subject_type: 'peer', subject_id: String(i + 1), name: `peer-${String(i + 1).padStart(5, '0')}`, node: 'local', network_id: '1',
    interface: 'wg0', netns: null, interface_kind: 'wireguard', addresses: JSON.stringify([`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`]),
    public_key: keyOf(i + 1), up_kbps: i % 3 === 0 ? 0 : 1000 + (i % 50) * 100, down_kbps: i % 3 === 0 ? 0 : 5000 + (i % 50) * 500,
    class_minor: i % 3 === 0 ? null : i + 2, status: i % 3 === 0 ? 'applied' : 'applied', created_at: now, updated_at: now,
  }));
  await insertChunked(db, 'bw_limits', rows);
}

/**
 * Seeds hourly roll-ups for `hourlyDays` days and daily roll-ups for `days` days for `count`
 * peers, generated inside the database (a recursive CTE) so millions of rows take seconds.
 */
export async function seedRollups(db: Knex, count: number, days: number, now: number, hourlyDays = days): Promise<number> {
  const lastHour = Math.floor(now / HOUR) * HOUR;
  const lastDay = Math.floor(now / DAY) * DAY;
  const mysql = String(db.client.config.client).includes('mysql');
  const text = mysql ? 'CAST(s.n AS CHAR)' : "'' || s.n";
  const generate = (table: string, column: string, buckets: number, last: number, step: number, up: number, down: number) =>
    db.transaction(async (trx) => {
      // MariaDB stops recursive CTEs after 1,000 iterations by default.
      if (mysql) await trx.raw('SET SESSION max_recursive_iterations = 1000000');
      await trx.raw(
      `INSERT INTO ${table} (subject_type, subject_id, ${column}, up_bytes, down_bytes)
       WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?),
                      b(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM b WHERE k < ?)
       SELECT 'peer', ${text}, ? - b.k * ?, ? + s.n, ? + b.k FROM s CROSS JOIN b`,
      [count, buckets - 1, last, step, up, down],
      );
    });
  await generate('bw_usage_hourly', 'hour_start', hourlyDays * 24, lastHour, HOUR, 1_000_000, 9_000_000);
  await generate('bw_usage_daily', 'day_start', days, lastDay, DAY, 24_000_000, 216_000_000);
  return count * (hourlyDays * 24 + days);
}

/**
 * Whether this machine can build the namespace lab (root, tc, iperf3, …); when not, says why on
 * stderr and sets exit code 2 (skipped), for the benches that need the kernel.
 */
export function labOrSkip(): boolean {
  const requirements = labRequirements();
  if (requirements.available) return true;
  console.error(`skipped: ${requirements.reason}`);
  process.exitCode = 2;
  return false;
}

