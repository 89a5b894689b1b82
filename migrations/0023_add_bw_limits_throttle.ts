// Why: a quota's throttle is kept beside the subject's configured caps, never over them, so lifting it restores exactly what the user typed.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_limits', (table) => {
    // Null: not throttled; 0 in one direction: that direction is not throttled.
    table.integer('throttle_up_kbps').nullable();
    table.integer('throttle_down_kbps').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_limits', (table) => {
    table.dropColumn('throttle_up_kbps');
    table.dropColumn('throttle_down_kbps');
  });
}
