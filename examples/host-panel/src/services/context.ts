import type { Knex } from 'knex';
import type { HookFailedError, HookRegistry } from '../hooks.js';
import type { ValidationIssue } from '../../../../src/plugin-api.js';
import { HttpError, InputError } from '../errors.js';

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

/**
 * The 503 a request answers after a plugin could not follow its write (which the host has undone):
 * the user sees that nothing was saved and may try again, never a success with settings lost.
 * @example throw undone(error, 'The peer was not created');
 */
export function undone(error: HookFailedError, what: string): HttpError {
  const cause = error.cause as { message?: string } | undefined;
  // knex prefixes the driver's message with the statement: keep the driver's words only.
  const reason = String(cause?.message ?? 'unknown error').split(' - ').pop()!.slice(0, 200);
  return new HttpError(503, 'plugin_unavailable', `${what}: plugin \`${error.pluginId}\` could not store its settings (${reason}). Nothing was saved; try again.`);
}
