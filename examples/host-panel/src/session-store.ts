import session from 'express-session';
import type { Knex } from 'knex';

export interface SessionStoreOptions {
  /**
   * Runs on every load of a stored session: returns the session to use, or null to end it (its
   * row is deleted and the request goes on without a session).
   * @default keeps every session until it expires
   */
  verify?: (data: session.SessionData) => Promise<session.SessionData | null>;
}

/**
 * Sessions kept in the panel's database, so a restart does not log everybody out. express-session
 * calls `set` only for a session that holds something (`saveUninitialized: false`), so visitors
 * who never log in write no rows.
 */
export class KnexSessionStore extends session.Store {
  private sweeper: NodeJS.Timeout;

  constructor(
    private readonly db: Knex,
    private readonly options: SessionStoreOptions = {},
  ) {
    super();
    this.sweeper = setInterval(() => void this.db('panel_sessions').where('expires_at', '<', Date.now()).delete().catch(() => {}), 15 * 60_000);
    this.sweeper.unref();
  }

  override get(sid: string, callback: (error: unknown, session?: session.SessionData | null) => void): void {
    this.db('panel_sessions')
      .where({ sid })
      .andWhere('expires_at', '>', Date.now())
      .first()
      .then(async (row) => {
        if (!row) return null;
        const data = JSON.parse(String(row.data)) as session.SessionData;
        const kept = this.options.verify ? await this.options.verify(data) : data;
        if (!kept) await this.db('panel_sessions').where({ sid }).delete();
        return kept;
      })
      .then((data) => callback(null, data), callback);
  }

  override set(sid: string, data: session.SessionData, callback?: (error?: unknown) => void): void {
    const expires = data.cookie?.expires ? new Date(data.cookie.expires).getTime() : Date.now() + 86_400_000;
    this.db('panel_sessions')
      .insert({ sid, data: JSON.stringify(data), expires_at: expires })
      .onConflict('sid')
      .merge()
      .then(() => callback?.(), (error) => callback?.(error));
  }

  override destroy(sid: string, callback?: (error?: unknown) => void): void {
    this.db('panel_sessions').where({ sid }).delete().then(() => callback?.(), (error) => callback?.(error));
  }

  override touch(sid: string, data: session.SessionData, callback?: () => void): void {
    this.set(sid, data, () => callback?.());
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
