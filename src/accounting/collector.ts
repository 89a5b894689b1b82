import { readFile } from 'node:fs/promises';
import type { Knex } from 'knex';
import type { Logger } from '../plugin-api.js';
import type { Executor } from '../shaping/executor.js';
import { parseWgDump } from './wg-dump.js';
import { parseClassText } from '../shaping/parse-class-text.js';
import { ifbNameFor } from '../shaping/ifb-name.js';
import { classSamples } from './tc-classes.js';
import { parseVnstatJson } from './vnstat.js';
import { parseSysfsValues, SYSFS_FILES, type InterfaceCounters } from './sysfs.js';
import type { Sample } from './sample.js';
import { enforceRetention, writeTick, type Retention, type TickResult } from './store.js';
import { billedSourcesFor, type BillingBytes, type CountOptions } from './billing.js';
import { rateOf, type Rate } from './rates.js';

export type { Rate } from './rates.js';

export interface CollectorOptions {
  db: Knex;
  executor: Executor;
  logger: Logger;
  node?: string;
  retention?: Retention;
  ceilingBitsPerSecond?: bigint;
  /**
   * The wall clock (epoch ms): sample times, retention and the last tick's time. Tests pass the
   * time of their fixtures. @default Date.now
   */
  now?: () => number;
  /** Reads the machine's boot id. @default /proc/sys/kernel/random/boot_id */
  bootId?: () => Promise<string>;
  /**
   * Where VMs' bytes come from: `sysfs` (the tap's kernel counters, read every tick) or `vnstat`
   * (vnStat's per-interface totals, for hosts that already run vnstatd: they survive reboots and
   * interface re-creation, but move only when vnstatd saves, every few minutes). VMs inside a
   * network namespace are always read from sysfs: vnStat sees only its own namespace.
   * @default 'sysfs'
   */
  vmSource?: 'sysfs' | 'vnstat';
  /** Which bytes a peer's bill counts: `wire` (WireGuard's counters) or `inner` (its HTB class). @default 'wire' */
  billing?: BillingBytes;
}

