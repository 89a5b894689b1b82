import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import express from 'express';
import { RateStream, type RateStreamOptions } from '../../src/live/rate-stream.js';
import type { RateMap } from '../../src/live/live-rates.js';
import type { Logger } from '../../src/plugin-api.js';
import { ADMIN, csrfFrom, listen, startPanel } from '../support/panel.js';

const INTERVAL_MS = 50;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the stream's logger was told (nothing should go wrong). */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (message) => warnings.push(message), error: (message) => warnings.push(message) };
}

/** One parsed Server-Sent Events block. */
interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
  retry?: string;
  comment?: string;
}

/** A client reading an SSE stream with a tiny parser (one block per blank line). */
interface SseClient {
  res: IncomingMessage;
  blocks: SseEvent[];
  /** When each block arrived (epoch ms), by index. */
  arrivals: number[];
  /** Blocks that are `rates` events, with their data parsed. */
  rates(): { id: number; at: number; rates: Record<string, [number, number]> }[];
  /** Resolves once `predicate` holds over the blocks read so far; rejects after `timeoutMs`. */
  until(predicate: (client: SseClient) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

function parseBlock(block: string): SseEvent {
  const event: SseEvent = {};
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) {
      event.comment = line.slice(1).trim();
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') event.data = event.data === undefined ? value : `${event.data}\n${value}`;
    else if (field === 'id' || field === 'event' || field === 'retry') event[field] = value;
  }
  return event;
}

/** Opens `url` and reads its stream as it comes; `close()` is also called when the test ends. */
async function connect(t: TestContext, url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  let req: ClientRequest | undefined;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    req = request(url, { headers: { Accept: 'text/event-stream', ...headers } }, resolve);
    req.on('error', reject);
    req.end();
  });
  const blocks: SseEvent[] = [];
  const arrivals: number[] = [];
  const parsed: ({ id: number; at: number; rates: Record<string, [number, number]> } | null)[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      blocks.push(parseBlock(buffer.slice(0, end)));
      arrivals.push(Date.now());
      buffer = buffer.slice(end + 2);
    }
    for (const wake of waiters) wake();
  });
  res.on('error', () => {});
  const client: SseClient = {
    res,
    blocks,
    arrivals,
    rates: () => {
      // Frames can be half a megabyte: parse each once.
      for (let i = parsed.length; i < blocks.length; i++) {
        const block = blocks[i]!;
        parsed.push(block.event === 'rates' ? { id: Number(block.id), ...(JSON.parse(block.data!) as { at: number; rates: Record<string, [number, number]> }) } : null);
      }
      return parsed.filter((frame) => frame !== null);
    },
    until: (predicate, timeoutMs = 3000) =>
      new Promise<void>((resolve, reject) => {
        if (predicate(client)) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`SSE: condition not met within ${timeoutMs} ms; ${blocks.length} blocks read`));
        }, timeoutMs);
        const check = () => {
          if (!predicate(client)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      }),
    close: () => req!.destroy(),
  };
  t.after(() => client.close());
  return client;
}

/** A RateStream on a real HTTP server at 127.0.0.1, counting its calls of `sample()` and `onIdle()`. */
async function serve(t: TestContext, sample: () => RateMap, options: Partial<RateStreamOptions> = {}) {
  const counts = { samples: 0, idle: 0 };
  const logger = recordingLogger();
  const stream = new RateStream({
    intervalMs: INTERVAL_MS,
    heartbeatMs: 60_000,
    logger,
    sample: async () => {
      counts.samples++;
      return sample();
    },
    onIdle: () => counts.idle++,
    ...options,
  });
  const app = express();
  app.get('/events', (req, res) => stream.attach(req, res));
  const url = `${await listen(t, app)}/events`;
  t.after(() => stream.close());
  return { stream, url, counts, logger };
}

/** Resolves once `condition()` holds, polling; fails after `timeoutMs`. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

const rateMap = (entries: Record<string, [number, number]>): RateMap =>
  new Map(Object.entries(entries).map(([key, [upKbps, downKbps]]) => [key, { upKbps, downKbps }]));

/** 20,000 subjects, all busy: one frame is about 550 kB of JSON. */
const BUSY = rateMap(Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`peer:${i + 1}`, [1000 + i, 50_000 + i] as [number, number]])));

