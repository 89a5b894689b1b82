/**
 * What an admin does with nodes, the same from the API and the Nodes page: register, change,
 * start, stop and delete agents (each change audited and handed to the connection manager), and
 * read every node's state with its ledger lag.
 */
import type { Knex } from 'knex';
import type { Logger } from '../../plugin-api.js';
import { recordEvent } from '../../db/events.js';
import { toBigInt } from '../../db/bigint.js';
import { LOCAL_NODE } from '../node-name.js';
import type { NodeStatus } from './connections.js';
import type { AgentRegistry, AgentView } from './registry.js';

/** The part of the connection manager this needs: live state, and connecting or disconnecting now. */
export interface NodeConnections {
  status(node: string): NodeStatus | undefined;
  start(node: string): void;
  stop(node: string): void;
}

/** A node as the status API and the Nodes page show it. */
export interface NodeReport extends Omit<NodeStatus, 'since'> {
  /** null for the panel's own machine (it has no registry entry). */
  agent: AgentView | null;
  /** Since when the node is in this state (epoch ms), or null when the manager does not know it yet. */
  since: number | null;
  /** The panel's cursor in the agent's ledger, and head − cursor: entries not ingested yet. */
  ledgerCursor: number | null;
  ledgerLag: number | null;
  /** Subjects the panel places on this node. */
  subjects: number;
}

export interface NodeAdminOptions {
  db: Knex;
  registry: AgentRegistry;
  connections: NodeConnections;
  /** Called after every change to the registry (the index wires it to `manager.setAgents(await registry.records())`). */
  onChange: () => void | Promise<void>;
  logger: Pick<Logger, 'warn'>;
  /** @default Date.now */
  now?: () => number;
}

type Action = 'node.created' | 'node.updated' | 'node.deleted' | 'node.started' | 'node.stopped';

/** An agent in the audit log: never its token. */
const auditValue = (agent: AgentView) => ({ node: agent.name, url: agent.url, enabled: agent.enabled, tls_fingerprint: agent.tlsFingerprint });

export class NodeAdmin {
  readonly registry: AgentRegistry;
  private readonly db: Knex;
  private readonly connections: NodeConnections;
  private readonly onChange: () => void | Promise<void>;
  private readonly logger: Pick<Logger, 'warn'>;
  private readonly now: () => number;

