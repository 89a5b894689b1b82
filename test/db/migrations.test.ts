import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { ENGINES, dropPluginTables, openEngine, openMigrated } from '../support/databases.js';
import { MIGRATION_TABLE, PLUGIN_TABLES, migrateDownAll, migrateLatest, pendingMigrations } from '../../src/db/migrate.js';
import * as addOutcomeReason from '../../migrations/0013_add_outcome_reason.js';
import * as addNetworkCaps from '../../migrations/0025_add_network_caps.js';
import { bigintColumn, fromBigInt, sumBigint, toBigInt } from '../../src/db/bigint.js';

const ABOVE_2_53 = 2n ** 53n + 1n;
const SIGNED_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;
const NOW = Date.UTC(2026, 10, 21, 12, 0, 0, 123);
/** Every migration file in the repository: each must be registered in src/db/migrate.ts and run. */
const MIGRATION_FILES = readdirSync(new URL('../../migrations/', import.meta.url)).filter((name) => /^\d{4}_[a-z0-9_]+\.ts$/.test(name)).length;

async function tablesPresent(knex: Knex): Promise<string[]> {
  const present: string[] = [];
  for (const table of PLUGIN_TABLES) if (await knex.schema.hasTable(table)) present.push(table);
  return present;
}

/** One representative row per plugin table, with the extreme values each must keep exactly. */
function sampleRows(): Record<(typeof PLUGIN_TABLES)[number], Record<string, unknown>> {
  return {
    bw_limits: {
      subject_type: 'peer', subject_id: '42', name: 'laptop', interface: 'wg0', netns: null,
      interface_kind: 'wireguard', addresses: JSON.stringify(['10.8.0.2/32', 'fd00::2/128']),
      up_kbps: 100_000_000, down_kbps: 0, class_minor: 0xfffe, status: 'failed', last_error: 'tc: RTNETLINK answers: File exists', reason: 'kernel_refused',
      min_kbps: 100_000_000, burst_kbps: 100_000_000, burst_bytes: 4 * 1024 ** 3, default_up_kbps: 0, default_down_kbps: 100_000_000,
      applied_at: NOW, created_at: NOW, updated_at: NOW,
    },
    bw_counters: {
      source: 'wireguard', interface: 'wg0', series_key: 'x'.repeat(44), subject_type: 'peer', subject_id: '42',
      ifindex: 7, boot_id: '8b71c558-fc6a-4673-a1fc-4586c5796406', rx_bytes: fromBigInt(U64_MAX),
      tx_bytes: fromBigInt(ABOVE_2_53), rx_packets: '0', tx_packets: null, sampled_at: NOW,
    },
    bw_usage: {
      subject_type: 'peer', subject_id: '42', source: 'wireguard', interface: 'wg0',
      period_start: NOW - 60_000, period_end: NOW, up_bytes: fromBigInt(ABOVE_2_53), down_bytes: fromBigInt(SIGNED_MAX),
    },
    bw_usage_hourly: { subject_type: 'vm', subject_id: '7', hour_start: NOW, up_bytes: fromBigInt(ABOVE_2_53), down_bytes: '0' },
    bw_usage_daily: { subject_type: 'vm', subject_id: '7', day_start: NOW, up_bytes: '1', down_bytes: fromBigInt(ABOVE_2_53) },
    bw_quotas: {
      subject_type: 'network', subject_id: 'x'.repeat(64), allowance_bytes: fromBigInt(SIGNED_MAX), cycle_day: 31, counted: 'down',
      time_zone: 'America/Argentina/ComodRivadavia', warn_percents: JSON.stringify([1, 50, 75, 80, 90, 95, 99, 100]),
      action: 'throttle', throttle_up_kbps: 100_000_000, throttle_down_kbps: 0, created_at: NOW, updated_at: NOW,
    },
    bw_quota_cycles: {
      subject_type: 'vm', subject_id: 'y'.repeat(64), cycle_start: NOW - 1, cycle_end: NOW + 86_400_000 * 31, counted_from: NOW,
      up_bytes: fromBigInt(SIGNED_MAX), down_bytes: fromBigInt(ABOVE_2_53), extra_bytes: fromBigInt(ABOVE_2_53),
      fired: JSON.stringify([50, 75, 80, 90, 95, 99, 100]), state: 'exceeded', version: 2_000_000_000, dirty: false, created_at: NOW, updated_at: NOW,
    },
    bw_agents: {
      name: 'hv-01', url: 'https://hv-01.example:9443', token_hash: 'f'.repeat(64), enabled: true,
      status: 'unknown', last_seen_at: null, last_error: null, created_at: NOW, updated_at: NOW,
    },
    bw_events: {
      at: NOW, actor: 'admin', subject_type: 'peer', subject_id: '42', action: 'limit.set',
      old_value: JSON.stringify({ up_kbps: 0, down_kbps: 0 }), new_value: JSON.stringify({ up_kbps: 1000, down_kbps: 5000 }),
      result: 'pending', message: 'ünïcode ✓ and "quotes"', reason: 'interface_missing',
      repeat_key: JSON.stringify(['reconcile', 'hv-01', null, 'tap-ünï']), repeat_count: 2_000_000_000, last_seen_at: NOW + 86_400_000,
    },
    bw_locks: { name: 'roundtrip', held_at: NOW },
    bw_webhook_deliveries: {
      delivery_id: '3f0c8a52-6b0e-4d4e-9a57-0d8f3c1e2b7a', event: 'bandwidth.quota.exceeded', subject_type: 'peer', subject_id: 'z'.repeat(64),
      url: `https://hooks.example/${'p'.repeat(2000)}`, body: JSON.stringify({ data: { used_bytes: '9223372036854775807', name: 'ünïcode ✓' } }),
      status: 'pending', attempts: 7, next_attempt_at: NOW, last_status_code: 503, last_error: 'HTTP 503 '.padEnd(500, 'x'),
      created_at: NOW, updated_at: NOW, delivered_at: null,
    },
    bw_node_cursors: { node: 'hv-01', ledger_id: '3f0c8a52-6b0e-4d4e-9a57-0d8f3c1e2b7a', seq: fromBigInt(SIGNED_MAX), updated_at: NOW },
    bw_class_allocators: { node: 'hv-01', interface: 'wg0', turns: fromBigInt(ABOVE_2_53) },
    bw_usage_totals: { subject_type: 'peer', subject_id: '42', up_bytes: fromBigInt(SIGNED_MAX), down_bytes: fromBigInt(ABOVE_2_53) },
    bw_credentials: { name: 'metrics_token', sha256: 'e'.repeat(64), created_at: NOW },
    bw_network_caps: {
      network_id: 'n'.repeat(64), node: 'hv-01', interface: 'wg-ünï'.slice(0, 6), netns: 'x'.repeat(64),
      total_up_kbps: 100_000_000, total_down_kbps: 0, default_up_kbps: 1, default_down_kbps: 100_000_000, updated_at: NOW,
    },
  };
}

