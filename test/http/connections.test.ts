/**
 * The ConnectionManager against real HTTP servers that speak the agent's protocol (a small stand-in
 * that can be stopped, restarted on its port and frozen; and the real agent server over a dry-run
 * core), with RemoteLinks, and the panel's own node through a LocalLink over a dry-run AgentCore. Short deadlines: heartbeats every 300 ms, a read
 * deadline of 1 s, backoff from 50 ms to 200 ms.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { AgentCore } from '../../src/nodes/agent/core.js';
import { createAgentServer } from '../../src/nodes/agent/server.js';
import { LocalLink } from '../../src/nodes/link.js';
import { PROTOCOL_VERSION } from '../../src/nodes/protocol.js';
import { ConnectionManager, type AgentRecord, type ConnectionManagerOptions, type NodeStatus } from '../../src/nodes/panel/connections.js';
import { RemoteLink } from '../../src/nodes/panel/remote-link.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import type { Logger } from '../../src/plugin-api.js';

const TOKEN = 't'.repeat(40);
const HEARTBEAT_MS = 300;
const READ_DEADLINE_MS = 1000;

/** A stand-in agent: health, ledger, the event stream with heartbeats; stop/start on one port, freeze. */
class StandInAgent {
  readonly requests: string[] = [];
  readonly streams = new Set<ServerResponse>();
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;
  private heartbeat: NodeJS.Timeout | undefined;
  port = 0;
  head = 42;
  /** What /v1/health says the node is called. */
  name: string;
  /** While frozen, the agent answers nothing and sends nothing, and keeps its connections open. */
  frozen = false;

