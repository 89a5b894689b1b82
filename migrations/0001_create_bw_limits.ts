// Why: desired caps live in the database first, so a kernel failure never loses what a user typed.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_limits', (table) => {
    table.increments('id').primary();
    table.string('subject_type', 8).notNullable();
    table.string('subject_id', 64).notNullable();
    table.string('name', 128).notNullable().defaultTo('');
    table.string('node', 64).notNullable().defaultTo('local');
    table.string('interface', 15).notNullable();
    table.string('netns', 64).nullable();
    table.string('interface_kind', 16).notNullable();
    table.text('addresses').notNullable();
    table.integer('up_kbps').notNullable().defaultTo(0);
    table.integer('down_kbps').notNullable().defaultTo(0);
    table.integer('class_minor').nullable();
    table.string('status', 16).notNullable().defaultTo('pending');
    table.text('last_error').nullable();
    epochMsColumn(table, 'applied_at').nullable();
    epochMsColumn(table, 'created_at').notNullable();
    epochMsColumn(table, 'updated_at').notNullable();
    table.unique(['subject_type', 'subject_id'], { indexName: 'bw_limits_subject_uq' });
    table.index(['node', 'interface'], 'bw_limits_interface_ix');
    table.index(['status'], 'bw_limits_status_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_limits');
}
