/**
 * The panel's connections to its nodes: one {@link NodeConnection} per registered agent, plus the
 * panel machine's own node, all run by the same loop (DESIGN.md "Nodes": one code path).
 *
 * A connection's loop: check the agent's health (protocol and name) and that it takes our token,
 * then it is `connected`: the panel re-pushes its desired state (`onConnected`), pulls the ledger
 * (`onLedger`) and follows the event stream, pulling again on every `ledger` event. When anything
 * fails the node is `unreachable` and the loop tries again after an exponential backoff with
 * jitter. Pulls of one node never overlap: requests that come in during a pull become one more.
 */
import type { Logger } from '../../plugin-api.js';
import { NodeRefusedError, type LocalLink, type NodeEvent, type NodeLink } from '../link.js';
import { PROTOCOL_VERSION } from '../protocol.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { RemoteLink } from './remote-link.js';

export type NodeState = 'connected' | 'connecting' | 'unreachable' | 'disabled';

/** A row of the panel's agent registry, token decrypted. */
export interface AgentRecord {
  id: number;
  /** The node's name: what networks and VMs refer to. */
  name: string;
  url: string;
  token: string;
  tlsFingerprint: string | null;
  enabled: boolean;
}

export interface NodeStatus {
  node: string;
  state: NodeState;
  /** When the node entered `state` (epoch ms). */
  since: number;
  /** The last time the node answered or sent an event (epoch ms). */
  lastSeen: number | null;
  version: string | null;
  protocol: number | null;
  capabilities: Record<string, unknown> | null;
  /** Why the node is unreachable (or the last thing that failed). */
  lastError: string | null;
  /** The agent's ledger head, as last heard. */
  ledgerHead: number | null;
}

export interface ConnectionManagerOptions {
  /** The panel machine's node. */
  local: LocalLink;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
  /** Delays between tries of an unreachable node. @default { initialMs: 1000, maxMs: 60000 } */
  backoff?: BackoffOptions;
  /** Of each remote link's event stream (see RemoteLink). @default 15000 */
  readDeadlineMs?: number;
  /** Of each remote link's calls. @default 10000 */
  timeoutMs?: number;
  /** Builds the link of a registered agent. @default a {@link RemoteLink} */
  linkFor?: (record: AgentRecord) => NodeLink;
  /** The node is (again) connected: the panel pushes the node's desired state. Errors are logged. */
  onConnected: (node: string) => Promise<void>;
  /** The node became unreachable: the panel marks its subjects `pending` (`node_unreachable`). Errors are logged. */
  onUnreachable?: (node: string) => Promise<void>;
  /** The node's ledger reached `head`: the panel pulls it. Never called twice at once for one node. Errors are logged. */
  onLedger: (node: string, head: number) => Promise<void>;
}

/** A link that holds sockets (RemoteLink) and wants them released. */
type ClosableLink = NodeLink & { close?: () => void };

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** An abortable wait; resolves early on `wake()` or on abort. */
function pause(ms: number, signal: AbortSignal): { done: Promise<void>; wake: () => void } {
  let wake = () => {};
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(finish, ms);
    function finish() {
      clearTimeout(timer);
      signal.removeEventListener('abort', finish);
      resolve();
    }
    wake = finish;
    signal.addEventListener('abort', finish, { once: true });
  });
  return { done, wake };
}

/** Settles with `promise`, or resolves undefined as soon as `signal` aborts. */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.resolve(undefined);
  }
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** One node: its link, its status and the loop that keeps it connected. */
export class NodeConnection {
  readonly status: NodeStatus;
  private readonly backoff: Backoff;
  private controller: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  /** Loops still running, aborted ones included (close() waits for them). */
  private readonly winding = new Set<Promise<void>>();
  /** The head the next pull is for, when one is wanted. */
  private wantedHead: number | null = null;
  private pulling: Promise<void> | null = null;
  /** The head the pull in progress is for. */
  private runningHead: number | null = null;
  /** The highest head a pull succeeded for since the node last connected. */
  private pulledHead: number | null = null;
  private closed = false;

