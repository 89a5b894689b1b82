/**
 * A reference panel whose node registry routes run beside the bandwidth plugin, in a second plugin
 * (`nodes-harness`), with a real {@link ConnectionManager} whose links are fakes the test steers:
 * an agent is up (answers health with a version, capabilities and a ledger head), down (refused),
 * or takes another token. The routes are mounted at their own paths, so what is tested here is the
 * registry, the API and the page, whatever the bandwidth plugin itself mounts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Host, PluginInstance } from '../../src/plugin-api.js';
import { NodeRefusedError, NodeUnreachableError, type LocalLink, type NodeEvent, type NodeLink } from '../../src/nodes/link.js';
import { PROTOCOL_VERSION, type LedgerPage, type NodeHealth } from '../../src/nodes/protocol.js';
import { ConnectionManager, type AgentRecord } from '../../src/nodes/panel/connections.js';
import { AgentRegistry } from '../../src/nodes/panel/registry.js';
import { SecretBox } from '../../src/nodes/panel/secret.js';
import { NodeAdmin } from '../../src/nodes/panel/node-admin.js';
import { mountAgentsApi } from '../../src/routes/api-agents.js';
import { mountNodesPage } from '../../src/routes/admin-nodes.js';
import { routeErrors } from '../../src/routes/errors.js';
import { HERMETIC_PLUGIN_OPTIONS, startPanel, type TestPanel } from './panel.js';

/** Where the harness mounts the agents API and the Nodes page. */
export const AGENTS_API = '/api/harness/agents';
export const NODES_PAGE = '/admin/harness/nodes';

/** How a fake agent answers. */
export interface FakeAgent {
  /** false: every call is refused at the socket (`unreachable`). @default true */
  up?: boolean;
  /** The token it accepts (another one is refused with 401 on its first authenticated call). */
  token: string;
  version?: string;
  ledgerHead?: number;
  capabilities?: Record<string, unknown>;
}

const health = (node: string, agent: FakeAgent): NodeHealth => ({
  node, version: agent.version ?? '0.1.0', protocol: PROTOCOL_VERSION, uptimeS: 1, capabilities: agent.capabilities ?? { leaf: 'fq_codel' },
  ledgerId: `ledger-${node}`, ledgerHead: agent.ledgerHead ?? 0, mode: 'recording',
});

/** Follows until aborted: a connected node stays connected. */
function followUntilAborted(_onEvent: (event: NodeEvent) => void, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

function fakeLink(record: { name: string; token: string }, agents: Map<string, FakeAgent>, kind: 'local' | 'remote'): NodeLink {
  const agent = () => {
    const found = agents.get(record.name);
    if (!found || found.up === false) throw new NodeUnreachableError(record.name, `connect ECONNREFUSED (fake agent ${record.name} is down)`);
    return found;
  };
  const refuse = () => Promise.reject(new Error('not used by these tests'));
  return {
    node: record.name,
    kind,
    health: async () => health(record.name, agent()),
    ledger: async (after: number): Promise<LedgerPage> => {
      const found = agent();
      if (kind === 'remote' && found.token !== record.token) throw new NodeRefusedError(record.name, 401, 'wrong token');
      return { node: record.name, ledgerId: `ledger-${record.name}`, head: found.ledgerHead ?? 0, oldest: null, entries: after < 0 ? [] : [] };
    },
    follow: followUntilAborted,
    putInterface: refuse,
    deleteInterface: refuse,
    interfaces: async () => [],
    tickRates: async () => ({}),
    liveRates: async () => ({}),
  };
}

export interface NodesPanel extends TestPanel {
  /** The fake agents by node name; change an entry to change how that node answers. `local` is the panel's own. */
  agents: Map<string, FakeAgent>;
  /** The key file the registry encrypts tokens with. */
  keyFile: string;
  /** The harness's manager (set once the harness plugin has registered). */
  manager(): ConnectionManager;
}

/** A harness plugin directory: its entry hands `register` to the function in its options. */
function harnessPluginDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-nodes-harness-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'plugin.json'), JSON.stringify({
    id: 'nodes-harness', name: 'Nodes harness', version: '0.0.1', entry: 'index.mjs', hostApi: '^1.0.0', hooks: [], adminPages: [], settings: {},
  }));
  writeFileSync(join(dir, 'index.mjs'), 'export async function register(host, options) { return options.register(host); }\n');
  return dir;
}

/**
 * Starts a reference panel with the bandwidth plugin and the nodes harness. Agent tokens are
 * encrypted with a key file in a temporary directory (created on first use).
 * @example const panel = await startNodesPanel(t); panel.agents.set('hv-01', { token }); await panel.api.post(AGENTS_API).send({ … });
 */
export async function startNodesPanel(t: TestContext, options: { now?: () => number } = {}): Promise<NodesPanel> {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-nodes-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'keys', 'secret.key');
  const agents = new Map<string, FakeAgent>([['local', { token: '' }]]);
  let manager: ConnectionManager | undefined;

  const register = async (host: Host): Promise<PluginInstance> => {
    const registry = new AgentRegistry({ db: host.db, secrets: new SecretBox({ keyFile, env: {} }), logger: host.logger });
    const running = new ConnectionManager({
      local: fakeLink({ name: 'local', token: '' }, agents, 'local') as LocalLink,
      logger: host.logger,
      backoff: { initialMs: 10, maxMs: 50 },
      linkFor: (record: AgentRecord) => fakeLink(record, agents, 'remote'),
      onConnected: async () => {},
      onLedger: async () => {},
      ...(options.now ? { now: options.now } : {}),
    });
    manager = running;
    const nodes = new NodeAdmin({
      db: host.db, registry, connections: running, logger: host.logger,
      onChange: async () => running.setAgents(await registry.records()),
      ...(options.now ? { now: options.now } : {}),
    });
    running.setAgents(await registry.records());
    mountAgentsApi(host, nodes, { basePath: AGENTS_API, ...(options.now ? { now: options.now } : {}) });
    mountNodesPage(host, nodes, { path: NODES_PAGE, minRole: 'admin', overviewPath: '/admin/bandwidth' });
    host.router.use(routeErrors);
    return { close: () => running.close() };
  };

  const panel = await startPanel(t, {
    pluginDirs: [harnessPluginDir(t)],
    pluginOptions: {
      bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, secret_key_file: keyFile },
      'nodes-harness': { register },
    },
    ...(options.now ? { now: options.now } : {}),
  });
  return {
    ...panel,
    agents,
    keyFile,
    manager: () => {
      if (!manager) throw new Error('the nodes harness did not register');
      return manager;
    },
  };
}
