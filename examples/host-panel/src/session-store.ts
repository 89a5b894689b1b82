import session from 'express-session';
import type { Knex } from 'knex';

/** Sessions kept in the panel's database, so a restart does not log everybody out. */
export class KnexSessionStore extends session.Store {
  private sweeper: NodeJS.Timeout;

  constructor(private readonly db: Knex) {
    super();
    this.sweeper = setInterval(() => void this.db('panel_sessions').where('expires_at', '<', Date.now()).delete().catch(() => {}), 15 * 60_000);
    this.sweeper.unref();
  }

  override get(sid: string, callback: (error: unknown, session?: session.SessionData | null) => void): void {
    this.db('panel_sessions')
      .where({ sid })
      .andWhere('expires_at', '>', Date.now())
      .first()
      .then((row) => callback(null, row ? (JSON.parse(String(row.data)) as session.SessionData) : null), callback);
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
