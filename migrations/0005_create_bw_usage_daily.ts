// Why: daily roll-ups serve monthly totals and quotas for years at a few rows per subject.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_usage_daily', (table) => {
    table.increments('id').primary();
    table.string('subject_type', 8).notNullable();
    table.string('subject_id', 64).notNullable();
    epochMsColumn(table, 'day_start').notNullable();
    table.bigInteger('up_bytes').notNullable().defaultTo(0);
    table.bigInteger('down_bytes').notNullable().defaultTo(0);
    table.unique(['subject_type', 'subject_id', 'day_start'], { indexName: 'bw_usage_daily_uq' });
    table.index(['day_start'], 'bw_usage_daily_start_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_usage_daily');
}
