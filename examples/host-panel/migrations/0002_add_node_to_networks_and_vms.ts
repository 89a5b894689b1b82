// Why: networks and VMs live on nodes (a gateway, a hypervisor) other than the panel's machine; an interface name is unique per node, not per panel.
import type { Knex } from 'knex';

// '' is the panel's own machine (as '' is the root namespace): a unique index cannot see NULLs as equal.
const TABLES = [
  { table: 'networks', old: 'networks_interface_uq', index: 'networks_node_interface_uq' },
  { table: 'vms', old: 'vms_interface_uq', index: 'vms_node_interface_uq' },
] as const;

export async function up(knex: Knex): Promise<void> {
  for (const { table, old, index } of TABLES) {
    if (await knex.schema.hasColumn(table, 'node')) continue;
    await knex.schema.alterTable(table, (t) => {
      t.string('node', 64).notNullable().defaultTo('');
    });
    await knex.schema.alterTable(table, (t) => {
      t.dropUnique(['netns', 'interface'], old);
      t.unique(['node', 'netns', 'interface'], { indexName: index });
    });
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const { table, old, index } of TABLES) {
    if (!(await knex.schema.hasColumn(table, 'node'))) continue;
    // Interfaces of the same name on two nodes cannot both stay: down refuses rather than drop rows.
    await knex.schema.alterTable(table, (t) => {
      t.dropUnique(['node', 'netns', 'interface'], index);
      t.unique(['netns', 'interface'], { indexName: old });
    });
    await knex.schema.alterTable(table, (t) => {
      t.dropColumn('node');
    });
  }
}