const readBootId = async () => (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();

/** Reads /sys/class/net/<if>/…: directly for the host's namespace, through `ip netns exec cat` for others. */
export async function readInterfaceCounters(executor: Executor, iface: string, netns: string | null): Promise<InterfaceCounters> {
  const paths = SYSFS_FILES.map((file) => `/sys/class/net/${iface}/${file}`);
  if (netns === null) {
    const values = await Promise.all(paths.map((path) => readFile(path, 'utf8')));
    return parseSysfsValues(values.join('\n'));
  }
  const { stdout } = await executor.run(['cat', ...paths], { netns });
  return parseSysfsValues(stdout);
}


/** What pages, the API and metrics read of accounting: rates of the last tick and the tick's health. */
export interface CollectorView {
  rates(): ReadonlyMap<string, Rate>;
  readonly lastTick: { at: number; durationMs: number; error: string | null } | null;
  readonly lastSuccess: number | null;
  readonly errorCount: number;
}

/**
 * One collector: reads the counters of every known subject (peers from `wg show dump`, VMs from
 * their tap's sysfs counters), writes them as one tick, and keeps live rates in memory.
 */
export class Collector implements CollectorView {
  private readonly rateBySubject = new Map<string, Rate>();
  private readonly node: string;
  private lastRun: { at: number; durationMs: number; error: string | null; result: TickResult | null } | null = null;
  /** When the last tick finished without error (epoch ms). */
  lastSuccess: number | null = null;
  /** Ticks that failed since start. */
  errorCount = 0;

  constructor(private readonly options: CollectorOptions) {
    this.node = options.node ?? 'local';
  }

  /** Current rates per `type:id`. */
  rates(): ReadonlyMap<string, Rate> {
    return this.rateBySubject;
  }

  /** How this collector turns deltas into a subject's bytes (for live rates read between ticks). */
  get counting(): CountOptions {
    return { billing: this.options.billing ?? 'wire', billedSources: billedSourcesFor(this.options.vmSource ?? 'sysfs') };
  }

  get lastTick() {
    return this.lastRun;
  }

  /**
   * VM samples from `vnstat --json` (source `vnstat`): the series is the VM, its identity has no
   * ifindex and a fixed boot id because vnStat's totals survive both, and the sample time is
   * vnStat's own last update, so a tick that sees no new vnStat data counts nothing.
   */
  private async vnstatSamples(vms: { subjectId: string; interface: string }[]): Promise<Sample[]> {
    if (vms.length === 0) return [];
    const { stdout } = await this.options.executor.run(['vnstat', '--json']);
    const totals = new Map(parseVnstatJson(stdout).map((t) => [t.name, t]));
    return vms.flatMap((vm) => {
      const total = totals.get(vm.interface);
      if (!total) return [];
      return [{
        identity: { node: this.node, source: 'vnstat' as const, interface: vm.interface, seriesKey: `vm:${vm.subjectId}`, ifindex: null, bootId: 'vnstat' },
        subjectType: 'vm' as const,
        subjectId: vm.subjectId,
        rxBytes: total.rxBytes,
        txBytes: total.txBytes,
        rxPackets: null,
        txPackets: null,
        at: total.updatedAt,
      }];
    });
  }

  /**
   * Reads every subject's counters now (without writing them). `classCounters: false` skips the
   * HTB class counters (two tc processes per limited interface) for readers that need no
   * utilisation and bill no class bytes.
   */
  async sample(options: { classCounters?: boolean } = {}): Promise<Sample[]> {
    const { db, executor, logger } = this.options;
    const now = this.options.now ?? Date.now;
    const bootId = await (this.options.bootId ?? readBootId)();
    const rows = ((await db('bw_limits').where({ node: this.node })) as Record<string, unknown>[]).map((row) => ({
      subjectType: String(row.subject_type),
      subjectId: String(row.subject_id),
      interface: String(row.interface),
      netns: row.netns ? String(row.netns) : null,
      publicKey: row.public_key ? String(row.public_key) : null,
      classMinor: row.class_minor === null || row.class_minor === undefined ? null : Number(row.class_minor),
      limited: Number(row.up_kbps) > 0 || Number(row.down_kbps) > 0,
    }));
    const samples: Sample[] = [];
    const fromVnstat = this.options.vmSource === 'vnstat' ? rows.filter((row) => row.subjectType === 'vm' && row.netns === null) : [];
    if (fromVnstat.length > 0) {
      try {
        samples.push(...(await this.vnstatSamples(fromVnstat)));
      } catch (error) {
        logger.warn('cannot read vnstat --json', { error: (error as Error).message });
      }
    }
    const groups = new Map<string, typeof rows>();
    for (const row of rows) {
      const key = `${row.subjectType === 'vm' ? 'vm' : 'wg'}\u0000${row.netns ?? ''}\u0000${row.interface}`;
      const group = groups.get(key);
      if (group) group.push(row);
      else groups.set(key, [row]);
    }
    for (const [key, members] of groups) {
      const first = members[0]!;
      try {
        const counters = await readInterfaceCounters(executor, first.interface, first.netns);
        const at = now();
        if (options.classCounters !== false) {
          samples.push(...(await this.classCounters(first.interface, first.netns, members, { ifindex: counters.ifindex, bootId })));
        }
        if (key.startsWith('vm')) {
          for (const vm of members) {
            if (fromVnstat.includes(vm)) continue;
            samples.push({
              identity: { node: this.node, source: 'sysfs', interface: vm.interface, seriesKey: `vm:${vm.subjectId}`, ifindex: counters.ifindex, bootId },
              subjectType: 'vm',
              subjectId: vm.subjectId,
              rxBytes: counters.rxBytes,
              txBytes: counters.txBytes,
              rxPackets: counters.rxPackets,
              txPackets: counters.txPackets,
              at,
            });
          }
          continue;
        }
        const { stdout } = await executor.run(['wg', 'show', first.interface, 'dump'], first.netns ? { netns: first.netns } : {});
        const dumpAt = now();
        const byKey = new Map(parseWgDump(stdout).peers.map((peer) => [peer.publicKey, peer]));
        for (const peer of members) {
          const counters2 = peer.publicKey ? byKey.get(peer.publicKey) : undefined;
          if (!counters2) continue;
          samples.push({
            identity: { node: this.node, source: 'wireguard', interface: peer.interface, seriesKey: peer.publicKey!, ifindex: counters.ifindex, bootId },
            subjectType: 'peer',
            subjectId: peer.subjectId,
            rxBytes: counters2.rxBytes,
            txBytes: counters2.txBytes,
            rxPackets: null,
            txPackets: null,
            at: dumpAt,
          });
        }
      } catch (error) {
        // A missing interface is normal (a VM that is off, a network not up yet): nothing to count.
        logger.debug('cannot read counters', { interface: first.interface, netns: first.netns, error: (error as Error).message });
      }
    }
    return samples;
  }

  /**
   * HTB class counters of the limited subjects on one interface (source `tc`): what the shaper
   * itself passed, the bytes a cap governs. Utilisation is computed from them, and with
   * `billing: 'inner'` a peer's bill too (see countTick()).
   */
  private async classCounters(
    iface: string,
    netns: string | null,
    members: { subjectType: string; subjectId: string; classMinor: number | null; limited: boolean }[],
    identity: { ifindex: number; bootId: string },
  ): Promise<Sample[]> {
    const classed = members.flatMap((m) =>
      m.limited && m.classMinor !== null ? [{ subjectType: m.subjectType as 'peer' | 'vm', subjectId: m.subjectId, classMinor: m.classMinor }] : [],
    );
    if (classed.length === 0) return [];
    const read = async (device: string) => {
      try {
        return parseClassText((await this.options.executor.run(['tc', '-s', 'class', 'show', 'dev', device], netns ? { netns } : {})).stdout);
      } catch {
        return [];
      }
    };
    const egress = await read(iface);
    const ifb = await read(ifbNameFor(iface, netns ?? undefined));
    return classSamples(egress, ifb, classed, { node: this.node, interface: iface, ...identity }, (this.options.now ?? Date.now)());
  }

  /** One tick: sample, write, update rates, enforce retention. */
  async tick(): Promise<TickResult> {
    const now = this.options.now ?? Date.now;
    const started = performance.now();
    try {
      const samples = await this.sample();
      const result = await writeTick(this.options.db, samples, {
        ...this.counting,
        logger: this.options.logger,
        ...(this.options.ceilingBitsPerSecond ? { ceilingBitsPerSecond: this.options.ceilingBitsPerSecond } : {}),
      });
      const seen = new Set<string>();
      for (const [key, counted] of result.counted) {
        seen.add(key);
        this.rateBySubject.set(key, rateOf(counted));
      }
      for (const key of [...this.rateBySubject.keys()]) if (!seen.has(key)) this.rateBySubject.delete(key);
      await enforceRetention(this.options.db, now(), this.options.retention);
      this.lastRun = { at: now(), durationMs: Math.round(performance.now() - started), error: null, result };
      this.lastSuccess = this.lastRun.at;
      return result;
    } catch (error) {
      this.lastRun = { at: now(), durationMs: Math.round(performance.now() - started), error: (error as Error).message, result: null };
      this.errorCount++;
      throw error;
    }
  }
}
