/**
 * The registry of nodes' agents (`bw_agents`): what the connection manager connects to, and what
 * the API and the Nodes page show. Tokens are stored encrypted ({@link SecretBox}) and leave this
 * module only in {@link AgentRegistry.records}, for the manager; every view is without them.
 */
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { ConflictError, NotFoundError } from '../../errors.js';
import type { Logger } from '../../plugin-api.js';
import { parseAgentChange, parseAgentInput } from './agent-input.js';
import type { AgentRecord } from './connections.js';
import type { SecretBox } from './secret.js';

/** Whether the stored token can be sent: `missing` for rows from before tokens were kept, `unreadable` when the key changed. */
export type TokenState = 'set' | 'missing' | 'unreadable';

/** An agent as the API and the pages show it: everything but its token. */
export interface AgentView {
  id: number;
  name: string;
  url: string;
  /** SHA-256 of the pinned certificate, 64 lower-case hex digits, or null (no pin). */
  tlsFingerprint: string | null;
  enabled: boolean;
  tokenState: TokenState;
  /** What the manager last stored (the live state is the manager's). */
  lastSeenAt: Date | null;
  lastError: string | null;
  lastVersion: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** The public JSON of an agent (snake case, ISO times, no token). */
export function agentJson(agent: AgentView) {
  return {
    id: agent.id,
    name: agent.name,
    url: agent.url,
    tls_fingerprint: agent.tlsFingerprint,
    enabled: agent.enabled,
    token_state: agent.tokenState,
    created_at: agent.createdAt.toISOString(),
    updated_at: agent.updatedAt.toISOString(),
  };
}

export interface AgentRegistryOptions {
  db: Knex;
  secrets: SecretBox;
  logger?: Pick<Logger, 'warn'>;
  /** @default Date.now */
  now?: () => number;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  return e.code === 'ER_DUP_ENTRY' || e.code === '23505' || /UNIQUE constraint failed/.test(e.message ?? '');
}

const dateOrNull = (value: unknown): Date | null => (value === null || value === undefined ? null : new Date(Number(value)));
const textOrNull = (value: unknown): string | null => (value === null || value === undefined || value === '' ? null : String(value));

/**
 * CRUD over `bw_agents`. Input is validated here (an {@link InputError} names the field), a taken
 * name is a {@link ConflictError} on `name`, an unknown id a {@link NotFoundError}.
 * @example const registry = new AgentRegistry({ db, secrets: new SecretBox({ keyFile }) });
 */
export class AgentRegistry {
  private readonly db: Knex;
  private readonly secrets: SecretBox;
  private readonly logger: Pick<Logger, 'warn'> | undefined;
  private readonly now: () => number;

