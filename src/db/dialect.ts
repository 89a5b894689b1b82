import type { Knex } from 'knex';

export type Dialect = 'sqlite' | 'mysql' | 'postgres';

/** The database engine behind a knex instance. */
export function dialectOf(knex: Knex): Dialect {
  const client = String(knex.client.config.client ?? knex.client.dialect);
  if (client.includes('sqlite')) return 'sqlite';
  if (client.includes('mysql')) return 'mysql';
  if (client === 'pg' || client.includes('postgres')) return 'postgres';
  throw new Error(`Unsupported knex client \`${client}\`: use sqlite3, mysql2 or pg`);
}
