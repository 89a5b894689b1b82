/**
 * RemoteLink against a real HTTP(S) server that speaks the agent's protocol (a small stand-in for
 * the agent: canned answers, a controllable event stream), and against servers that misbehave:
 * refuse, never answer, answer garbage, go silent mid-stream, show another certificate.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

import { RemoteLink, type RemoteLinkOptions } from '../../src/nodes/panel/remote-link.js';
import { NodeRefusedError, NodeUnreachableError, type NodeEvent } from '../../src/nodes/link.js';
import { PROTOCOL_VERSION, type InterfaceState, type NodeHealth } from '../../src/nodes/protocol.js';
import { onPath } from '../support/lab.js';
import { requireOrSkip } from '../support/layer.js';

const TOKEN = 'a'.repeat(40);
const NODE = 'hv1';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const health = (overrides: Partial<NodeHealth> = {}): NodeHealth => ({
  node: NODE, version: '0.1.0', protocol: PROTOCOL_VERSION, uptimeS: 12, capabilities: { leaf: 'fq_codel' }, ledgerId: 'L1', ledgerHead: 42, mode: 'recording', ...overrides,
});

/** A stand-in agent: the protocol's routes with canned answers; `answer` overrides a route. */
class FakeAgent {
  readonly seen: Seen[] = [];
  readonly streams = new Set<ServerResponse>();
  /** Overrides by `METHOD /path`: return true when handled. */
  answer: ((req: IncomingMessage, res: ServerResponse, body: string) => boolean) | null = null;
  url = '';

  constructor(readonly server: Server) {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.handle(req, res, Buffer.concat(chunks).toString('utf8')));
    });
  }

  /** Writes raw text to every open event stream. */
  send(text: string): void {
    for (const res of this.streams) res.write(text);
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    if (this.answer?.(req, res, body)) return;
    const url = new URL(req.url ?? '/', 'http://agent');
    if (req.method === 'GET' && url.pathname === '/v1/health') return this.json(res, 200, health());
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return this.json(res, 401, { error: 'missing or wrong bearer token', field: 'authorization' });
    const iface = /^\/v1\/interfaces\/([^/]+)$/.exec(url.pathname);
    if (iface && req.method === 'PUT') {
      const state = JSON.parse(body) as InterfaceState;
      if (state.subjects.some((subject) => subject.upKbps < 0)) return this.json(res, 400, { error: 'subjects.0.upKbps: must be ≥ 0', field: 'subjects.0.upKbps' });
      return this.json(res, 200, {
        interface: decodeURIComponent(iface[1]!), netns: state.netns, version: state.version, stale: false, status: 'pending', reason: 'dry_run', error: null,
        operations: ['tc qdisc replace dev wg0 root handle 1: htb default ffff'],
        subjects: state.subjects.map((subject) => ({ type: subject.type, id: subject.id, status: 'pending', reason: 'dry_run', error: null })),
      });
    }
    if (iface && req.method === 'DELETE') {
      return this.json(res, 200, { interface: iface[1], netns: url.searchParams.get('netns'), version: 3, stale: false, status: 'applied', reason: null, error: null, operations: [], subjects: [] });
    }
    if (req.method === 'GET' && url.pathname === '/v1/ledger') {
      const after = Number(url.searchParams.get('after'));
      return this.json(res, 200, {
        node: NODE, ledgerId: 'L1', head: 42, oldest: 1,
        entries: [{ seq: after + 1, subjectType: 'peer', subjectId: '7', source: 'wg', interface: 'wg0', periodStart: 1000, periodEnd: 61_000, upBytes: '18446744073709551615', downBytes: '5' }],
      });
    }
    const rate = { upKbps: 800, downKbps: 1600, classUpKbps: null, classDownKbps: 1500, at: 1_700_000_000_000 };
    if (req.method === 'GET' && url.pathname === '/v1/rates') return this.json(res, 200, { tick: { 'peer:7': rate } });
    if (req.method === 'GET' && url.pathname === '/v1/rates/live') return this.json(res, 200, { 'vm:3': rate });
    if (req.method === 'GET' && url.pathname === '/v1/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.flushHeaders();
      this.streams.add(res);
      res.on('close', () => this.streams.delete(res));
      return;
    }
    this.json(res, 404, { error: 'no such route', field: 'path' });
  }
}

