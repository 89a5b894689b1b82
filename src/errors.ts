/**
 * The plugin's domain errors. Domain code throws these and never an HTTP status; the routes' one
 * error middleware (`routes/errors.ts`) decides what each becomes in a response.
 */

/** Input that cannot be used; `field` names what to fix (`bandwidth_up_kbps`, `from`, `body`). */
export class InputError extends Error {
  override name = 'InputError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** What a request names does not exist. */
export class NotFoundError extends Error {
  override name = 'NotFoundError';
}

/** The request is valid but collides with the current state (optionally on one field). */
export class ConflictError extends Error {
  override name = 'ConflictError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}
