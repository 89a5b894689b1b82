import type { ErrorRequestHandler, Request, Response } from 'express';
import type { Logger } from '../../../src/plugin-api.js';

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

/** What body-parser, raw-body, zlib and the router attach to the errors they raise (http-errors style). */
interface TransportError extends Error {
  status?: unknown;
  expose?: unknown;
  type?: unknown;
  code?: unknown;
  limit?: unknown;
  charset?: unknown;
  encoding?: unknown;
}

const quoted = (value: unknown) => `\`${String(value).slice(0, 40)}\``;

/**
 * A request the panel could not read (body-parser's `type`s, a path that is not valid
 * percent-encoding, a body that does not inflate) as the 4xx it is; undefined for anything else.
 */
export function unreadableRequest(error: unknown): HttpError | undefined {
  if (!(error instanceof Error)) return undefined;
  const e = error as TransportError;
  switch (e.type) {
    case 'entity.parse.failed':
      return new HttpError(400, 'invalid_json', 'The request body is not valid JSON');
    case 'entity.too.large':
      return new HttpError(413, 'too_large', `The request body is too large${typeof e.limit === 'number' ? ` (at most ${e.limit} bytes)` : ''}`);
    case 'parameters.too.many':
      return new HttpError(413, 'too_many_fields', 'The form has too many fields');
    case 'charset.unsupported':
      return new HttpError(415, 'unsupported_charset', `The charset ${quoted(e.charset)} is not supported; send UTF-8`);
    case 'encoding.unsupported':
      return new HttpError(415, 'unsupported_encoding', `The content encoding ${quoted(e.encoding)} is not supported; send gzip, deflate, br or none`);
  }
  if (e.status === 400 && error instanceof URIError) {
    // The router's decodeParam: a `%` that is not followed by two hex digits, or bytes that are not UTF-8.
    return new HttpError(400, 'invalid_path', 'The URL path is not valid percent-encoded UTF-8');
  }
  if (e.status === 400 && typeof e.code === 'string' && e.code.startsWith('Z_')) {
    return new HttpError(400, 'invalid_body_encoding', 'The request body does not match its Content-Encoding');
  }
  // Any other http-errors error meant for the client (raw-body's `request.aborted`, `request.size.invalid`, …).
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) {
    return new HttpError(e.status, 'bad_request', e.message.slice(0, 200));
  }
  return undefined;
}

/** How an error page is rendered for a browser. */
export type RenderErrorPage = (req: Request, res: Response, status: number, message: string) => Promise<void>;

/**
 * The panel's one error middleware. Answers JSON `{"error":{"code","message","field"}}` under
 * /api and to clients that prefer JSON, an error page otherwise. A 4xx is logged as one line
 * (it is the client's doing: no stack); anything else is a 500 logged with its stack.
 */
export function errorHandler(logger: Logger, renderPage: RenderErrorPage): ErrorRequestHandler {
  return async (error: unknown, req, res, _next) => {
    const known = error instanceof HttpError ? error : unreadableRequest(error);
    const where = { method: req.method, path: req.path.slice(0, 200) };
    if (known) {
      logger.info('request refused', { ...where, status: known.status, code: known.code, ...(known.field ? { field: known.field } : {}), message: known.message });
    } else {
      logger.error('request failed', { ...where, error: (error as Error)?.stack ?? String(error) });
    }
    // Part of the answer is out (a CSV stream): only cutting the connection tells the client it is incomplete.
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = known?.status ?? 500;
    const message = known?.message ?? 'Internal error';
    res.status(status);
    if (req.path.startsWith('/api/') || req.path === '/api' || req.accepts(['html', 'json']) === 'json') {
      res.json({ error: { code: known?.code ?? 'internal', message, ...(known?.field ? { field: known.field } : {}) } });
      return;
    }
    try {
      await renderPage(req, res, status, message);
    } catch (renderError) {
      logger.error('error page failed', { ...where, error: (renderError as Error)?.stack ?? String(renderError) });
      if (!res.headersSent) res.type('text').send(`${message}\n`);
    }
  };
}
