// Why: a failure that repeats every reconcile is one audit row with a count and a last-seen time, not a row per interval.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

// repeat_key names the stream a repeat belongs to (a reconcile of one interface on one node);
// rows without one are never merged. last_seen_at orders the log and drives its retention, so
// existing rows get their own `at`.
export async function up(knex: Knex): Promise<void> {
  if (await knex.schema.hasColumn('bw_events', 'repeat_count')) return;
  await knex.schema.alterTable('bw_events', (table) => {
    table.string('repeat_key', 160).nullable();
    table.integer('repeat_count').notNullable().defaultTo(1);
    epochMsColumn(table, 'last_seen_at').nullable();
  });
  await knex('bw_events').update({ last_seen_at: knex.ref('at') });
  await knex.schema.alterTable('bw_events', (table) => {
    table.index(['repeat_key', 'id'], 'bw_events_repeat_ix');
    table.index(['last_seen_at'], 'bw_events_seen_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  if (!(await knex.schema.hasColumn('bw_events', 'repeat_count'))) return;
  await knex.schema.alterTable('bw_events', (table) => {
    table.dropIndex(['repeat_key', 'id'], 'bw_events_repeat_ix');
    table.dropIndex(['last_seen_at'], 'bw_events_seen_ix');
  });
  await knex.schema.alterTable('bw_events', (table) => {
    table.dropColumns('repeat_key', 'repeat_count', 'last_seen_at');
  });
}
