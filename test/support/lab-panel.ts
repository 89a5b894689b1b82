/**
 * The reference host panel as a REAL child process (`node --import tsx examples/host-panel/src/main.ts`)
 * for the kernel tests: its own SQLite file in a temporary directory, a fixed API token, the bandwidth
 * plugin on the local executor. It can be killed with SIGKILL (a crash) and started again on the same
 * database. Also: re-creating a lab's wireguard-go interface, which `lab.ts` does not offer.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

import { execa, type Result, type ResultPromise } from 'execa';

import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { waitFor, type WireGuardLab } from './lab.js';

/** The bearer token every panel started here accepts. */
export const PANEL_TOKEN = 'kernel-lab-token-0123456789abcdef';

/** Options of {@link startPanelProcess}. */
export interface PanelProcessOptions {
  /**
   * The bandwidth plugin's options (`PANEL_PLUGIN_OPTIONS.bandwidth`).
   * @default { executor: 'local', reconcile_interval_s: 5, collect_interval_s: 5 }
   */
  bandwidth?: Record<string, unknown>;
  /**
   * `LOG_LEVEL` of the panel; its output is kept and shown when a start fails.
   * @default 'warn'
   */
  logLevel?: string;
  /**
   * How long a start may take until the panel prints its URL, in milliseconds.
   * @default 30000
   */
  startTimeoutMs?: number;
  /**
   * The panel's `DATABASE_URL` (e.g. a MariaDB or PostgreSQL database that two panels share).
   * @default a SQLite file in the panel's own temporary directory
   */
  databaseUrl?: string;
  /**
   * Variables added to the panel's environment (they win over the defaults below).
   * @default { PANEL_BANDWIDTH_SECRET_KEY: <64 random hex digits, the same across restarts> }
   */
  env?: Record<string, string>;
}

/** One answer of the panel's API: status, parsed JSON body (or null) and raw text. */
export interface ApiResponse {
  status: number;
  // The tests read whatever the API answers; its shape is asserted there.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
}

/** A panel running as a child process. */
export interface PanelProcess {
  /** `http://127.0.0.1:<port>` of the current process (a restart picks a new port). */
  readonly url: string;
  /** `sqlite:/tmp/…/panel.sqlite` (or the `databaseUrl` option), the same across restarts. */
  readonly databaseUrl: string;
  /** Process id of the current process. */
  readonly pid: number | undefined;
  /** Everything the current (or last) process printed on stdout and stderr. */
  output(): string;
  /** `GET`/`POST`/`PUT`/`DELETE` with the bearer token; bodies are sent as JSON. */
  request(method: string, path: string, body?: unknown): Promise<ApiResponse>;
  get(path: string): Promise<ApiResponse>;
  post(path: string, body?: unknown): Promise<ApiResponse>;
  put(path: string, body?: unknown): Promise<ApiResponse>;
  delete(path: string): Promise<ApiResponse>;
  /** SIGKILL, as a crash would: nothing of the panel's shutdown runs. Resolves once it is gone. */
  kill(): Promise<Result>;
  /** Kills the panel if it runs, then starts it again on the same database. */
  restart(): Promise<void>;
  /** Kills the panel and removes its directory. Safe to call twice; never throws. */
  close(): Promise<void>;
}

const LISTENING = /Panel listening on (http:\/\/127\.0\.0\.1:\d+)/;

/**
 * Starts the reference panel as a child process and waits for it to print `Panel listening on …`.
 * The process is SIGKILLed and its directory removed in `t.after`, also when the test fails.
 * @example const panel = await startPanelProcess(t); const res = await panel.post('/api/networks', { … });
 */
