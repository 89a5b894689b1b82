import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import knexFactory, { type Knex } from 'knex';

/**
 * Knex configuration for a `DATABASE_URL`: `sqlite:./path.sqlite` (or `sqlite::memory:`),
 * `mysql://user:pass@host:3306/db`, `postgres://user@host:5432/db`.
 * @example knexConfigFromUrl('sqlite:./data/panel.sqlite')
 */
export function knexConfigFromUrl(url: string): Knex.Config {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new TypeError('Expected `DATABASE_URL` to name a file after `sqlite:`, got an empty path');
    const filename = path === ':memory:' ? ':memory:' : resolve(path);
    if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true });
    return {
      client: 'sqlite3',
      connection: { filename },
      useNullAsDefault: true,
      pool: {
        min: 1,
        max: 1,
        afterCreate(connection: { run: (sql: string, cb: (error: Error | null) => void) => void }, done: (error: Error | null, connection: unknown) => void) {
          connection.run('PRAGMA foreign_keys = ON', (error) => {
            if (error) return done(error, connection);
            connection.run('PRAGMA busy_timeout = 5000', (busyError) => done(busyError, connection));
          });
        },
      },
    };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Expected \`DATABASE_URL\` to be sqlite:…, mysql://… or postgres://…, got \`${url}\``);
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  if (parsed.protocol === 'mysql:' || parsed.protocol === 'mariadb:') {
    return {
      client: 'mysql2',
      connection: {
        host: parsed.hostname,
        port: parsed.port ? Number(parsed.port) : 3306,
        user: decodeURIComponent(parsed.username),
        password: decodeURIComponent(parsed.password),
        database,
        charset: 'utf8mb4',
        timezone: 'Z',
        supportBigNumbers: true,
        bigNumberStrings: true,
      },
      pool: { min: 0, max: 10 },
    };
  }
  if (parsed.protocol === 'postgres:' || parsed.protocol === 'postgresql:') {
    return { client: 'pg', connection: url, pool: { min: 0, max: 10 } };
  }
  throw new TypeError(`Expected \`DATABASE_URL\` to be sqlite:…, mysql://… or postgres://…, got protocol \`${parsed.protocol}\``);
}

/** Opens a knex instance for a `DATABASE_URL`. */
export function connect(url: string): Knex {
  return knexFactory(knexConfigFromUrl(url));
}
