import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Whether an `Authorization` header carries `Bearer <token>`. Compared in constant time over
 * SHA-256 digests, so neither the token's content nor its length leaks through timing.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
  // An absent header is compared too, so it takes as long as a wrong one.
  const offered = digest(match?.[1] ?? '');
  return timingSafeEqual(offered, digest(token)) && match !== null;
}

/** Answers 401 `{error}` (with `WWW-Authenticate`) unless the request carries the token. */
export function bearerAuth(token: string): RequestHandler {
  return (req, res, next) => {
    if (bearerMatches(req.get('authorization'), token)) return next();
    res.status(401).set('WWW-Authenticate', 'Bearer realm="panel-bandwidth-agent"').json({ error: 'missing or wrong bearer token (Authorization: Bearer <token>)' });
  };
}