describe('RateStream on a real socket', () => {
  test('a client gets `retry:` first, then `rates` events with strictly increasing ids, and heartbeats', async (t) => {
    const { url, logger } = await serve(t, () => rateMap({ 'peer:1': [100, 200] }), { heartbeatMs: 120 });

    const client = await connect(t, url);
    await client.until((c) => c.rates().length >= 8 && c.blocks.some((b) => b.comment === 'heartbeat'));

    assert.equal(client.res.statusCode, 200);
    assert.equal(client.res.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(client.res.headers['cache-control'], 'no-store');
    assert.deepEqual(client.blocks[0], { retry: '2000' });
    const events = client.rates();
    const ids = events.map((e) => e.id);
    assert.ok(ids.every((id, i) => Number.isSafeInteger(id) && (i === 0 || id > ids[i - 1]!)), `ids increase: ${ids.join(',')}`);
    assert.deepEqual(events[0]?.rates, { 'peer:1': [100, 200] });
    assert.ok(Math.abs(events[0]!.at - Date.now()) < 5000, '`at` is the time of the sample');
    assert.deepEqual(logger.warnings, []);
  });

  test('reconnecting with `Last-Event-ID: 1000` continues after 1000', async (t) => {
    const { url } = await serve(t, () => rateMap({}));
    const first = await connect(t, url);
    await first.until((c) => c.rates().length >= 2);
    first.close();

    const again = await connect(t, url, { 'Last-Event-ID': '1000' });
    await again.until((c) => c.rates().length >= 3);

    const ids = again.rates().map((e) => e.id);
    assert.ok(ids[0]! >= 1001, `first id after the reconnect: ${ids[0]}`);
    assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), `ids increase: ${ids.join(',')}`);
  });

  test('a Last-Event-ID that is not a number is ignored', async (t) => {
    const { url } = await serve(t, () => rateMap({}));
    const client = await connect(t, url, { 'Last-Event-ID': 'abc' });
    await client.until((c) => c.rates().length >= 2);
    assert.equal(client.rates()[0]?.id, 1);
  });

  test('ids keep increasing after a Last-Event-ID at the top of the safe integers', async (t) => {
    const { url } = await serve(t, () => rateMap({}));
    const client = await connect(t, url, { 'Last-Event-ID': String(Number.MAX_SAFE_INTEGER) });
    await client.until((c) => c.rates().length >= 3);
    const ids = client.blocks.filter((b) => b.event === 'rates').map((b) => BigInt(b.id!));
    assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), `ids increase: ${ids.join(',')}`);
  });

  test('a slow client whose socket is not read does not delay another; its frames are dropped, not queued', async (t) => {
    // ~20,000 busy subjects: frames of about 550 kB, so an unread socket fills within a few frames.
    const { url, stream } = await serve(t, () => BUSY);
    const slow = await connect(t, url);
    slow.res.pause();
    await sleep(300);
    const fast = await connect(t, url);

    await sleep(1500);

    const received = fast.rates();
    const times = fast.arrivals.filter((_, i) => fast.blocks[i]!.event === 'rates');
    const gaps = times.slice(1).map((time, i) => time - times[i]!);
    const worst = Math.max(...gaps);
    t.diagnostic(`fast client: ${received.length} frames of ${Object.keys(received.at(-1)?.rates ?? {}).length} subjects in 1.5 s, longest gap ${worst} ms, while the slow one is not read`);
    assert.ok(received.length >= 15, `${received.length} frames in 1.5 s at a ${INTERVAL_MS} ms interval`);
    assert.ok(worst < 10 * INTERVAL_MS, `no frame waited for the slow client: longest gap ${worst} ms`);
    assert.equal(Object.keys(received.at(-1)!.rates).length, 20_000, 'whole frames');
    assert.equal(stream.listeners, 2, 'the slow client is still attached (stallMs is 30 s)');

    slow.res.resume();
    const caughtUp = String(received.at(-1)!.id);
    await slow.until((c) => c.blocks.some((b) => b.event === 'rates' && Number(b.id) >= Number(caughtUp)));
    const slowIds = slow.rates().map((e) => e.id);
    const dropped = slowIds.at(-1)! - slowIds[0]! + 1 - slowIds.length;
    t.diagnostic(`slow client: ${slowIds.length} frames read after resuming, ${dropped} dropped while it was blocked`);
    assert.ok(dropped > 0, 'frames were skipped for the blocked client instead of piling up in memory');
    assert.ok(slowIds.every((id, i) => i === 0 || id > slowIds[i - 1]!), 'what it gets is still in order');
  });

  test('a client blocked longer than `stallMs` is disconnected', async (t) => {
    const { url, stream, counts } = await serve(t, () => BUSY, { stallMs: 200 });
    const slow = await connect(t, url);
    slow.res.pause();

    await eventually(() => stream.listeners === 0, 'the stalled client is dropped');

    const calls = counts.samples;
    await sleep(5 * INTERVAL_MS);
    assert.equal(counts.samples, calls, 'nobody listens: sampling stopped');
  });

  test('when both clients disconnect, listeners is 0, sample() is no longer called and onIdle ran once', async (t) => {
    const { url, stream, counts } = await serve(t, () => rateMap({ 'vm:3': [1, 2] }));
    const a = await connect(t, url);
    const b = await connect(t, url);
    await a.until((c) => c.rates().length >= 2);
    await b.until((c) => c.rates().length >= 2);
    assert.equal(stream.listeners, 2);
    assert.equal(counts.idle, 0);

    a.close();
    await eventually(() => stream.listeners === 1, 'the first is removed at once');
    const before = b.rates().length;
    await b.until((c) => c.rates().length >= before + 2);
    b.close();
    await eventually(() => stream.listeners === 0, 'the second is removed');

    const calls = counts.samples;
    await sleep(6 * INTERVAL_MS);
    assert.equal(counts.samples, calls, 'no sampling while nobody listens');
    assert.equal(counts.idle, 1);

    const c = await connect(t, url);
    await c.until((client) => client.rates().length >= 1);
    assert.ok(counts.samples > calls, 'a new client starts sampling again');
  });

  test('a subject that goes quiet is sent once as [0,0], then left out', async (t) => {
    const script = [
      { 'peer:1': [10, 20], 'peer:2': [5, 5] },
      { 'peer:2': [5, 5] },
      { 'peer:1': [0, 0], 'peer:2': [5, 5] },
      { 'peer:2': [5, 5], 'vm:9': [0, 0] },
    ] as Record<string, [number, number]>[];
    let call = 0;
    const { url } = await serve(t, () => rateMap(script[Math.min(call++, script.length - 1)]!));

    const client = await connect(t, url);
    await client.until((c) => c.rates().length >= 4);

    assert.deepEqual(client.rates().slice(0, 4).map((e) => e.rates), [
      { 'peer:1': [10, 20], 'peer:2': [5, 5] },
      { 'peer:2': [5, 5], 'peer:1': [0, 0] },
      { 'peer:2': [5, 5] },
      { 'peer:2': [5, 5] },
    ]);
  });

  test('rates through each subject\'s class ride along as class_rates (null: none counted), for the page\'s utilisation', async (t) => {
    const map: RateMap = new Map([
      ['peer:1', { upKbps: 150, downKbps: 8_560, classUpKbps: 80, classDownKbps: 7_990 }],
      ['peer:2', { upKbps: 10, downKbps: 20, classUpKbps: null, classDownKbps: 15 }],
      ['vm:3', { upKbps: 5, downKbps: 5, classUpKbps: null, classDownKbps: null }],
      ['peer:4', { upKbps: 5, downKbps: 5 }],
    ]);
    const { url } = await serve(t, () => map);
    const client = await connect(t, url);
    await client.until((c) => c.rates().length >= 1);

    const [frame] = client.rates() as ({ rates: Record<string, [number, number]>; class_rates?: Record<string, [number | null, number | null]> })[];
    assert.deepEqual(frame?.rates, { 'peer:1': [150, 8_560], 'peer:2': [10, 20], 'vm:3': [5, 5], 'peer:4': [5, 5] });
    assert.deepEqual(frame?.class_rates, { 'peer:1': [80, 7_990], 'peer:2': [null, 15] }, 'only subjects with a class counted');
  });

  test('close() ends every stream and stops sampling', async (t) => {
    const { url, stream, counts } = await serve(t, () => rateMap({}));
    const client = await connect(t, url);
    await client.until((c) => c.rates().length >= 1);
    const ended = new Promise<void>((resolve) => client.res.once('end', () => resolve()));

    stream.close();

    await ended;
    assert.equal(stream.listeners, 0);
    const calls = counts.samples;
    await sleep(4 * INTERVAL_MS);
    assert.equal(counts.samples, calls);
  });
});

