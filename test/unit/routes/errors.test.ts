import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NextFunction, Request, Response } from 'express';

import { ConflictError, InputError, NotFoundError } from '../../../src/errors.js';
import { httpAnswer, inputError, notFound, routeErrors } from '../../../src/routes/errors.js';
import { KernelError } from '../../../src/shaping/errors.js';

test('domain errors become HTTP answers in one place', () => {
  assert.deepEqual(httpAnswer(new InputError('bandwidth_up_kbps', 'too fast')), { status: 400, code: 'invalid_input', message: 'too fast', field: 'bandwidth_up_kbps' });
  assert.deepEqual(httpAnswer(new NotFoundError('No peer with id `9`')), { status: 404, code: 'not_found', message: 'No peer with id `9`' });
  assert.deepEqual(httpAnswer(new ConflictError('Address taken', 'allowed_ips')), { status: 409, code: 'conflict', message: 'Address taken', field: 'allowed_ips' });
  assert.deepEqual(httpAnswer(new ConflictError('Busy')), { status: 409, code: 'conflict', message: 'Busy' });
  assert.equal(httpAnswer(new Error('boom')), undefined, 'an unexpected error is not answered here');
  assert.equal(httpAnswer(new KernelError({ argv: ['tc'], stderr: 'x', exitCode: 1, timedOut: false })), undefined);
});

test('the route helpers throw domain errors, which carry no HTTP status', () => {
  const input = inputError('from', '`from` must be before `to`');
  assert.ok(input instanceof InputError);
  assert.equal(input.field, 'from');
  assert.equal('status' in input, false);
  const missing = notFound('VM', 'x'.repeat(100));
  assert.ok(missing instanceof NotFoundError);
  assert.equal(missing.message, `No VM with id \`${'x'.repeat(40)}\``, 'a long id is cut at 40 characters');
});

/** Runs the middleware once; returns what it answered or passed on. */
function handle(error: unknown, path: string, headersSent = false) {
  const sent: { status?: number; json?: unknown; text?: string; type?: string; next?: unknown } = {};
  const res = {
    headersSent,
    status(code: number) {
      sent.status = code;
      return this;
    },
    json(body: unknown) {
      sent.json = body;
      return this;
    },
    type(type: string) {
      sent.type = type;
      return this;
    },
    send(text: string) {
      sent.text = text;
      return this;
    },
  } as unknown as Response;
  const next: NextFunction = (passed?: unknown) => {
    sent.next = passed;
  };
  routeErrors(error, { path } as Request, res, next);
  return sent;
}

test('the middleware answers JSON under /api and text elsewhere, and passes on what is not the plugin\'s', () => {
  assert.deepEqual(handle(new InputError('status', 'bad status'), '/api/bandwidth/limits'), {
    status: 400, json: { error: { code: 'invalid_input', message: 'bad status', field: 'status' } },
  });
  assert.deepEqual(handle(new NotFoundError('No network with id `7`'), '/api/networks/7/bandwidth'), {
    status: 404, json: { error: { code: 'not_found', message: 'No network with id `7`' } },
  });
  assert.deepEqual(handle(new InputError('step', 'bad step'), '/admin/bandwidth/export.csv'), { status: 400, type: 'text', text: 'bad step\n' });
  const unexpected = new Error('boom');
  assert.deepEqual(handle(unexpected, '/api/bandwidth/limits'), { next: unexpected });
  const late = new InputError('x', 'y');
  assert.deepEqual(handle(late, '/api/bandwidth/limits', true), { next: late }, 'a started response is left to express');
});
