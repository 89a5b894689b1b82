import { randomBytes } from 'node:crypto';

import { KernelError } from './errors.js';
import type { Executor } from './executor.js';
import type { LeafKind } from './leaf.js';

/** What the kernel and the tools on a node offer, found by trying in a throwaway namespace. */
export interface Capabilities {
  /** False when the probe could not even create a namespace (then everything else is false). */
  probed: boolean;
  /** Why the probe could not run, when `probed` is false. */
  probeError?: string;
  iproute2Version: string | null;
  permission: { root: boolean; capNetAdmin: boolean };
  qdiscs: { htb: boolean; ingress: boolean; clsact: boolean };
  leafQdiscs: Record<LeafKind, boolean>;
  classifiers: { u32: boolean; flower: boolean; matchall: boolean; bpf: boolean };
  actions: { mirred: boolean };
  ifb: boolean;
  wireguard: { kernelModule: boolean; wireguardGo: boolean };
  /** The leaf the planner will use: fq_codel, else sfq, else pfifo. */
  leaf: LeafKind;
  /** The classifier the planner will use (u32 hash tables; works on every kernel that has u32). */
  classifier: 'u32';
  /** True when the engine can shape here: htb, u32 and, for `up`, ingress + mirred + ifb. */
  canShape: boolean;
}

const cache = new WeakMap<Executor, Promise<Capabilities>>();

/** Options of {@link probeCapabilities}. */
export interface ProbeOptions {
  /**
   * Probe again instead of returning the cached result for this executor.
   * @default false
   */
  refresh?: boolean;
}

/**
 * Probes the node behind `executor` once (cached per executor): creates `pbw-probe-<random>`, a
 * dummy (or veth) device in it, tries each qdisc, classifier and action for real, and always
 * deletes the namespace.
 */
export function probeCapabilities(executor: Executor, options: ProbeOptions = {}): Promise<Capabilities> {
  const cached = cache.get(executor);
  if (cached && options.refresh !== true) return cached;
  const result = runProbe(executor);
  cache.set(executor, result);
  result.catch(() => cache.delete(executor));
  return result;
}

async function succeeds(executor: Executor, argv: string[], netns?: string): Promise<boolean> {
  try {
    await executor.run(argv, { netns });
    return true;
  } catch (error) {
    if (error instanceof KernelError) return false;
    throw error;
  }
}

async function runProbe(executor: Executor): Promise<Capabilities> {
  const caps: Capabilities = {
    probed: false,
    iproute2Version: null,
    permission: { root: false, capNetAdmin: false },
    qdiscs: { htb: false, ingress: false, clsact: false },
    leafQdiscs: { fq_codel: false, sfq: false, pfifo: false },
    classifiers: { u32: false, flower: false, matchall: false, bpf: false },
    actions: { mirred: false },
    ifb: false,
    wireguard: { kernelModule: false, wireguardGo: false },
    leaf: 'pfifo',
    classifier: 'u32',
    canShape: false,
  };
  try {
    const version = await executor.run(['tc', '-V']);
    caps.iproute2Version = /iproute2-([\w.]+)/.exec(version.stdout + version.stderr)?.[1] ?? null;
  } catch {
    caps.iproute2Version = null;
  }
  try {
    const status = await executor.run(['cat', '/proc/self/status']);
    caps.permission.root = /^Uid:\s+0\b/m.test(status.stdout);
    const capEff = /^CapEff:\s+([0-9a-f]+)/m.exec(status.stdout)?.[1];
    // CAP_NET_ADMIN is capability 12.
    caps.permission.capNetAdmin = capEff !== undefined && (BigInt(`0x${capEff}`) & (1n << 12n)) !== 0n;
  } catch {
    // Not Linux or no /proc: permissions stay false, the namespace step below will tell.
  }
  caps.wireguard.wireguardGo = await succeeds(executor, ['wireguard-go', '--version']);

  const ns = `pbw-probe-${randomBytes(4).toString('hex')}`;
  try {
    await executor.run(['ip', 'netns', 'add', ns]);
  } catch (error) {
    caps.probeError = error instanceof KernelError ? error.shortMessage : String(error);
    return caps;
  }
  try {
    caps.probed = true;
    const dev = 'pbwp0';
    const created =
      (await succeeds(executor, ['ip', 'link', 'add', dev, 'type', 'dummy'], ns)) ||
      (await succeeds(executor, ['ip', 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'pbwp1'], ns));
    if (!created) throw new KernelError({ argv: ['ip', 'link', 'add'], stderr: 'neither dummy nor veth devices can be created', exitCode: 1, timedOut: false });
    await executor.run(['ip', 'link', 'set', dev, 'up'], { netns: ns });
    const tc = (args: string[]): Promise<boolean> => succeeds(executor, ['tc', ...args], ns);

    caps.qdiscs.htb = await tc(['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', 'ffff']);
    if (caps.qdiscs.htb) {
      await tc(['class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '1mbit']);
      for (const leaf of ['fq_codel', 'sfq', 'pfifo'] as const) {
        caps.leafQdiscs[leaf] = await tc(['qdisc', 'add', 'dev', dev, 'parent', '1:2', 'handle', '2:', leaf]);
        if (caps.leafQdiscs[leaf]) await tc(['qdisc', 'del', 'dev', dev, 'parent', '1:2']);
      }
      const filter = ['filter', 'add', 'dev', dev, 'parent', '1:'];
      caps.classifiers.u32 = await tc([...filter, 'prio', '1', 'protocol', 'ip', 'u32', 'match', 'u32', '0', '0', 'flowid', '1:2']);
      caps.classifiers.flower = await tc([...filter, 'prio', '2', 'protocol', 'ip', 'flower', 'dst_ip', '10.0.0.1', 'classid', '1:2']);
      caps.classifiers.matchall = await tc([...filter, 'prio', '3', 'matchall', 'classid', '1:2']);
      // Classic BPF "return 0" (4 instructions: count, then code jt jf k).
      caps.classifiers.bpf = await tc([...filter, 'prio', '4', 'protocol', 'all', 'bpf', 'bytecode', '1,6 0 0 0', 'classid', '1:2']);
    }
    caps.ifb = await succeeds(executor, ['ip', 'link', 'add', 'pbwp-ifb', 'type', 'ifb'], ns);
    caps.qdiscs.clsact = await tc(['qdisc', 'add', 'dev', dev, 'clsact']);
    if (caps.qdiscs.clsact) await tc(['qdisc', 'del', 'dev', dev, 'clsact']);
    caps.qdiscs.ingress = await tc(['qdisc', 'add', 'dev', dev, 'handle', 'ffff:', 'ingress']);
    if (caps.qdiscs.ingress && caps.classifiers.u32) {
      const target = caps.ifb ? 'pbwp-ifb' : dev;
      caps.actions.mirred = await tc([
        'filter', 'add', 'dev', dev, 'parent', 'ffff:', 'prio', '1', 'protocol', 'all',
        'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', target,
      ]);
    }
    caps.wireguard.kernelModule = await succeeds(executor, ['ip', 'link', 'add', 'pbwp-wg', 'type', 'wireguard'], ns);
  } finally {
    await executor.run(['ip', 'netns', 'del', ns]).catch(() => undefined);
  }
  caps.leaf = caps.leafQdiscs.fq_codel ? 'fq_codel' : caps.leafQdiscs.sfq ? 'sfq' : 'pfifo';
  caps.canShape = caps.qdiscs.htb && caps.classifiers.u32 && caps.leafQdiscs.pfifo;
  return caps;
}
