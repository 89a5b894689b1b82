import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Knex } from 'knex';
import supertest from 'supertest';
import { createPanel, type CreatePanelOptions, type Panel } from '../../examples/host-panel/src/app.js';
import { REPO_ROOT, type PanelConfig } from '../../examples/host-panel/src/config.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';

/** The bearer token every test panel accepts on /api. */
export const API_TOKEN = 'http-layer-token-0123456789abcdef';
/** The admin every test panel creates on start. */
export const ADMIN = { username: 'admin', password: 'correct horse battery staple' } as const;

export type Agent = supertest.Agent;

/** A logged-in browser: one cookie jar and the CSRF token of its session. */
export interface AdminSession {
  agent: Agent;
  csrf: string;
  /** Submits a form as the browser would, with the session's CSRF token. */
  form(path: string, fields?: Record<string, string>): supertest.Test;
}

/** A reference host panel with the bandwidth plugin, on its own SQLite file. */
export interface TestPanel {
  panel: Panel;
  db: Knex;
  databaseUrl: string;
  /** An agent that sends `Authorization: Bearer <API_TOKEN>` on every request. */
  api: Agent;
  /** A fresh browser with no session. */
  visitor(): Agent;
  /** Logs ADMIN in through /login and returns the browser with its CSRF token. */
  login(): Promise<AdminSession>;
  /** Closes this panel and starts another on the same database (a restart) with these options. */
  restart(options?: PanelOptions): Promise<TestPanel>;
  /** Closes the panel now (teardown closes it anyway; closing twice is harmless). */
  close(): Promise<void>;
}

export interface PanelOptions {
  /** Seed the demo network, peers and VMs. @default false */
  demo?: boolean;
  /** More plugin directories, discovered after the repository root (the bandwidth plugin). @default [] */
  pluginDirs?: string[];
  /** Options for each plugin's register(), by plugin id. @default {@link HERMETIC_PLUGIN_OPTIONS} */
  pluginOptions?: Record<string, Record<string, unknown>>;
  /**
   * The bandwidth plugin's wall clock (epoch ms), added to its options as `now`: pages and the API
   * pick "the last 24 hours" against it. Tests that seed usage pass the time they seeded against.
   * @default the real clock
   */
  now?: () => number;
  /** Settings of the panel itself over the test defaults, e.g. `{ adminPassword, trustProxy, cookieSecure }`. @default {} */
  config?: Partial<PanelConfig>;
  /** The panel's test seams: the login limits' clock, the password hasher, the login limits. @default {} */
  auth?: Pick<CreatePanelOptions, 'now' | 'passwords' | 'loginLimits'>;
  /** The panel's log level (`debug` … `error`); lines go to stderr. @default 'silent' */
  logLevel?: string;
  /**
   * The panel's `DATABASE_URL` (a MariaDB or PostgreSQL database of the test's own, see
   * test/support/own-database.ts); read when the panel first starts, kept across restarts.
   * @default a fresh SQLite file
   */
  databaseUrl?: string;
}

/**
 * The http layer never touches the kernel: run as root, the bandwidth plugin's `auto` executor
 * would pick the local one and run tc against the host's interfaces on every peer/VM hook.
 */
export const HERMETIC_PLUGIN_OPTIONS: Record<string, Record<string, unknown>> = { bandwidth: { executor: 'recording' } };

/** The plugin options with the bandwidth plugin's clock set, when there is one. */
function withClock(options: Record<string, Record<string, unknown>>, now: (() => number) | undefined): Record<string, Record<string, unknown>> {
  return now ? { ...options, bandwidth: { ...options.bandwidth, now } } : options;
}

const CSRF_FIELD = /name="_csrf" value="([^"]+)"/;

/** The CSRF token of the first form on a page; throws when the page has none. */
export function csrfFrom(html: string): string {
  const match = CSRF_FIELD.exec(html);
  if (!match?.[1]) throw new Error(`No _csrf field in the page:\n${html.slice(0, 500)}`);
  return match[1];
}

/**
 * A valid WireGuard public key that differs for each `seed` (32 bytes of `seed`, in base64).
 * @example wgKey(1) // 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE='
 */
export function wgKey(seed: number): string {
  return Buffer.alloc(32, seed).toString('base64');
}

/** How many networks, peers and VMs the host has stored. */
export async function rowCounts(db: Knex): Promise<{ networks: number; peers: number; vms: number }> {
  const count = async (table: string) => Number(((await db(table).count({ n: '*' })) as { n: number | string }[])[0]?.n ?? 0);
  return { networks: await count('networks'), peers: await count('peers'), vms: await count('vms') };
}

/** Every row of the host's networks, peers and VMs, to prove that a refused request wrote nothing. */
export async function hostRows(db: Knex): Promise<Record<string, unknown[]>> {
  return {
    networks: await db('networks').orderBy('id'),
    peers: await db('peers').orderBy('id'),
    vms: await db('vms').orderBy('id'),
    panel_plugins: await db('panel_plugins').orderBy('id'),
  };
}