/** Listens on 127.0.0.1 and closes the server (and its connections) when the test ends. */
async function listenOn(t: TestContext, server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

async function fakeAgent(t: TestContext, tls?: { key: string; cert: string }): Promise<FakeAgent> {
  const agent = new FakeAgent(tls ? createHttpsServer(tls) : createHttpServer());
  const port = await listenOn(t, agent.server);
  agent.url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  return agent;
}

function linkTo(t: TestContext, url: string, options: Partial<RemoteLinkOptions> = {}): RemoteLink {
  const link = new RemoteLink({ node: NODE, url, token: TOKEN, ...options });
  t.after(() => link.close());
  return link;
}

/** A port nothing listens on (a server was there a moment ago). */
async function closedPort(): Promise<number> {
  const server = createTcpServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP server that accepts connections and never writes a byte (nor closes). */
async function silentServer(t: TestContext): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createTcpServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, sockets };
}

/** Resolves once `condition()` holds, polling; fails after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Follows the link's stream, recording events; `stop()` aborts and returns how `follow` ended. */
function following(link: RemoteLink) {
  const events: NodeEvent[] = [];
  const controller = new AbortController();
  const ended = link.follow((event) => events.push(event), controller.signal).then(() => 'resolved' as const, (error: unknown) => error);
  return { events, ended, stop: async () => (controller.abort(), ended) };
}

const subject = { type: 'peer' as const, id: '7', name: 'alice', classMinor: 2, addresses: ['10.0.0.2/32'], publicKey: null, upKbps: 1000, downKbps: 2000 };

test('calls reach the agent with the bearer token and come back typed', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url);

  assert.deepEqual(await link.health(), health());
  const report = await link.putInterface('wg0', { version: 5, kind: 'wireguard', netns: 'gw1', subjects: [subject] });
  assert.equal(report.version, 5);
  assert.equal(report.reason, 'dry_run');
  assert.deepEqual(report.subjects, [{ type: 'peer', id: '7', status: 'pending', reason: 'dry_run', error: null }]);
  assert.deepEqual((await link.deleteInterface('wg0', 'gw 1')).netns, 'gw 1');
  await link.deleteInterface('vm-3', null);
  const page = await link.ledger(41, 500);
  assert.deepEqual(page.entries.map((entry) => [entry.seq, entry.upBytes]), [[42, '18446744073709551615']]);
  assert.equal((await link.tickRates())['peer:7']?.downKbps, 1600);
  assert.equal((await link.liveRates())['vm:3']?.classDownKbps, 1500);

  const calls = agent.seen.map((seen) => `${seen.method} ${seen.url}`);
  assert.deepEqual(calls, [
    'GET /v1/health', 'PUT /v1/interfaces/wg0', 'DELETE /v1/interfaces/wg0?netns=gw+1', 'DELETE /v1/interfaces/vm-3',
    'GET /v1/ledger?after=41&limit=500', 'GET /v1/rates', 'GET /v1/rates/live',
  ]);
  assert.ok(agent.seen.every((seen) => seen.headers.authorization === `Bearer ${TOKEN}`), 'every call carries the token');
  assert.deepEqual(JSON.parse(agent.seen[1]!.body), { version: 5, kind: 'wireguard', netns: 'gw1', subjects: [subject] });
  assert.equal(agent.seen[1]!.headers['content-type'], 'application/json');
});

test('a wrong token is refused: 401 → NodeRefusedError with the status and the agent’s message', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url, { token: 'b'.repeat(40) });
  await assert.rejects(link.ledger(0, 10), (error: unknown) => {
    assert.ok(error instanceof NodeRefusedError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.node, NODE);
    assert.equal(error.field, 'authorization');
    assert.match(error.message, /GET \/v1\/ledger: 401 missing or wrong bearer token/);
    return true;
  });
});

