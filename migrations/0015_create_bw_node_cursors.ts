// Why: the panel ingests each node's ledger exactly once, from a cursor per node and ledger (the last sequence number written).
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_node_cursors', (table) => {
    table.string('node', 64).notNullable();
    // The agent's ledger identity: a new ledger (a replaced state file) has a cursor of its own, from
    // 0; two panel machines on one database each read their own machine's ledger under node `local`.
    table.string('ledger_id', 64).notNullable();
    table.bigInteger('seq').notNullable().defaultTo(0);
    epochMsColumn(table, 'updated_at').notNullable().defaultTo(0);
    table.primary(['node', 'ledger_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_node_cursors');
}
