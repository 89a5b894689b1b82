// Why: outcomes carry a typed reason (dry_run, interface_missing, …) beside their message, so code stops matching prose.
import type { Knex } from 'knex';

// Rows written before this migration keep a null reason until the next apply sets one (the
// reconcile loop runs at start); old messages are not parsed to guess it.
const TABLES = ['bw_limits', 'bw_events'] as const;

export async function up(knex: Knex): Promise<void> {
  for (const table of TABLES) {
    if (await knex.schema.hasColumn(table, 'reason')) continue;
    await knex.schema.alterTable(table, (t) => {
      t.string('reason', 24).nullable();
    });
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const table of TABLES) {
    if (!(await knex.schema.hasColumn(table, 'reason'))) continue;
    await knex.schema.alterTable(table, (t) => {
      t.dropColumn('reason');
    });
  }
}