test('a 400 names the field; a 5xx is an unreachable node, not a refusal', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url);
  await assert.rejects(link.putInterface('wg0', { version: 1, kind: 'wireguard', netns: null, subjects: [{ ...subject, upKbps: -1 }] }), (error: unknown) => {
    assert.ok(error instanceof NodeRefusedError);
    assert.equal(error.status, 400);
    assert.equal(error.field, 'subjects.0.upKbps');
    return true;
  });
  agent.answer = (_req, res) => (res.writeHead(503, { 'content-type': 'text/plain' }).end('state file locked'), true);
  await assert.rejects(link.health(), (error: unknown) => {
    assert.ok(error instanceof NodeUnreachableError, String(error));
    assert.equal(error.message, 'GET /v1/health: 503 state file locked');
    return true;
  });
});

test('connection refused → NodeUnreachableError', async (t) => {
  const link = linkTo(t, `http://127.0.0.1:${await closedPort()}`);
  await assert.rejects(link.health(), (error: unknown) => {
    assert.ok(error instanceof NodeUnreachableError, String(error));
    assert.match(error.message, /ECONNREFUSED/);
    return true;
  });
});

test('an agent that accepts and never answers times out after timeoutMs', async (t) => {
  const { port, sockets } = await silentServer(t);
  const link = linkTo(t, `http://127.0.0.1:${port}`, { timeoutMs: 300 });
  const started = Date.now();
  await assert.rejects(link.health(), (error: unknown) => {
    assert.ok(error instanceof NodeUnreachableError, String(error));
    assert.equal(error.message, 'GET /v1/health: no answer within 300 ms');
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 290 && elapsed < 5000, `timed out after ${elapsed} ms`);
  await waitFor('the link to hang up', () => sockets.every((socket) => socket.readableEnded || socket.destroyed));
});

test('garbage from the agent is refused with a reason, never a crash', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url);
  const cases: [string, string, RegExp][] = [
    ['{"node":"hv1"', 'application/json', /the agent's answer is not JSON/],
    [JSON.stringify({ ...health(), ledgerHead: -1 }), 'application/json', /malformed \(answer\.ledgerHead: /],
    [JSON.stringify({ ...health(), capabilities: 'all' }), 'application/json', /malformed \(answer\.capabilities: /],
    ['null', 'application/json', /malformed \(answer: /],
    ['<html>hello</html>', 'text/html', /not JSON/],
  ];
  for (const [body, type, message] of cases) {
    agent.answer = (_req, res) => (res.writeHead(200, { 'content-type': type }).end(body), true);
    await assert.rejects(link.health(), (error: unknown) => {
      assert.ok(error instanceof NodeUnreachableError, `${body}: ${String(error)}`);
      assert.match(error.message, message);
      return true;
    });
  }
  // Byte counts are decimal strings; a number or a negative one is refused.
  agent.answer = (req, res) => {
    if (!req.url?.startsWith('/v1/ledger')) return false;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
      node: NODE, ledgerId: 'L1', head: 1, oldest: 1,
      entries: [{ seq: 1, subjectType: 'peer', subjectId: '7', source: 'wg', interface: 'wg0', periodStart: 0, periodEnd: 1, upBytes: '-5', downBytes: '0' }],
    }));
    return true;
  };
  await assert.rejects(link.ledger(0, 10), /answer\.entries\.0\.upBytes: must be a decimal byte count/);
  // Another node's ledger is never taken for this one's.
  agent.answer = (req, res) => {
    if (!req.url?.startsWith('/v1/ledger')) return false;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ node: 'hv2', ledgerId: 'L9', head: 0, oldest: null, entries: [] }));
    return true;
  };
  await assert.rejects(link.ledger(0, 10), (error: unknown) => error instanceof NodeUnreachableError && /says it is node hv2/.test(error.message));
});

