import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import { HERMETIC_PLUGIN_OPTIONS, seedHost, startPanel, type Agent } from '../support/panel.js';
import { until } from '../support/poll.js';

/** The plugin's clock: 10 February 2026, 12:00 UTC. */
const T0 = Date.UTC(2026, 1, 10, 12, 0, 0);
const HOUR = 3_600_000;
const MB = 1_000_000;
const SECRET = 'whsec_http_layer_4f1c9a0e7b';
const BASE = '/api/bandwidth/quotas';

interface Received {
  headers: IncomingMessage['headers'];
  /** The raw bytes, as a receiver must verify them. */
  body: Buffer;
}

/**
 * A webhook receiver on 127.0.0.1 (a free port) that answers each request with `status(n)` (n from
 * 0); closed when the test ends, also on failure.
 */
async function receiver(t: TestContext, status: (n: number) => number) {
  const received: Received[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const code = status(received.length);
      received.push({ headers: request.headers, body: Buffer.concat(chunks) });
      response.writeHead(code).end(code >= 400 ? 'receiver says no' : '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hooks/bandwidth`, received };
}

/**
 * The whole plugin with its webhook pointed at `url`. collect_interval_s 5 (its minimum) makes the
 * deliverer's timer min(30, 5) = 5 s: the longest a due retry waits for it.
 */
async function webhookPanel(t: TestContext, url: string) {
  const clock = { now: T0 };
  const host = await startPanel(t, {
    now: () => clock.now,
    pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, quota_webhook_url: url, quota_webhook_secret: SECRET, collect_interval_s: 5 } },
  });
  const seeded = await seedHost(host.api);
  return { ...host, ...seeded, clock };
}

/** 2 MB the peer moved an hour before the clock, through the panel's ledger ingestion. */
async function peerUsedTwoMegabytes(p: Awaited<ReturnType<typeof webhookPanel>>) {
  const at = p.clock.now - HOUR;
  const entry = {
    seq: 1, subjectType: 'peer' as const, subjectId: String(p.peerId), source: 'wireguard', interface: 'wg0',
    periodStart: at - 60_000, periodEnd: at, upBytes: String(MB), downBytes: String(MB),
  };
  await ingestPage(p.db, 'local', { node: 'local', ledgerId: 'webhook-test', head: 1, oldest: 1, entries: [entry] }, { now: at });
}

async function deliveries(api: Agent, query = ''): Promise<Record<string, unknown>[]> {
  const response = await api.get(`${BASE}/deliveries${query}`);
  assert.equal(response.status, 200, response.text);
  return response.body.deliveries as Record<string, unknown>[];
}

