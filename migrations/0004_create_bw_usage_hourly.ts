// Why: hourly roll-ups serve 24 h to 90 d totals and charts without scanning raw rows.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_usage_hourly', (table) => {
    table.increments('id').primary();
    table.string('subject_type', 8).notNullable();
    table.string('subject_id', 64).notNullable();
    epochMsColumn(table, 'hour_start').notNullable();
    table.bigInteger('up_bytes').notNullable().defaultTo(0);
    table.bigInteger('down_bytes').notNullable().defaultTo(0);
    table.unique(['subject_type', 'subject_id', 'hour_start'], { indexName: 'bw_usage_hourly_uq' });
    table.index(['hour_start'], 'bw_usage_hourly_start_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_usage_hourly');
}
