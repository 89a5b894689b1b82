import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { SessionData } from 'express-session';
import type { Knex } from 'knex';
import type { Actor, HostAuth, NavItem } from '../../../src/plugin-api.js';
import type { CookieSecure } from './config.js';
import { HttpError } from './errors.js';
import { safeEqual } from './passwords.js';

declare module 'express-session' {
  interface SessionData {
    /** `credential`: {@link PanelAuth.credential} of the user's row at login; a new password ends the session. */
    user?: { id: number; username: string; role: 'admin' | 'viewer'; credential: string };
    csrf?: string;
    flash?: string;
  }
}

const ROLE_RANK: Record<NavItem['minRole'], number> = { viewer: 1, admin: 2 };

/** The session cookie's name. */
export const SESSION_COOKIE = 'panel.sid';

/**
 * Holds the login form's CSRF nonce until login, so a visitor who only looks at the login page
 * costs no session row. Its path keeps it off every other request.
 */
export const LOGIN_CSRF_COOKIE = 'panel.login_csrf';
const LOGIN_CSRF_PATH = '/login';

/** The stored user a session belongs to. */
export interface UserRow {
  id: number | string;
  username: string;
  password_hash: string;
  role: string;
}

/** The host's auth, plus what its login routes and session store need. */
export interface PanelAuth extends HostAuth {
  /** A version of the user's credentials (changes with the password hash); kept in the session at login. */
  credential(user: UserRow): string;
  /** Whether a cookie set on this request gets `Secure`. */
  secureCookie(req: Request): boolean;
  /** Drops the login form's CSRF cookie (after login: the session holds a token from then on). */
  endLoginCsrf(res: Response): void;
}

export interface AuthOptions {
  /** sha256 (hex) of the API's bearer token. */
  apiTokenSha256: string;
  /** Signs the login form's CSRF token and the credential versions. */
  sessionSecret: string;
  /** @default 'auto' */
  cookieSecure?: CookieSecure;
}

/** A cookie's value from the request's Cookie header (no cookie parser is installed). */
function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) {
      const value = part.slice(at + 1).trim();
      return /^[\w-]{16,64}$/.test(value) ? value : undefined;
    }
  }
  return undefined;
}

/** The host's authentication: admin sessions with CSRF tokens, and a bearer token for the API. */
export function createAuth(options: AuthOptions): PanelAuth {
  const { apiTokenSha256, sessionSecret, cookieSecure = 'auto' } = options;
  const sign = (purpose: string, value: string) => createHmac('sha256', sessionSecret).update(`${purpose}\0${value}`).digest('base64url');
  const secureCookie = (req: Request) => (cookieSecure === 'auto' ? req.secure : cookieSecure);
  /** The nonce set on this request, before the browser sends it back. */
  const issued = new WeakMap<Request, string>();

  /** A logged-out browser's token: the HMAC of a nonce in its cookie (a signed double-submit cookie). */
  const loginToken = (req: Request, create: boolean): string | undefined => {
    let nonce = issued.get(req) ?? readCookie(req, LOGIN_CSRF_COOKIE);
    if (!nonce && create && req.res) {
      nonce = randomBytes(24).toString('base64url');
      issued.set(req, nonce);
      req.res.cookie(LOGIN_CSRF_COOKIE, nonce, { httpOnly: true, sameSite: 'lax', path: LOGIN_CSRF_PATH, secure: secureCookie(req) });
    }
    return nonce ? sign('login-csrf', nonce) : undefined;
  };
  const csrfToken = (req: Request): string => {
    if (!req.session?.user) return loginToken(req, true) ?? '';
    req.session.csrf ??= randomBytes(24).toString('base64url');
    return req.session.csrf;
  };

  return {
    admin: (role: NavItem['minRole'] = 'admin'): RequestHandler => (req, res, next) => {
      const user = req.session?.user;
      if (!user) {
        res.redirect(303, `/login?next=${encodeURIComponent(req.originalUrl)}`);
        return;
      }
      if (ROLE_RANK[user.role] < ROLE_RANK[role]) {
        next(new HttpError(403, 'forbidden', `This page needs the ${role} role`));
        return;
      }
      next();
    },
    api: (req, _res, next) => {
      const header = req.get('authorization') ?? '';
      const match = /^Bearer\s+(\S+)$/i.exec(header);
      const sent = match?.[1] ? createHash('sha256').update(match[1]).digest('hex') : '';
      if (!sent || !safeEqual(sent, apiTokenSha256)) {
        next(new HttpError(401, 'unauthorized', 'Missing or wrong bearer token (Authorization: Bearer <PANEL_API_TOKEN>)'));
        return;
      }
      next();
    },
    csrfToken,
    verifyCsrf: (req, _res, next) => {
      const sent = typeof req.body?._csrf === 'string' ? req.body._csrf : (req.get('x-csrf-token') ?? '');
      // A logged-in browser answers with its session's token, a logged-out one with its cookie's.
      const expected = req.session?.user ? req.session.csrf : loginToken(req, false);
      if (!expected || !sent || !safeEqual(sent, expected)) {
        next(new HttpError(403, 'csrf', 'The form has expired or did not come from this panel; reload the page and try again'));
        return;
      }
      next();
    },
    role: (req) => req.session?.user?.role ?? null,
    actor: (req): Actor => (req.session?.user ? { kind: 'user', name: req.session.user.username } : { kind: 'api', name: 'api' }),
    credential: (user) => sign('credential', `${user.id}\0${user.username}\0${user.password_hash}`).slice(0, 32),
    secureCookie,
    endLoginCsrf: (res) => {
      res.clearCookie(LOGIN_CSRF_COOKIE, { httpOnly: true, sameSite: 'lax', path: LOGIN_CSRF_PATH, secure: secureCookie(res.req) });
    },
  };
}

/**
 * Checks a stored session against its user on every load: a deleted user, a renamed one or a new
 * password (a new credential version) ends it; a changed role applies at once.
 * @returns the session to use, or null to end it
 */
export function sessionVerifier(db: Knex, auth: Pick<PanelAuth, 'credential'>): (data: SessionData) => Promise<SessionData | null> {
  return async (data) => {
    const user = data.user;
    if (!user) return data;
    const row = (await db('panel_users').where({ id: user.id }).first()) as UserRow | undefined;
    if (!row || String(row.username) !== user.username || !user.credential) return null;
    if (!safeEqual(auth.credential(row), user.credential)) return null;
    user.role = row.role === 'viewer' ? 'viewer' : 'admin';
    return data;
  };
}
