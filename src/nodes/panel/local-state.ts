import { dirname, join } from 'node:path';
import type { Knex } from 'knex';

import { dialectOf } from '../../db/dialect.js';

/** Overrides where the panel machine's own agent keeps its state. */
export const LOCAL_STATE_ENV = 'PANEL_BANDWIDTH_LOCAL_STATE';

/** Where the panel machine's agent keeps its state when neither env nor SQLite say otherwise. */
export const DEFAULT_LOCAL_STATE = '/var/lib/panel-bandwidth/local-agent.sqlite';

/**
 * The state file of the panel machine's own agent: `$PANEL_BANDWIDTH_LOCAL_STATE`; else, for a
 * dry run or an in-memory panel database, memory (nothing to keep); else beside a SQLite panel
 * database; else {@link DEFAULT_LOCAL_STATE}. Panel processes on one machine and one database
 * therefore share one state (and one ledger): their collectors never count a byte twice.
 */
export function localStatePath(db: Knex, mode: 'local' | 'recording', env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[LOCAL_STATE_ENV];
  if (fromEnv) return fromEnv;
  if (mode === 'recording') return ':memory:';
  if (dialectOf(db) === 'sqlite') {
    const filename = (db.client as { config: { connection?: { filename?: string } } }).config.connection?.filename;
    if (!filename || filename === ':memory:') return ':memory:';
    return join(dirname(filename), 'panel-bandwidth-local-agent.sqlite');
  }
  return DEFAULT_LOCAL_STATE;
}