async function logIn(app: Panel['app']): Promise<AdminSession> {
  const agent = supertest.agent(app);
  const loginPage = await agent.get('/login');
  if (loginPage.status !== 200) throw new Error(`GET /login answered ${loginPage.status}`);
  const sent = await agent
    .post('/login')
    .type('form')
    .send({ _csrf: csrfFrom(loginPage.text), username: ADMIN.username, password: ADMIN.password, next: '/admin/networks' });
  if (sent.status !== 303) throw new Error(`POST /login answered ${sent.status}, expected 303:\n${sent.text.slice(0, 500)}`);
  // Logging in starts a new session (no fixation), so the token comes from a page of that session.
  const home = await agent.get('/admin/networks');
  if (home.status !== 200) throw new Error(`GET /admin/networks after login answered ${home.status}`);
  const csrf = csrfFrom(home.text);
  return { agent, csrf, form: (path, fields = {}) => agent.post(path).type('form').send({ _csrf: csrf, ...fields }) };
}

/**
 * Starts a panel on a fresh SQLite file in a temporary directory. When the test ends, also on
 * failure, every panel it started is closed and the directory removed.
 * @example const { api, login } = await startPanel(t);
 */
export async function startPanel(t: TestContext, options: PanelOptions = {}): Promise<TestPanel> {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-http-'));
  const opened: TestPanel[] = [];
  t.after(async () => {
    const results = await Promise.allSettled(opened.map((handle) => handle.close()));
    rmSync(dir, { recursive: true, force: true });
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  });
  const databaseUrl = options.databaseUrl ?? `sqlite:${join(dir, 'panel.sqlite')}`;

  const open = async (current: PanelOptions): Promise<TestPanel> => {
    const config: PanelConfig = {
      port: 0,
      host: '127.0.0.1',
      databaseUrl,
      apiToken: API_TOKEN,
      adminUser: ADMIN.username,
      adminPassword: ADMIN.password,
      sessionSecret: undefined,
      demo: current.demo ?? false,
      pluginDirs: [REPO_ROOT, ...(current.pluginDirs ?? [])],
      pluginOptions: withClock(current.pluginOptions ?? HERMETIC_PLUGIN_OPTIONS, current.now),
      ...current.config,
    };
    const panel = await createPanel(config, { logLevel: current.logLevel ?? 'silent', ...current.auth });
    let closing: Promise<void> | undefined;
    const handle: TestPanel = {
      panel,
      db: panel.db,
      databaseUrl,
      api: supertest.agent(panel.app).set('Authorization', `Bearer ${API_TOKEN}`),
      visitor: () => supertest.agent(panel.app),
      login: () => logIn(panel.app),
      restart: async (next = {}) => {
        await handle.close();
        return open(next);
      },
      close: () => (closing ??= panel.close()),
    };
    opened.push(handle);
    return handle;
  };
  return open(options);
}

/** What {@link seedHost} created. */
export interface SeededHost {
  networkId: number;
  peerId: number;
  vmId: number;
}

/** Sends a create request and returns the record under `key`; throws unless the answer is 201. */
export async function created<T = Record<string, unknown>>(request: supertest.Test, key: string): Promise<T & { id: number }> {
  const response = await request;
  if (response.status !== 201) throw new Error(`expected 201, got ${response.status}: ${response.text.slice(0, 300)}`);
  return (response.body as Record<string, T & { id: number }>)[key]!;
}

/** A small host through the API: network `office` (wg0) with peer `laptop` (10.8.0.2/32), and VM `web-01` (tap-web01). */
export async function seedHost(api: Agent): Promise<SeededHost> {
  const network = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  const peer = await created(
    api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }),
    'peer',
  );
  const vm = await created(api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  return { networkId: network.id, peerId: peer.id, vmId: vm.id };
}

/** Every row of the plugin's limits and audit log, to prove that a refused request wrote nothing. */
export async function bandwidthRows(db: Knex): Promise<{ bw_limits: unknown[]; bw_events: unknown[] }> {
  return { bw_limits: await db('bw_limits').orderBy('id'), bw_events: await db('bw_events').orderBy('id') };
}

/** What the plugin asked of its executor since {@link watchExecutor} started watching. */
export interface ExecutorWatch {
  /** Calls of `run` (reads such as `tc -j qdisc show`) and `batch` (a plan), together. */
  calls(): number;
  /** Calls of `batch` only: plans the plugin would have sent to the kernel. */
  batches(): number;
}

/**
 * Counts the calls the bandwidth plugin makes to its executor until the test ends. Test panels run
 * the plugin with the recording executor (a dry run), which the plugin builds itself; its class is
 * loaded once per process, so watching the class's prototype sees the plugin's instance. The watch
 * is removed when `t` ends.
 * @example const kernel = watchExecutor(t); await host.api.put(…); assert.equal(kernel.calls(), 0);
 */
export function watchExecutor(t: TestContext): ExecutorWatch {
  const run = t.mock.method(RecordingExecutor.prototype, 'run');
  const batch = t.mock.method(RecordingExecutor.prototype, 'batch');
  return {
    calls: () => run.mock.callCount() + batch.mock.callCount(),
    batches: () => batch.mock.callCount(),
  };
}

/**
 * Serves `app` on 127.0.0.1 at a free port, for clients that need a real socket (streams, a
 * browser). The server and every connection still open (SSE streams) are closed when `t` ends.
 * @example const base = await listen(t, host.panel.app); // 'http://127.0.0.1:41234'
 */
export async function listen(t: TestContext, app: Panel['app']): Promise<string> {
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}