  constructor(
    readonly node: string,
    public link: ClosableLink,
    private readonly options: ConnectionManagerOptions,
  ) {
    const now = this.now();
    this.status = { node, state: 'disabled', since: now, lastSeen: null, version: null, protocol: null, capabilities: null, lastError: null, ledgerHead: null };
    this.backoff = new Backoff(options.backoff);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  get running(): boolean {
    return this.loop !== null;
  }

  /** Starts the loop (no-op when it runs): `connecting` until the first try ends. */
  start(): void {
    if (this.loop || this.closed) return;
    const controller = new AbortController();
    this.controller = controller;
    this.backoff.reset();
    this.setState('connecting', null);
    const loop = this.run(controller.signal);
    this.loop = loop;
    this.winding.add(loop);
    void loop.finally(() => this.winding.delete(loop));
  }

  /** Aborts the loop; it winds down by itself (it changes no status once aborted). */
  private halt(): void {
    this.controller?.abort();
    this.controller = null;
    this.loop = null;
    this.wakeUp = null;
  }

  /** Stops the loop and waits for it; the node is `disabled`. */
  async stop(): Promise<void> {
    const loop = this.loop;
    this.halt();
    this.setState('disabled', null);
    await loop;
  }

  /**
   * Swaps the link (the agent's address, token or fingerprint changed): the old one's sockets are
   * closed and, when `run`, the node connects again through the new one.
   */
  relink(link: ClosableLink, run: boolean): void {
    this.halt();
    const old = this.link;
    this.link = link;
    old.close?.();
    if (run) this.start();
    else this.setState('disabled', null);
  }

  /** Skips the wait before the next try of an unreachable node. */
  retryNow(): void {
    this.wakeUp?.();
  }

  /** Stops for good: the loop, the link's sockets and the pulls in progress. */
  async close(): Promise<void> {
    this.closed = true;
    this.wantedHead = null;
    this.halt();
    this.link.close?.();
    await Promise.all([...this.winding, this.pulling]);
  }

  /**
   * Asks for a pull of the ledger up to `head` (at least): runs it now, or after the pull in
   * progress (several requests during one pull become one). A request for a head that the pull in
   * progress, or the last one that succeeded on this connection, already covers is dropped unless
   * `force`. Resolves when the pulls that answer it are done.
   */
  pull(head: number, force = false): Promise<void> {
    if (this.closed) return Promise.resolve();
    const covered = this.pulling ? this.runningHead : this.pulledHead;
    if (!force && covered !== null && head <= covered) return this.pulling ?? Promise.resolve();
    this.wantedHead = Math.max(this.wantedHead ?? 0, head);
    if (this.pulling) return this.pulling;
    const pulling = (async () => {
      // A pull asked for while the previous one ran starts after it (it may have missed the newest entries).
      while (this.wantedHead !== null) {
        const wanted = this.wantedHead;
        this.wantedHead = null;
        this.runningHead = wanted;
        try {
          await this.options.onLedger(this.node, wanted);
          this.pulledHead = Math.max(this.pulledHead ?? 0, wanted);
        } catch (error) {
          this.options.logger.error('pulling the ledger failed', { area: 'nodes', node: this.node, error: messageOf(error) });
        }
      }
      this.runningHead = null;
      this.pulling = null;
    })();
    this.pulling = pulling;
    return pulling;
  }

  private setState(state: NodeState, error: string | null): void {
    const previous = this.status.state;
    this.status.lastError = error ?? (state === 'connected' || state === 'disabled' ? null : this.status.lastError);
    if (previous === state) return;
    this.status.state = state;
    this.status.since = this.now();
    const { logger } = this.options;
    const fields = { area: 'nodes', node: this.node };
    if (state === 'connected') logger.info('node connected', { ...fields, version: this.status.version, was: previous });
    else if (state === 'unreachable') logger.warn('node unreachable', { ...fields, error });
    else if (state === 'disabled') logger.info('node disabled', fields);
    else logger.debug('node connecting', fields);
  }

  private async run(signal: AbortSignal): Promise<void> {
    // Callbacks run after the constructor of whoever started us has returned.
    await Promise.resolve();
    while (!signal.aborted) {
      try {
        await this.connectAndFollow(signal);
        if (!signal.aborted) throw new Error('the event stream ended');
      } catch (error) {
        if (signal.aborted) break;
        const message = messageOf(error);
        if (this.status.state === 'unreachable') {
          this.status.lastError = message;
          this.options.logger.debug('node still unreachable', { area: 'nodes', node: this.node, error: message, attempts: this.backoff.attempts });
        } else {
          this.setState('unreachable', message);
          await this.options.onUnreachable?.(this.node).catch((failure: unknown) =>
            this.options.logger.error('marking the node\u2019s subjects pending failed', { area: 'nodes', node: this.node, error: messageOf(failure) }));
        }
      }
      if (signal.aborted) break;
      const wait = pause(this.backoff.next(), signal);
      this.wakeUp = wait.wake;
      await wait.done;
      if (!signal.aborted) this.wakeUp = null;
    }
  }

  /** One connection: health, the token, the callbacks, then the event stream until it breaks. */
  private async connectAndFollow(signal: AbortSignal): Promise<void> {
    const link = this.link;
    const health = await unlessAborted(link.health(), signal);
    if (health === undefined) return;
    if (health.protocol !== PROTOCOL_VERSION) throw new Error(`the agent speaks protocol ${health.protocol}, the panel ${PROTOCOL_VERSION}`);
    if (health.node !== this.node) throw new Error(`agent says it is node ${health.node}`);
    // /v1/health needs no token: one authenticated call, so a wrong token is an error here and not
    // a "connected" node whose every call fails.
    if (link.kind === 'remote') {
      const page = await unlessAborted(link.ledger(health.ledgerHead, 1), signal).catch((error: unknown) => {
        if (error instanceof NodeRefusedError && (error.status === 401 || error.status === 403)) {
          throw new Error(`the agent refused the panel's token (${error.message})`, { cause: error });
        }
        throw error;
      });
      if (page === undefined) return;
    }
    if (signal.aborted) return;
    Object.assign(this.status, {
      version: health.version,
      protocol: health.protocol,
      capabilities: health.capabilities,
      ledgerHead: health.ledgerHead,
      lastSeen: this.now(),
    });
    this.backoff.reset();
    this.setState('connected', null);
    try {
      await this.options.onConnected(this.node);
    } catch (error) {
      this.options.logger.error('pushing the desired state to the node failed', { area: 'nodes', node: this.node, error: messageOf(error) });
    }
    if (signal.aborted) return;
    // A new connection may be a new agent or a new ledger: pull whatever was pulled before.
    this.pulledHead = null;
    void this.pull(health.ledgerHead, true);
    await link.follow((event: NodeEvent) => {
      if (signal.aborted) return;
      this.status.lastSeen = this.now();
      if (event.type === 'ledger') {
        this.status.ledgerHead = event.head;
        void this.pull(event.head);
      }
    }, signal);
  }
}

/** Owns the connection of every node the panel knows. */
export class ConnectionManager {
  private readonly local: NodeConnection;
  private readonly remotes = new Map<string, { record: AgentRecord; connection: NodeConnection }>();
  private closed = false;

