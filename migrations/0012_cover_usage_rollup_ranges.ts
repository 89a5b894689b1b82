// Why: totals over a time range read only the index (no row lookups) once it also carries the subject and bytes.
import type { Knex } from 'knex';

const TABLES = [
  ['bw_usage_hourly', 'hour_start'],
  ['bw_usage_daily', 'day_start'],
] as const;

export async function up(knex: Knex): Promise<void> {
  for (const [table, column] of TABLES) {
    await knex.schema.alterTable(table, (t) => {
      t.dropIndex([column], `${table}_start_ix`);
      t.index([column, 'subject_type', 'subject_id', 'up_bytes', 'down_bytes'], `${table}_cover_ix`);
    });
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const [table, column] of TABLES) {
    await knex.schema.alterTable(table, (t) => {
      t.dropIndex([column, 'subject_type', 'subject_id', 'up_bytes', 'down_bytes'], `${table}_cover_ix`);
      t.index([column], `${table}_start_ix`);
    });
  }
}