for (const engine of ENGINES) {
  describe(`migrations on ${engine.id}`, () => {
    test('run up, down and up again, creating and dropping every plugin table', async (t) => {
      const knex = await openEngine(t, engine, { cleanup: dropPluginTables });
      if (!knex) return;
      await dropPluginTables(knex);

      const ran = await migrateLatest(knex);
      assert.equal(ran.length, MIGRATION_FILES);
      assert.deepEqual(await tablesPresent(knex), [...PLUGIN_TABLES]);
      assert.ok(await knex.schema.hasTable(MIGRATION_TABLE), 'the plugin keeps its own migration table');
      assert.deepEqual(await pendingMigrations(knex), []);
      assert.deepEqual(await migrateLatest(knex), [], 'a second run is a no-op');

      await knex('bw_limits').insert(sampleRows().bw_limits);
      const down = await migrateDownAll(knex);
      assert.equal(down.length, MIGRATION_FILES);
      assert.deepEqual(await tablesPresent(knex), []);
      assert.equal(await knex.schema.hasTable(MIGRATION_TABLE), false, 'uninstall leaves no bw_ table behind');
      assert.equal(await knex.schema.hasTable(`${MIGRATION_TABLE}_lock`), false);
      assert.equal((await pendingMigrations(knex)).length, MIGRATION_FILES);

      await migrateLatest(knex);
      assert.deepEqual(await tablesPresent(knex), [...PLUGIN_TABLES]);
      assert.equal((await knex('bw_limits').count({ n: '*' }))[0]?.n?.toString(), '0', 'tables start empty after down/up');
    });

    test('every table round-trips a row, 64-bit counters exactly above 2^53', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;

      const rows = sampleRows();
      for (const table of PLUGIN_TABLES) {
        await knex(table).insert(rows[table]);
        // bw_locks ships with its `collector` row; every other table starts empty.
        const [stored] = (await knex(table).where(table === 'bw_locks' ? { name: 'roundtrip' } : {}).select('*')) as Record<string, unknown>[];
        assert.ok(stored, `${table}: the row was stored`);
        for (const [column, value] of Object.entries(rows[table])) {
          const got: unknown = stored?.[column];
          if (typeof value === 'boolean') assert.equal(Boolean(got), value, `${table}.${column}`);
          else if (value === null) assert.equal(got, null, `${table}.${column}`);
          else if (typeof value === 'string' && /^\d{16,}$/.test(value)) continue; // checked exactly below
          else assert.equal(String(got), String(value), `${table}.${column}`);
        }
      }

      const [usage] = await knex('bw_usage').select(bigintColumn(knex, 'up_bytes'), bigintColumn(knex, 'down_bytes'));
      assert.equal(toBigInt(usage.up_bytes), ABOVE_2_53);
      assert.equal(toBigInt(usage.down_bytes), SIGNED_MAX);
      const [counter] = await knex('bw_counters').select('rx_bytes', 'tx_bytes');
      assert.equal(toBigInt(counter.rx_bytes), U64_MAX, 'absolute counters keep all 64 unsigned bits');
      assert.equal(toBigInt(counter.tx_bytes), ABOVE_2_53);
      const [totals] = await knex('bw_usage_totals').select(bigintColumn(knex, 'up_bytes'), bigintColumn(knex, 'down_bytes'));
      assert.deepEqual([toBigInt(totals.up_bytes), toBigInt(totals.down_bytes)], [SIGNED_MAX, ABOVE_2_53]);
      const [quota] = await knex('bw_quotas').select(bigintColumn(knex, 'allowance_bytes'));
      assert.equal(toBigInt(quota.allowance_bytes), SIGNED_MAX);
      const [cycle] = await knex('bw_quota_cycles').select(bigintColumn(knex, 'up_bytes'), bigintColumn(knex, 'down_bytes'), bigintColumn(knex, 'extra_bytes'));
      assert.deepEqual([toBigInt(cycle.up_bytes), toBigInt(cycle.down_bytes), toBigInt(cycle.extra_bytes)], [SIGNED_MAX, ABOVE_2_53, ABOVE_2_53]);
    });

    test('0013 adds a nullable reason to limits and events, down and up again, keeping their rows', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const rows = sampleRows();
      const columns = async () => [await knex.schema.hasColumn('bw_limits', 'reason'), await knex.schema.hasColumn('bw_events', 'reason')];
      await knex('bw_limits').insert(rows.bw_limits);
      await knex('bw_events').insert(rows.bw_events);

      await addOutcomeReason.down(knex);
      assert.deepEqual(await columns(), [false, false]);
      const limit = await knex('bw_limits').first();
      assert.deepEqual([limit.subject_id, limit.status, limit.last_error, limit.class_minor], ['42', 'failed', 'tc: RTNETLINK answers: File exists', 0xfffe], 'down keeps the row, status and message');
      assert.equal((await knex('bw_events').first()).message, rows.bw_events.message);
      // A row written while the column was gone, as an older plugin version writes it.
      const { reason: _gone, ...older } = rows.bw_limits;
      await knex('bw_limits').insert({ ...older, subject_id: '43', class_minor: 7, status: 'pending' });

      await addOutcomeReason.up(knex);
      assert.deepEqual(await columns(), [true, true]);
      const after = await knex('bw_limits').orderBy('subject_id').select('subject_id', 'status', 'last_error', 'reason');
      assert.deepEqual(after.map((r) => [String(r.subject_id), r.status, r.reason]), [['42', 'failed', null], ['43', 'pending', null]], 'old rows have no reason until the next apply');
      assert.equal(after[0]?.last_error, 'tc: RTNETLINK answers: File exists');
      await addOutcomeReason.up(knex);
      assert.deepEqual(await columns(), [true, true], 'a second up is a no-op');
      await knex('bw_limits').where({ subject_id: '43' }).update({ reason: 'node_unreachable' });
      assert.equal((await knex('bw_limits').where({ subject_id: '43' }).first()).reason, 'node_unreachable', 'the longest word fits');
    });

    test('0025 adds shares, bursts and materialized defaults to limits and the network caps table, down and up again, keeping the rows', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const rows = sampleRows();
      const added = ['min_kbps', 'burst_kbps', 'burst_bytes', 'default_up_kbps', 'default_down_kbps'];
      const columns = async () => {
        const present: string[] = [];
        for (const column of added) if (await knex.schema.hasColumn('bw_limits', column)) present.push(column);
        return present;
      };
      const { min_kbps: _m, burst_kbps: _k, burst_bytes: _b, default_up_kbps: _u, default_down_kbps: _d, ...older } = rows.bw_limits;
      await knex('bw_limits').insert(rows.bw_limits);
      await knex('bw_network_caps').insert(rows.bw_network_caps);
      await assert.rejects(knex('bw_network_caps').insert({ ...rows.bw_network_caps, interface: 'wg1' }), /unique|duplicate/i, 'one row per network');

      await addNetworkCaps.down(knex);
      assert.deepEqual(await columns(), []);
      assert.equal(await knex.schema.hasTable('bw_network_caps'), false);
      const kept = await knex('bw_limits').first();
      assert.deepEqual([kept.subject_id, Number(kept.up_kbps), Number(kept.class_minor), kept.status], ['42', 100_000_000, 0xfffe, 'failed'], 'down keeps the row and its caps');
      // A row written while the columns were gone, as an older plugin version writes it.
      await knex('bw_limits').insert({ ...older, subject_id: '43', class_minor: 7, status: 'pending' });

      await addNetworkCaps.up(knex);
      assert.deepEqual(await columns(), added);
      const after = (await knex('bw_limits').orderBy('subject_id').select('subject_id', ...added)) as Record<string, unknown>[];
      assert.deepEqual(after.map((row) => [String(row.subject_id), ...added.map((column) => Number(row[column]))]), [['42', 0, 0, 0, 0, 0], ['43', 0, 0, 0, 0, 0]], 'every old row: no share, no burst, no default');
      await addNetworkCaps.up(knex);
      assert.deepEqual(await columns(), added, 'a second up is a no-op');
      await knex('bw_limits').where({ subject_id: '43' }).update({ burst_bytes: 4 * 1024 ** 3 });
      const [burst] = await knex('bw_limits').where({ subject_id: '43' }).select(bigintColumn(knex, 'burst_bytes'));
      assert.equal(toBigInt(burst.burst_bytes), 4n * 1024n ** 3n, 'a 4 GiB burst fits');
      await knex('bw_network_caps').insert(rows.bw_network_caps);
      // The rebuilt table (SQLite drops a column by copying it) keeps its unique keys.
      await assert.rejects(knex('bw_limits').insert({ ...older, class_minor: 9 }), /unique|duplicate/i, 'one limit per subject, still');
      await assert.rejects(knex('bw_limits').insert({ ...older, subject_id: '44', class_minor: 7 }), /unique|duplicate/i, 'one class per interface, still');
    });

    test('sums of 64-bit columns stay exact past 2^53', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;

      const base = { subject_type: 'peer', subject_id: '1', down_bytes: '0' };
      await knex('bw_usage_hourly').insert([
        { ...base, hour_start: NOW, up_bytes: fromBigInt(2n ** 53n) },
        { ...base, hour_start: NOW + 3_600_000, up_bytes: '1' },
        { ...base, hour_start: NOW + 7_200_000, up_bytes: '2' },
      ]);
      const [row] = await knex('bw_usage_hourly').select(sumBigint(knex, 'up_bytes', 'total'));
      assert.equal(toBigInt(row.total), 2n ** 53n + 3n);
      const [empty] = await knex('bw_usage_daily').select(sumBigint(knex, 'up_bytes', 'total'));
      assert.equal(toBigInt(empty.total), 0n);
    });

    test('a limit per subject is unique', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;

      const row = sampleRows().bw_limits;
      await knex('bw_limits').insert(row);
      await assert.rejects(knex('bw_limits').insert({ ...row, name: 'other' }), /unique|duplicate/i);
      await knex('bw_limits').insert({ ...row, subject_type: 'vm', interface: 'tap1' });
      const [count] = await knex('bw_limits').count({ n: '*' });
      assert.equal(Number(count?.n), 2);
    });

    test('two subjects on one interface never share a class, while unlimited ones have none', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const row = { ...sampleRows().bw_limits, class_minor: 7 };
      await knex('bw_limits').insert(row);
      await assert.rejects(knex('bw_limits').insert({ ...row, subject_id: '43' }), /unique|duplicate/i);
      await knex('bw_limits').insert({ ...row, subject_id: '43', interface: 'wg1' });
      await knex('bw_limits').insert({ ...row, subject_id: '44', class_minor: null, up_kbps: 0 });
      await knex('bw_limits').insert({ ...row, subject_id: '45', class_minor: null, up_kbps: 0 });
      const [count] = await knex('bw_limits').where({ interface: 'wg0' }).count({ n: '*' });
      assert.equal(Number(count?.n), 3);
    });

    test('usage queries by period order and range the same on every engine', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;

      const hours = [3, 0, 2, 1].map((h) => ({
        subject_type: 'vm', subject_id: '9', hour_start: NOW + h * 3_600_000, up_bytes: String(h), down_bytes: '0',
      }));
      await knex('bw_usage_hourly').insert(hours);
      const inRange = await knex('bw_usage_hourly')
        .where('hour_start', '>=', NOW + 3_600_000)
        .andWhere('hour_start', '<', NOW + 3 * 3_600_000)
        .orderBy('hour_start')
        .select('hour_start', 'up_bytes');
      assert.deepEqual(inRange.map((r) => [Number(r.hour_start) - NOW, String(r.up_bytes)]), [
        [3_600_000, '1'],
        [7_200_000, '2'],
      ]);
    });
  });
}
