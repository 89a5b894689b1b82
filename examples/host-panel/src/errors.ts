import type { ErrorRequestHandler } from 'express';

/** An error with an HTTP status and a stable code; `field` names the input at fault. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** Bad input: 400, naming the field. */
export class InputError extends HttpError {
  override name = 'InputError';
  constructor(field: string, message: string) {
    super(400, 'invalid_input', message, field);
  }
}

export const notFound = (what: string, id: string): HttpError =>
  new HttpError(404, 'not_found', `No ${what} with id \`${id.slice(0, 40)}\``);

export const conflict = (message: string, field?: string): HttpError => new HttpError(409, 'conflict', message, field);

/** Turns a body-parser failure into our error shape. */
function fromBodyParser(error: unknown): HttpError | undefined {
  const e = error as { type?: string; status?: number; message?: string };
  if (e.type === 'entity.parse.failed') return new HttpError(400, 'invalid_json', 'The request body is not valid JSON');
  if (e.type === 'entity.too.large') return new HttpError(413, 'too_large', 'The request body is too large');
  if (e.type && typeof e.status === 'number' && e.status < 500) return new HttpError(e.status, 'bad_request', e.message ?? 'Bad request');
  return undefined;
}

/** The one error middleware of the JSON API: `{"error":{"code","message","field"}}`. */
export function apiErrorHandler(log: (message: string, fields: Record<string, unknown>) => void): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const known = error instanceof HttpError ? error : fromBodyParser(error);
    if (!known) {
      log('unhandled error', { path: req.path, error: (error as Error)?.stack ?? String(error) });
      res.status(500).json({ error: { code: 'internal', message: 'Internal error' } });
      return;
    }
    res.status(known.status).json({
      error: { code: known.code, message: known.message, ...(known.field ? { field: known.field } : {}) },
    });
  };
}
