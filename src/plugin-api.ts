/**
 * The host contract: everything a host panel passes to `register(host, options)`.
 * The plugin reaches nothing of the host outside these types.
 */
import type { Knex } from 'knex';
import type { Request, RequestHandler, Response, Router } from 'express';

/** Semver of this contract; `plugin.json` states the range of host API versions the plugin accepts. */
export const HOST_API_VERSION = '1.4.0';

export type SubjectType = 'peer' | 'vm';

/** A network as the host stores it: a kernel interface, optionally inside a network namespace. */
export interface NetworkRecord {
  id: number;
  name: string;
  interface: string;
  netns: string | null;
  /**
   * The node (machine) whose kernel holds the interface, by the name its agent is registered under;
   * null or absent: the panel's own machine. Since 1.2.0.
   */
  node?: string | null;
}

/** A WireGuard peer as the host stores it. */
export interface PeerRecord {
  id: number;
  network_id: number;
  name: string;
  public_key: string;
  allowed_ips: string[];
  /** Fields the host does not know (plugin fields such as `bandwidth_up_kbps`) arrive here untouched. */
  [extra: string]: unknown;
}

/** A VM as the host stores it: the VM's tap/veth on the host. */
export interface VmRecord {
  id: number;
  name: string;
  interface: string;
  netns: string | null;
  /** The hypervisor node the VM runs on (its agent's name); null or absent: the panel's own machine. Since 1.2.0. */
  node?: string | null;
  [extra: string]: unknown;
}

/** Who caused a change: a logged-in admin, or the API token. */
export interface Actor {
  kind: 'user' | 'api';
  name: string;
}

/** A problem with one input field, reported by a `*.validate` hook. */
export interface ValidationIssue {
  field: string;
  message: string;
}

/** Payloads of every hook, by name. */
export interface HookPayloads {
  'peer.validate': { input: Record<string, unknown>; existing: PeerRecord | null; network: NetworkRecord };
  'peer.created': { peer: PeerRecord; network: NetworkRecord; input: Record<string, unknown>; actor: Actor };
  'peer.updated': {
    peer: PeerRecord;
    previous: PeerRecord;
    network: NetworkRecord;
    input: Record<string, unknown>;
    actor: Actor;
  };
  'peer.deleted': { peer: PeerRecord; network: NetworkRecord; actor: Actor };
  'peer.serialize': { peers: PeerRecord[] };
  'vm.validate': { input: Record<string, unknown>; existing: VmRecord | null };
  'vm.created': { vm: VmRecord; input: Record<string, unknown>; actor: Actor };
  'vm.updated': { vm: VmRecord; previous: VmRecord; input: Record<string, unknown>; actor: Actor };
  'vm.deleted': { vm: VmRecord; actor: Actor };
  'vm.serialize': { vms: VmRecord[] };
  /**
   * The body of a network create or update, checked before the host writes anything (a plugin's
   * network fields, such as its caps); `existing` is null for a new network. Since 1.4.0 (optional:
   * a host before it never asks).
   */
  'network.validate': { input: Record<string, unknown>; existing: NetworkRecord | null };
  /**
   * A network's interface came up: a new network, or one whose interface moved. `input` is the body
   * of a create (since 1.4.0; `{}` or absent when the interface only moved).
   */
  'network.created': { network: NetworkRecord; actor: Actor; input?: Record<string, unknown> };
  /** A network was updated with this body (after `network.created`/`network.deleted` when its interface moved). Since 1.4.0. */
  'network.updated': { network: NetworkRecord; previous: NetworkRecord; input: Record<string, unknown>; actor: Actor };
  'network.deleted': { network: NetworkRecord; actor: Actor };
  /** Extra fields per network for the host's API responses, tables and forms. Since 1.4.0. */
  'network.serialize': { networks: NetworkRecord[] };
}

export type HookName = keyof HookPayloads;

