// Why: the registry of remote nodes whose agents the panel talks to.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_agents', (table) => {
    table.increments('id').primary();
    table.string('name', 64).notNullable();
    table.string('url', 255).notNullable();
    table.string('token_hash', 128).notNullable();
    table.boolean('enabled').notNullable().defaultTo(true);
    table.string('status', 16).notNullable().defaultTo('unknown');
    epochMsColumn(table, 'last_seen_at').nullable();
    table.text('last_error').nullable();
    epochMsColumn(table, 'created_at').notNullable();
    epochMsColumn(table, 'updated_at').notNullable();
    table.unique(['name'], { indexName: 'bw_agents_name_uq' });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_agents');
}
