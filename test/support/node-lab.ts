/**
 * The nodes lab of the kernel tests (issue 10): three nodes, each a network namespace running its
 * own agent PROCESS (`ip netns exec <ns> node --import tsx src/cli.ts agent …`), reachable from the
 * root namespace (where the panel runs) over its own veth pair with 10.251.x.y addresses:
 *
 * ```
 * root ns (panel) ── veth 10.251.X.(4i+1)/30 ──► node ns 10.251.X.(4i+2):9731 (agent)
 *   gw-a: wireguard-go interface + one namespace per peer   (createWireGuardLab: its server ns IS the node)
 *   gw-b: the same, a second gateway
 *   hv:   one veth pair per VM: the "tap" end in the node ns, the guest end in the VM's own ns
 * ```
 *
 * The agents shape their own namespace's interfaces, so for them (and for the panel's networks and
 * VMs) the interfaces have no netns. Agents are ended by the PID this lab started, never by name.
 * Everything (agents, wireguard-go, namespaces, files) goes in `close()`, also after a failure.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';

import { execa, type Result, type ResultPromise } from 'execa';

import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { createWireGuardLab, Lab, waitFor, type WireGuardLab } from './lab.js';

/** The port every agent listens on (each in its own namespace). */
export const AGENT_PORT = 9731;
const LISTENING = /agent \S+ listening on (https?:\/\/\S+)/;

/** Options of an agent process. */
export interface AgentProcessOptions {
  /** `--collect-interval` in seconds. @default 0.5 */
  collectIntervalS?: number;
  /**
   * `--reconcile-interval` in seconds. Long by default: caps that come back after a reboot must
   * come from the reconcile the agent runs at start, not from a periodic one. @default 60
   */
  reconcileIntervalS?: number;
  /** Serve HTTPS with a self-signed certificate made for the node's address. @default false */
  tls?: boolean;
}

/** Byte counters of one WireGuard peer as `wg show dump` prints them (the server's view). */
export interface PeerBytes {
  /** transfer-rx: what the peer sent (its up). */
  rx: bigint;
  /** transfer-tx: what the server sent to it (its down). */
  tx: bigint;
}

/** One answer of an agent: status, parsed JSON body (or null) and raw text. */
export interface AgentAnswer {
  status: number;
  // The tests read whatever the agent answers; its shape is asserted there.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
}

/**
 * One agent process in a node's namespace. Its state file stays across restarts (a restart is the
 * same agent, as after a crash or a reboot).
 */
export class AgentProcess {
  private child: ResultPromise | undefined;
  private printed = '';
  private previous = '';
  /** `http(s)://<address>:9731` */
  readonly url: string;
  /** When the current process was spawned (epoch ms). */
  spawnedAt = 0;
  /** SHA-256 fingerprint of the agent's certificate (TLS only), as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string | null = null;

  constructor(
    readonly node: LabNode,
    readonly token: string,
    private readonly tokenFile: string,
    readonly statePath: string,
    private readonly options: Required<Omit<AgentProcessOptions, 'tls'>> & { tls: { cert: string; key: string } | null },
  ) {
    this.url = `${options.tls ? 'https' : 'http'}://${node.address}:${AGENT_PORT}`;
  }

  /** Process id of the running agent (undefined when it is not running). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What the current process printed (and, after a restart, what the one before printed). */
  output(): string {
    return `${this.previous}${this.previous ? '--- restarted ---\n' : ''}${this.printed}`;
  }

