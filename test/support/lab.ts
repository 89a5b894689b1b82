/**
 * Namespace lab for the kernel tests and the benchmark: network namespaces joined by veth pairs,
 * a real WireGuard tunnel (wireguard-go, userspace: this kernel has no WireGuard module), iperf3.
 * Everything a lab creates is recorded and removed by `close()`, also after a failure. Only 10.x and
 * fd00:: addresses are used, and no namespace has a route anywhere else.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

import { execa, type ResultPromise } from 'execa';

import { LocalExecutor } from '../../src/shaping/local-executor.js';

/** True when `program` is on PATH. */
export function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, program)));
}

/** Whether this machine can run the kernel lab, and if not, why (one line). */
export function labRequirements(): { available: boolean; reason: string } {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  for (const program of ['ip', 'tc', 'wireguard-go', 'wg', 'iperf3', 'ss']) if (!onPath(program)) missing.push(program);
  return { available: missing.length === 0, reason: `kernel lab needs ${missing.join(', ')}` };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every `intervalMs` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 5000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    await sleep(intervalMs);
  }
}

/** Base of every lab: namespaces, background processes and files, all released by `close()`. */
export class Lab {
  /** Short random id used in every name this lab creates. */
  readonly id = randomBytes(3).toString('hex');
  readonly executor = new LocalExecutor({ timeoutMs: 15_000 });
  private readonly namespaces: string[] = [];
  private readonly processes: ResultPromise[] = [];
  private readonly files: string[] = [];
  private closed = false;

  /** Creates a namespace `pbw-<id>-<suffix>` with its loopback up. */
  async namespace(suffix: string): Promise<string> {
    const name = `pbw-${this.id}-${suffix}`;
    await this.executor.run(['ip', 'netns', 'add', name]);
    this.namespaces.push(name);
    await this.ip(name, ['link', 'set', 'lo', 'up']);
    return name;
  }

  /** `ip -n <ns> …` */
  async ip(netns: string, args: string[]): Promise<string> {
    return (await this.executor.run(['ip', ...args], { netns })).stdout;
  }

  /** `tc -n <ns> …` */
  async tc(netns: string, args: string[]): Promise<string> {
    return (await this.executor.run(['tc', ...args], { netns })).stdout;
  }

  /** A veth pair between two namespaces, both ends up, with the given addresses (CIDR). */
  async veth(a: { ns: string; name: string; addresses: string[] }, b: { ns: string; name: string; addresses: string[] }): Promise<void> {
    await this.ip(a.ns, ['link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns]);
    for (const end of [a, b]) {
      for (const address of end.addresses) {
        await this.ip(end.ns, ['addr', 'add', address, 'dev', end.name, ...(address.includes(':') ? ['nodad'] : [])]);
      }
      await this.ip(end.ns, ['link', 'set', end.name, 'up']);
    }
  }

  /** Starts a long-running command in a namespace; it is killed by `close()`. */
  spawn(netns: string, argv: string[]): ResultPromise {
    const child = execa('ip', ['netns', 'exec', netns, ...argv], { reject: false, stdin: 'ignore', buffer: true, cleanup: true });
    this.processes.push(child);
    return child;
  }

  /** A private temporary file (mode 600), removed by `close()`. */
  async secretFile(content: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `pbw-${this.id}-`));
    const file = join(dir, 'key');
    await writeFile(file, content, { mode: 0o600 });
    await chmod(file, 0o600);
    this.files.push(dir);
    return file;
  }

  /** Registers a path to delete on close (e.g. a wireguard-go UAPI socket). */
  removeOnClose(path: string): void {
    this.files.push(path);
  }