test('bad options fail at once', () => {
  const base = { node: NODE, url: 'https://10.0.0.2:9731', token: TOKEN };
  assert.throws(() => new RemoteLink({ ...base, url: 'ftp://10.0.0.2' }), /Expected `url` to be an http:\/\/ or https:\/\/ URL, got `ftp:\/\/10.0.0.2`/);
  assert.throws(() => new RemoteLink({ ...base, url: 'not a url' }), /Expected `url`/);
  assert.throws(() => new RemoteLink({ ...base, token: '' }), /`token`/);
  assert.throws(() => new RemoteLink({ ...base, tlsFingerprint: 'AB:CD' }), /Expected `tlsFingerprint` to be a SHA-256 fingerprint/);
  assert.throws(() => new RemoteLink({ ...base, url: 'http://10.0.0.2', tlsFingerprint: 'ab'.repeat(32) }), /needs an https:\/\/ URL/);
  assert.throws(() => new RemoteLink({ ...base, timeoutMs: 0 }), /`timeoutMs` to be a finite number > 0, got `0`/);
});

test('follow: heartbeats, ledger events split across packets, CRLF lines, Last-Event-ID on the next follow', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url);
  const stream = following(link);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  agent.send(': heartbeat\n\n');
  agent.send('id: 7\nevent: ledger\nda');
  agent.send('ta: {"head":');
  agent.send('43}\r');
  agent.send('\n\r\n');
  agent.send('event: rates\ndata: {}\n\n');
  agent.send('id: 8\r\nevent: ledger\r\ndata: {"head":44}\r\n\r\n');
  await waitFor('four events', () => stream.events.length === 4);
  assert.deepEqual(stream.events, [{ type: 'heartbeat' }, { type: 'ledger', head: 43 }, { type: 'heartbeat' }, { type: 'ledger', head: 44 }]);
  assert.equal(link.lastEventId, '8');
  assert.equal(agent.seen.at(-1)!.headers['last-event-id'], undefined, 'the first follow has no last id');
  assert.equal(agent.seen.at(-1)!.headers.accept, 'text/event-stream');
  assert.equal(await stream.stop(), 'resolved', 'follow resolves when its signal aborts');
  await waitFor('the stream to close on the agent', () => agent.streams.size === 0);

  const again = following(link);
  await waitFor('the second stream to open', () => agent.streams.size === 1);
  assert.equal(agent.seen.at(-1)!.headers['last-event-id'], '8');
  assert.equal(await again.stop(), 'resolved');
});

test('follow rejects when the agent ends the stream, refuses it, or sends a malformed ledger event', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url);

  const ended = following(link);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  for (const res of agent.streams) res.end();
  const endError = await ended.ended;
  assert.ok(endError instanceof NodeUnreachableError, String(endError));
  assert.match(endError.message, /the agent ended the event stream/);

  const malformed = following(link);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  agent.send('event: ledger\ndata: {"head":"many"}\n\n');
  const malformedError = await malformed.ended;
  assert.ok(malformedError instanceof NodeUnreachableError, String(malformedError));
  assert.match(malformedError.message, /a ledger event has no valid head/);

  const refused = following(linkTo(t, agent.url, { token: 'c'.repeat(40) }));
  const refusedError = await refused.ended;
  assert.ok(refusedError instanceof NodeRefusedError && refusedError.status === 401, String(refusedError));

  const aborted = new AbortController();
  aborted.abort();
  assert.equal(await link.follow(() => {}, aborted.signal), undefined, 'an aborted signal resolves at once');
});

test('read deadline: a stream that goes silent (a half-open connection) fails after readDeadlineMs', async (t) => {
  const agent = await fakeAgent(t);
  const link = linkTo(t, agent.url, { readDeadlineMs: 1000 });
  const stream = following(link);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  // Heartbeats every 100 ms keep it alive past the deadline…
  let lastSent = Date.now();
  const beat = setInterval(() => {
    agent.send(': heartbeat\n\n');
    lastSent = Date.now();
  }, 100);
  t.after(() => clearInterval(beat));
  const opened = Date.now();
  await waitFor('15 heartbeats', () => stream.events.length >= 15);
  assert.ok(Date.now() - opened > 1000, 'the stream outlived the read deadline');
  assert.equal(await Promise.race([stream.ended, 'still following']), 'still following');
  // …then nothing comes, while the connection stays open on the agent's side.
  clearInterval(beat);
  const error = await stream.ended;
  const silentFor = Date.now() - lastSent;
  assert.ok(error instanceof NodeUnreachableError, String(error));
  assert.equal(error.message, 'GET /v1/events: no data for 1000 ms');
  // Generous upper bound: the machine may be busy; the point is that it ends at all.
  assert.ok(silentFor >= 950 && silentFor < 6000, `gave up ${silentFor} ms after the last byte`);
  await waitFor('the socket to be destroyed', () => agent.streams.size === 0);
});

