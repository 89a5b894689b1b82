import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Knex } from 'knex';
import { connect } from '../../src/db/connect.js';
import { MIGRATION_TABLE, PLUGIN_TABLES } from '../../src/db/migrate.js';
import { requireOrSkip } from './layer.js';

export interface Engine {
  id: 'sqlite' | 'mysql' | 'postgres';
  /** A URL for a fresh database of this engine (SQLite: a new file per call). */
  url(): string;
}

export const ENGINES: Engine[] = [
  {
    id: 'sqlite',
    url: () => `sqlite:${join(mkdtempSync(join(tmpdir(), 'pbw-db-')), 'test.sqlite')}`,
  },
  { id: 'mysql', url: () => process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test' },
  { id: 'postgres', url: () => process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
];

/**
 * Opens a knex instance on the engine, or skips the test with a one-line reason when the server
 * cannot be reached (a failure under CI=true). When the test ends, `cleanup` runs and then the
 * connection is destroyed, also when the test failed.
 */
export async function openEngine(
  t: TestContext,
  engine: Engine,
  options: { cleanup?: (knex: Knex) => Promise<void> } = {},
): Promise<Knex | undefined> {
  const url = engine.url();
  const knex = connect(url);
  let reachable = true;
  let reason = '';
  try {
    await knex.raw('select 1');
  } catch (error) {
    reachable = false;
    reason = `${engine.id} server not reachable at ${url.replace(/:[^:@/]*@/, ':***@')}: ${(error as Error).message}`;
  }
  t.after(async () => {
    try {
      if (reachable && options.cleanup) await options.cleanup(knex);
    } finally {
      await knex.destroy();
    }
    if (engine.id === 'sqlite') rmSync(url.slice('sqlite:'.length), { force: true });
  });
  if (!requireOrSkip(t, reachable, reason)) return undefined;
  return knex;
}

/** Drops every plugin table and the plugin's migration tables, whatever state a failed run left. */
export async function dropPluginTables(knex: Knex): Promise<void> {
  for (const table of [...[...PLUGIN_TABLES].reverse(), MIGRATION_TABLE, `${MIGRATION_TABLE}_lock`]) {
    await knex.schema.dropTableIfExists(table);
  }
}

/** Opens the engine with every plugin migration freshly run; plugin tables are dropped afterwards. */
export async function openMigrated(t: TestContext, engine: Engine): Promise<Knex | undefined> {
  const knex = await openEngine(t, engine, { cleanup: dropPluginTables });
  if (!knex) return undefined;
  await dropPluginTables(knex);
  const { migrateLatest } = await import('../../src/db/migrate.js');
  await migrateLatest(knex);
  return knex;
}