  constructor(name: string) {
    this.name = name;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens (again, on the same port after a stop). */
  async start(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    this.heartbeat = setInterval(() => {
      if (!this.frozen) for (const res of this.streams) res.write(': heartbeat\n\n');
    }, HEARTBEAT_MS);
  }

  /** Goes away: stops listening and cuts every connection. */
  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    const server = this.server;
    this.server = null;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    this.streams.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Tells every follower that the ledger moved. */
  ledger(head: number): void {
    this.head = head;
    for (const res of this.streams) res.write(`event: ledger\ndata: ${JSON.stringify({ head })}\n\n`);
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.frozen) return;
    const url = new URL(req.url ?? '/', 'http://agent');
    this.requests.push(`${req.method} ${url.pathname}`);
    if (url.pathname === '/v1/health') {
      return this.json(res, 200, { node: this.name, version: '9.9.9', protocol: PROTOCOL_VERSION, uptimeS: 1, capabilities: { leaf: 'cake' }, ledgerId: 'L', ledgerHead: this.head, mode: 'recording' });
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return this.json(res, 401, { error: 'wrong bearer token', field: 'authorization' });
    if (url.pathname === '/v1/ledger') return this.json(res, 200, { node: this.name, ledgerId: 'L', head: this.head, oldest: null, entries: [] });
    if (url.pathname === '/v1/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      this.streams.add(res);
      res.on('close', () => this.streams.delete(res));
      return;
    }
    this.json(res, 404, { error: 'no such route' });
  }
}

async function standIn(t: TestContext, name = 'hv1'): Promise<StandInAgent> {
  const agent = new StandInAgent(name);
  await agent.start();
  t.after(() => agent.stop());
  return agent;
}

/** A logger that keeps what it was told. */
function recordingLogger(): Logger & { lines: { level: string; message: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  const at = (level: string) => (message: string, fields: Record<string, unknown> = {}) => void lines.push({ level, message, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** The panel machine's node: a dry-run core in memory. */
async function localLink(t: TestContext): Promise<LocalLink> {
  const core = await AgentCore.open({ node: 'local', statePath: ':memory:', executor: new RecordingExecutor(), mode: 'recording', logger: recordingLogger() });
  t.after(() => core.close());
  return new LocalLink(core);
}

interface Harness {
  manager: ConnectionManager;
  logger: ReturnType<typeof recordingLogger>;
  local: LocalLink;
  /** Nodes onConnected was called for, in order. */
  connected: string[];
  /** onLedger calls, in order. */
  pulls: { node: string; head: number }[];
}

async function harness(t: TestContext, options: Partial<ConnectionManagerOptions> = {}): Promise<Harness> {
  const logger = recordingLogger();
  const local = await localLink(t);
  const connected: string[] = [];
  const pulls: { node: string; head: number }[] = [];
  const manager = new ConnectionManager({
    local,
    logger,
    backoff: { initialMs: 50, maxMs: 200 },
    readDeadlineMs: READ_DEADLINE_MS,
    timeoutMs: 500,
    onConnected: async (node) => void connected.push(node),
    onLedger: async (node, head) => void pulls.push({ node, head }),
    ...options,
  });
  t.after(() => manager.close());
  return { manager, logger, local, connected, pulls };
}

const record = (agent: StandInAgent, overrides: Partial<AgentRecord> = {}): AgentRecord => ({
  id: 1, name: agent.name, url: agent.url, token: TOKEN, tlsFingerprint: null, enabled: true, ...overrides,
});

/** Resolves once `condition()` holds, polling; fails after `timeoutMs` with what was last seen. */
async function waitFor<T>(what: string, condition: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const stateOf = (manager: ConnectionManager, node: string): NodeStatus['state'] | undefined => manager.status(node)?.state;
const inState = (manager: ConnectionManager, node: string, state: NodeStatus['state'], timeoutMs?: number) =>
  waitFor(`${node} to be ${state} (is ${stateOf(manager, node)}: ${manager.status(node)?.lastError})`, () => manager.status(node)?.state === state && manager.status(node)!, timeoutMs);

test('a registered agent connects: state, version and capabilities, the desired state pushed, the ledger pulled; the local node too', async (t) => {
  const agent = await standIn(t);
  const started = Date.now();
  const { manager, connected, pulls } = await harness(t);
  manager.setAgents([record(agent)]);
  assert.equal(stateOf(manager, 'hv1'), 'connecting');

  const status = await inState(manager, 'hv1', 'connected');
  assert.equal(status.version, '9.9.9');
  assert.equal(status.protocol, PROTOCOL_VERSION);
  assert.deepEqual(status.capabilities, { leaf: 'cake' });
  assert.equal(status.lastError, null);
  assert.ok(status.lastSeen !== null && status.lastSeen >= started);
  assert.ok(status.since >= started);
  await waitFor('the first pull of hv1', () => pulls.some((pull) => pull.node === 'hv1' && pull.head === 42));
  await waitFor('the local node to be connected', () => connected.includes('local'));
  assert.deepEqual(connected.filter((node) => node === 'hv1'), ['hv1']);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  assert.deepEqual(agent.requests.slice(0, 3), ['GET /v1/health', 'GET /v1/ledger', 'GET /v1/events']);

  assert.deepEqual(manager.statuses().map((s) => [s.node, s.state]), [['local', 'connected'], ['hv1', 'connected']]);
  assert.ok(manager.link('hv1') instanceof RemoteLink);
  assert.ok(manager.link('local') instanceof LocalLink);
  assert.equal(manager.link('nowhere'), undefined);
  assert.equal(manager.status('nowhere'), undefined);
  assert.equal(manager.reachable('hv1'), true);
  assert.equal(manager.reachable('nowhere'), false);

  // Heartbeats keep lastSeen moving.
  const seen = manager.status('hv1')!.lastSeen!;
  await waitFor('a heartbeat', () => manager.status('hv1')!.lastSeen! > seen);
});

test('ledger events pull the ledger, never twice at once per node, the newest head last; the local node the same way', async (t) => {
  const agent = await standIn(t);
  let active = 0;
  let most = 0;
  let release!: () => void;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const heads: number[] = [];
  const { manager, local, pulls } = await harness(t, {
    onLedger: async (node, head) => {
      if (node !== 'hv1') return void pulls.push({ node, head });
      active++;
      most = Math.max(most, active);
      heads.push(head);
      await gate;
      active--;
    },
  });
  manager.setAgents([record(agent)]);
  await inState(manager, 'hv1', 'connected');
  await waitFor('the first pull to start', () => heads.length === 1);
  await waitFor('the stream to open', () => agent.streams.size === 1);
  for (let head = 43; head <= 60; head++) agent.ledger(head);
  await waitFor('the last event to arrive', () => manager.status('hv1')!.ledgerHead === 60);
  release();
  gate = Promise.resolve();
  await waitFor('the pulls to end', () => heads.at(-1) === 60 && active === 0);
  assert.equal(most, 1, 'one pull of a node at a time');
  assert.ok(heads.length <= 3, `18 events during one pull became at most two more pulls, got ${heads.join(', ')}`);

  // An event for a head already pulled pulls nothing (events arrive in order: 60 before 61).
  const before = heads.length;
  agent.ledger(60);
  agent.ledger(61);
  await waitFor('the pull of 61', () => heads.at(-1) === 61 && active === 0);
  assert.deepEqual(heads.slice(before), [61]);
  // A poll pulls now, up to the head last heard, pulled or not.
  await manager.poll('hv1');
  assert.deepEqual(heads.slice(before), [61, 61]);

  // The local node: its core's ledger events go through LocalLink.follow to the same callback.
  await waitFor('the local node to follow', () => local.core.listenerCount('ledger') === 1);
  local.core.emit('ledger', { head: 5 });
  await waitFor('the local pull', () => pulls.some((pull) => pull.node === 'local' && pull.head === 5));
  assert.equal(manager.status('local')!.ledgerHead, 5);
});

test('an agent that goes away is unreachable at once, logged once; when it is back it recovers by itself and the state is pushed again', async (t) => {
  const agent = await standIn(t);
  const { manager, connected, logger } = await harness(t);
  manager.setAgents([record(agent)]);
  await inState(manager, 'hv1', 'connected');

  await agent.stop();
  const down = await inState(manager, 'hv1', 'unreachable', READ_DEADLINE_MS);
  assert.match(down.lastError ?? '', /ended the event stream|ECONNRESET|ECONNREFUSED|socket hang up/);
  assert.equal(manager.reachable('hv1'), false);
  assert.ok(manager.link('hv1'), 'an unreachable node keeps its link: calls fail as unreachable');
  // Retries go on (refused) without logging the outage again.
  await waitFor('a few refused retries', () => /ECONNREFUSED/.test(manager.status('hv1')!.lastError ?? '') && logger.lines.filter((line) => line.message === 'node still unreachable').length >= 3);
  assert.equal(logger.lines.filter((line) => line.level === 'warn' && line.fields.node === 'hv1').length, 1, 'one warning for the outage');
  assert.equal(manager.status('hv1')!.since, down.since, 'retries do not move `since`');

  await agent.start();
  await inState(manager, 'hv1', 'connected');
  await waitFor('the desired state pushed again', () => connected.filter((node) => node === 'hv1').length === 2);
  assert.ok(logger.lines.some((line) => line.message === 'node connected' && line.fields.was === 'unreachable'));
});

test('a silent agent (a half-open connection) is unreachable within the read deadline, and recovers when it speaks again', async (t) => {
  const agent = await standIn(t);
  const { manager, connected } = await harness(t);
  manager.setAgents([record(agent)]);
  await inState(manager, 'hv1', 'connected');
  await waitFor('the stream to open', () => agent.streams.size === 1);

  agent.frozen = true;
  const frozenAt = Date.now();
  const down = await inState(manager, 'hv1', 'unreachable', READ_DEADLINE_MS + 3000);
  const after = Date.now() - frozenAt;
  assert.equal(down.lastError, `GET /v1/events: no data for ${READ_DEADLINE_MS} ms`);
  assert.ok(after >= READ_DEADLINE_MS - HEARTBEAT_MS, `unreachable after ${after} ms, not before the deadline could pass`);
  // While frozen, tries time out (500 ms) instead of hanging.
  await waitFor('a try to time out', () => /no answer within 500 ms/.test(manager.status('hv1')!.lastError ?? ''), 3000);

  agent.frozen = false;
  await inState(manager, 'hv1', 'connected', 5000);
  assert.equal(connected.filter((node) => node === 'hv1').length, 2);
});

test('stop makes a node disabled (its stream closed, no link) until start', async (t) => {
  const agent = await standIn(t);
  const { manager, connected } = await harness(t);
  manager.setAgents([record(agent)]);
  await inState(manager, 'hv1', 'connected');
  await waitFor('the stream to open', () => agent.streams.size === 1);

  assert.equal(manager.stop('hv1'), true);
  assert.equal(stateOf(manager, 'hv1'), 'disabled');
  assert.equal(manager.link('hv1'), undefined);
  assert.equal(manager.reachable('hv1'), false);
  await waitFor('the stream to close on the agent', () => agent.streams.size === 0);
  // A registry update that does not touch `enabled` leaves it stopped.
  manager.setAgents([record(agent)]);
  assert.equal(stateOf(manager, 'hv1'), 'disabled');

  assert.equal(manager.start('hv1'), true);
  assert.equal(stateOf(manager, 'hv1'), 'connecting');
  await inState(manager, 'hv1', 'connected');
  await waitFor('the desired state pushed again', () => connected.filter((node) => node === 'hv1').length === 2);

  assert.equal(manager.stop('nowhere'), false);
  assert.equal(manager.start('nowhere'), false);
  assert.throws(() => manager.stop('local'), /own node \(local\) cannot be stopped/);
});

test('setAgents: a new URL reconnects to it, enabled:false disables, a removed agent is gone, a second name is its own node', async (t) => {
  const first = await standIn(t);
  const moved = await standIn(t);
  const other = await standIn(t, 'hv2');
  const { manager, connected } = await harness(t);
  manager.setAgents([record(first)]);
  await inState(manager, 'hv1', 'connected');

  moved.requests.length = 0;
  manager.setAgents([record(first, { url: moved.url }), record(other, { id: 2 })]);
  await waitFor('hv1 to follow the new URL', () => moved.streams.size === 1);
  await waitFor('the old stream to close', () => first.streams.size === 0);
  await inState(manager, 'hv1', 'connected');
  await inState(manager, 'hv2', 'connected');
  assert.deepEqual(connected.filter((node) => node !== 'local').sort(), ['hv1', 'hv1', 'hv2'], 'hv1 pushed to again, hv2 once');

  manager.setAgents([record(first, { url: moved.url, enabled: false }), record(other, { id: 2 })]);
  assert.equal(stateOf(manager, 'hv1'), 'disabled');
  await waitFor('hv1’s stream to close', () => moved.streams.size === 0);
  manager.setAgents([record(first, { url: moved.url, enabled: true }), record(other, { id: 2 })]);
  await inState(manager, 'hv1', 'connected');

  manager.setAgents([record(other, { id: 2 })]);
  assert.equal(manager.status('hv1'), undefined);
  assert.equal(manager.link('hv1'), undefined);
  await waitFor('the removed node’s stream to close', () => moved.streams.size === 0);
  assert.deepEqual(manager.statuses().map((s) => s.node), ['local', 'hv2']);

  // A record that takes the local node's name is skipped, not connected.
  manager.setAgents([record(other, { id: 2 }), { ...record(first), id: 3, name: 'local' }]);
  assert.ok(manager.link('local') instanceof LocalLink);
});

test('a wrong token, another node behind the URL or a malformed URL: unreachable with the reason, retried with backoff', async (t) => {
  const agent = await standIn(t);
  const impostor = await standIn(t, 'hv9');
  const { manager, connected } = await harness(t);
  manager.setAgents([
    record(agent, { token: 'x'.repeat(40) }),
    { ...record(impostor), id: 2, name: 'hv2' },
    { id: 3, name: 'hv3', url: 'ftp://10.0.0.3', token: TOKEN, tlsFingerprint: null, enabled: true },
  ]);
  const refused = await inState(manager, 'hv1', 'unreachable');
  assert.match(refused.lastError ?? '', /refused the panel's token \(GET \/v1\/ledger: 401 wrong bearer token\)/);
  assert.equal((await inState(manager, 'hv2', 'unreachable')).lastError, 'agent says it is node hv9');
  assert.match((await inState(manager, 'hv3', 'unreachable')).lastError ?? '', /cannot be reached as registered: Expected `url` to be an http:\/\/ or https:\/\/ URL/);
  assert.deepEqual(connected.filter((node) => node !== 'local'), [], 'none was taken for connected');
  await waitFor('hv1 to be retried', () => agent.requests.filter((request) => request === 'GET /v1/health').length >= 3);
  assert.equal(agent.streams.size, 0);

  // The right token: connected on the next try.
  manager.setAgents([record(agent), { ...record(impostor), id: 2, name: 'hv2' }]);
  await inState(manager, 'hv1', 'connected');
});

test('close() ends every loop, timer and socket', async (t) => {
  const agents = [await standIn(t, 'hv1'), await standIn(t, 'hv2')];
  const down = await standIn(t, 'hv3');
  await down.stop();
  const { manager, connected } = await harness(t);
  // Counted once the local core (its database pool has a timer of its own) is open.
  const timeoutsBefore = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
  manager.setAgents(agents.map((agent, i) => record(agent, { id: i + 1 })).concat([record(down, { id: 3 })]));
  await inState(manager, 'hv1', 'connected');
  await inState(manager, 'hv2', 'connected');
  await inState(manager, 'hv3', 'unreachable');
  await waitFor('two streams', () => agents.every((agent) => agent.streams.size === 1));

  await manager.close();
  await waitFor('the streams to close on the agents', () => agents.every((agent) => agent.streams.size === 0));
  const timeoutsAfter = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
  assert.ok(timeoutsAfter <= timeoutsBefore, `timers left: ${timeoutsAfter - timeoutsBefore} (${process.getActiveResourcesInfo().join(', ')})`);
  const count = connected.length;
  await down.start();
  await manager.close();
  assert.equal(manager.link('hv1'), undefined);
  manager.setAgents([record(down, { id: 3 })]);
  assert.equal(manager.status('hv3'), undefined, 'a closed manager takes no agents');
  assert.equal(connected.length, count);
});

test('against the real agent server: connects, pulls the real ledger on its events, recovers after the agent restarts', async (t) => {
  const logger = recordingLogger();
  const core = await AgentCore.open({ node: 'hv1', statePath: ':memory:', executor: new RecordingExecutor(), mode: 'recording', logger });
  t.after(() => core.close());
  let server = createAgentServer({ core, token: TOKEN, logger, heartbeatMs: HEARTBEAT_MS });
  t.after(() => server.close());
  const { port } = await server.listen('127.0.0.1', 0);
  const pages: { head: number; node: string; pageNode: string }[] = [];
  const { manager } = await harness(t, {
    onLedger: async (node, head) => {
      if (node !== 'hv1') return;
      // The panel pulls through the manager's link, as it will in production.
      const page = await manager.link(node)!.ledger(0, 100);
      pages.push({ head, node, pageNode: page.node });
    },
  });
  manager.setAgents([{ id: 1, name: 'hv1', url: `http://127.0.0.1:${port}`, token: TOKEN, tlsFingerprint: null, enabled: true }]);
  const status = await inState(manager, 'hv1', 'connected');
  assert.equal(status.protocol, PROTOCOL_VERSION);
  assert.deepEqual(status.capabilities, { dryRun: true, leaf: 'fq_codel' });
  await waitFor('the agent to have a listener', () => core.listenerCount('ledger') === 1);

  core.emit('ledger', { head: 7 });
  await waitFor('the pull of head 7', () => pages.some((page) => page.node === 'hv1' && page.head === 7));
  assert.ok(pages.every((page) => page.pageNode === page.node), 'each node’s ledger is its own');

  await server.close();
  await inState(manager, 'hv1', 'unreachable', READ_DEADLINE_MS);
  server = createAgentServer({ core, token: TOKEN, logger, heartbeatMs: HEARTBEAT_MS });
  await server.listen('127.0.0.1', port);
  await inState(manager, 'hv1', 'connected');
  await waitFor('the agent to have a listener again', () => core.listenerCount('ledger') === 1);
  core.emit('ledger', { head: 8 });
  await waitFor('the pull of head 8', () => pages.some((page) => page.head === 8));
});
