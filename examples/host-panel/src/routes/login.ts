import { randomBytes } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import type { Knex } from 'knex';
import { SESSION_COOKIE, type PanelAuth, type UserRow } from '../auth.js';
import type { Logger } from '../../../../src/plugin-api.js';
import { accountKey, addressKey, type LoginThrottle } from '../login-throttle.js';
import type { PasswordHasher } from '../passwords.js';
import type { ViewRegistry } from '../views.js';

export interface LoginDeps {
  db: Knex;
  auth: PanelAuth;
  views: ViewRegistry;
  throttle: LoginThrottle;
  passwords: PasswordHasher;
  /**
   * A hash of a random password, checked when the user name is unknown, so an unknown name costs
   * the same hash as a known one and answers in the same time.
   */
  dummyHash: string;
  logger: Logger;
}

/** Only local paths are followed after login (no open redirect). */
export function safeNext(value: unknown): string {
  return typeof value === 'string' && /^\/(?!\/)[\w\-./?=&%]*$/.test(value) ? value : '/admin';
}

/** `/login` and `/logout`: failed logins are rate-limited per user name and per address. */
export function createLoginRouter({ db, auth, views, throttle, passwords, dummyHash, logger }: LoginDeps): Router {
  const router = express.Router();
  const form = (req: Request, res: Response, locals: { error: string | null; username: string; next: string }) =>
    views.render(req, res, 'login', { title: 'Log in', csrfToken: auth.csrfToken(req), ...locals });

  router.get('/login', async (req, res) => {
    if (req.session?.user) return res.redirect(303, safeNext(req.query.next));
    await form(req, res, { error: null, username: '', next: safeNext(req.query.next) });
  });

  router.post('/login', auth.verifyCsrf, async (req, res, nextHandler) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const username = typeof body.username === 'string' ? body.username : '';
    const password = typeof body.password === 'string' ? body.password : '';
    const next = safeNext(body.next);
    const attempt = { account: accountKey(username), address: addressKey(req.ip) };
    const who = { account: attempt.account.slice(0, 64), address: attempt.address };
    const tooMany = (retryAfterS: number) => {
      res.status(429).set('Retry-After', String(retryAfterS));
      const minutes = Math.ceil(retryAfterS / 60);
      return form(req, res, { error: `Too many failed logins; try again in ${minutes} minute${minutes === 1 ? '' : 's'}`, username, next });
    };

    const allowed = throttle.begin(attempt);
    if (allowed.locked) return tooMany(allowed.retryAfterS);
    const row = (await db('panel_users').where({ username }).first()) as UserRow | undefined;
    // The same hash runs for an unknown name, so the answer's timing does not tell names apart.
    const valid = await passwords.verify(password, row ? String(row.password_hash) : dummyHash);
    if (!row || !valid) {
      const after = throttle.failed(attempt);
      if (after.locked) {
        logger.warn('login failed: locked', { ...who, retry_after_s: after.retryAfterS });
        return tooMany(after.retryAfterS);
      }
      logger.info('login failed', who);
      res.status(401);
      return form(req, res, { error: 'Wrong user name or password', username, next });
    }
    throttle.succeeded(attempt);
    logger.info('login', { user: String(row.username), address: attempt.address });
    req.session.regenerate((error) => {
      if (error) return nextHandler(error);
      req.session.user = {
        id: Number(row.id),
        username: String(row.username),
        role: row.role === 'viewer' ? 'viewer' : 'admin',
        credential: auth.credential(row),
      };
      req.session.csrf = randomBytes(24).toString('base64url');
      auth.endLoginCsrf(res);
      req.session.save((saveError) => (saveError ? nextHandler(saveError) : res.redirect(303, next)));
    });
  });

  router.post('/logout', auth.verifyCsrf, (req, res, nextHandler) => {
    if (!req.session) return res.redirect(303, '/login');
    req.session.destroy((error) => {
      if (error) return nextHandler(error);
      res.clearCookie(SESSION_COOKIE, { path: '/' });
      res.redirect(303, '/login');
    });
  });
  return router;
}