/** Checks the signature as a receiver would: HMAC-SHA256 over `${timestamp}.${raw body}`, compared in constant time. */
function verifies(request: Received, secret: string): boolean {
  const timestamp = String(request.headers['x-panel-bandwidth-timestamp']);
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(request.body).digest('hex')}`);
  const signature = Buffer.from(String(request.headers['x-panel-bandwidth-signature']));
  return signature.length === expected.length && timingSafeEqual(signature, expected);
}

describe('quota webhooks through the running plugin', () => {
  test('a peer that uses up its quota produces a delivery signed with the secret, with the documented body', async (t) => {
    const hook = await receiver(t, () => 204);
    const p = await webhookPanel(t, hook.url);
    await peerUsedTwoMegabytes(p);

    const put = await p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB });
    assert.equal(put.status, 200, put.text);

    // 80 %, 90 % and 100 % were all crossed by the one evaluation: three events, each sent once.
    await until('three deliveries', async () => hook.received.length, (count) => count >= 3);
    const exceeded = hook.received.filter((request) => request.headers['x-panel-bandwidth-event'] === 'bandwidth.quota.exceeded');
    assert.equal(exceeded.length, 1);
    const [request] = exceeded;
    assert.ok(verifies(request!, SECRET), 'the signature verifies with the configured secret');
    assert.ok(!verifies(request!, `${SECRET}x`), 'and not with another');
    assert.equal(request!.headers['x-panel-bandwidth-timestamp'], String(Math.floor(T0 / 1000)), 'signed at the plugin\'s time, in unix seconds');
    assert.equal(request!.headers['content-type'], 'application/json');
    const body = JSON.parse(request!.body.toString('utf8'));
    assert.deepEqual(body, {
      id: request!.headers['x-panel-bandwidth-delivery'],
      event: 'bandwidth.quota.exceeded',
      created_at: new Date(T0).toISOString(),
      data: {
        subject_type: 'peer', subject_id: String(p.peerId), subject_name: 'laptop', source: 'subject', percent: 100,
        used_bytes: String(2 * MB), limit_bytes: String(MB), allowance_bytes: String(MB), counted: 'total',
        cycle_start: '2026-02-01T00:00:00.000Z', cycle_end: '2026-03-01T00:00:00.000Z', action: 'throttle', throttled: true, reason: null, actor: 'api',
      },
    });
    assert.deepEqual(
      hook.received.map((r) => [r.headers['x-panel-bandwidth-event'], JSON.parse(r.body.toString('utf8')).data.percent]).sort(),
      [['bandwidth.quota.exceeded', 100], ['bandwidth.quota.warning', 80], ['bandwidth.quota.warning', 90]],
    );

    const log = await until('the deliveries recorded', () => deliveries(p.api), (rows) => rows.length === 3 && rows.every((row) => row.status === 'delivered'));
    const row = log.find((entry) => entry.event === 'bandwidth.quota.exceeded')!;
    assert.deepEqual(
      [row.delivery_id, row.subject_type, row.subject_id, row.url, row.attempts, row.last_status_code, row.last_error, row.next_attempt_at, row.delivered_at],
      [body.id, 'peer', String(p.peerId), hook.url, 1, 204, null, null, new Date(T0).toISOString()],
    );
    assert.deepEqual(row.body, body, 'the log holds the body that was sent');

    // A manual reset is an event too.
    p.clock.now = T0 + 60_000;
    assert.equal((await p.api.post(`${BASE}/peer/${p.peerId}/reset`)).status, 200);
    await until('the reset delivered', async () => hook.received.length, (count) => count >= 4);
    const reset = hook.received[3]!;
    assert.ok(verifies(reset, SECRET));
    const { data } = JSON.parse(reset.body.toString('utf8'));
    assert.deepEqual([reset.headers['x-panel-bandwidth-event'], data.reason, data.used_bytes, data.throttled, data.percent, data.actor], ['bandwidth.quota.reset', 'manual', '0', false, null, 'api']);
  });

  test('a receiver that answers 500 first gets the same delivery again after the backoff, and the deliveries API shows both attempts', async (t) => {
    const hook = await receiver(t, (n) => (n === 0 ? 500 : 200));
    const p = await webhookPanel(t, hook.url);
    await peerUsedTwoMegabytes(p);

    // Only the 100 % threshold: one event, so "the first request" is that event's.
    const put = await p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB, warn_percents: [100] });
    assert.equal(put.status, 200, put.text);

    const [failed] = await until('the first attempt recorded', () => deliveries(p.api), (rows) => rows[0]?.attempts === 1);
    assert.deepEqual([failed!.event, failed!.status, failed!.attempts, failed!.last_status_code, failed!.delivered_at], ['bandwidth.quota.exceeded', 'pending', 1, 500, null]);
    assert.match(String(failed!.last_error), /^HTTP 500 Internal Server Error: receiver says no$/);
    const due = Date.parse(String(failed!.next_attempt_at));
    // The default backoff after a first failure: 10 s ± 20 %.
    assert.ok(due >= T0 + 8_000 && due <= T0 + 12_000, `due again 8-12 s after the attempt, got ${String(failed!.next_attempt_at)}`);
    assert.deepEqual((await deliveries(p.api, '?status=pending')).map((row) => row.id), [failed!.id]);

    // Due now: the deliverer's timer (every 5 s of real time here) sends it again.
    p.clock.now = due;
    const [delivered] = await until('the retry delivered', () => deliveries(p.api), (rows) => rows[0]?.status === 'delivered');
    assert.deepEqual([delivered!.attempts, delivered!.last_status_code, delivered!.last_error, delivered!.next_attempt_at, delivered!.delivered_at],
      [2, 200, null, null, new Date(due).toISOString()]);
    assert.deepEqual(await deliveries(p.api, '?status=pending'), []);
    assert.deepEqual((await deliveries(p.api, '?status=delivered')).map((row) => row.id), [failed!.id]);

    assert.equal(hook.received.length, 2);
    const [first, retry] = hook.received;
    assert.ok(retry!.body.equals(first!.body), 'the retry sends the same bytes');
    assert.equal(retry!.headers['x-panel-bandwidth-delivery'], first!.headers['x-panel-bandwidth-delivery']);
    assert.deepEqual([first, retry].map((r) => r!.headers['x-panel-bandwidth-timestamp']), [String(Math.floor(T0 / 1000)), String(Math.floor(due / 1000))]);
    assert.ok(verifies(first!, SECRET) && verifies(retry!, SECRET), 'each attempt is signed at its own time');
  });
});
