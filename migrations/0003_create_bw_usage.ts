// Why: raw usage deltas, one row per series and tick; the unique key makes a replayed tick add nothing.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_usage', (table) => {
    table.bigIncrements('id').primary();
    table.string('subject_type', 8).notNullable();
    table.string('subject_id', 64).notNullable();
    table.string('node', 64).notNullable().defaultTo('local');
    table.string('source', 16).notNullable();
    table.string('interface', 15).notNullable();
    epochMsColumn(table, 'period_start').notNullable();
    epochMsColumn(table, 'period_end').notNullable();
    table.bigInteger('up_bytes').notNullable().defaultTo(0);
    table.bigInteger('down_bytes').notNullable().defaultTo(0);
    table.unique(['subject_type', 'subject_id', 'node', 'source', 'interface', 'period_end'], {
      indexName: 'bw_usage_tick_uq',
    });
    table.index(['period_end'], 'bw_usage_period_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_usage');
}
