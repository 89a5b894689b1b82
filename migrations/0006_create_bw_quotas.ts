// Why: a monthly allowance per subject, with what to do when it is used up.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_quotas', (table) => {
    table.increments('id').primary();
    table.string('subject_type', 8).notNullable();
    table.string('subject_id', 64).notNullable();
    table.bigInteger('allowance_bytes').notNullable();
    table.integer('cycle_day').notNullable().defaultTo(1);
    table.string('action', 16).notNullable().defaultTo('notify');
    table.integer('throttle_kbps').nullable();
    table.string('state', 16).notNullable().defaultTo('ok');
    epochMsColumn(table, 'cycle_start').nullable();
    epochMsColumn(table, 'created_at').notNullable();
    epochMsColumn(table, 'updated_at').notNullable();
    table.unique(['subject_type', 'subject_id'], { indexName: 'bw_quotas_subject_uq' });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_quotas');
}
