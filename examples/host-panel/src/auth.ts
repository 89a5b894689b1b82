import { createHash, randomBytes } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import type { Actor, HostAuth, NavItem } from '../../../src/plugin-api.js';
import { HttpError } from './errors.js';
import { safeEqual } from './passwords.js';

declare module 'express-session' {
  interface SessionData {
    user?: { id: number; username: string; role: 'admin' | 'viewer' };
    csrf?: string;
    flash?: string;
  }
}

const ROLE_RANK: Record<NavItem['minRole'], number> = { viewer: 1, admin: 2 };

/** The host's authentication: admin sessions with CSRF tokens, and a bearer token for the API. */
export function createAuth(apiTokenSha256: string): HostAuth {
  const csrfToken = (req: Request): string => {
    if (!req.session.csrf) req.session.csrf = randomBytes(24).toString('base64url');
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
      const expected = req.session?.csrf;
      if (!expected || !sent || !safeEqual(sent, expected)) {
        next(new HttpError(403, 'csrf', 'The form has expired or did not come from this panel; reload the page and try again'));
        return;
      }
      next();
    },
    role: (req) => req.session?.user?.role ?? null,
    actor: (req): Actor => (req.session?.user ? { kind: 'user', name: req.session.user.username } : { kind: 'api', name: 'api' }),
  };
}
