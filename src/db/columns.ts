import type { Knex } from 'knex';
import { dialectOf } from './dialect.js';

/**
 * An unsigned 64-bit counter column (absolute kernel counters are u64 and pass 2^63).
 * BIGINT is signed everywhere, so MySQL and PostgreSQL get NUMERIC(20,0); SQLite would turn a
 * number past 2^63 into a lossy REAL, so there it is TEXT holding the decimal digits.
 */
export function u64Column(knex: Knex, table: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder {
  return dialectOf(knex) === 'sqlite' ? table.text(name) : table.decimal(name, 20, 0);
}

/** A UTC timestamp in epoch milliseconds: sortable, range-queryable and identical on every engine. */
export function epochMsColumn(table: Knex.CreateTableBuilder, name: string): Knex.ColumnBuilder {
  return table.bigInteger(name);
}