/** What a handler returns, by hook: issues for `validate`, extra fields per record id for `serialize`. */
export interface HookResults {
  'peer.validate': ValidationIssue[] | void;
  'vm.validate': ValidationIssue[] | void;
  'network.validate': ValidationIssue[] | void;
  'peer.serialize': Record<number, Record<string, unknown>> | void;
  'vm.serialize': Record<number, Record<string, unknown>> | void;
  'network.serialize': Record<number, Record<string, unknown>> | void;
}

export type HookResult<K extends HookName> = K extends keyof HookResults ? HookResults[K] : void;

export type HookHandler<K extends HookName> = (payload: HookPayloads[K]) => HookResult<K> | Promise<HookResult<K>>;

/**
 * What a quota event tells the host (bytes as decimal strings: exact past 2^53 and safe to
 * JSON.stringify). Since 1.3.0.
 */
export interface QuotaEventPayload {
  subject_type: SubjectType;
  subject_id: string;
  subject_name: string;
  /** Where the subject's quota comes from. */
  source: 'subject' | 'network' | 'default';
  /** The threshold crossed, in percent of the allowance plus the cycle's extra bytes (null for a reset). */
  percent: number | null;
  used_bytes: string;
  /** The allowance plus the cycle's extra bytes. */
  limit_bytes: string;
  allowance_bytes: string;
  counted: 'up' | 'down' | 'total';
  /** ISO 8601, UTC. */
  cycle_start: string;
  cycle_end: string;
  action: 'throttle' | 'notify';
  /** True while the quota throttles the subject. */
  throttled: boolean;
  /** Why a reset happened: a new cycle began, or an admin reset it. */
  reason: 'cycle' | 'manual' | null;
  actor: string;
}

/** Events the plugin emits for the host (declared in plugin.json's `events`). Since 1.3.0. */
export interface PluginEventPayloads {
  'bandwidth.quota.warning': QuotaEventPayload;
  'bandwidth.quota.exceeded': QuotaEventPayload;
  'bandwidth.quota.reset': QuotaEventPayload;
}

export type PluginEventName = keyof PluginEventPayloads;

/** The host's event bus, scoped to one plugin: it accepts only the hooks the plugin's manifest declares. */
export interface HookBus {
  /** Subscribes a handler; returns a function that unsubscribes it. */
  on<K extends HookName>(name: K, handler: HookHandler<K>): () => void;
  /**
   * Tells the host (and whoever it lets listen) about one of the plugin's own events, declared in
   * plugin.json's `events`. The plugin does not wait on listeners' failures. Optional: hosts before
   * 1.3.0 lack it, and the plugin then only audits and sends webhooks. Since 1.3.0.
   */
  emit?<K extends PluginEventName>(name: K, payload: PluginEventPayloads[K]): Promise<void> | void;
}

/** Named places in the host's views where a plugin may add markup (`network.form` since 1.4.0). */
export type ViewSlot = 'peer.form' | 'vm.form' | 'network.form';
/** Named tables in the host's views where a plugin may add a column. */
export type TableSlot = 'peer.table' | 'vm.table';

/**
 * One cell of a plugin column: plain text, or text with a status badge and a hover title.
 * The host escapes everything; a plugin never hands it markup.
 */
export type TableCell = string | { text: string; badge?: { label: string; tone: 'ok' | 'pending' | 'failed' | 'off' }; title?: string };

/** A column a plugin adds to a host table. Rows carry the fields of the `*.serialize` hooks. */
export interface TableColumn<R> {
  header: string;
  render: (row: R & Record<string, unknown>) => TableCell;
}

export interface NavItem {
  path: string;
  label: string;
  minRole: 'admin' | 'viewer';
}

/**
 * The host's views: its admin layout and the slots of its peer/VM forms and tables.
 * Templates rendered through the host get at least the locals `csrfToken` (for forms) and `user`.
 */
