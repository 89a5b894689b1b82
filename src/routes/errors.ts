import type { ErrorRequestHandler } from 'express';
import { ConflictError, InputError, NotFoundError } from '../errors.js';

/** What a domain error becomes in an HTTP answer: JSON `{"error":{"code","message","field"}}`, or text. */
export interface HttpAnswer {
  status: number;
  code: string;
  message: string;
  field?: string;
}

/**
 * The one mapping from domain errors to HTTP: `InputError` 400 `invalid_input` (with its field),
 * `NotFoundError` 404 `not_found`, `ConflictError` 409 `conflict`. Anything else is not the
 * plugin's to answer: undefined.
 */
export function httpAnswer(error: unknown): HttpAnswer | undefined {
  if (error instanceof InputError) return { status: 400, code: 'invalid_input', message: error.message, field: error.field };
  if (error instanceof NotFoundError) return { status: 404, code: 'not_found', message: error.message };
  if (error instanceof ConflictError) return { status: 409, code: 'conflict', message: error.message, ...(error.field ? { field: error.field } : {}) };
  return undefined;
}

export const inputError = (field: string, message: string) => new InputError(field, message);
export const notFound = (what: string, id: string) => new NotFoundError(`No ${what} with id \`${id.slice(0, 40)}\``);

/**
 * The one error middleware of the plugin's routes, mounted after all of them: JSON
 * `{"error":{"code","message","field"}}` under /api, plain text elsewhere (CSV and stream URLs).
 * Errors that are not the plugin's go on to the host, with those of requests the host could not
 * read (the router's URIError for a path that is not valid percent-encoding, body-parser's): the
 * host answers those 4xx for its own routes too, and logs them in one place.
 */
export const routeErrors: ErrorRequestHandler = (error, req, res, next) => {
  const answer = httpAnswer(error);
  if (!answer) return next(error);
  if (res.headersSent) return next(error);
  if (req.path.startsWith('/api/')) {
    res.status(answer.status).json({ error: { code: answer.code, message: answer.message, ...(answer.field ? { field: answer.field } : {}) } });
  } else {
    res.status(answer.status).type('text').send(`${answer.message}\n`);
  }
};

/** A positive integer id from a route, or undefined. */
export function parseId(text: unknown): number | undefined {
  return typeof text === 'string' && /^[1-9]\d{0,9}$/.test(text) && Number(text) <= 2_147_483_647 ? Number(text) : undefined;
}

/** `page`/`per_page` query parameters, validated. */
export function pageParams(query: Record<string, unknown>, defaults = { perPage: 50, maxPerPage: 500 }) {
  const read = (name: string, fallback: number, max: number) => {
    const value = query[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !/^\d{1,6}$/.test(value) || Number(value) < 1 || Number(value) > max) {
      throw inputError(name, `\`${name}\` must be a whole number from 1 to ${max}`);
    }
    return Number(value);
  };
  const perPage = read('per_page', defaults.perPage, defaults.maxPerPage);
  const page = read('page', 1, 1_000_000);
  return { page, perPage, offset: (page - 1) * perPage };
}
