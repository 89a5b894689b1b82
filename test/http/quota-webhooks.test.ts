import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
import { connect } from '../../src/db/connect.js';
import { migrateLatest } from '../../src/db/migrate.js';
import type { Logger } from '../../src/plugin-api.js';
import * as createWebhookDeliveries from '../../migrations/0024_create_bw_webhook_deliveries.js';
import {
  MAX_BODY_BYTES, WebhookDeliverer, defaultBackoffMs, enqueueWebhook, listDeliveries, signatureOf,
  type DeliveryRow, type WebhookDelivererOptions,
} from '../../src/quotas/webhooks.js';
import { ENGINES, type Engine } from '../support/databases.js';
import { ownDatabase } from '../support/own-database.js';

const SECRET = 'whsec_4f1c9a0e7b';
const T0 = Date.UTC(2026, 11, 2, 6, 0, 0, 250);
const MINUTE = 60_000;
const EXCEEDED = {
  name: 'bandwidth.quota.exceeded', subjectType: 'peer', subjectId: '42',
  payload: { allowanceBytes: 2n ** 53n + 1n, usedBytes: 2n ** 53n + 7n, action: 'throttle' },
} as const;

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  /** The raw bytes, as the receiver must verify them. */
  body: Buffer;
}

/** What a receiver does with its n-th request (0-based): answer with a status, or never answer. */
type Respond = (n: number, request: Received) => { status: number; headers?: Record<string, string> } | 'hang';

interface Receiver {
  url: string;
  received: Received[];
  /** Resolves once `count` requests have arrived. */
  waitFor(count: number): Promise<void>;
}

type LogLine = { level: string; message: string; fields: Record<string, unknown> };

/**
 * A SQLite file (or a MariaDB/PostgreSQL database) of the test's own with every migration run,
 * a fake clock, and helpers for receivers and deliverers, all released when the test ends, also
 * on failure: deliverers first, then receivers, then the pools, then the database.
 */
async function setUp(t: TestContext, engine: Engine = ENGINES[0]!, pools = 1) {
  const own = await ownDatabase(t, engine, 'webhooks');
  if (!own) return undefined;
  const deliverers: WebhookDeliverer[] = [];
  const servers: ReturnType<typeof createServer>[] = [];
  const dbs = Array.from({ length: pools }, () => connect(own.url));
  own.closeFirst(async () => {
    await Promise.allSettled(deliverers.map((deliverer) => deliverer.close()));
    await Promise.allSettled(servers.map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }));
    await Promise.allSettled(dbs.map((db) => db.destroy()));
  });
  await migrateLatest(dbs[0]!);
  // Until src/db/migrate.ts lists 0024; a no-op once it does.
  await createWebhookDeliveries.up(dbs[0]!);

  const clock = { now: T0 };
  const lines: LogLine[] = [];
  const logger: Logger = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((level) => [
    level, (message: string, fields: Record<string, unknown> = {}) => void lines.push({ level, message, fields }),
  ])) as unknown as Logger;

  return {
    db: dbs[0]!,
    dbs,
    clock,
    lines,
    /** A deliverer on the fake clock, 60 s between attempts unless told otherwise. */
    deliverer(url: string, options: Partial<WebhookDelivererOptions> = {}): WebhookDeliverer {
      const deliverer = new WebhookDeliverer({
        db: dbs[0]!, url, secret: SECRET, logger, now: () => clock.now, backoffMs: () => MINUTE, ...options,
      });
      deliverers.push(deliverer);
      return deliverer;
    },
    async receiver(respond: Respond = () => ({ status: 204 })): Promise<Receiver> {
      const received: Received[] = [];
      const waiting: { count: number; resolve: () => void }[] = [];
      const server = createServer((request: IncomingMessage, response: ServerResponse) => {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          const entry = { path: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks) };
          const answer = respond(received.length, entry);
          received.push(entry);
          for (const waiter of waiting) if (received.length >= waiter.count) waiter.resolve();
          if (answer === 'hang') return;
          response.writeHead(answer.status, answer.headers).end(answer.status >= 400 ? 'receiver says no' : '');
        });
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      return {
        url: `http://127.0.0.1:${port}/hooks/bandwidth`,
        received,
        waitFor: (count) => new Promise((resolve) => {
          if (received.length >= count) resolve();
          else waiting.push({ count, resolve });
        }),
      };
    },
    /** A URL on a port nothing listens on (it was just released). */
    async closedPortUrl(): Promise<string> {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      await new Promise((resolve) => server.close(resolve));
      return `http://127.0.0.1:${port}/hooks/bandwidth`;
    },
    async only(): Promise<DeliveryRow> {
      const rows = await listDeliveries(dbs[0]!, { limit: 10 });
      assert.equal(rows.length, 1, 'one delivery in the log');
      return rows[0]!;
    },
  };
}

