// Why: each subject's bytes in its current billing cycle are kept as a counter added to by ledger ingestion in the same transaction, so a cycle's usage stays exact after raw rows expire and when the cycle does not start on an hour.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  if (!(await knex.schema.hasTable('bw_quota_cycles'))) {
    await knex.schema.createTable('bw_quota_cycles', (table) => {
      table.increments('id').primary();
      table.string('subject_type', 8).notNullable();
      table.string('subject_id', 64).notNullable();
      epochMsColumn(table, 'cycle_start').notNullable();
      epochMsColumn(table, 'cycle_end').notNullable();
      // The cycle's start, or the time of a manual reset in it: bytes before it do not count.
      epochMsColumn(table, 'counted_from').notNullable();
      table.bigInteger('up_bytes').notNullable().defaultTo(0);
      table.bigInteger('down_bytes').notNullable().defaultTo(0);
      // Traffic blocks bought for this cycle only.
      table.bigInteger('extra_bytes').notNullable().defaultTo(0);
      // Thresholds (percent) already notified in this cycle, as a JSON array.
      table.string('fired', 64).notNullable().defaultTo('[]');
      table.string('state', 12).notNullable().defaultTo('ok');
      // Bumped by every write of usage; the enforcer evaluates rows whose version it has not seen.
      table.integer('version').notNullable().defaultTo(0);
      table.boolean('dirty').notNullable().defaultTo(true);
      epochMsColumn(table, 'created_at').notNullable();
      epochMsColumn(table, 'updated_at').notNullable();
      table.unique(['subject_type', 'subject_id', 'cycle_start'], { indexName: 'bw_quota_cycles_subject_uq' });
      table.index(['dirty'], 'bw_quota_cycles_dirty_ix');
      table.index(['cycle_end'], 'bw_quota_cycles_end_ix');
    });
  }
  // Ingestion and the enforcer take turns on this row when one of them creates or adds to cycles.
  await knex('bw_locks').insert({ name: 'quotas', held_at: 0 }).onConflict('name').ignore();
}

export async function down(knex: Knex): Promise<void> {
  await knex('bw_locks').where({ name: 'quotas' }).delete();
  await knex.schema.dropTableIfExists('bw_quota_cycles');
}
