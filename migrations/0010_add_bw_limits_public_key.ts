// Why: the collector matches `wg show dump` lines to peers by their public key.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_limits', (table) => {
    table.string('public_key', 44).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_limits', (table) => {
    table.dropColumn('public_key');
  });
}
