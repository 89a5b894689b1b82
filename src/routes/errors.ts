import type { ErrorRequestHandler } from 'express';

/** An error the plugin's routes answer with JSON `{"error":{"code","message","field"}}`. */
export class RouteError extends Error {
  override name = 'RouteError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export const inputError = (field: string, message: string) => new RouteError(400, 'invalid_input', message, field);
export const notFound = (what: string, id: string) => new RouteError(404, 'not_found', `No ${what} with id \`${id.slice(0, 40)}\``);

/**
 * The one error middleware of the plugin's routes, mounted after all of them: JSON
 * `{"error":{"code","message","field"}}` under /api, plain text elsewhere (CSV and stream URLs).
 * Errors that are not the plugin's go on to the host.
 */
export const routeErrors: ErrorRequestHandler = (error, req, res, next) => {
  if (!(error instanceof RouteError)) return next(error);
  if (res.headersSent) return next(error);
  if (req.path.startsWith('/api/')) {
    res.status(error.status).json({ error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) } });
  } else {
    res.status(error.status).type('text').send(`${error.message}\n`);
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
