import type { Knex } from 'knex';
import type { HookRegistry } from '../hooks.js';
import type { ValidationIssue } from '../../../../src/plugin-api.js';
import { InputError } from '../errors.js';

/** What every service needs: the database and the hook bus. */
export interface ServiceContext {
  db: Knex;
  hooks: HookRegistry;
}

/** A plugin's validation issue becomes the same 400 as the host's own. */
export function rejectIssues(issues: ValidationIssue[]): void {
  const first = issues[0];
  if (first) throw new InputError(first.field, first.message);
}

/** True when a database error is a unique-constraint violation (all three engines). */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; errno?: number; message?: string };
  return e.code === 'ER_DUP_ENTRY' || e.code === '23505' || /UNIQUE constraint failed/.test(e.message ?? '');
}

/** The id of the row an `insert` created, on every engine (`.returning()` does not work on MySQL). */
export async function insertId(db: Knex, table: string, row: Record<string, unknown>): Promise<number> {
  // MySQL/MariaDB have no RETURNING (knex warns on every insert): the insert id comes back anyway.
  const result = db.client.config.client === 'mysql2' ? await db(table).insert(row) : await db(table).insert(row, ['id']);
  const first = result[0] as number | { id: number } | undefined;
  return Number(typeof first === 'object' ? first.id : first);
}
