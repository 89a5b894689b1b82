// Why: a quota now belongs to a subject, a network or the whole plugin, counts up, down or both, has its cycle's time zone, its warning thresholds and a throttle per direction; its state moves to bw_quota_cycles.
import type { Knex } from 'knex';

// bw_quotas has been written by nothing before this migration; rows a host wrote by hand keep their
// allowance, cycle day and action, and the one throttle rate becomes both directions' rate.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_quotas', (table) => {
    table.string('counted', 8).notNullable().defaultTo('total');
    table.string('time_zone', 64).notNullable().defaultTo('UTC');
    table.string('warn_percents', 64).notNullable().defaultTo('[80,90,100]');
    table.integer('throttle_up_kbps').notNullable().defaultTo(1000);
    table.integer('throttle_down_kbps').notNullable().defaultTo(1000);
  });
  await knex('bw_quotas').whereNotNull('throttle_kbps').update({ throttle_up_kbps: knex.ref('throttle_kbps'), throttle_down_kbps: knex.ref('throttle_kbps') });
  await knex.schema.alterTable('bw_quotas', (table) => {
    table.dropColumn('throttle_kbps');
    table.dropColumn('state');
    table.dropColumn('cycle_start');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_quotas', (table) => {
    table.integer('throttle_kbps').nullable();
    table.string('state', 16).notNullable().defaultTo('ok');
    table.bigInteger('cycle_start').nullable();
  });
  await knex('bw_quotas').update({ throttle_kbps: knex.ref('throttle_down_kbps') });
  await knex.schema.alterTable('bw_quotas', (table) => {
    table.dropColumn('counted');
    table.dropColumn('time_zone');
    table.dropColumn('warn_percents');
    table.dropColumn('throttle_up_kbps');
    table.dropColumn('throttle_down_kbps');
  });
}