  /** Spawns the agent and waits until it prints that it listens. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.running) throw new Error(`agent ${this.node.name} is already running (pid ${this.pid})`);
    this.previous += this.printed;
    this.printed = '';
    const { collectIntervalS, reconcileIntervalS, tls } = this.options;
    const argv = [
      'netns', 'exec', this.node.ns, process.execPath, '--import', 'tsx', join(REPO_ROOT, 'src/cli.ts'), 'agent',
      '--node', this.node.name, '--listen', `${this.node.address}:${AGENT_PORT}`, '--token-file', this.tokenFile, '--state', this.statePath,
      '--collect-interval', String(collectIntervalS), '--reconcile-interval', String(reconcileIntervalS), '--ledger-days', '2', '--executor', 'local',
      ...(tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []),
    ];
    this.spawnedAt = Date.now();
    // `ip netns exec` execs the command in place (no fork): the PID is the agent's own.
    const child = execa('ip', argv, {
      cwd: REPO_ROOT, reject: false, stdin: 'ignore', all: true, cleanup: true, timeout: 20 * 60_000, killSignal: 'SIGKILL',
    });
    this.child = child;
    child.all?.on('data', (chunk: Buffer) => {
      this.printed += chunk.toString();
    });
    let exited: Result | undefined;
    void child.then((result) => {
      exited = result;
    });
    try {
      await waitFor(`agent ${this.node.name} to listen`, async () => {
        if (exited) throw new Error(`agent ${this.node.name} exited (${exited.signal ?? `code ${String(exited.exitCode)}`}) before listening`);
        return LISTENING.test(this.printed);
      }, timeoutMs);
    } catch (error) {
      if (this.child === child) await this.kill().catch(() => undefined);
      throw new Error(`${(error as Error).message}\n--- agent ${this.node.name} output ---\n${this.printed}`, { cause: error });
    }
  }

  /** Sends `signal` to the agent's PID and waits until it is gone. SIGKILL is a crash: nothing of its shutdown runs. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<Result> {
    const child = this.child;
    if (!child) throw new Error(`agent ${this.node.name} is not running`);
    this.child = undefined;
    child.kill(signal);
    return child;
  }

  /** SIGTERM (the agent closes its server and state), SIGKILL after 5 s. Never throws. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await child.catch(() => undefined);
    clearTimeout(timer);
  }

  /** Kills the agent (SIGKILL) if it runs, and starts it again on the same state file. */
  async restart(): Promise<void> {
    if (this.child) await this.kill();
    await this.start();
  }

