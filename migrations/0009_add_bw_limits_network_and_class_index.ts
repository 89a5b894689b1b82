// Why: peers are listed per network, and two subjects on one interface must never share an HTB class.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_limits', (table) => {
    table.string('network_id', 64).nullable();
    table.index(['network_id'], 'bw_limits_network_ix');
    // NULL minors (unlimited subjects) never collide: NULLs are distinct in unique indexes on all three engines.
    table.unique(['node', 'interface', 'class_minor'], { indexName: 'bw_limits_class_uq' });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('bw_limits', (table) => {
    table.dropUnique(['node', 'interface', 'class_minor'], 'bw_limits_class_uq');
    table.dropIndex(['network_id'], 'bw_limits_network_ix');
    table.dropColumn('network_id');
  });
}