  /** Kills processes, deletes namespaces and files. Safe to call twice; never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const child of this.processes) child.kill('SIGTERM');
    await Promise.race([Promise.allSettled(this.processes), sleep(2000)]);
    for (const child of this.processes) if (child.exitCode === null) child.kill('SIGKILL');
    for (const ns of this.namespaces.reverse()) await this.executor.run(['ip', 'netns', 'del', ns]).catch(() => undefined);
    for (const path of this.files) await rm(path, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** One WireGuard peer in its own namespace. */
export interface LabPeer {
  ns: string;
  /** The peer's wg interface in its namespace. */
  ifname: string;
  /** Addresses inside the tunnel (host addresses, no prefix) — also the server's allowed IPs for it. */
  addresses: string[];
  publicKey: string;
}

/** Options of a peer of {@link createWireGuardLab}. */
export interface LabPeerOptions {
  /** Tunnel addresses (no prefix), IPv4 `10.66.x.y` / `10.67.x.y` or IPv6 `fd00:66::x`. */
  addresses: string[];
}

/** A WireGuard server interface (wireguard-go) with peers in their own namespaces. */
export interface WireGuardLab {
  lab: Lab;
  /** Server namespace. */
  ns: string;
  /** Server wg interface (unique across namespaces: wireguard-go's UAPI sockets are global). */
  ifname: string;
  peers: LabPeer[];
}

async function startWireguardGo(lab: Lab, ns: string, name: string): Promise<void> {
  lab.removeOnClose(`/var/run/wireguard/${name}.sock`);
  lab.spawn(ns, ['wireguard-go', '-f', name]);
  await waitFor(`wireguard-go interface ${name}`, async () => (await lab.ip(ns, ['link', 'show', 'dev', name]).catch(() => '')) !== '');
}

async function keyPair(): Promise<{ privateKey: string; publicKey: string }> {
  const privateKey = (await execa('wg', ['genkey'])).stdout.trim();
  const publicKey = (await execa('wg', ['pubkey'], { input: privateKey })).stdout.trim();
  return { privateKey, publicKey };
}

/**
 * Builds: a server namespace with a wireguard-go interface (10.66.0.1/24, fd00:66::1/64), and one
 * namespace per peer, each joined to the server by its own veth underlay (10.250.<i>.0/30) and running
 * its own wireguard-go interface with the given tunnel addresses.
 */
export async function createWireGuardLab(lab: Lab, peerOptions: LabPeerOptions[]): Promise<WireGuardLab> {
  const ns = await lab.namespace('srv');
  const ifname = `pw${lab.id}s`;
  const server = await keyPair();
  await startWireguardGo(lab, ns, ifname);
  const serverKey = await lab.secretFile(server.privateKey);
  await lab.executor.run(['wg', 'set', ifname, 'private-key', serverKey, 'listen-port', '51820'], { netns: ns });
  await lab.ip(ns, ['addr', 'add', '10.66.0.1/24', 'dev', ifname]);
  await lab.ip(ns, ['addr', 'add', '10.67.0.1/24', 'dev', ifname]);
  await lab.ip(ns, ['addr', 'add', 'fd00:66::1/64', 'dev', ifname, 'nodad']);
  await lab.ip(ns, ['link', 'set', ifname, 'up']);

  const peers: LabPeer[] = [];
  for (const [index, options] of peerOptions.entries()) {
    const i = index + 1;
    const peerNs = await lab.namespace(`p${i}`);
    await lab.veth(
      { ns, name: `pu${lab.id}h${i}`, addresses: [`10.250.${i}.1/30`] },
      { ns: peerNs, name: `pu${lab.id}p${i}`, addresses: [`10.250.${i}.2/30`] },
    );
    const peerIf = `pw${lab.id}p${i}`;
    const keys = await keyPair();
    await startWireguardGo(lab, peerNs, peerIf);
    const peerKey = await lab.secretFile(keys.privateKey);
    await lab.executor.run(
      [
        'wg', 'set', peerIf, 'private-key', peerKey,
        'peer', server.publicKey, 'endpoint', `10.250.${i}.1:51820`, 'allowed-ips', '10.66.0.0/24,10.67.0.0/24,fd00:66::/64', 'persistent-keepalive', '25',
      ],
      { netns: peerNs },
    );
    for (const address of options.addresses) {
      await lab.ip(peerNs, ['addr', 'add', address.includes(':') ? `${address}/128` : `${address}/32`, 'dev', peerIf, ...(address.includes(':') ? ['nodad'] : [])]);
    }
    await lab.ip(peerNs, ['link', 'set', peerIf, 'up']);
    await lab.ip(peerNs, ['route', 'add', '10.66.0.0/24', 'dev', peerIf]);
    await lab.ip(peerNs, ['route', 'add', '10.67.0.0/24', 'dev', peerIf]);
    await lab.ip(peerNs, ['-6', 'route', 'add', 'fd00:66::/64', 'dev', peerIf]);
    const allowed = options.addresses.map((a) => (a.includes(':') ? `${a}/128` : `${a}/32`)).join(',');
    await lab.executor.run(['wg', 'set', ifname, 'peer', keys.publicKey, 'allowed-ips', allowed], { netns: ns });
    peers.push({ ns: peerNs, ifname: peerIf, addresses: options.addresses, publicKey: keys.publicKey });
  }
  return { lab, ns, ifname, peers };
}

/** Result of one iperf3 transfer, measured at the receiver. */
export interface IperfResult {
  bitsPerSecond: number;
  bytes: number;
}

let nextPort = 5300;

/** One interval report of an iperf3 transfer, at the receiver, in seconds from the start of the test. */
export interface IperfInterval {
  start: number;
  end: number;
  bytes: number;
  bitsPerSecond: number;
}

/** An iperf3 transfer with the receiver's interval reports (see {@link iperfReport}). */
export interface IperfReport extends IperfResult {
  /** Receiver-side reports, one per `intervalSeconds`, in order. */
  intervals: IperfInterval[];
  /** `Date.now()` just before the client started: lines up the intervals of transfers run side by side. */
  startedAt: number;
}

/** Options of {@link iperf} and {@link iperfReport}. */
export interface IperfOptions {
  serverNs: string;
  clientNs: string;
  target: string;
  seconds?: number;
  omitSeconds?: number;
  reverse?: boolean;
  mss?: number;
  udp?: { mbps: number; length: number };
}

/**
 * One transfer with iperf3 (TCP unless `udp`): a one-off server in `serverNs` (listening on every address),
 * a client in `clientNs` connecting to `target`. `reverse` makes the server send (iperf3 -R).
 * Goodput is what the receiver got, after `omitSeconds` of slow start. `mss` sets the TCP maximum
 * segment size (iperf3 -M), for flows of smaller packets; `udp` sends UDP datagrams of `length`
 * bytes at `mbps` instead of TCP (iperf3 -u -b -l), a load that does not back off.
 */
export async function iperf(lab: Lab, options: IperfOptions): Promise<IperfResult> {
  const { bitsPerSecond, bytes } = await iperfReport(lab, options);
  return { bitsPerSecond, bytes };
}

interface IperfJsonInterval {
  sum?: { start?: number; end?: number; bytes?: number; bits_per_second?: number; omitted?: boolean };
}

/**
 * Like {@link iperf}, with the receiver's reports every `intervalSeconds` (iperf3 -i): the client's
 * own when it receives (`reverse`), else the server's (--get-server-output). A rate that changes
 * during the transfer (a burst, a flow joining or leaving) is read from these, not from the summary.
 */
export async function iperfReport(lab: Lab, options: IperfOptions & { intervalSeconds?: number }): Promise<IperfReport> {
  const port = String((nextPort += 1));
  const interval = options.intervalSeconds === undefined ? [] : ['-i', String(options.intervalSeconds)];
  // The client gets the server's reports as JSON only from a server started with -J.
  const server = lab.spawn(options.serverNs, ['iperf3', '-s', '-1', '-p', port, ...(interval.length > 0 ? [...interval, '-J'] : [])]);
  await waitFor(`iperf3 server on ${options.serverNs}:${port}`, async () => (await lab.executor.run(['ss', '-Hltn', `sport = :${port}`], { netns: options.serverNs })).stdout.trim() !== '');
  const seconds = options.seconds ?? 3;
  const omit = options.omitSeconds ?? 1;
  const args = ['iperf3', '-c', options.target, '-p', port, '-t', String(seconds), '-O', String(omit), '-J', ...(options.reverse ? ['-R'] : []), ...(options.mss ? ['-M', String(options.mss)] : []),
    ...(options.udp ? ['-u', '-b', `${options.udp.mbps}M`, '-l', String(options.udp.length)] : []),
    ...(interval.length > 0 ? [...interval, ...(options.reverse ? [] : ['--get-server-output'])] : [])];
  const startedAt = Date.now();
  const { stdout } = await lab.executor.run(args, { netns: options.clientNs, timeoutMs: (seconds + omit + 15) * 1000 });
  await server;
  const report = JSON.parse(stdout) as {
    end?: { sum_received?: { bits_per_second?: number; bytes?: number } };
    error?: string;
    intervals?: IperfJsonInterval[];
    server_output_json?: { intervals?: IperfJsonInterval[] };
  };
  if (report.error) throw new Error(`iperf3: ${report.error}`);
  const received = report.end?.sum_received;
  if (received?.bits_per_second === undefined) throw new Error('iperf3 printed no receiver summary');
  const receiverIntervals = (options.reverse ? report.intervals : report.server_output_json?.intervals) ?? [];
  const intervals = receiverIntervals.flatMap(({ sum }) =>
    sum === undefined || sum.omitted === true ? [] : [{ start: sum.start ?? 0, end: sum.end ?? 0, bytes: sum.bytes ?? 0, bitsPerSecond: sum.bits_per_second ?? 0 }],
  );
  if (interval.length > 0 && intervals.length === 0) throw new Error('iperf3 printed no receiver intervals');
  return { bitsPerSecond: received.bits_per_second, bytes: received.bytes ?? 0, intervals, startedAt };
}