export async function startPanelProcess(t: Pick<TestContext, 'after'>, options: PanelProcessOptions = {}): Promise<PanelProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'pbw-panel-'));
  const databaseUrl = options.databaseUrl ?? `sqlite:${join(dir, 'panel.sqlite')}`;
  const bandwidth = options.bandwidth ?? { executor: 'local', reconcile_interval_s: 5, collect_interval_s: 5 };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    PANEL_API_TOKEN: PANEL_TOKEN,
    PANEL_ADMIN_USER: 'admin',
    PANEL_ADMIN_PASSWORD: 'kernel lab admin password',
    PANEL_DEMO: '0',
    PANEL_PLUGIN_DIRS: REPO_ROOT,
    PANEL_PLUGIN_OPTIONS: JSON.stringify({ bandwidth }),
    LOG_LEVEL: options.logLevel ?? 'warn',
    // The key that encrypts the nodes' agent tokens: never the machine's default key file.
    PANEL_BANDWIDTH_SECRET_KEY: randomBytes(32).toString('hex'),
    ...options.env,
  };
  let child: ResultPromise | undefined;
  let printed = '';
  let url = '';
  let closed = false;

  const kill = async (): Promise<Result> => {
    const current = child;
    if (!current) throw new Error('the panel is not running');
    child = undefined;
    current.kill('SIGKILL');
    return current;
  };

  const start = async (): Promise<void> => {
    printed = '';
    const started = execa(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'examples/host-panel/src/main.ts')], {
      cwd: REPO_ROOT, env, extendEnv: false, reject: false, stdin: 'ignore', cleanup: true, all: true,
    });
    child = started;
    started.all?.on('data', (chunk: Buffer) => {
      printed += chunk.toString();
    });
    let exit: Result | undefined;
    void started.then((result) => {
      exit = result;
    });
    const fail = (message: string, cause?: unknown): Error => {
      started.kill('SIGKILL');
      if (child === started) child = undefined;
      return new Error(`${message}\n--- panel output ---\n${printed}`, { cause });
    };
    let outcome: { url: string } | { exit: Result };
    try {
      outcome = await waitFor(
        'the panel to print its URL',
        async () => {
          const found = LISTENING.exec(printed)?.[1];
          if (found) return { url: found };
          return exit ? { exit } : undefined;
        },
        options.startTimeoutMs ?? 30_000,
      );
    } catch (error) {
      throw fail((error as Error).message, error);
    }
    if ('exit' in outcome) throw fail(`the panel exited (${outcome.exit.signal ?? `code ${String(outcome.exit.exitCode)}`}) before listening`);
    url = outcome.url;
    // The host logs a plugin that fails to start and serves on without it: that must fail here, loudly.
    const plugins = await request('GET', '/api/plugins');
    const bandwidthPlugin = (plugins.body?.plugins as { id: string; running: boolean; error: string | null }[] | undefined)?.find((p) => p.id === 'bandwidth');
    if (!bandwidthPlugin?.running) throw fail(`the bandwidth plugin is not running: ${bandwidthPlugin?.error ?? plugins.text.slice(0, 300)}`);
  };

  const request = async (method: string, path: string, body?: unknown): Promise<ApiResponse> => {
    if (!child) throw new Error(`${method} ${path}: the panel is not running`);
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${PANEL_TOKEN}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let parsed: unknown = null;
    if ((response.headers.get('content-type') ?? '').includes('json') && text !== '') parsed = JSON.parse(text);
    return { status: response.status, body: parsed, text };
  };

  const handle: PanelProcess = {
    get url() {
      return url;
    },
    databaseUrl,
    get pid() {
      return child?.pid;
    },
    output: () => printed,
    request,
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body ?? {}),
    put: (path, body) => request('PUT', path, body ?? {}),
    delete: (path) => request('DELETE', path),
    kill,
    restart: async () => {
      if (child) await kill();
      await start();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (child) await kill().catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
  t.after(() => handle.close());
  await start();
  return handle;
}

/**
 * Deletes a lab's server wg interface (wireguard-go exits with it) and brings up a new wireguard-go
 * interface with the same name, keys, listen port, peers and addresses: a restarted tunnel with a new
 * ifindex and counters starting at zero. The peers keep their sessions until the server, which knows
 * their endpoints, next sends to them and so starts a new handshake.
 */
export async function recreateWireGuardInterface(wg: WireGuardLab): Promise<void> {
  const { lab, ns, ifname } = wg;
  const config = (await lab.executor.run(['wg', 'showconf', ifname], { netns: ns })).stdout;
  await lab.ip(ns, ['link', 'del', 'dev', ifname]);
  // wireguard-go exits when its tun goes and removes its UAPI socket; a new one cannot start before.
  await waitFor(`wireguard-go of ${ifname} to exit`, async () => !existsSync(`/var/run/wireguard/${ifname}.sock`));
  lab.spawn(ns, ['wireguard-go', '-f', ifname]);
  await waitFor(`wireguard-go interface ${ifname}`, async () => (await lab.ip(ns, ['link', 'show', 'dev', ifname]).catch(() => '')) !== '');
  await lab.executor.run(['wg', 'setconf', ifname, await lab.secretFile(config)], { netns: ns });
  await lab.ip(ns, ['addr', 'add', '10.66.0.1/24', 'dev', ifname]);
  await lab.ip(ns, ['addr', 'add', '10.67.0.1/24', 'dev', ifname]);
  await lab.ip(ns, ['addr', 'add', 'fd00:66::1/64', 'dev', ifname, 'nodad']);
  await lab.ip(ns, ['link', 'set', ifname, 'up']);
}