  constructor(options: NodeAdminOptions) {
    this.db = options.db;
    this.registry = options.registry;
    this.connections = options.connections;
    this.onChange = options.onChange;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  async create(body: unknown, actor: string): Promise<AgentView> {
    const agent = await this.registry.create(body);
    await this.changed(actor, 'node.created', undefined, agent);
    return agent;
  }

  async update(id: number, body: unknown, actor: string): Promise<AgentView> {
    const { before, after } = await this.registry.update(id, body);
    const tokenChanged = typeof body === 'object' && body !== null && 'token' in body;
    await this.changed(actor, 'node.updated', before, after, tokenChanged);
    // A renamed or re-addressed node is a different connection: the old one goes.
    if (before.name !== after.name) this.connections.stop(before.name);
    return after;
  }

  async remove(id: number, actor: string): Promise<AgentView> {
    const agent = await this.registry.remove(id);
    this.connections.stop(agent.name);
    await this.changed(actor, 'node.deleted', agent, undefined);
    return agent;
  }

  /** Enables the node (kept across restarts) and connects now, skipping any backoff wait. */
  async start(id: number, actor: string): Promise<AgentView> {
    const { before, after } = await this.registry.setEnabled(id, true);
    await this.changed(actor, 'node.started', before, after);
    this.connections.start(after.name);
    return after;
  }

  /** Disables the node (kept across restarts) and disconnects it: its subjects wait as pending. */
  async stop(id: number, actor: string): Promise<AgentView> {
    const { before, after } = await this.registry.setEnabled(id, false);
    await this.changed(actor, 'node.stopped', before, after);
    this.connections.stop(after.name);
    return after;
  }

  /** One registered node's report. */
  async report(id: number): Promise<NodeReport> {
    const agent = await this.registry.get(id);
    const [cursors, subjects] = await Promise.all([this.cursors([agent.name]), this.subjectCounts()]);
    return this.describe(agent.name, agent, cursors.get(agent.name) ?? null, subjects.get(agent.name) ?? 0);
  }

  /** Every node: the panel's own machine first, then each registered one by name. */
  async reports(): Promise<NodeReport[]> {
    const agents = await this.registry.list();
    const names = [LOCAL_NODE, ...agents.map((agent) => agent.name)];
    const [cursors, subjects] = await Promise.all([this.cursors(names), this.subjectCounts()]);
    return [
      this.describe(LOCAL_NODE, null, cursors.get(LOCAL_NODE) ?? null, subjects.get(LOCAL_NODE) ?? 0),
      ...agents.map((agent) => this.describe(agent.name, agent, cursors.get(agent.name) ?? null, subjects.get(agent.name) ?? 0)),
    ];
  }

  private describe(node: string, agent: AgentView | null, cursor: number | null, subjects: number): NodeReport {
    const live = this.connections.status(node);
    const head = live?.ledgerHead ?? null;
    // No cursor row yet: nothing ingested, the whole ledger is behind.
    const at = cursor ?? 0;
    const base = {
      agent, node, subjects,
      ledgerHead: head,
      ledgerCursor: cursor,
      ledgerLag: head === null ? null : Math.max(0, head - at),
    };
    if (live) {
      return {
        ...base,
        state: live.state, since: live.since, lastSeen: live.lastSeen, version: live.version, protocol: live.protocol,
        capabilities: live.capabilities, lastError: live.lastError,
      };
    }
    // The manager has not heard of it: a node it was not given (no readable token), or not yet told.
    const known = { since: null, lastSeen: agent?.lastSeenAt?.getTime() ?? null, version: agent?.lastVersion ?? null, protocol: null, capabilities: null };
    if (agent && !agent.enabled) return { ...base, ...known, state: 'disabled', lastError: agent.lastError };
    if (agent && agent.tokenState !== 'set') {
      const why = agent.tokenState === 'missing'
        ? 'no token is stored for this node: enter its token again'
        : 'the stored token cannot be decrypted with the current secret key: restore the key or enter the token again';
      return { ...base, ...known, state: 'unreachable', lastError: why };
    }
    return { ...base, ...known, state: 'connecting', lastError: agent?.lastError ?? null };
  }

  private async cursors(names: string[]): Promise<Map<string, number>> {
    const rows = (await this.db('bw_node_cursors').whereIn('node', names).select('node', 'seq')) as { node: string; seq: unknown }[];
    return new Map(rows.map((row) => [String(row.node), Number(toBigInt(row.seq) ?? 0n)]));
  }

  private async subjectCounts(): Promise<Map<string, number>> {
    const rows = (await this.db('bw_limits').select('node').count({ n: '*' }).groupBy('node')) as { node: string; n: number | string }[];
    return new Map(rows.map((row) => [String(row.node), Number(row.n)]));
  }

  private async changed(actor: string, action: Action, before: AgentView | undefined, after: AgentView | undefined, tokenChanged = false): Promise<void> {
    await recordEvent(this.db, {
      actor,
      action,
      ...(before ? { oldValue: auditValue(before) } : {}),
      ...(after ? { newValue: { ...auditValue(after), ...(tokenChanged ? { token_changed: true } : {}) } } : {}),
      result: 'ok',
    }, this.now());
    try {
      await this.onChange();
    } catch (error) {
      // The registry is the truth and has changed; the manager catches up on the next change or restart.
      this.logger.warn('the connection manager did not take the node change', { action, error: (error as Error).message });
    }
  }
}