  constructor(private readonly options: ConnectionManagerOptions) {
    if (typeof options.onConnected !== 'function') throw new TypeError(`Expected \`onConnected\` to be a function, got \`${typeof options.onConnected}\``);
    if (typeof options.onLedger !== 'function') throw new TypeError(`Expected \`onLedger\` to be a function, got \`${typeof options.onLedger}\``);
    // Fails at once on bad backoff options, not in a loop later.
    new Backoff(options.backoff);
    this.local = new NodeConnection(options.local.node, options.local, options);
    this.local.start();
  }

  private linkFor(record: AgentRecord): ClosableLink {
    if (this.options.linkFor) return this.options.linkFor(record);
    return new RemoteLink({
      node: record.name,
      url: record.url,
      token: record.token,
      tlsFingerprint: record.tlsFingerprint,
      ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
      ...(this.options.readDeadlineMs !== undefined ? { readDeadlineMs: this.options.readDeadlineMs } : {}),
    });
  }

  /**
   * Brings the connections in line with the registry: new agents connect, removed ones are closed,
   * a changed URL, token or fingerprint reconnects, `enabled` starts or stops. A node stopped with
   * {@link stop} stays stopped until {@link start} or until its record's `enabled` changes. A record
   * whose link cannot be built (a malformed URL) shows as `unreachable` with the reason.
   */
  setAgents(records: AgentRecord[]): void {
    if (this.closed) return;
    const seen = new Set<string>();
    for (const record of records) {
      if (record.name === this.local.node || seen.has(record.name)) {
        this.options.logger.error('an agent record is skipped: its node name is taken', { area: 'nodes', node: record.name, id: record.id });
        continue;
      }
      seen.add(record.name);
      const held = this.remotes.get(record.name);
      if (!held) {
        this.add(record);
        continue;
      }
      const moved = held.record.url !== record.url || held.record.token !== record.token || held.record.tlsFingerprint !== record.tlsFingerprint;
      const toggled = held.record.enabled !== record.enabled;
      if (moved) {
        held.connection.relink(this.buildLink(record), toggled ? record.enabled : held.connection.running);
        held.record = record;
        continue;
      }
      held.record = record;
      if (toggled) {
        if (record.enabled) held.connection.start();
        else void held.connection.stop();
      }
    }
    for (const [name, held] of this.remotes) {
      if (seen.has(name)) continue;
      this.remotes.delete(name);
      void held.connection.close();
    }
  }

