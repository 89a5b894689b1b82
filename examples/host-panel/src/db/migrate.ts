import type { Knex } from 'knex';
import * as m0001 from '../../migrations/0001_create_panel_tables.js';
import * as m0002 from '../../migrations/0002_add_node_to_networks_and_vms.js';

const MIGRATIONS = [
  ['0001_create_panel_tables', m0001],
  ['0002_add_node_to_networks_and_vms', m0002],
] as const;

const source: Knex.MigrationSource<string> = {
  getMigrations: () => Promise.resolve(MIGRATIONS.map(([name]) => name)),
  getMigrationName: (name) => name,
  getMigration: (name) => Promise.resolve(MIGRATIONS.find(([candidate]) => candidate === name)![1]),
};

/** Runs the host panel's own migrations (table `panel_knex_migrations`). */
export async function migrateHost(knex: Knex): Promise<void> {
  await knex.migrate.latest({ tableName: 'panel_knex_migrations', migrationSource: source });
}
