// Why: writers that pick a class minor for the same interface must take turns, or two pick the same one (issue 12, item 1).
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  if (await knex.schema.hasTable('bw_class_allocators')) return;
  await knex.schema.createTable('bw_class_allocators', (table) => {
    // One row per (node, interface), created on first use; a writer locks it (an UPDATE) before it reads the minors in use.
    table.string('node', 64).notNullable();
    table.string('interface', 15).notNullable();
    // Bumped by every writer that takes the row, so the locking UPDATE always changes it.
    table.bigInteger('turns').notNullable().defaultTo(0);
    table.primary(['node', 'interface'], 'bw_class_allocators_pk');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_class_allocators');
}
