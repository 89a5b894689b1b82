// Why: pages served without a collector in their process read each subject's last rates (billed and through its class) from the last tick's deltas.
import type { Knex } from 'knex';
import { u64Column } from '../src/db/columns.js';

const COLUMNS = ['delta_kind', 'delta_rx_bytes', 'delta_tx_bytes', 'delta_ms'] as const;
const INDEX = 'bw_counters_subject_ix';

export async function up(knex: Knex): Promise<void> {
  // Rows written before this migration have no delta until their series' next tick: rates appear one tick later.
  if (!(await knex.schema.hasColumn('bw_counters', 'delta_kind'))) {
    await knex.schema.alterTable('bw_counters', (table) => {
      table.string('delta_kind', 8).nullable();
      u64Column(knex, table, 'delta_rx_bytes').nullable();
      u64Column(knex, table, 'delta_tx_bytes').nullable();
      table.bigInteger('delta_ms').nullable();
      table.index(['subject_type', 'subject_id'], INDEX);
    });
  }
}

export async function down(knex: Knex): Promise<void> {
  if (!(await knex.schema.hasColumn('bw_counters', 'delta_kind'))) return;
  await knex.schema.alterTable('bw_counters', (table) => {
    table.dropIndex(['subject_type', 'subject_id'], INDEX);
    table.dropColumns(...COLUMNS);
  });
}
