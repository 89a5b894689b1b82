// Why: /metrics needs a token by default; the one generated on first start is kept as a SHA-256 on the shared database, so every panel process on it accepts the same token.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  if (await knex.schema.hasTable('bw_credentials')) return;
  await knex.schema.createTable('bw_credentials', (table) => {
    table.string('name', 32).primary();
    // 64 hex digits: the SHA-256 of the secret, never the secret.
    table.string('sha256', 64).notNullable();
    epochMsColumn(table, 'created_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_credentials');
}