  /**
   * One request to the agent's API with `token` (default: the right one; null: no Authorization
   * header). A string `body` is sent as is, anything else as JSON. An HTTPS agent's certificate is
   * verified against itself (it is self-signed for the node's address).
   */
  async request(method: string, path: string, options: { token?: string | null; body?: unknown; contentType?: string; headers?: Record<string, string> } = {}): Promise<AgentAnswer> {
    const token = options.token === undefined ? this.token : options.token;
    const headers: Record<string, string> = { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...options.headers };
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] = options.contentType ?? 'application/json';
    }
    const tls = this.options.tls;
    const ca = tls ? await readFile(tls.cert) : undefined;
    const { status, type, text } = await new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
      const req = (tls ? httpsRequest : httpRequest)(`${this.url}${path}`, { method, headers, timeout: 15_000, ...(ca ? { ca } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} on ${this.node.name}: no answer within 15 s`)));
      req.on('error', reject);
      req.end(body);
    });
    let parsed: unknown = null;
    if (type.includes('json') && text !== '') parsed = JSON.parse(text);
    return { status, body: parsed, text };
  }

  /**
   * When the running agent's code started (epoch ms): after node loaded its modules, when it
   * opened its state and built its server (from `panel_bandwidth_agent_uptime_seconds`).
   */
  async codeStartedAt(): Promise<number> {
    const before = Date.now();
    const uptime = (await this.metrics()).get('panel_bandwidth_agent_uptime_seconds');
    if (uptime === undefined) throw new Error(`agent ${this.node.name}: no uptime in /metrics`);
    return Math.round((before + Date.now()) / 2 - uptime * 1000);
  }

  /** The agent's Prometheus metrics as name → value (series without labels). */
  async metrics(): Promise<Map<string, number>> {
    const { status, text } = await this.request('GET', '/metrics');
    if (status !== 200) throw new Error(`GET /metrics: ${status} ${text.slice(0, 200)}`);
    const values = new Map<string, number>();
    for (const line of text.split('\n')) {
      const match = /^([a-z_]+) (\S+)$/.exec(line);
      if (match) values.set(match[1]!, Number(match[2]));
    }
    return values;
  }
}

/** A VM of the VM node: a veth pair whose "tap" end is in the node namespace. */
export interface LabVm {
  name: string;
  /** The host side ("tap") in the node namespace: what the agent shapes and counts. */
  tap: string;
  /** The VM's own namespace and its end of the pair. */
  ns: string;
  guestIf: string;
  /** 10.77.<i>.1 on the tap, 10.77.<i>.2 in the VM. */
  hostAddress: string;
  guestAddress: string;
}

/** One node of the lab: a namespace with its agent, reachable from the root namespace. */
export interface LabNode {
  /** The node's name (`--node`, and what networks and VMs refer to). */
  name: string;
  kind: 'wireguard' | 'vm';
  /** The Lab that owns this node's namespaces. */
  lab: Lab;
  /** The node's namespace (where its agent runs). */
  ns: string;
  /** The node's address on its link to the root namespace (the agent listens on it). */
  address: string;
  /** The root namespace's end of the link, and the node's. */
  rootIf: string;
  nodeIf: string;
  /** WireGuard nodes: the gateway's interface and its peers (its `ns` is the node's). */
  wg: WireGuardLab | null;
  /** The VM node's VMs. */
  vms: LabVm[];
  agent: AgentProcess;
}

/** Options of {@link createNodeLab}. */
export interface NodeLabOptions {
  /** Peers of each WireGuard node (tunnel addresses 10.66.0.11, .12, …). @default 2 */
  peersPerGateway?: number;
  /** VMs of the VM node. @default 2 */
  vms?: number;
  agent?: AgentProcessOptions;
  /** Agents of these nodes serve HTTPS (self-signed, see {@link AgentProcess.fingerprint}). @default [] */
  tlsNodes?: string[];
}

/** The three-node lab. */
export interface NodeLab {
  gwA: LabNode;
  gwB: LabNode;
  hv: LabNode;
  nodes: LabNode[];
  /** The 10.251.X.0/24 block of this lab's links. */
  block: string;
  /** Makes a node's link go down (its end in the node's namespace): packets between it and the panel vanish. */
  cutLink(node: LabNode): Promise<void>;
  restoreLink(node: LabNode): Promise<void>;
  /**
   * "Reboots" a node as far as tc can tell: SIGKILLs its agent, deletes the root and ingress
   * qdiscs of every interface in its namespace and every IFB device, then starts the agent again
   * on its state file. Resolves when the agent listens; `spawnedAt` tells when it was started.
   */
  reboot(node: LabNode): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_AGENT: Required<Omit<AgentProcessOptions, 'tls'>> = { collectIntervalS: 0.5, reconcileIntervalS: 60 };

/** A /24 block 10.251.X.0 no address of the root namespace is in yet (other labs may run beside). */
async function freeBlock(lab: Lab): Promise<number> {
  const taken = (await lab.executor.run(['ip', '-4', '-o', 'addr', 'show'])).stdout;
  for (let attempt = 0; attempt < 50; attempt++) {
    const x = randomBytes(1)[0]!;
    if (!taken.includes(`10.251.${x}.`)) return x;
  }
  throw new Error('no free 10.251.X.0/24 block in the root namespace');
}

/** `ip link add <root> type veth peer name <node> netns <ns>` with one /30 between them, both ends up. */
async function linkToRoot(lab: Lab, ns: string, rootIf: string, nodeIf: string, rootAddress: string, nodeAddress: string): Promise<void> {
  await lab.executor.run(['ip', 'link', 'add', rootIf, 'type', 'veth', 'peer', 'name', nodeIf, 'netns', ns]);
  await lab.executor.run(['ip', 'addr', 'add', `${rootAddress}/30`, 'dev', rootIf]);
  await lab.executor.run(['ip', 'link', 'set', rootIf, 'up']);
  await lab.ip(ns, ['addr', 'add', `${nodeAddress}/30`, 'dev', nodeIf]);
  await lab.ip(ns, ['link', 'set', nodeIf, 'up']);
}

/** A self-signed certificate for `address` (openssl, EC P-256), in the lab's private files. */
async function selfSigned(lab: Lab, name: string, address: string): Promise<{ cert: string; key: string; fingerprint: string }> {
  const key = await lab.secretFile('');
  const cert = `${key}.crt`;
  lab.removeOnClose(cert);
  await execa('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', `/CN=${name}`, '-addext', `subjectAltName=IP:${address}`,
  ], { timeout: 15_000 });
  const fingerprint = new X509Certificate(await readFile(cert)).fingerprint256;
  return { cert, key, fingerprint };
}

/** Deletes every root and ingress qdisc and every IFB device in a namespace (what a reboot leaves). */
export async function flushQdiscs(lab: Lab, ns: string): Promise<void> {
  const links = JSON.parse(await lab.ip(ns, ['-j', '-d', 'link', 'show'])) as { ifname: string; linkinfo?: { info_kind?: string } }[];
  for (const link of links) {
    if (link.ifname === 'lo') continue;
    if (link.linkinfo?.info_kind === 'ifb') {
      await lab.ip(ns, ['link', 'del', 'dev', link.ifname]);
      continue;
    }
    // "Cannot delete qdisc with handle of zero" / "Invalid handle" when there is none: fine.
    await lab.tc(ns, ['qdisc', 'del', 'dev', link.ifname, 'root']).catch(() => undefined);
    await lab.tc(ns, ['qdisc', 'del', 'dev', link.ifname, 'ingress']).catch(() => undefined);
  }
}

/**
 * Builds the three nodes (in parallel) and starts their agents.
 * @example const nodes = await createNodeLab(); t.after(() => nodes.close());
 */
export async function createNodeLab(options: NodeLabOptions = {}): Promise<NodeLab> {
  const labs = [new Lab(), new Lab(), new Lab()] as const;
  const agents: AgentProcess[] = [];
  const close = async () => {
    await Promise.all(agents.map((agent) => agent.stop()));
    for (const lab of labs) await lab.close();
  };
  try {
    const x = await freeBlock(labs[0]);
    const agentOptions = { ...DEFAULT_AGENT, ...options.agent };
    const peers = options.peersPerGateway ?? 2;
    const build = async (lab: Lab, index: number, name: string, kind: 'wireguard' | 'vm'): Promise<LabNode> => {
      let ns: string;
      let wg: WireGuardLab | null = null;
      const vms: LabVm[] = [];
      if (kind === 'wireguard') {
        wg = await createWireGuardLab(lab, Array.from({ length: peers }, (_, i) => ({ addresses: [`10.66.0.${11 + i}`] })));
        ns = wg.ns;
      } else {
        ns = await lab.namespace('hv');
        for (let i = 1; i <= (options.vms ?? 2); i++) {
          const vmNs = await lab.namespace(`vm${i}`);
          const vm: LabVm = { name: `vm-${i}`, tap: `pt${lab.id}v${i}`, ns: vmNs, guestIf: `pg${lab.id}v${i}`, hostAddress: `10.77.${i}.1`, guestAddress: `10.77.${i}.2` };
          await lab.veth({ ns, name: vm.tap, addresses: [`${vm.hostAddress}/24`] }, { ns: vmNs, name: vm.guestIf, addresses: [`${vm.guestAddress}/24`] });
          // No IPv6 on the pair: router solicitations and MLD reports would only make idle readings wait.
          await lab.executor.run(['sysctl', '-qw', `net.ipv6.conf.${vm.tap}.disable_ipv6=1`], { netns: ns });
          await lab.executor.run(['sysctl', '-qw', `net.ipv6.conf.${vm.guestIf}.disable_ipv6=1`], { netns: vmNs });
          vms.push(vm);
        }
      }
      const address = `10.251.${x}.${4 * index + 2}`;
      const rootIf = `pn${lab.id}r`;
      const nodeIf = `pn${lab.id}n`;
      await linkToRoot(lab, ns, rootIf, nodeIf, `10.251.${x}.${4 * index + 1}`, address);
      const token = randomBytes(24).toString('hex');
      const tokenFile = await lab.secretFile(token);
      const statePath = join(tokenFile, '..', 'agent.sqlite');
      const node = { name, kind, lab, ns, address, rootIf, nodeIf, wg, vms } as LabNode;
      let tls: { cert: string; key: string } | null = null;
      let fingerprint: string | null = null;
      if (options.tlsNodes?.includes(name)) ({ fingerprint, ...tls } = await selfSigned(lab, name, address));
      node.agent = new AgentProcess(node, token, tokenFile, statePath, { ...agentOptions, tls });
      node.agent.fingerprint = fingerprint;
      agents.push(node.agent);
      await node.agent.start();
      return node;
    };
    const [gwA, gwB, hv] = await Promise.all([
      build(labs[0], 0, 'gw-a', 'wireguard'),
      build(labs[1], 1, 'gw-b', 'wireguard'),
      build(labs[2], 2, 'hv', 'vm'),
    ]);
    return {
      gwA, gwB, hv,
      nodes: [gwA, gwB, hv],
      block: `10.251.${x}.0/24`,
      cutLink: async (node) => {
        await node.lab.ip(node.ns, ['link', 'set', node.nodeIf, 'down']);
      },
      restoreLink: async (node) => {
        await node.lab.ip(node.ns, ['link', 'set', node.nodeIf, 'up']);
        // The address's route comes back with the link; wait until the root side has carrier again.
        await waitFor(`${node.rootIf} to have carrier`, async () => !(await node.lab.executor.run(['ip', '-o', 'link', 'show', 'dev', node.rootIf])).stdout.includes('NO-CARRIER'));
      },
      reboot: async (node) => {
        if (node.agent.running) await node.agent.kill();
        await flushQdiscs(node.lab, node.ns);
        await node.agent.start();
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** `wg show <if> dump` of a gateway: its peers' counters by public key. */
export async function wgDump(node: LabNode): Promise<Map<string, PeerBytes>> {
  if (!node.wg) throw new Error(`node ${node.name} has no WireGuard interface`);
  const { stdout } = await node.lab.executor.run(['wg', 'show', node.wg.ifname, 'dump'], { netns: node.ns });
  const peers = new Map<string, PeerBytes>();
  for (const line of stdout.trim().split('\n').slice(1)) {
    const fields = line.split('\t');
    peers.set(fields[0]!, { rx: BigInt(fields[5]!), tx: BigInt(fields[6]!) });
  }
  return peers;
}

const sameDump = (a: Map<string, PeerBytes>, b: Map<string, PeerBytes>): boolean =>
  a.size === b.size && [...a].every(([key, bytes]) => b.get(key)?.rx === bytes.rx && b.get(key)?.tx === bytes.tx);

/** A moment when the agent's collector read exactly `reading` (see {@link idlePoint}). */
export interface IdlePoint {
  /** The peers' counters the confirmed tick read. */
  reading: Map<string, PeerBytes>;
  /**
   * When that tick ended (epoch ms, the agent's clock, which is this machine's): every ledger entry
   * with `periodEnd <= tickEnd` counts bytes up to `reading`, every later one bytes after it.
   */
  tickEnd: number;
  /** The agent's ledger head right after that tick. */
  head: number;
}

/**
 * Waits for a collector tick of the node's agent that read exactly the counters `wg show dump`
 * shows before and after it: read the dump, wait for a tick that started after that read (the
 * agent's /metrics: last tick end − its duration), read the dump again; equal readings mean the
 * tick read them. A packet in between (a keepalive, a handshake) makes it try again.
 */
export async function idlePoint(node: LabNode, timeoutMs = 30_000): Promise<IdlePoint> {
  return waitFor(`an idle collector tick on ${node.name}`, async () => {
    const before = await wgDump(node);
    const readAt = Date.now();
    const tick = await waitFor(`a tick of ${node.name} after ${readAt}`, async () => {
      const metrics = await node.agent.metrics();
      const end = Math.round((metrics.get('panel_bandwidth_agent_collect_last_timestamp_seconds') ?? 0) * 1000);
      const duration = Math.round((metrics.get('panel_bandwidth_agent_collect_last_duration_seconds') ?? 0) * 1000);
      const success = Math.round((metrics.get('panel_bandwidth_agent_collect_last_success_timestamp_seconds') ?? 0) * 1000);
      // One millisecond of slack for the rounding of the duration.
      return end - duration - 1 > readAt && success === end ? { end } : undefined;
    }, 10_000, 50);
    const head = Number((await node.agent.request('GET', '/v1/health')).body.ledgerHead);
    const after = await wgDump(node);
    return sameDump(before, after) ? { reading: after, tickEnd: tick.end, head } : undefined;
  }, timeoutMs, 0);
}
