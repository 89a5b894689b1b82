// Why: /metrics reads each subject's all-time bytes from one row kept with the roll-ups, instead of summing two years of daily rows per scrape.
import type { Knex } from 'knex';
import { sumBigint } from '../src/db/bigint.js';

// Rows written from here on are added in the same transaction as the roll-ups (writeTotals in
// src/accounting/store.ts). What the daily roll-ups hold now is carried over once; bytes whose
// daily rows retention already deleted are gone from both.
export async function up(knex: Knex): Promise<void> {
  if (await knex.schema.hasTable('bw_usage_totals')) return;
  await knex.schema.createTable('bw_usage_totals', (table) => {
    table.string('subject_type', 8).notNullable();
    table.string('subject_id', 64).notNullable();
    table.bigInteger('up_bytes').notNullable().defaultTo(0);
    table.bigInteger('down_bytes').notNullable().defaultTo(0);
    table.primary(['subject_type', 'subject_id']);
  });
  const sums = (await knex('bw_usage_daily')
    .select('subject_type', 'subject_id', sumBigint(knex, 'up_bytes', 'up_bytes'), sumBigint(knex, 'down_bytes', 'down_bytes'))
    .groupBy('subject_type', 'subject_id')) as Record<string, unknown>[];
  const rows = sums.map((row) => ({ subject_type: row.subject_type, subject_id: row.subject_id, up_bytes: String(row.up_bytes), down_bytes: String(row.down_bytes) }));
  for (let i = 0; i < rows.length; i += 500) await knex('bw_usage_totals').insert(rows.slice(i, i + 500));
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_usage_totals');
}
