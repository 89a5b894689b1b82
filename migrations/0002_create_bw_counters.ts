// Why: deltas need the last absolute reading of every counter series, kept across restarts.
import type { Knex } from 'knex';
import { epochMsColumn, u64Column } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_counters', (table) => {
    table.increments('id').primary();
    table.string('node', 64).notNullable().defaultTo('local');
    table.string('source', 16).notNullable();
    table.string('interface', 15).notNullable();
    table.string('series_key', 128).notNullable();
    table.string('subject_type', 8).nullable();
    table.string('subject_id', 64).nullable();
    table.integer('ifindex').nullable();
    table.string('boot_id', 36).notNullable();
    u64Column(knex, table, 'rx_bytes').notNullable();
    u64Column(knex, table, 'tx_bytes').notNullable();
    u64Column(knex, table, 'rx_packets').nullable();
    u64Column(knex, table, 'tx_packets').nullable();
    epochMsColumn(table, 'sampled_at').notNullable();
    table.unique(['node', 'source', 'interface', 'series_key'], { indexName: 'bw_counters_series_uq' });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_counters');
}
