/**
 * The quota migrations (0021 reshapes `bw_quotas`, 0022 creates `bw_quota_cycles` and its lock
 * row, 0023 adds the throttle columns to `bw_limits`) up, down and up again on every engine, with
 * rows written before each step, run one at a time through knex's migrator on the plugin's own
 * migration table.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { Knex } from 'knex';

import { bigintColumn, fromBigInt, toBigInt } from '../../src/db/bigint.js';
import { connect } from '../../src/db/connect.js';
import { MIGRATION_TABLE, migrateLatest, pendingMigrations } from '../../src/db/migrate.js';
import { ENGINES } from '../support/databases.js';
import { ownDatabase } from '../support/own-database.js';

const NOW = Date.UTC(2026, 10, 21, 12, 0, 0, 123);
const ABOVE_2_53 = 2n ** 53n + 1n;

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/** The migration files, under the names src/db/migrate.ts gives them, loaded for knex's migrator. */
const NAMES = readdirSync(new URL('../../migrations/', import.meta.url)).filter((file) => /^\d{4}_[a-z0-9_]+\.ts$/.test(file)).map((file) => file.slice(0, -3)).sort();
const source: Knex.MigrationSource<string> = {
  getMigrations: () => Promise.resolve(NAMES),
  getMigrationName: (name) => name,
  getMigration: async (name) => (await import(`../../migrations/${name}.ts`)) as Migration,
};
const config: Knex.MigratorConfig = { tableName: MIGRATION_TABLE, migrationSource: source };

/** Runs migrations down, one at a time, until `name` is the last one run. */
async function downTo(knex: Knex, name: string): Promise<void> {
  for (;;) {
    const [done] = (await knex.migrate.list(config)) as [{ name: string }[] | string[], unknown];
    const last = done.map((entry) => (typeof entry === 'string' ? entry : entry.name)).sort().pop();
    if (last === name) return;
    assert.ok(last !== undefined && last > name, `${name} was not run`);
    await knex.migrate.down(config);
  }
}

/** Runs the next migration up; returns its name. */
async function upOne(knex: Knex): Promise<string> {
  const [, names] = (await knex.migrate.up(config)) as [number, string[]];
  return names[0]!;
}

async function columnsOf(knex: Knex, table: string, names: string[]): Promise<string[]> {
  const present: string[] = [];
  for (const name of names) if (await knex.schema.hasColumn(table, name)) present.push(name);
  return present;
}

const OLD_QUOTA_COLUMNS = ['throttle_kbps', 'state', 'cycle_start'];
const NEW_QUOTA_COLUMNS = ['counted', 'time_zone', 'warn_percents', 'throttle_up_kbps', 'throttle_down_kbps'];

const limitRow = (id: string) => ({
  subject_type: 'peer', subject_id: id, name: `peer ${id}`, interface: 'wg0', netns: null, interface_kind: 'wireguard', addresses: '[]',
  up_kbps: 1000, down_kbps: 0, class_minor: Number(id), status: 'applied', created_at: NOW, updated_at: NOW,
});

