import type { Knex } from 'knex';
import { dialectOf } from './dialect.js';

/**
 * 64-bit values cross the database boundary as decimal strings: PostgreSQL returns int8 and
 * numeric as strings, mysql2 does too with `bigNumberStrings`, and node-sqlite3 would return a
 * lossy double above 2^53, so SQLite reads go through `CAST(… AS TEXT)`.
 */

/** Converts what a driver returned for a 64-bit column into a bigint (null stays null). */
export function toBigInt(value: unknown): bigint | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`64-bit value read as an unsafe number: ${value}`);
    return BigInt(value);
  }
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  if (typeof value === 'string' && /^-?\d+\.0*$/.test(value)) return BigInt(value.split('.')[0] as string);
  throw new TypeError(`Expected a 64-bit integer from the database, got \`${String(value)}\` (${typeof value})`);
}

/** A bigint as the string every driver writes exactly. */
export function fromBigInt(value: bigint): string {
  return value.toString();
}

/** A select expression that reads a 64-bit integer column exactly on every engine. */
export function bigintColumn(knex: Knex, column: string, alias = column.split('.').pop() as string): Knex.Raw {
  return dialectOf(knex) === 'sqlite'
    ? knex.raw('CAST(?? AS TEXT) AS ??', [column, alias])
    : knex.raw('?? AS ??', [column, alias]);
}

/** A select expression that sums a 64-bit integer column exactly on every engine (0 when no rows). */
export function sumBigint(knex: Knex, column: string, alias: string): Knex.Raw {
  switch (dialectOf(knex)) {
    case 'sqlite':
      return knex.raw('CAST(COALESCE(SUM(??), 0) AS TEXT) AS ??', [column, alias]);
    case 'mysql':
      return knex.raw('CAST(COALESCE(SUM(??), 0) AS CHAR) AS ??', [column, alias]);
    case 'postgres':
      return knex.raw('COALESCE(SUM(??), 0)::text AS ??', [column, alias]);
  }
}
