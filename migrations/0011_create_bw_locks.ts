// Why: a collector tick takes one row lock first, so two collectors never count a delta twice.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bw_locks', (table) => {
    table.string('name', 32).primary();
    table.bigInteger('held_at').notNullable().defaultTo(0);
  });
  await knex('bw_locks').insert({ name: 'collector', held_at: 0 });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_locks');
}