for (const engine of ENGINES) {
  describe(`quota migrations on ${engine.id}`, () => {
    test('0021 keeps a quota written in the old shape: allowance, cycle day, action, and its one throttle rate in both directions; down restores the old columns', async (t) => {
      const own = await ownDatabase(t, engine, 'qmigrate');
      if (!own) return;
      const knex = connect(own.url);
      own.closeFirst(() => knex.destroy());
      await knex.migrate.latest(config);
      await downTo(knex, '0020_create_bw_credentials');
      assert.deepEqual(await columnsOf(knex, 'bw_quotas', [...OLD_QUOTA_COLUMNS, ...NEW_QUOTA_COLUMNS]), OLD_QUOTA_COLUMNS, 'the old shape');
      // As a host wrote them by hand before 0021: one throttling with its rate, one notifying without.
      await knex('bw_quotas').insert([
        { subject_type: 'peer', subject_id: '42', allowance_bytes: fromBigInt(ABOVE_2_53), cycle_day: 28, action: 'throttle', throttle_kbps: 1500, state: 'exceeded', cycle_start: NOW, created_at: NOW, updated_at: NOW },
        { subject_type: 'vm', subject_id: '7', allowance_bytes: '10000000000', cycle_day: 31, action: 'notify', throttle_kbps: null, state: 'ok', cycle_start: null, created_at: NOW, updated_at: NOW },
      ]);
      const read = async () => ((await knex('bw_quotas').select('*', bigintColumn(knex, 'allowance_bytes')).orderBy('subject_type')) as Record<string, unknown>[])
        .map((row): Record<string, unknown> => ({ ...row, allowance_bytes: toBigInt(row.allowance_bytes) }));

      assert.equal(await upOne(knex), '0021_reshape_bw_quotas');
      assert.deepEqual(await columnsOf(knex, 'bw_quotas', [...OLD_QUOTA_COLUMNS, ...NEW_QUOTA_COLUMNS]), NEW_QUOTA_COLUMNS, 'the new shape');
      const reshaped = await read();
      assert.deepEqual(reshaped.map((row) => [row.subject_type, row.subject_id, row.allowance_bytes, Number(row.cycle_day), row.action, Number(row.throttle_up_kbps), Number(row.throttle_down_kbps)]), [
        ['peer', '42', ABOVE_2_53, 28, 'throttle', 1500, 1500],
        ['vm', '7', 10_000_000_000n, 31, 'notify', 1000, 1000],
      ]);
      assert.deepEqual(reshaped.map((row) => [row.counted, row.time_zone, JSON.parse(String(row.warn_percents))]), [['total', 'UTC', [80, 90, 100]], ['total', 'UTC', [80, 90, 100]]], 'the defaults of the new settings');
      // The new shape holds networks and the default, with a different rate per direction.
      await knex('bw_quotas').insert({
        subject_type: 'default', subject_id: '*', allowance_bytes: fromBigInt(2n ** 62n), cycle_day: 15, counted: 'down', time_zone: 'Asia/Kathmandu',
        warn_percents: '[50,100]', action: 'throttle', throttle_up_kbps: 200, throttle_down_kbps: 0, created_at: NOW, updated_at: NOW,
      });
      await assert.rejects(knex('bw_quotas').insert({ subject_type: 'peer', subject_id: '42', allowance_bytes: '1', created_at: NOW, updated_at: NOW }), 'one quota per subject, still');

      await knex.migrate.down(config);
      assert.deepEqual(await columnsOf(knex, 'bw_quotas', [...OLD_QUOTA_COLUMNS, ...NEW_QUOTA_COLUMNS]), OLD_QUOTA_COLUMNS, 'down restores the old shape');
      const restored = await read();
      assert.deepEqual(restored.map((row) => [row.subject_type, row.subject_id, row.allowance_bytes, Number(row.cycle_day), row.action, row.state]), [
        ['default', '*', 2n ** 62n, 15, 'throttle', 'ok'],
        ['peer', '42', ABOVE_2_53, 28, 'throttle', 'ok'],
        ['vm', '7', 10_000_000_000n, 31, 'notify', 'ok'],
      ]);
      assert.equal(Number(restored.find((row) => row.subject_id === '42')!.throttle_kbps), 1500, 'the throttle rate comes back');
      await assert.rejects(knex('bw_quotas').insert({ subject_type: 'peer', subject_id: '42', allowance_bytes: '1', created_at: NOW, updated_at: NOW }), 'the unique key survives down');

      assert.equal(await upOne(knex), '0021_reshape_bw_quotas');
      const again = await read();
      assert.deepEqual(again.map((row) => [row.subject_type, row.subject_id, row.allowance_bytes, Number(row.throttle_up_kbps), Number(row.throttle_down_kbps)]), [
        ['default', '*', 2n ** 62n, 0, 0],
        ['peer', '42', ABOVE_2_53, 1500, 1500],
        ['vm', '7', 10_000_000_000n, 1000, 1000],
      ], 'up again: the one rate of the old shape (down kept the down rate) in both directions');
      await migrateLatest(knex);
      assert.deepEqual(await pendingMigrations(knex), []);
    });

    test('0022 and 0023 run up, down and up again, keeping the rows of the tables they leave and the quotas lock row in step', async (t) => {
      const own = await ownDatabase(t, engine, 'qmigrate');
      if (!own) return;
      const knex = connect(own.url);
      own.closeFirst(() => knex.destroy());
      await knex.migrate.latest(config);
      await downTo(knex, '0021_reshape_bw_quotas');
      const locks = async () => ((await knex('bw_locks').select('name').orderBy('name')) as { name: string }[]).map((row) => row.name);
      assert.equal(await knex.schema.hasTable('bw_quota_cycles'), false);
      assert.deepEqual(await locks(), ['collector']);
      await knex('bw_limits').insert([limitRow('1'), limitRow('2')]);

      assert.equal(await upOne(knex), '0022_create_bw_quota_cycles');
      assert.deepEqual(await locks(), ['collector', 'quotas']);
      const cycle = {
        subject_type: 'peer', subject_id: '1', cycle_start: NOW, cycle_end: NOW + 86_400_000, counted_from: NOW + 5,
        up_bytes: fromBigInt(ABOVE_2_53), down_bytes: '0', created_at: NOW, updated_at: NOW,
      };
      await knex('bw_quota_cycles').insert(cycle);
      const [stored] = (await knex('bw_quota_cycles').select(bigintColumn(knex, 'up_bytes'), 'fired', 'state', 'version', 'dirty', bigintColumn(knex, 'extra_bytes'))) as Record<string, unknown>[];
      assert.deepEqual([toBigInt(stored!.up_bytes), stored!.fired, stored!.state, Number(stored!.version), Boolean(stored!.dirty), toBigInt(stored!.extra_bytes)], [ABOVE_2_53, '[]', 'ok', 0, true, 0n], 'the defaults');
      await assert.rejects(knex('bw_quota_cycles').insert({ ...cycle, cycle_end: NOW + 1 }), 'one cycle per subject and start');
      await knex.migrate.down(config);
      assert.equal(await knex.schema.hasTable('bw_quota_cycles'), false);
      assert.deepEqual(await locks(), ['collector']);
      assert.equal(await upOne(knex), '0022_create_bw_quota_cycles');
      assert.deepEqual(await locks(), ['collector', 'quotas']);
      await knex('bw_quota_cycles').insert(cycle);

      assert.equal(await upOne(knex), '0023_add_bw_limits_throttle');
      await knex('bw_limits').where({ subject_id: '2' }).update({ throttle_up_kbps: 64, throttle_down_kbps: 0 });
      await knex.migrate.down(config);
      assert.deepEqual(await columnsOf(knex, 'bw_limits', ['throttle_up_kbps', 'throttle_down_kbps']), []);
      const limits = async () => ((await knex('bw_limits').select('subject_id', 'up_kbps', 'class_minor', 'status').orderBy('subject_id')) as Record<string, unknown>[])
        .map((row) => [String(row.subject_id), Number(row.up_kbps), Number(row.class_minor), row.status]);
      assert.deepEqual(await limits(), [['1', 1000, 1, 'applied'], ['2', 1000, 2, 'applied']], 'down keeps the caps');
      assert.equal(await upOne(knex), '0023_add_bw_limits_throttle');
      assert.deepEqual(await limits(), [['1', 1000, 1, 'applied'], ['2', 1000, 2, 'applied']]);
      assert.deepEqual(((await knex('bw_limits').select('throttle_up_kbps', 'throttle_down_kbps')) as Record<string, unknown>[]).map((row) => [row.throttle_up_kbps, row.throttle_down_kbps]), [[null, null], [null, null]], 'not throttled after up');
      // The rebuilt table (SQLite drops a column by copying it) keeps its unique keys.
      await assert.rejects(knex('bw_limits').insert(limitRow('1')), 'one limit per subject, still');
      await assert.rejects(knex('bw_limits').insert({ ...limitRow('3'), class_minor: 2 }), 'one class per interface, still');
      assert.equal(Number((await knex('bw_quota_cycles').count({ n: '*' }))[0]!.n), 1, 'the cycle row stays');
      await migrateLatest(knex);
      assert.deepEqual(await pendingMigrations(knex), []);
    });
  });
}
