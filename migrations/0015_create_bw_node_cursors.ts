// Why: the panel ingests each node's ledger exactly once, from a cursor per node (the last sequence number written).
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_node_cursors', (table) => {
    table.string('node', 64).primary();
    // The agent's ledger identity: a new ledger (a replaced state file) starts the cursor over.
    table.string('ledger_id', 64).notNullable().defaultTo('');
    table.bigInteger('seq').notNullable().defaultTo(0);
    epochMsColumn(table, 'updated_at').notNullable().defaultTo(0);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_node_cursors');
}