test('read deadline: a server that accepts and sends nothing at all fails within timeoutMs', async (t) => {
  const { port } = await silentServer(t);
  const link = linkTo(t, `http://127.0.0.1:${port}`, { timeoutMs: 300, readDeadlineMs: 300 });
  const error = await following(link).ended;
  assert.ok(error instanceof NodeUnreachableError, String(error));
  assert.equal(error.message, 'GET /v1/events: no answer within 300 ms');
});

/** A self-signed certificate (P-256) made with openssl, and its SHA-256 fingerprint. */
async function selfSigned(t: TestContext, cn: string): Promise<{ key: string; cert: string; fingerprint: string } | undefined> {
  if (!requireOrSkip(t, onPath('openssl'), 'openssl is not installed')) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'pbw-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-keyout', keyPath, '-out', certPath], { timeout: 15_000, stdin: 'ignore' });
  const cert = await readFile(certPath, 'utf8');
  return { key: await readFile(keyPath, 'utf8'), cert, fingerprint: new X509Certificate(cert).fingerprint256 };
}

test('TLS: the pinned fingerprint is accepted (any spelling), calls and the event stream work', async (t) => {
  const tls = await selfSigned(t, 'agent');
  if (!tls) return;
  const agent = await fakeAgent(t, tls);
  const spellings = [tls.fingerprint, tls.fingerprint.toLowerCase(), tls.fingerprint.replace(/:/g, '')];
  for (const tlsFingerprint of spellings) {
    const link = linkTo(t, agent.url, { tlsFingerprint });
    assert.equal((await link.health()).node, NODE, tlsFingerprint);
    assert.equal((await link.ledger(0, 1)).entries.length, 1);
  }
  const link = linkTo(t, agent.url, { tlsFingerprint: tls.fingerprint });
  const stream = following(link);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  agent.send('event: ledger\ndata: {"head":9}\n\n');
  await waitFor('the event', () => stream.events.length === 1);
  assert.deepEqual(stream.events, [{ type: 'ledger', head: 9 }]);
  assert.equal(await stream.stop(), 'resolved');
});

test('TLS: a wrong fingerprint is refused before the token is sent; no fingerprint means CA verification', async (t) => {
  const tls = await selfSigned(t, 'agent');
  const other = await selfSigned(t, 'impostor');
  if (!tls || !other) return;
  const agent = await fakeAgent(t, tls);

  const pinnedToOther = linkTo(t, agent.url, { tlsFingerprint: other.fingerprint });
  for (const call of [() => pinnedToOther.health(), () => pinnedToOther.ledger(0, 1), async () => { throw await following(pinnedToOther).ended; }]) {
    await assert.rejects(call(), (error: unknown) => {
      assert.ok(error instanceof NodeUnreachableError, String(error));
      assert.match(error.message, /TLS certificate fingerprint did not match the pinned one \(it has [0-9A-F:]{95}\)/);
      return true;
    });
  }
  assert.equal(agent.seen.length, 0, 'the agent never received a request (nor the token)');

  const unpinned = linkTo(t, agent.url);
  await assert.rejects(unpinned.health(), (error: unknown) => {
    assert.ok(error instanceof NodeUnreachableError, String(error));
    assert.match(error.message, /self-signed certificate|SELF_SIGNED/i);
    return true;
  });
  assert.equal(agent.seen.length, 0);
});