export interface HostViews {
  /** Renders a plugin's EJS template (absolute path) inside the host's admin layout. */
  render(req: Request, res: Response, template: string, locals: Record<string, unknown> & { title: string }): Promise<void>;
  /**
   * Adds an EJS partial (absolute path) to a form slot; returns a function that removes it. The
   * host renders it inside its form with the locals `subject` (the serialized record, or null on a
   * new form), `values` (what the user typed, after a refused submit) and `csrfToken`.
   */
  addPartial(slot: ViewSlot, template: string): () => void;
  /** Adds a column to a host table; returns a function that removes it. */
  addColumn(slot: 'peer.table', column: TableColumn<PeerRecord>): () => void;
  addColumn(slot: 'vm.table', column: TableColumn<VmRecord>): () => void;
  /** Adds an entry to the admin navigation; returns a function that removes it. */
  addNavItem(item: NavItem): () => void;
  /** Shows a one-time notice on the next page this session renders (after a redirect). */
  flash(req: Request, message: string): void;
}

/**
 * One page of a listing in id order (keyset paging): the records whose id is greater than
 * `afterId`, at most `limit` of them. The first page has `afterId: 0`; a page shorter than
 * `limit` is the last. Since 1.1.0.
 */
export interface RecordPage {
  afterId: number;
  limit: number;
}

/**
 * Read access to the host's own records: by id for plugin routes, and listings of everything the
 * host holds, which the plugin compares with its stored copies (a peer deleted or re-addressed
 * while the plugin was disabled) when it starts and on every reconcile.
 */
export interface HostRecords {
  network(id: number): Promise<NetworkRecord | undefined>;
  /** The peers of a network, in id order. */
  peers(networkId: number): Promise<PeerRecord[]>;
  /** A peer with its network. */
  peer(id: number): Promise<{ peer: PeerRecord; network: NetworkRecord } | undefined>;
  vm(id: number): Promise<VmRecord | undefined>;
  /** Every network, in id order. Since 1.1.0. */
  networks(): Promise<NetworkRecord[]>;
  /** One page of every peer of every network, in id order (`[]` past the last). Since 1.1.0. */
  allPeers(page: RecordPage): Promise<PeerRecord[]>;
  /** One page of every VM, in id order (`[]` past the last; a panel without VMs always returns `[]`). Since 1.1.0. */
  vms(page: RecordPage): Promise<VmRecord[]>;
}

/** Authentication the host already has, reused by the plugin's routes. */
export interface HostAuth {
  /** Lets through logged-in admins of at least `role`; redirects others to the login page. */
  admin(role?: NavItem['minRole']): RequestHandler;
  /** Lets through API calls carrying the host's bearer token; 401 JSON otherwise. */
  api: RequestHandler;
  /** The CSRF token to embed in a form for this request's session. */
  csrfToken(req: Request): string;
  /** Rejects a state-changing request without the session's CSRF token (403). */
  verifyCsrf: RequestHandler;
  /** Who is making this request. */
  actor(req: Request): Actor;
  /** The logged-in user's role, or null for API calls and visitors. */
  role(req: Request): NavItem['minRole'] | null;
}

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/**
 * Everything the host passes to `register`. The host parses JSON bodies under `/api`, urlencoded
 * bodies everywhere and runs its session middleware before the plugin's router; plugin routes
 * are absolute paths (`/admin/bandwidth`, `/api/bandwidth/…`, `/bandwidth/static/…`).
 */
export interface Host {
  /** The host API version the host implements (semver). */
  apiVersion: string;
  /** The host's knex instance; the plugin owns only tables prefixed `bw_`. */
  db: Knex;
  /** An Express router the host mounts at its root; the plugin adds its routes here. */
  router: Router;
  hooks: HookBus;
  views: HostViews;
  records: HostRecords;
  auth: HostAuth;
  logger: Logger;
  /** Host configuration the plugin may read (read-only). */
  config: Readonly<{ baseUrl?: string; dataDir?: string }>;
}

/** What `register` returns: the running plugin, released by `close()`. */
export interface PluginInstance {
  /** Releases timers, connections and view/hook registrations. Idempotent. */
  close(): Promise<void>;
}