/** Logs in over HTTP and returns the session cookie (`panel.sid=…`). */
async function loginCookie(base: string): Promise<string> {
  const cookieOf = (response: Response) => response.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const page = await fetch(`${base}/login`);
  const body = new URLSearchParams({ _csrf: csrfFrom(await page.text()), username: ADMIN.username, password: ADMIN.password, next: '/admin/bandwidth' });
  const sent = await fetch(`${base}/login`, { method: 'POST', body, headers: { cookie: cookieOf(page) }, redirect: 'manual' });
  assert.equal(sent.status, 303, 'logged in');
  return cookieOf(sent);
}

describe('GET /admin/bandwidth/events on the panel', () => {
  test('a logged-out visitor is sent to /login', async (t) => {
    const host = await startPanel(t);
    const response = await host.visitor().get('/admin/bandwidth/events');
    assert.equal(response.status, 303);
    assert.equal(response.headers.location, '/login?next=%2Fadmin%2Fbandwidth%2Fevents');
  });

  test('an admin gets an event stream: `retry:` first, then a `rates` frame (empty in a dry run)', async (t) => {
    const host = await startPanel(t);
    const base = await listen(t, host.panel.app);
    const cookie = await loginCookie(base);

    const client = await connect(t, `${base}/admin/bandwidth/events`, { cookie });
    await client.until((c) => c.rates().length >= 1);

    assert.equal(client.res.statusCode, 200);
    assert.equal(client.res.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.deepEqual(client.blocks[0], { retry: '2000' });
    const [frame] = client.rates();
    assert.ok(frame!.id >= 1);
    assert.deepEqual(frame!.rates, {});
    client.close();
  });
});
