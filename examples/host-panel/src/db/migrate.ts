import type { Knex } from 'knex';
import * as m0001 from '../../migrations/0001_create_panel_tables.js';

const MIGRATIONS = [['0001_create_panel_tables', m0001]] as const;

const source: Knex.MigrationSource<string> = {
  getMigrations: () => Promise.resolve(MIGRATIONS.map(([name]) => name)),
  getMigrationName: (name) => name,
  getMigration: (name) => Promise.resolve(MIGRATIONS.find(([candidate]) => candidate === name)![1]),
};

/** Runs the host panel's own migrations (table `panel_knex_migrations`). */
export async function migrateHost(knex: Knex): Promise<void> {
  await knex.migrate.latest({ tableName: 'panel_knex_migrations', migrationSource: source });
}
