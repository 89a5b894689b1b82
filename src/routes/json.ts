import type { Response } from 'express';

/** Sends JSON in which bigints are integer literals, exact past 2^53 (JSON.stringify cannot). */
export function sendJson(res: Response, value: unknown, status = 200): void {
  const marked = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `\u0000bigint:${v.toString()}` : v));
  res.status(status).type('json').send(marked.replace(/"\\u0000bigint:(-?\d+)"/g, '$1'));
}