describe('quota webhooks', () => {
  test('a queued event is POSTed once, signed over the raw body with the secret and the time of the attempt', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver(() => ({ status: 200 }));
    const deliveryId = await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    s.clock.now = T0 + 1_500;

    assert.equal(await s.deliverer(receiver.url).deliverDue(), 1);

    assert.equal(receiver.received.length, 1);
    const [request] = receiver.received;
    const { headers, body } = request!;
    assert.equal(headers['content-type'], 'application/json');
    assert.equal(headers['user-agent'], 'panel-bandwidth-webhooks');
    assert.equal(headers['x-panel-bandwidth-event'], 'bandwidth.quota.exceeded');
    assert.equal(headers['x-panel-bandwidth-delivery'], deliveryId);
    assert.equal(headers['x-panel-bandwidth-timestamp'], String(Math.floor((T0 + 1_500) / 1000)), 'the time of the attempt, in unix seconds');
    const expected = `sha256=${createHmac('sha256', SECRET).update(`${String(headers['x-panel-bandwidth-timestamp'])}.`).update(body).digest('hex')}`;
    const signature = String(headers['x-panel-bandwidth-signature']);
    assert.ok(signature.length === expected.length && timingSafeEqual(Buffer.from(signature), Buffer.from(expected)), 'the receiver verifies the signature');
    assert.equal(signature, signatureOf(SECRET, String(headers['x-panel-bandwidth-timestamp']), body.toString('utf8')));
    assert.deepEqual(JSON.parse(body.toString('utf8')), {
      id: deliveryId,
      event: 'bandwidth.quota.exceeded',
      created_at: new Date(T0).toISOString(),
      data: { allowanceBytes: '9007199254740993', usedBytes: '9007199254740999', action: 'throttle' },
    });

    const row = await s.only();
    assert.deepEqual(
      [row.deliveryId, row.status, row.attempts, row.lastStatusCode, row.lastError, row.nextAttemptAt, row.deliveredAt, row.subjectType, row.subjectId],
      [deliveryId, 'delivered', 1, 200, null, null, T0 + 1_500, 'peer', '42'],
    );
    assert.equal(await s.deliverer(receiver.url).deliverDue(), 0, 'a delivered event is not sent again');
  });

  test('a receiver answering 500 twice and then 200 gets three attempts of the same bytes, and the log shows them', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver((n) => ({ status: n < 2 ? 500 : 200 }));
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    const deliverer = s.deliverer(receiver.url);

    assert.equal(await deliverer.deliverDue(), 1);
    let row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode, row.nextAttemptAt], ['pending', 1, 500, T0 + MINUTE]);
    assert.match(row.lastError ?? '', /^HTTP 500 Internal Server Error: receiver says no$/);

    s.clock.now = T0 + MINUTE;
    assert.equal(await deliverer.deliverDue(), 1);
    s.clock.now = T0 + 2 * MINUTE;
    assert.equal(await deliverer.deliverDue(), 1);
    s.clock.now = T0 + 60 * MINUTE;
    assert.equal(await deliverer.deliverDue(), 0);

    row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode, row.lastError, row.deliveredAt], ['delivered', 3, 200, null, T0 + 2 * MINUTE]);
    assert.equal(receiver.received.length, 3);
    const [first, ...retries] = receiver.received;
    for (const retry of retries) {
      assert.ok(retry.body.equals(first!.body), 'every retry sends the same bytes');
      assert.equal(retry.headers['x-panel-bandwidth-delivery'], first!.headers['x-panel-bandwidth-delivery']);
    }
    assert.deepEqual(receiver.received.map((r) => r.headers['x-panel-bandwidth-timestamp']),
      [0, 1, 2].map((n) => String(Math.floor((T0 + n * MINUTE) / 1000))), 'each attempt is signed at its own time');
    const warnings = s.lines.filter((line) => line.level === 'warn');
    assert.equal(warnings.length, 2);
    assert.ok(warnings.every((line) => line.fields.area === 'webhooks' && line.fields.statusCode === 500));
  });

  test('nothing is sent before next_attempt_at', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver(() => ({ status: 503 }));
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0 + 10_000);
    const deliverer = s.deliverer(receiver.url, { backoffMs: (attempt) => attempt * 5 * MINUTE });

    assert.equal(await deliverer.deliverDue(), 0, 'an event queued for later is not due yet');
    s.clock.now = T0 + 10_000;
    assert.equal(await deliverer.deliverDue(), 1);
    s.clock.now = T0 + 10_000 + 5 * MINUTE - 1;
    assert.equal(await deliverer.deliverDue(), 0, '1 ms before the backoff ends');
    assert.equal(receiver.received.length, 1);
    s.clock.now += 1;
    assert.equal(await deliverer.deliverDue(), 1);
    assert.equal((await s.only()).nextAttemptAt, T0 + 10_000 + 5 * MINUTE + 10 * MINUTE, 'the second wait is backoffMs(2)');
    assert.equal(receiver.received.length, 2);
  });

  test('a receiver that never answers times out: recorded as an error and retried later', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver((n) => (n === 0 ? 'hang' : { status: 200 }));
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    const deliverer = s.deliverer(receiver.url, { timeoutMs: 300 });

    const started = performance.now();
    assert.equal(await deliverer.deliverDue(), 1);
    assert.ok(performance.now() - started < 5_000, 'the attempt ends at its timeout');

    let row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode, row.lastError, row.nextAttemptAt], ['pending', 1, null, 'timed out after 300 ms', T0 + MINUTE]);
    assert.ok(s.lines.some((line) => line.level === 'warn' && line.fields.area === 'webhooks' && line.fields.error === 'timed out after 300 ms'));
    s.clock.now = T0 + MINUTE;
    assert.equal(await deliverer.deliverDue(), 1);
    row = await s.only();
    assert.deepEqual([row.status, row.attempts], ['delivered', 2]);
  });

  test('a refused connection is an attempt that failed, retried later', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const url = await s.closedPortUrl();
    await enqueueWebhook(s.db, { url }, EXCEEDED, T0);
    const deliverer = s.deliverer(url);

    assert.equal(await deliverer.deliverDue(), 1);
    let row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode, row.nextAttemptAt], ['pending', 1, null, T0 + MINUTE]);
    assert.match(row.lastError ?? '', /ECONNREFUSED/);

    s.clock.now = T0 + MINUTE;
    assert.equal(await deliverer.deliverDue(), 1);
    row = await s.only();
    assert.deepEqual([row.status, row.attempts], ['pending', 2]);
  });

  test('after maxAttempts failures the delivery is failed and never sent again', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver(() => ({ status: 502 }));
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    const deliverer = s.deliverer(receiver.url, { maxAttempts: 3 });

    for (let attempt = 0; attempt < 3; attempt++) {
      s.clock.now = T0 + attempt * MINUTE;
      assert.equal(await deliverer.deliverDue(), 1);
    }
    s.clock.now = T0 + 30 * 24 * 60 * MINUTE;
    assert.equal(await deliverer.deliverDue(), 0);

    const row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode, row.nextAttemptAt, row.deliveredAt], ['failed', 3, 502, null, null]);
    assert.equal(receiver.received.length, 3);
    assert.deepEqual((await listDeliveries(s.db, { limit: 10, status: 'failed' })).map((r) => r.id), [row.id]);
    assert.ok(s.lines.some((line) => line.level === 'warn' && line.message === 'webhook delivery failed; giving up'));
  });

  test('a 410 Gone is final: the delivery is failed after one attempt', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver(() => ({ status: 410 }));
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    const deliverer = s.deliverer(receiver.url);

    assert.equal(await deliverer.deliverDue(), 1);
    s.clock.now = T0 + 24 * 60 * MINUTE;
    assert.equal(await deliverer.deliverDue(), 0);

    const row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode], ['failed', 1, 410]);
    assert.equal(receiver.received.length, 1);
  });

  test('a redirect is not followed: a 302 is an attempt that failed', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver((_n, request) =>
      (request.path === '/hooks/bandwidth' ? { status: 302, headers: { location: '/elsewhere' } } : { status: 200 }));
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);

    assert.equal(await s.deliverer(receiver.url).deliverDue(), 1);

    assert.deepEqual(receiver.received.map((r) => r.path), ['/hooks/bandwidth'], '/elsewhere is never requested');
    const row = await s.only();
    assert.deepEqual([row.status, row.attempts, row.lastStatusCode], ['pending', 1, 302]);
    assert.match(row.lastError ?? '', /^HTTP 302 Found \(redirects are not followed; location: \/elsewhere\)/);
  });

  test('with no URL configured nothing is queued', async (t) => {
    const s = await setUp(t);
    if (!s) return;

    assert.equal(await enqueueWebhook(s.db, null, EXCEEDED, T0), null);
    assert.equal(await enqueueWebhook(s.db, { url: '' }, EXCEEDED, T0), null);

    assert.deepEqual(await listDeliveries(s.db, { limit: 10 }), []);
  });

  test('a body over 1 MiB is refused when queued, on every engine alike', async (t) => {
    const s = await setUp(t);
    if (!s) return;

    await assert.rejects(
      enqueueWebhook(s.db, { url: 'https://example.test/hook' }, { name: 'bandwidth.quota.warning', payload: { pad: 'x'.repeat(MAX_BODY_BYTES) } }, T0),
      /Expected the webhook body to be at most 1048576 bytes, got 1048\d{3} \(event `bandwidth.quota.warning`\)/,
    );
    assert.deepEqual(await listDeliveries(s.db, { limit: 10 }), []);
  });

  test('an event queued in a transaction that rolls back is never sent', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver();

    await assert.rejects(s.db.transaction(async (trx) => {
      await enqueueWebhook(trx, { url: receiver.url }, EXCEEDED, T0);
      throw new Error('the quota change failed');
    }), /the quota change failed/);

    assert.equal(await s.deliverer(receiver.url).deliverDue(), 0);
    assert.deepEqual(await listDeliveries(s.db, { limit: 10 }), []);
  });

  test('the log lists deliveries newest first, filtered by status, with the body parsed', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver((n) => ({ status: n === 0 ? 200 : 500 }));
    const warning = await enqueueWebhook(s.db, { url: receiver.url }, { name: 'bandwidth.quota.warning', payload: { percent: 80 } }, T0);
    const exceeded = await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0 + 1);
    const reset = await enqueueWebhook(s.db, { url: receiver.url }, { name: 'bandwidth.quota.reset', subjectType: 'vm', subjectId: '7', payload: {} }, T0 + 2);
    s.clock.now = T0 + 1;
    await s.deliverer(receiver.url).deliverDue();

    const all = await listDeliveries(s.db, { limit: 10 });
    assert.deepEqual(all.map((row) => [row.deliveryId, row.status]), [[reset, 'pending'], [exceeded, 'pending'], [warning, 'delivered']]);
    assert.deepEqual(all[2]!.body, { id: warning, event: 'bandwidth.quota.warning', created_at: new Date(T0).toISOString(), data: { percent: 80 } });
    assert.deepEqual([all[2]!.subjectType, all[2]!.subjectId, all[2]!.createdAt, all[2]!.url], [null, null, T0, receiver.url]);
    assert.deepEqual((await listDeliveries(s.db, { limit: 1, status: 'pending' })).map((row) => row.deliveryId), [reset]);
    await assert.rejects(listDeliveries(s.db, { limit: 0 }), /Expected `limit` to be an integer from 1 to 1000, got `0`/);
  });

  test('start() delivers at once and kick() sends a new event without waiting for the interval', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver();
    await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    const deliverer = s.deliverer(receiver.url);

    deliverer.start(3_600_000);
    await receiver.waitFor(1);
    await enqueueWebhook(s.db, { url: receiver.url }, { name: 'bandwidth.quota.reset', payload: {} }, T0);
    deliverer.kick();
    await receiver.waitFor(2);
    await deliverer.close();

    assert.deepEqual(receiver.received.map((r) => r.headers['x-panel-bandwidth-event']), ['bandwidth.quota.exceeded', 'bandwidth.quota.reset']);
    assert.deepEqual((await listDeliveries(s.db, { limit: 10 })).map((row) => row.status), ['delivered', 'delivered'], 'close() waited for the outcomes');
  });

  test('close() claims nothing more and waits for the attempts in flight to be recorded', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    const receiver = await s.receiver(() => 'hang');
    for (let n = 0; n < 6; n++) await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0);
    const deliverer = s.deliverer(receiver.url, { timeoutMs: 300 });

    const run = deliverer.deliverDue();
    await receiver.waitFor(4);
    await deliverer.close();

    assert.equal(await run, 4, 'four at a time: the two others were not claimed');
    assert.equal(receiver.received.length, 4);
    const rows = await listDeliveries(s.db, { limit: 10 });
    assert.deepEqual(rows.map((row) => [row.attempts, row.lastError]).sort(), [
      [0, null], [0, null], [1, 'timed out after 300 ms'], [1, 'timed out after 300 ms'], [1, 'timed out after 300 ms'], [1, 'timed out after 300 ms'],
    ]);
    assert.equal(await deliverer.deliverDue(), 0, 'a closed deliverer sends nothing');
  });

  test('options are checked when the deliverer is made', async (t) => {
    const s = await setUp(t);
    if (!s) return;
    assert.throws(() => s.deliverer('ftp://example.test/hook'), /Expected `url` to be an http:\/\/ or https:\/\/ URL, got `ftp:\/\/example.test\/hook`/);
    assert.throws(() => s.deliverer('https://example.test/hook', { secret: '' }), /Expected `secret` to be a non-empty string/);
    assert.throws(() => s.deliverer('https://example.test/hook', { timeoutMs: -1 }), /Expected `timeoutMs` to be a finite number > 0, got `-1` \(number\)/);
    assert.throws(() => s.deliverer('https://example.test/hook', { maxAttempts: 0 }), /Expected `maxAttempts` to be an integer >= 1, got `0` \(number\)/);
  });

  test('the default backoff triples from 10 s to a cap of 1 h, with ±20 % jitter', () => {
    const schedule = [1, 2, 3, 4, 5, 6, 7, 8].map((attempt) => defaultBackoffMs(attempt, () => 0.5));
    assert.deepEqual(schedule, [10_000, 30_000, 90_000, 270_000, 810_000, 2_430_000, 3_600_000, 3_600_000]);
    assert.equal(defaultBackoffMs(1, () => 0), 8_000);
    assert.equal(defaultBackoffMs(9, () => 0.999_999), 4_319_999);
  });

  for (const engine of ENGINES) {
    test(`migration 0024 goes up, down and up again on ${engine.id}, keeping a row at its column limits`, async (t) => {
      const s = await setUp(t, engine);
      if (!s) return;
      const row = {
        delivery_id: '3f0c8a52-6b0e-4d4e-9a57-0d8f3c1e2b7a', event: 'bandwidth.quota.exceeded', subject_type: 'peer', subject_id: 'x'.repeat(64),
        url: `https://example.test/${'p'.repeat(2048 - 'https://example.test/'.length)}`, body: JSON.stringify({ note: 'ünïcode ✓ "quotes"', pad: 'b'.repeat(200_000) }),
        status: 'delivered', attempts: 8, next_attempt_at: null, last_status_code: 599, last_error: 'é'.repeat(500),
        created_at: T0, updated_at: T0 + 1, delivered_at: 2 ** 53 - 1,
      };

      await s.db('bw_webhook_deliveries').insert(row);
      const [stored] = await listDeliveries(s.db, { limit: 1 });
      assert.deepEqual(
        [stored!.subjectId, stored!.url, JSON.stringify(stored!.body), stored!.lastError, stored!.deliveredAt],
        [row.subject_id, row.url, row.body, row.last_error, row.delivered_at],
      );
      await assert.rejects(s.db('bw_webhook_deliveries').insert({ ...row, url: 'https://example.test/other' }), 'delivery_id is unique');

      await createWebhookDeliveries.down(s.db);
      assert.equal(await s.db.schema.hasTable('bw_webhook_deliveries'), false);
      await createWebhookDeliveries.up(s.db);
      await createWebhookDeliveries.up(s.db);
      assert.deepEqual(await listDeliveries(s.db, { limit: 10 }), []);
    });

    test(`two panel processes on one ${engine.id} database send each event exactly once`, async (t) => {
      const s = await setUp(t, engine, 2);
      if (!s) return;
      const receiver = await s.receiver(() => ({ status: 200 }));
      const ids: (string | null)[] = [];
      for (let n = 0; n < 40; n++) ids.push(await enqueueWebhook(s.db, { url: receiver.url }, EXCEEDED, T0 + n));
      s.clock.now = T0 + 1_000;
      const [a, b] = s.dbs.map((db: Knex) => s.deliverer(receiver.url, { db }));

      let attempted = 0;
      for (let round = 0; round < 3; round++) {
        const counts = await Promise.all([a!.deliverDue(), b!.deliverDue(), a!.deliverDue(), b!.deliverDue()]);
        attempted += counts.reduce((sum, count) => sum + count, 0);
      }

      const received = receiver.received.map((r) => String(r.headers['x-panel-bandwidth-delivery'])).sort();
      assert.deepEqual(received, [...ids].map(String).sort(), 'each event received exactly once');
      assert.equal(attempted, 40);
      const rows = await listDeliveries(s.db, { limit: 100 });
      assert.ok(rows.every((row) => row.status === 'delivered' && row.attempts === 1));
    });
  }
});
