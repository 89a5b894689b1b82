// Why: network-wide caps with fair shares, network default caps and per-subject burst (issue 14); a network's defaults are materialized on each of its rows so effective caps and the SQL filters stay row-local.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

/** The columns `bw_limits` gains (kbit/s, or bytes for the burst; 0 = none). */
const LIMIT_COLUMNS = ['min_kbps', 'burst_kbps', 'burst_bytes', 'default_up_kbps', 'default_down_kbps'] as const;

export async function up(knex: Knex): Promise<void> {
  const missing: string[] = [];
  for (const column of LIMIT_COLUMNS) if (!(await knex.schema.hasColumn('bw_limits', column))) missing.push(column);
  if (missing.length > 0) {
    await knex.schema.alterTable('bw_limits', (table) => {
      for (const column of missing) {
        // A burst reaches 4 GiB: past a 32-bit integer.
        if (column === 'burst_bytes') table.bigInteger(column).notNullable().defaultTo(0);
        else table.integer(column).notNullable().defaultTo(0);
      }
    });
  }
  if (await knex.schema.hasTable('bw_network_caps')) return;
  await knex.schema.createTable('bw_network_caps', (table) => {
    table.increments('id').primary();
    // The host's network id, as bw_limits.network_id holds it.
    table.string('network_id', 64).notNullable();
    // Where the network's interface is (kept in step when the host moves or renames it).
    table.string('node', 64).notNullable();
    table.string('interface', 15).notNullable();
    table.string('netns', 64).nullable();
    // All traffic of the interface stays under these (0: no network cap on that side).
    table.integer('total_up_kbps').notNullable().defaultTo(0);
    table.integer('total_down_kbps').notNullable().defaultTo(0);
    // The cap of each peer of the network that has none of its own (0: none).
    table.integer('default_up_kbps').notNullable().defaultTo(0);
    table.integer('default_down_kbps').notNullable().defaultTo(0);
    epochMsColumn(table, 'updated_at').notNullable();
    table.unique(['network_id'], { indexName: 'bw_network_caps_network_uq' });
    table.index(['node', 'interface'], 'bw_network_caps_interface_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_network_caps');
  const present: string[] = [];
  for (const column of LIMIT_COLUMNS) if (await knex.schema.hasColumn('bw_limits', column)) present.push(column);
  if (present.length === 0) return;
  await knex.schema.alterTable('bw_limits', (table) => {
    for (const column of present) table.dropColumn(column);
  });
}
