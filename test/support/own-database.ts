/**
 * A database of the test's own on an engine's server, so tests that run at the same time never
 * share tables: SQLite gets a new file, MariaDB and PostgreSQL a database named
 * `pbw_<tag>_<pid>_<engine>`, dropped when the test ends (also on failure).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Knex } from 'knex';

import { connect } from '../../src/db/connect.js';
import { migrateLatest } from '../../src/db/migrate.js';
import type { Engine } from './databases.js';
import { requireOrSkip } from './layer.js';

const BASE = {
  mysql: () => process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
  postgres: () => process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
};

const withDatabase = (url: string, name: string): string => {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
};

/** A database of the test's own. */
export interface OwnDatabase {
  /** Its `DATABASE_URL`. */
  url: string;
  /** Registers something to close before the database is dropped (a pool, a panel); they close in reverse order. */
  closeFirst(close: () => Promise<unknown>): void;
}

/**
 * Creates an empty database for this test, or returns undefined after skipping the test when the
 * server cannot be reached (a failure under CI=true).
 * @param tag - a few lowercase letters naming the test file, unique among the test files.
 * @example const { url } = await ownDatabase(t, engine, 'alloc'); // 'mysql://root@127.0.0.1:3306/pbw_alloc_4242_mysql'
 */
export async function ownDatabase(t: TestContext, engine: Engine, tag: string): Promise<OwnDatabase | undefined> {
  if (!/^[a-z]{1,12}$/.test(tag)) throw new TypeError(`Expected \`tag\` to be 1-12 lowercase letters, got \`${tag}\``);
  const closers: (() => Promise<unknown>)[] = [];
  const closeAll = async () => {
    const results = await Promise.allSettled(closers.reverse().map((close) => close()));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  };
  const closeFirst = (close: () => Promise<unknown>) => void closers.push(close);
  if (engine.id === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), `pbw-${tag}-`));
    t.after(async () => {
      try {
        await closeAll();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
    return { url: `sqlite:${join(dir, 'test.sqlite')}`, closeFirst };
  }
  const base = BASE[engine.id]();
  const name = `pbw_${tag}_${process.pid}_${engine.id}`;
  const admin = connect(withDatabase(base, engine.id === 'postgres' ? 'postgres' : ''));
  const quoted = engine.id === 'mysql' ? `\`${name}\`` : `"${name}"`;
  const drop = `DROP DATABASE IF EXISTS ${quoted}${engine.id === 'postgres' ? ' WITH (FORCE)' : ''}`;
  try {
    await admin.raw(drop);
    await admin.raw(`CREATE DATABASE ${quoted}`);
  } catch (error) {
    await admin.destroy();
    requireOrSkip(t, false, `${engine.id} server not reachable at ${base.replace(/:[^:@/]*@/, ':***@')}: ${(error as Error).message}`);
    return undefined;
  }
  t.after(async () => {
    try {
      await closeAll();
    } finally {
      try {
        await admin.raw(drop);
      } finally {
        await admin.destroy();
      }
    }
  });
  return { url: withDatabase(base, name), closeFirst };
}

/**
 * Opens `count` knex instances (separate pools, like separate panel processes) on a database of the
 * test's own with every plugin migration run; they are destroyed when the test ends, before the
 * database is dropped.
 */
export async function openOwnMigrated(t: TestContext, engine: Engine, tag: string, count = 1): Promise<Knex[] | undefined> {
  const own = await ownDatabase(t, engine, tag);
  if (!own) return undefined;
  const instances = Array.from({ length: count }, () => connect(own.url));
  for (const knex of instances) own.closeFirst(() => knex.destroy());
  await migrateLatest(instances[0]!);
  return instances;
}