  private add(record: AgentRecord): void {
    const connection = new NodeConnection(record.name, this.buildLink(record), this.options);
    this.remotes.set(record.name, { record, connection });
    if (record.enabled) connection.start();
  }

  /** A link, or a stand-in whose every call fails with why the record cannot be used. */
  private buildLink(record: AgentRecord): ClosableLink {
    try {
      return this.linkFor(record);
    } catch (error) {
      return brokenLink(record.name, `agent ${record.name} cannot be reached as registered: ${messageOf(error)}`);
    }
  }

  private connection(node: string): NodeConnection | undefined {
    return node === this.local.node ? this.local : this.remotes.get(node)?.connection;
  }

  /** The node's link: the local node's always; a remote node's unless it is disabled or unknown. */
  link(node: string): NodeLink | undefined {
    const connection = this.connection(node);
    if (!connection || connection.status.state === 'disabled') return undefined;
    return connection.link;
  }

  status(node: string): NodeStatus | undefined {
    const connection = this.connection(node);
    return connection ? { ...connection.status } : undefined;
  }

  /** The local node first, then the others by name. */
  statuses(): NodeStatus[] {
    const names = [...this.remotes.keys()].sort();
    return [{ ...this.local.status }, ...names.map((name) => ({ ...this.remotes.get(name)!.connection.status }))];
  }

  reachable(node: string): boolean {
    return this.connection(node)?.status.state === 'connected';
  }

  /**
   * Runs a stopped or disabled node's connection (POST …/start); an unreachable node is tried
   * again now. False when the node is unknown.
   */
  start(node: string): boolean {
    const held = this.remotes.get(node);
    if (!held || this.closed) return false;
    if (held.connection.running) held.connection.retryNow();
    else held.connection.start();
    return true;
  }

  /** Stops a node's connection (POST …/stop): `disabled` until {@link start}. False when the node is unknown. */
  stop(node: string): boolean {
    if (node === this.local.node) throw new TypeError(`The panel's own node (${node}) cannot be stopped`);
    const held = this.remotes.get(node);
    if (!held) return false;
    void held.connection.stop();
    return true;
  }

  /**
   * Pulls the node's ledger now (a safety net beside the event stream), after any pull in
   * progress. Resolves when done; does nothing for a node that is not connected.
   */
  async poll(node: string): Promise<void> {
    const connection = this.connection(node);
    if (!connection || connection.status.state !== 'connected') return;
    await connection.pull(connection.status.ledgerHead ?? 0, true);
  }

  /** Stops every loop, timer and socket, and waits for pulls in progress. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [this.local, ...[...this.remotes.values()].map((held) => held.connection)];
    this.remotes.clear();
    await Promise.all(all.map((connection) => connection.close()));
  }
}

/** A link for a record that cannot be used: every call fails with `reason`. */
function brokenLink(node: string, reason: string): ClosableLink {
  const fail = () => Promise.reject(new Error(reason));
  return { node, kind: 'remote', health: fail, putInterface: fail, deleteInterface: fail, ledger: fail, interfaces: fail, tickRates: fail, liveRates: fail, follow: fail };
}