  constructor(options: AgentRegistryOptions) {
    this.db = options.db;
    this.secrets = options.secrets;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /** Every agent, by name. */
  async list(): Promise<AgentView[]> {
    const rows = (await this.db('bw_agents').orderBy('name')) as Record<string, unknown>[];
    return Promise.all(rows.map((row) => this.toView(row)));
  }

  async get(id: number): Promise<AgentView> {
    return this.toView(await this.row(id));
  }

  /** The agent registered under a node name, or undefined. */
  async byName(name: string): Promise<AgentView | undefined> {
    const row = (await this.db('bw_agents').where({ name }).first()) as Record<string, unknown> | undefined;
    return row ? this.toView(row) : undefined;
  }

  /** Registers an agent from an API body or a form (`name`, `url`, `token`, `tls_fingerprint`?, `enabled`?). */
  async create(body: unknown): Promise<AgentView> {
    const input = parseAgentInput(body);
    await this.assertNameFree(input.name);
    const now = this.now();
    const ciphertext = await this.secrets.encrypt(input.token);
    let id: number;
    try {
      const [inserted] = await this.db('bw_agents').insert(
        {
          name: input.name, url: input.url, token_hash: sha256(input.token), token_ciphertext: ciphertext,
          tls_fingerprint: input.tlsFingerprint, enabled: input.enabled, status: 'unknown', created_at: now, updated_at: now,
        },
        ['id'],
      );
      id = Number(typeof inserted === 'object' ? (inserted as { id: number }).id : inserted);
    } catch (error) {
      if (isUniqueViolation(error)) throw this.nameTaken(input.name);
      throw error;
    }
    return this.get(id);
  }

  /**
   * Changes any of an agent's fields; a token sent replaces the stored one. A node that still
   * holds subjects keeps its name: networks and VMs refer to it by name.
   * @returns the agent before and after the change
   */
  async update(id: number, body: unknown): Promise<{ before: AgentView; after: AgentView }> {
    const row = await this.row(id);
    const before = await this.toView(row);
    const change = parseAgentChange(body, { url: before.url, tlsFingerprint: before.tlsFingerprint });
    if (change.name !== undefined && change.name !== before.name) {
      await this.assertNameFree(change.name);
      await this.assertNoSubjects(before.name, 'renamed');
    }
    const update: Record<string, unknown> = { updated_at: this.now() };
    if (change.name !== undefined) update.name = change.name;
    if (change.url !== undefined) update.url = change.url;
    if (change.tlsFingerprint !== undefined) update.tls_fingerprint = change.tlsFingerprint;
    if (change.enabled !== undefined) update.enabled = change.enabled;
    if (change.token !== undefined) {
      update.token_hash = sha256(change.token);
      update.token_ciphertext = await this.secrets.encrypt(change.token);
    }
    try {
      await this.db('bw_agents').where({ id }).update(update);
    } catch (error) {
      if (isUniqueViolation(error) && change.name !== undefined) throw this.nameTaken(change.name);
      throw error;
    }
    return { before, after: await this.get(id) };
  }

  /** Turns an agent's connection on or off (kept across restarts). */
  async setEnabled(id: number, enabled: boolean): Promise<{ before: AgentView; after: AgentView }> {
    const before = await this.get(id);
    if (before.enabled !== enabled) await this.db('bw_agents').where({ id }).update({ enabled, updated_at: this.now() });
    return { before, after: await this.get(id) };
  }

  /**
   * Removes an agent. Refused while subjects are on its node: their caps could be pushed nowhere;
   * move or delete those networks and VMs first (or disable the node).
   */
  async remove(id: number): Promise<AgentView> {
    const agent = await this.get(id);
    await this.assertNoSubjects(agent.name, 'deleted');
    await this.db('bw_agents').where({ id }).delete();
    return agent;
  }

  /**
   * What the connection manager needs: every agent with a readable token, the token decrypted.
   * An agent whose token cannot be decrypted (the key changed) is left out and logged: the others
   * still connect.
   */
  async records(): Promise<AgentRecord[]> {
    const rows = (await this.db('bw_agents').orderBy('name')) as Record<string, unknown>[];
    const records: AgentRecord[] = [];
    for (const row of rows) {
      const name = String(row.name);
      if (!row.token_ciphertext) {
        this.logger?.warn(`node ${name} has no stored token: enter its token again on the Nodes page`, { node: name });
        continue;
      }
      try {
        records.push({
          id: Number(row.id),
          name,
          url: String(row.url),
          token: await this.secrets.decrypt(String(row.token_ciphertext)),
          tlsFingerprint: textOrNull(row.tls_fingerprint),
          enabled: Boolean(row.enabled),
        });
      } catch (error) {
        this.logger?.warn(`node ${name} is left out: ${(error as Error).message}`, { node: name });
      }
    }
    return records;
  }

  /** Stores what the manager learnt of a node (shown when the node is unreachable, kept across restarts). */
  async recordHealth(
    name: string,
    health: { status?: string; lastSeenAt?: number | null; lastError?: string | null; version?: string | null },
  ): Promise<void> {
    const update: Record<string, unknown> = {};
    if (health.status !== undefined) update.status = health.status.slice(0, 16);
    if (health.lastSeenAt !== undefined) update.last_seen_at = health.lastSeenAt;
    if (health.lastError !== undefined) update.last_error = health.lastError === null ? null : health.lastError.slice(0, 4000);
    if (health.version !== undefined) update.last_version = health.version === null ? null : health.version.slice(0, 64);
    if (Object.keys(update).length > 0) await this.db('bw_agents').where({ name }).update(update);
  }

  private async row(id: number): Promise<Record<string, unknown>> {
    const row = (await this.db('bw_agents').where({ id }).first()) as Record<string, unknown> | undefined;
    if (!row) throw new NotFoundError(`No node agent with id \`${id}\``);
    return row;
  }

  private nameTaken(name: string): ConflictError {
    return new ConflictError(`A node named \`${name}\` is already registered`, 'name');
  }

  private async assertNameFree(name: string): Promise<void> {
    if (await this.db('bw_agents').where({ name }).first('id')) throw this.nameTaken(name);
  }

  private async assertNoSubjects(node: string, verb: 'renamed' | 'deleted'): Promise<void> {
    const [row] = await this.db('bw_limits').where({ node }).count({ n: '*' });
    const count = Number(row?.n ?? 0);
    if (count > 0) {
      throw new ConflictError(
        `Node \`${node}\` cannot be ${verb} while ${count} subject${count === 1 ? ' is' : 's are'} on it: move or delete its networks and VMs first, or disable the node`,
        'name',
      );
    }
  }

  private async toView(row: Record<string, unknown>): Promise<AgentView> {
    return {
      id: Number(row.id),
      name: String(row.name),
      url: String(row.url),
      tlsFingerprint: textOrNull(row.tls_fingerprint),
      enabled: Boolean(row.enabled),
      tokenState: await this.tokenState(row.token_ciphertext),
      lastSeenAt: dateOrNull(row.last_seen_at),
      lastError: textOrNull(row.last_error),
      lastVersion: textOrNull(row.last_version),
      createdAt: new Date(Number(row.created_at)),
      updatedAt: new Date(Number(row.updated_at)),
    };
  }

  private async tokenState(ciphertext: unknown): Promise<TokenState> {
    if (!ciphertext) return 'missing';
    try {
      await this.secrets.decrypt(String(ciphertext));
      return 'set';
    } catch {
      return 'unreadable';
    }
  }
}
