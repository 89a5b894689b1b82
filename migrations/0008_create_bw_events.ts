// Why: an audit log of who changed which limit when, and what the kernel answered.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_events', (table) => {
    table.bigIncrements('id').primary();
    epochMsColumn(table, 'at').notNullable();
    table.string('actor', 128).notNullable();
    table.string('subject_type', 8).nullable();
    table.string('subject_id', 64).nullable();
    table.string('action', 32).notNullable();
    table.text('old_value').nullable();
    table.text('new_value').nullable();
    table.string('result', 16).notNullable();
    table.text('message').nullable();
    table.index(['subject_type', 'subject_id', 'at'], 'bw_events_subject_ix');
    table.index(['at'], 'bw_events_at_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_events');
}
