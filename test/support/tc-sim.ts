/**
 * A simulated kernel behind the engine's {@link Executor}: `tc` and `ip` argv in, iproute2 6.1
 * output and errors out, so that the real `readActual` / `reconcileInterface` run against it
 * unchanged. Semantics follow Linux 6.x (checked against this machine's 6.18 by
 * test/unit/shaping/tc-sim-kernel.test.ts); the kernel facts are noted where they are modelled.
 *
 * Modelled:
 * - network namespaces, devices (`ip link add … type ifb|dummy|veth|wireguard`, `set up|down`,
 *   `del`), their default root qdisc (none when down, `pfifo_fast` on an up IFB, `noqueue` else);
 * - qdiscs: root (`add|replace|change|del`, the kernel's create/graft/change rules and messages; HTB
 *   has no change operation; a `replace` by another kind under the same handle is refused), HTB leaves
 *   `parent 1:N handle N: pfifo|sfq|fq_codel|tbf` (a deleted leaf leaves HTB's hidden default pfifo),
 *   `ingress`; `tbf rate R burst B limit L` with its bucket kept the way sch_tbf keeps it (nanoseconds
 *   through the rate's mult/shift) and printed the way iproute2 6.1 prints it (`lat`, or `limit` when
 *   the queue is shorter than the bucket), and its one class `N:1` in `tc class show`;
 * - HTB classes: `add|change|replace|del`, children, `Error: HTB class in use.` while a u32 key bound
 *   to it lives (bound when the key was added while the class existed — also in orphaned tables);
 *   rates/bursts printed the way iproute2 6.1 rounds them;
 * - u32 (cls_u32.c): one tp per prio with a fixed protocol, root tables 800:, 801:, … allocated
 *   cyclically per qdisc, tables with `divisor`, keys with explicit or generated node ids, `ht`,
 *   `link` (refcounts; a deleted key releases its link LATER — here at the next `run`/`batch` call),
 *   `hashkey`, `flowid`, `match u32|u16|u8|ip|ip6`, deleting keys / tables / a prio / all prios,
 *   the tp removed with its last key, tables left ORPHANED (alive, unlisted) by a deleted prio while
 *   another u32 tp lives on the qdisc, and listed again when that prio comes back;
 * - `action mirred egress redirect|mirror dev X` (shown as `"to_dev":"*"` once X is deleted);
 * - reads: `tc -j qdisc show`, `tc [-s] class show`, `tc -j filter show … parent P`,
 *   `ip -j link show`; batches stop at the first failing line with `Command failed -:N`.
 *
 * Not modelled: other classifiers (flower, matchall, …), class-level filters (`parent 1:3`), chains,
 * shared blocks, `offset`/`sample`/`mark`/`indev`, statistics (counters stay 0), `-s` qdisc stats,
 * text (non `-j`) qdisc and filter output, qdiscs other than the ones named above.
 */
import { KernelError } from '../../src/shaping/errors.js';
import { batchScript, groupForBatch, withNetns, type Executor, type RunOptions, type RunResult } from '../../src/shaping/executor.js';
import type { Operation } from '../../src/shaping/operations.js';
import type { U32Key } from '../../src/shaping/parse-filter-json.js';
import { evaluateProtos, htbLanding, type EvalNode, type EvalProto, type EvalTable, type Packet } from './u32-eval.js';

/** Options of {@link TcSim}. */
export interface TcSimOptions {
  /**
   * Qdisc kinds the simulated kernel has modules for; others fail with
   * `Error: Specified qdisc kind is unknown.` (this machine's 6.18 lacks sfq and fq_codel).
   * @default ['htb', 'pfifo', 'bfifo', 'sfq', 'fq_codel', 'tbf', 'ingress']
   */
  qdiscKinds?: readonly string[];
}

/** What `tc`/`ip` would print on failure, and its exit code. */
class CommandFailure extends Error {
  constructor(
    readonly stderr: string,
    readonly exitCode: number,
  ) {
    super(stderr.split('\n')[0]);
  }
}

/** `Error: <msg>.` from the kernel's extack, as tc prints it for filter commands. */
const filterError = (message: string): CommandFailure => new CommandFailure(`Error: ${message}.\nWe have an error talking to the kernel\n`, 2);
/** `Error: <msg>.` for qdisc and class commands (tc prints no second line there). */
const extackError = (message: string): CommandFailure => new CommandFailure(`Error: ${message}.\n`, 2);
/** An errno without an extack message. */
const rtnetlink = (message: string): CommandFailure => new CommandFailure(`RTNETLINK answers: ${message}\n`, 2);
/** A refusal by the tool itself, before talking to the kernel. */
const usage = (message: string): CommandFailure => new CommandFailure(`${message}\n`, 1);
/** Something this simulator does not model: fails loudly instead of pretending. */
const unsupported = (what: string): CommandFailure => new CommandFailure(`tc-sim: unsupported: ${what}\n`, 99);

// ---- state ---------------------------------------------------------------------------------

type DeviceKind = 'ifb' | 'dummy' | 'veth' | 'wireguard' | 'loopback';

interface Device {
  name: string;
  kind: DeviceKind;
  ifindex: number;
  up: boolean;
  txqlen: number;
  mac: string;
  /** Explicit root qdisc; null = the device's default (noop when down, pfifo_fast/noqueue when up). */
  root: Qdisc | null;
  /** The ingress qdisc; `ingressQueue` stays true once one was created (a later `del ingress` says "Invalid handle"). */
  ingress: Qdisc | null;
  ingressQueue: boolean;
  /** veth peer name. */
  peer?: string;
  /** Leaf and other non-root qdiscs, in creation order (listing follows the kernel's qdisc hash). */
  hashed: Qdisc[];
}

interface Qdisc {
  kind: string;
  /** Handle major (`1:` → 1). */
  major: number;
  /** `root`, `ingress`, or the parent classid. */
  parent: 'root' | 'ingress' | number;
  options: Record<string, number | boolean | string>;
  htb: HtbState | null;
  block: Block | null;
  seq: number;
}

interface HtbState {
  defcls: number;
  r2q: number;
  classes: Map<number, HtbClass>;
  hash: ClassHash;
}

interface HtbClass {
  minor: number;
  parentMinor: number | null;
  rateBytes: number;
  ceilBytes: number;
  bufferTicks: number;
  cbufferTicks: number;
  quantum: number | null;
  prio: number;
  /** Explicit leaf qdisc; null = HTB's default pfifo (handle 0, not listed). */
  leaf: Qdisc | null;
  children: number;
}

interface Block {
  /** tps by ascending prio. */
  tps: Tp[];
  /** cls_u32's per-qdisc `tc_u_common`; null when no u32 tp exists. */
  u32: U32Common | null;
}

interface Tp {
  prio: number;
  protocol: number;
  root: U32Table;
}

interface U32Common {
  /** All tables, newest first (the kernel's `hlist`), orphans included. */
  tables: U32Table[];
  /** Root-table ids 1..0x7fe in use (`idr_alloc_cyclic`), and where the next search starts. */
  rootIds: Set<number>;
  nextRootId: number;
  /** Whether the first root (800:, not taken from the idr) is alive. */
  tpCount: number;
}

interface U32Table {
  /** 12-bit table id (`10:` → 0x10). */
  id: number;
  prio: number;
  divisor: number;
  isRoot: boolean;
  /** 1 for itself + one per key linking to it (released late, see `pendingReleases`). */
  refcnt: number;
  buckets: U32Node[][];
  alive: boolean;
  /** Root id taken from the cyclic idr (1..0x7fe), or 0 for 800: / explicit tables. */
  idrId: number;
}

interface U32Node {
  table: U32Table;
  bucket: number;
  node: number;
  keys: U32Key[];
  hashMask: number;
  hashOffset: number;
  link: U32Table | null;
  /** Full classid of `flowid`, or null. */
  classid: number | null;
  terminal: boolean;
  /** tcf_bind_filter took a reference on this class (it existed when the key was added). */
  boundMinor: number | null;
  actions: MirredAction[];
}

interface MirredAction {
  index: number;
  mode: 'redirect' | 'mirror';
  /** ifindex of the target device; null once it was deleted. */
  target: number | null;
}

interface Netns {
  devices: Map<string, Device>;
  nextIfindex: number;
  mirredIndices: Set<number>;
}

/**
 * Qdisc class hash (`qdisc_class_hash_*`): only decides the order `tc class show` lists classes in,
 * kept so that outputs compare byte for byte with the kernel's.
 */
class ClassHash {
  private size = 4;
  private buckets: number[][] = [[], [], [], []];
  private count = 0;

  private static hash(id: number, mask: number): number {
    let h = id;
    h ^= h >>> 8;
    h ^= h >>> 4;
    return h & mask;
  }

  insert(classid: number): void {
    this.buckets[ClassHash.hash(classid, this.size - 1)]?.unshift(classid);
    this.count += 1;
    if (this.count * 4 <= this.size * 3) return;
    const size = this.size * 2;
    const buckets: number[][] = Array.from({ length: size }, () => []);
    for (const bucket of this.buckets) for (const id of bucket) buckets[ClassHash.hash(id, size - 1)]?.unshift(id);
    this.size = size;
    this.buckets = buckets;
  }

  remove(classid: number): void {
    const bucket = this.buckets[ClassHash.hash(classid, this.size - 1)];
    const index = bucket?.indexOf(classid) ?? -1;
    if (bucket && index >= 0) {
      bucket.splice(index, 1);
      this.count -= 1;
    }
  }

  order(): number[] {
    return this.buckets.flat();
  }
}

// ---- numbers and names ---------------------------------------------------------------------

const PROTOCOLS: Record<string, number> = { all: 0x0003, ip: 0x0800, ipv6: 0x86dd, arp: 0x0806, '802.1q': 0x8100 };
const protocolName = (value: number): string => Object.entries(PROTOCOLS).find(([, v]) => v === value)?.[0] ?? `0x${value.toString(16)}`;
const TC_H_ROOT = 0xffffffff;
const TC_H_INGRESS = 0xfffffff1;
const hex = (n: number): string => n.toString(16);
/** A qdisc's handle from its major (`ffff` → 0xffff0000, unsigned). */
const handleOf = (majorNumber: number): number => (majorNumber << 16) >>> 0;
const major = (classid: number): number => (classid >>> 16) & 0xffff;
const minorOf = (classid: number): number => classid & 0xffff;
const classidText = (classid: number): string => {
  if (classid === TC_H_ROOT) return 'root';
  if (classid === TC_H_INGRESS) return 'ffff:fff1';
  return minorOf(classid) === 0 ? `${hex(major(classid))}:` : `${hex(major(classid))}:${hex(minorOf(classid))}`;
};

/** iproute2 `get_tc_classid`: `1:3`, `1:`, `root`, `none`, `ffff:`. */
function parseClassid(text: string): number | null {
  if (text === 'root') return TC_H_ROOT;
  if (text === 'none') return 0;
  const match = /^([0-9a-fA-F]{0,4}):([0-9a-fA-F]{0,4})$/.exec(text);
  if (!match) return null;
  return ((parseInt(match[1] || '0', 16) << 16) | parseInt(match[2] || '0', 16)) >>> 0;
}

/** iproute2 `get_u32_handle`: `10:2:1` → 0x01002001, `800::` → 0x80000000. */
function parseU32Handle(text: string): number | null {
  if (!text.includes(':')) return /^0x[0-9a-fA-F]+$/.test(text) ? parseInt(text, 16) >>> 0 : null;
  const parts = text.split(':');
  if (parts.length > 3 || parts.some((p) => p !== '' && !/^[0-9a-fA-F]+$/.test(p))) return null;
  const [ht, bucket, node] = parts.map((p) => (p === '' || p === undefined ? 0 : parseInt(p, 16)));
  if ((ht ?? 0) >= 0x1000 || (bucket ?? 0) >= 0x100 || (node ?? 0) >= 0x1000) return null;
  return (((ht ?? 0) << 20) | ((bucket ?? 0) << 12) | (node ?? 0)) >>> 0;
}
const HTID = (handle: number): number => (handle >>> 20) & 0xfff;
const HASH = (handle: number): number => (handle >>> 12) & 0xff;
const NODE = (handle: number): number => handle & 0xfff;

/** iproute2 `sprint_u32_handle`. */
function u32HandleText(ht: number, bucket: number, node: number): string {
  let text = ht ? `${hex(ht)}:` : '';
  if (bucket || node) {
    if (bucket) text += hex(bucket);
    if (node) text += `:${hex(node)}`;
  }
  return text;
}

const RATE_UNITS: [RegExp, number][] = [
  [/^bit$/i, 1],
  [/^kibit$/i, 1024],
  [/^kbit$/i, 1000],
  [/^mibit$/i, 1024 ** 2],
  [/^mbit$/i, 1e6],
  [/^gibit$/i, 1024 ** 3],
  [/^gbit$/i, 1e9],
  [/^tibit$/i, 1024 ** 4],
  [/^tbit$/i, 1e12],
  [/^bps$/i, 8],
  [/^kibps$/i, 8 * 1024],
  [/^kbps$/i, 8000],
  [/^mibps$/i, 8 * 1024 ** 2],
  [/^mbps$/i, 8e6],
  [/^gibps$/i, 8 * 1024 ** 3],
  [/^gbps$/i, 8e9],
];

/** iproute2 `get_rate64`: bytes per second. */
function parseRate(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(text);
  if (!match) return null;
  const value = Number(match[1]);
  if (match[2] === '') return Math.floor(value / 8);
  const unit = RATE_UNITS.find(([re]) => re.test(match[2] ?? ''));
  return unit ? Math.floor((value * unit[1]) / 8) : null;
}

/** iproute2 `get_size`: bytes. */
function parseSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)(b|k|kb|m|mb|g|gb|kbit|mbit|gbit)?$/i.exec(text);
  if (!match) return null;
  const scale: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, kbit: 128, mbit: 131072, gbit: 134217728 };
  return Math.floor(Number(match[1]) * (scale[(match[2] ?? '').toLowerCase()] ?? 1));
}

// iproute2 tc_core with this kernel's /proc/net/psched (t2us 1000, us2t 64, clock_res 1e6): 15.625 ticks/µs.
const TICK_IN_USEC = 1000 / 64;
/** `tc_calc_xmittime`: the time argument is truncated to whole µs (an unsigned int), then to ticks. */
const xmitTicks = (rateBytes: number, size: number): number => Math.floor(Math.floor((1e6 * size) / rateBytes) * TICK_IN_USEC) >>> 0;
/** `tc_calc_xmitsize`: ticks back to whole µs, then bytes, truncated. */
const xmitSize = (rateBytes: number, ticks: number): number => Math.floor((rateBytes * Math.floor(ticks / TICK_IN_USEC)) / 1e6) >>> 0;

/** iproute2 6.1 `print_rate` (bytes/s in). */
function rateText(rateBytes: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  let rate = rateBytes * 8;
  let i = 0;
  for (; i < units.length - 1; i += 1) {
    if (rate < 1000) break;
    if (rate % 1000 !== 0 && rate < 1000 * 1000) break;
    rate = Math.floor(rate / 1000);
  }
  return `${rate}${units[i]}bit`;
}

/** iproute2 6.1 `sprint_size`. */
function sizeText(size: number): string {
  const mb = 1024 * 1024;
  if (size >= mb && Math.abs(mb * Math.round(size / mb) - size) < 1024) return `${Math.round(size / mb)}Mb`;
  if (size >= 1024 && Math.abs(1024 * Math.round(size / 1024) - size) < 16) return `${Math.round(size / 1024)}Kb`;
  return `${size}b`;
}

/** dev->qdisc_hash as the kernel walks it: 16 buckets by hash_32(handle), newest first within a bucket. */
function hashOrder(device: { hashed: readonly Qdisc[] }): Qdisc[] {
  return [...device.hashed].sort((a, b) => qdiscHashBucket(handleOf(a.major)) - qdiscHashBucket(handleOf(b.major)) || b.seq - a.seq);
}

/** `hash_32(handle, 4)`: the bucket of the device's qdisc hash (16 buckets). */
function qdiscHashBucket(handle: number): number {
  return Number((BigInt(handle >>> 0) * 0x61c88647n) & 0xffffffffn) >>> 28;
}

/** Serialises `[key, value]` pairs in order, duplicates kept (iproute2 repeats `"match"`). */
type Json = string | number | boolean | null | Json[] | Pairs;
class Pairs {
  constructor(readonly entries: [string, Json][]) {}
}
const obj = (...entries: [string, Json][]): Pairs => new Pairs(entries);
function jsonText(value: Json): string {
  if (value instanceof Pairs) return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  return JSON.stringify(value);
}

// ---- tbf ---------------------------------------------------------------------------------------

const TBF_USAGE =
  'Usage: ... tbf limit BYTES burst BYTES[/BYTES] rate KBPS [ mtu BYTES[/BYTES] ]\n\t[ peakrate KBPS ] [ latency TIME ] [ overhead BYTES ] [ linklayer TYPE ]';

/**
 * iproute2 6.1 `tbf_parse_opt` for `rate`, `burst` (`buffer`, `maxburst`) and `limit`: all three are
 * required (iproute2 names every missing one, then prints its usage), so a `change` replaces them all.
 */
function tbfOptions(args: readonly string[]): Record<string, number> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i] ?? '';
    const value = args[i + 1];
    const name = arg === 'buffer' || arg === 'maxburst' || 'burst'.startsWith(arg) ? 'burst' : arg === 'rate' ? 'rate' : 'limit'.startsWith(arg) && arg !== '' ? 'limit' : null;
    if (name === null) {
      if (['latency', 'mtu', 'minburst', 'mpu', 'peakrate', 'overhead', 'linklayer'].includes(arg)) throw unsupported(`tbf ${arg}`);
      throw usage(`tbf: unknown parameter "${arg}"\n${TBF_USAGE}`);
    }
    if (value === undefined) throw unsupported(`tbf ${arg} without a value`);
    if (seen[name] !== undefined) throw usage(`tbf: duplicate "${name === 'burst' ? 'buffer/burst/maxburst' : name}" specification`);
    // get_size refuses what does not fit an unsigned int; get_rate64 takes anything.
    const parsed = name === 'rate' ? parseRate(value) : value.includes('/') ? null : parseSize(value);
    if (parsed === null || (name !== 'rate' && parsed > 0xffffffff)) throw usage(`tbf: illegal value for "${name === 'burst' ? arg : name}": "${value}"`);
    seen[name] = parsed;
    i += 1;
  }
  const missing: string[] = [];
  if (!seen.rate) missing.push('tbf: the "rate" parameter is mandatory.');
  if (!seen.burst) missing.push('tbf: the "burst" parameter is mandatory.');
  if (!seen.limit) missing.push('tbf: either "limit" or "latency" is required.');
  if (missing.length > 0) throw usage(`${missing.join('\n')}\n${TBF_USAGE}`);
  return { rate: seen.rate ?? 0, burst: seen.burst ?? 0, limit: seen.limit ?? 0 };
}

/**
 * A tbf's options as `tc -j qdisc show` prints them, in order. iproute2 6.1 sends the burst in bytes
 * (TCA_TBF_BURST); sch_tbf keeps it as nanoseconds at the rate (`psched_l2t_ns`: len × mult >> shift)
 * and dumps it in 64 ns ticks, cut to 32 bits (a bucket over 274.88 s at the rate wraps); iproute2
 * turns the ticks back into whole µs, then bytes, truncating each time (`tc_calc_xmitsize`): 12345 B
 * at 10 Mbit/s prints as 12343. It prints `lat` (µs a full queue waits beyond the bucket) when that is
 * ≥ 0, else `limit`. Exported for tests that check a tbf leaf exactly.
 *
 * @param rateBytes - the rate in bytes/s; `burst` and `limit` in bytes, as given to `tc`.
 */
export function tbfShown(rateBytes: number, burst: number, limit: number): { rate: number; burst: number; lat?: number; limit?: number } {
  const { mult, shift } = ratecfg(rateBytes);
  const ns = (BigInt(burst) * mult) >> shift;
  const ticks = Number((ns >> 6n) & 0xffffffffn);
  const usec = Math.floor(ticks / TICK_IN_USEC);
  const printed = Math.floor((rateBytes * usec) / 1e6) >>> 0;
  const latency = 1e6 * (limit / rateBytes) - usec;
  return latency >= 0 ? { rate: rateBytes, burst: printed, lat: Math.floor(latency) } : { rate: rateBytes, burst: printed, limit };
}

function tbfJson(rateBytes: number, burst: number, limit: number): Pairs {
  return new Pairs(Object.entries(tbfShown(rateBytes, burst, limit)));
}

/** `psched_ratecfg_precompute__`: ns per byte as mult >> shift, mult kept at 31 significant bits. */
function ratecfg(rateBytes: number): { mult: bigint; shift: bigint } {
  const rate = BigInt(rateBytes);
  let factor = 1_000_000_000n;
  let shift = 0n;
  let mult = 1n;
  if (rate <= 0n) return { mult, shift };
  for (;;) {
    mult = factor / rate;
    if ((mult & (1n << 31n)) !== 0n || (factor & (1n << 63n)) !== 0n) break;
    factor <<= 1n;
    shift += 1n;
  }
  return { mult, shift };
}

// ---- the simulator -------------------------------------------------------------------------

/**
 * A simulated Linux 6.x traffic-control stack with iproute2 6.1's command line and output.
 *
 * @example
 * const sim = new TcSim();
 * sim.addDevice('wg0', { kind: 'wireguard' });
 * await reconcileInterface(desired, sim, { leaf: 'pfifo' });
 */
export class TcSim implements Executor {
  /** Every command line run, in order (`tc -n lab qdisc add …`), batch lines included; for replay messages. */
  readonly log: string[] = [];
  private readonly namespaces = new Map<string, Netns>();
  private readonly qdiscKinds: Set<string>;
  /** Tables whose refcount a deleted key still holds until the kernel's deferred work runs. */
  private pendingReleases: U32Table[] = [];
  private seq = 0;
  private autoHandle = 0x8000;

  constructor(options: TcSimOptions = {}) {
    this.qdiscKinds = new Set(options.qdiscKinds ?? ['htb', 'pfifo', 'bfifo', 'sfq', 'fq_codel', 'tbf', 'ingress']);
    this.namespaces.set('', this.newNetns());
  }

  // ---- test helpers ----

  /** Creates a namespace (like `ip netns add`). */
  addNamespace(name: string): void {
    if (!this.namespaces.has(name)) this.namespaces.set(name, this.newNetns());
  }

  /** Creates a device, up by default (like `ip link add … && ip link set … up`). */
  addDevice(name: string, options: { netns?: string; kind?: DeviceKind; up?: boolean } = {}): void {
    const netns = options.netns ?? '';
    this.addNamespace(netns);
    const ns = this.ns(netns);
    if (ns.devices.has(name)) throw new Error(`tc-sim: device ${name} already exists`);
    this.createDevice(ns, name, options.kind ?? 'dummy');
    const device = ns.devices.get(name);
    if (device && options.up !== false) device.up = true;
  }

  /** Deletes a device and everything on it (like `ip link del`). */
  deleteDevice(name: string, netns?: string): void {
    const ns = this.ns(netns ?? '');
    const device = ns.devices.get(name);
    if (!device) throw new Error(`tc-sim: no device ${name}`);
    this.destroyDevice(ns, device);
  }

  /** True when the device exists. */
  hasDevice(name: string, netns?: string): boolean {
    return this.namespaces.get(netns ?? '')?.devices.has(name) === true;
  }

  /**
   * Where the simulated kernel sends a packet leaving `device`: the HTB class minor (from ALL its
   * u32 state, orphaned tables included — what the kernel does, not what `tc filter show` lists),
   * the default class when nothing matches, 0 for HTB's direct queue, null when the root is not HTB.
   */
  classify(device: string, packet: Packet, netns?: string): number | null {
    return this.classifier(device, netns)(packet);
  }

  /** {@link classify} for many packets against the current state (rebuild it after a change). */
  classifier(device: string, netns?: string): (packet: Packet) => number | null {
    this.flushDeferred();
    const dev = this.ns(netns ?? '').devices.get(device);
    const root = dev?.root;
    if (!root?.htb || !root.block) return () => null;
    // htb_classify: a filter's class with children is inner: its own filter chain runs (class-level
    // filters are not modelled: none), then the default class, as for a class that does not exist.
    const classes = new Set([...root.htb.classes.values()].filter((c) => c.children === 0).map((c) => c.minor));
    const defcls = root.htb.defcls;
    const protos: EvalProto[] = root.block.tps.map((tp) => ({ prio: tp.prio, protocol: protocolName(tp.protocol), root: evalTable(tp.root) }));
    return (packet) => htbLanding(evaluateProtos(protos, packet), classes, defcls);
  }

  /** Number of u32 tables alive on a qdisc but not listed by `tc filter show` (orphans). */
  orphanTables(device: string, parentMajor = 1, netns?: string): number {
    const dev = this.ns(netns ?? '').devices.get(device);
    const q = parentMajor === 0xffff ? dev?.ingress : dev && this.findQdisc(dev, parentMajor);
    const block = q?.block;
    if (!block?.u32) return 0;
    const prios = new Set(block.tps.map((tp) => tp.prio));
    return block.u32.tables.filter((t) => !prios.has(t.prio)).length;
  }

  // ---- Executor ----

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.flushDeferred();
    return this.runNow(argv, options);
  }

  async batch(operations: readonly Operation[], netns?: string): Promise<void> {
    // One flush for the whole plan: the deferred releases of a key deleted in this plan's tc batch are
    // not assumed to have happened by the time a later group of the same plan runs.
    this.flushDeferred();
    for (const group of groupForBatch(operations, netns)) {
      const argv = group.netns === undefined ? [group.tool, '-batch', '-'] : [group.tool, '-n', group.netns, '-batch', '-'];
      try {
        this.runNow(argv, { input: batchScript(group.operations) });
      } catch (error) {
        if (!(error instanceof KernelError)) throw error;
        const line = /Command failed -:(\d+)/.exec(error.stderr);
        const operation = line ? group.operations[Number(line[1]) - 1] : undefined;
        throw new KernelError({ argv: error.argv, stderr: error.stderr, exitCode: error.exitCode, timedOut: false, ...(operation ? { operation } : {}) });
      }
    }
  }

  private runNow(argv: readonly string[], options: RunOptions): RunResult {
    const full = withNetns(argv, options.netns);
    try {
      return { stdout: this.command(full, options.input), stderr: '' };
    } catch (error) {
      if (!(error instanceof CommandFailure)) throw error;
      throw new KernelError({ argv: full, stderr: error.stderr, exitCode: error.exitCode, timedOut: false });
    }
  }

  // ---- command line ----

  private command(argv: readonly string[], input: string | undefined): string {
    const [program, ...rest] = argv;
    if (program !== 'tc' && program !== 'ip') throw unsupported(`program ${String(program)}`);
    const flags = { json: false, stats: false, details: false, netns: '', batch: null as string | null };
    let i = 0;
    for (; i < rest.length; i += 1) {
      const arg = rest[i] ?? '';
      if (!arg.startsWith('-')) break;
      if (arg === '-j' || arg === '-json') flags.json = true;
      else if (arg === '-s' || arg === '-stats') flags.stats = true;
      else if (arg === '-d' || arg === '-details') flags.details = true;
      else if (arg === '-n' || arg === '-netns') flags.netns = rest[++i] ?? '';
      else if (arg === '-batch' || arg === '-b') flags.batch = rest[++i] ?? '';
      else throw unsupported(`option ${arg}`);
    }
    if (flags.netns !== '' && !this.namespaces.has(flags.netns)) {
      throw usage(`Cannot open network namespace "${flags.netns}": No such file or directory`);
    }
    const args = rest.slice(i);
    if (flags.batch !== null) {
      if (flags.batch !== '-') throw unsupported('-batch from a file');
      const lines = (input ?? '').split('\n');
      lines.forEach((line, index) => {
        const words = line.trim().split(/\s+/).filter((w) => w !== '');
        if (words.length === 0) return;
        try {
          this.dispatch(program, words, flags);
        } catch (error) {
          if (!(error instanceof CommandFailure)) throw error;
          throw new CommandFailure(`${error.stderr}Command failed -:${index + 1}\n`, 1);
        }
      });
      return '';
    }
    return this.dispatch(program, args, flags);
  }

  private dispatch(program: 'tc' | 'ip', args: readonly string[], flags: { json: boolean; stats: boolean; netns: string }): string {
    const line = `${program}${flags.netns ? ` -n ${flags.netns}` : ''} ${args.join(' ')}`;
    const ns = this.ns(flags.netns);
    const [object, verb, ...rest] = args;
    if (program === 'ip') {
      if (object === 'link' || object === 'l') {
        if (verb !== 'show' && verb !== 'list') this.log.push(line);
        return this.ipLink(ns, verb ?? 'show', rest, flags.json);
      }
      throw unsupported(`ip ${String(object)}`);
    }
    const isShow = verb === 'show' || verb === 'list' || verb === 'ls';
    if (!isShow) this.log.push(line);
    switch (object) {
      case 'qdisc':
        if (isShow) return this.qdiscShow(ns, rest, flags.json);
        return this.qdiscModify(ns, verb ?? '', rest);
      case 'class':
        if (isShow) return this.classShow(ns, rest, flags.stats);
        return this.classModify(ns, verb ?? '', rest);
      case 'filter':
        if (isShow) return this.filterShow(ns, rest, flags.json);
        return this.filterModify(ns, verb ?? '', rest);
      default:
        throw unsupported(`tc ${String(object)}`);
    }
  }

  // ---- devices ----

  private newNetns(): Netns {
    const ns: Netns = { devices: new Map(), nextIfindex: 1, mirredIndices: new Set() };
    this.createDevice(ns, 'lo', 'loopback');
    const lo = ns.devices.get('lo');
    if (lo) lo.up = true;
    return ns;
  }

  private ns(name: string): Netns {
    const ns = this.namespaces.get(name);
    if (!ns) throw usage(`Cannot open network namespace "${name}": No such file or directory`);
    return ns;
  }

  private createDevice(ns: Netns, name: string, kind: DeviceKind): Device {
    const ifindex = ns.nextIfindex;
    ns.nextIfindex += 1;
    const mac = `02:00:00:00:${hex((ifindex >> 8) & 0xff).padStart(2, '0')}:${hex(ifindex & 0xff).padStart(2, '0')}`;
    const device: Device = {
      name,
      kind,
      ifindex,
      up: false,
      txqlen: kind === 'ifb' ? 32 : kind === 'veth' ? 1000 : kind === 'wireguard' || kind === 'loopback' ? 1000 : 1000,
      mac: kind === 'wireguard' ? '' : mac,
      root: null,
      ingress: null,
      ingressQueue: false,
      hashed: [],
    };
    ns.devices.set(name, device);
    return device;
  }

  private destroyDevice(ns: Netns, device: Device): void {
    if (device.root) this.destroyQdisc(ns, device, device.root);
    if (device.ingress) this.destroyQdisc(ns, device, device.ingress);
    ns.devices.delete(device.name);
    // act_mirred drops its device reference on NETDEV_UNREGISTER: the action stays, "to_dev" becomes "*".
    for (const other of ns.devices.values()) {
      for (const q of [other.root, other.ingress, ...other.hashed]) {
        for (const table of q?.block?.u32?.tables ?? []) {
          for (const bucket of table.buckets) for (const node of bucket) for (const action of node.actions) if (action.target === device.ifindex) action.target = null;
        }
      }
    }
    if (device.peer !== undefined) {
      const peer = ns.devices.get(device.peer);
      if (peer) {
        delete peer.peer;
        this.destroyDevice(ns, peer);
      }
    }
  }

  private device(ns: Netns, name: string | undefined): Device {
    const device = name === undefined ? undefined : ns.devices.get(name);
    if (!device) throw usage(`Cannot find device "${name ?? ''}"`);
    return device;
  }

  private ipLink(ns: Netns, verb: string, args: readonly string[], json: boolean): string {
    if (verb === 'show' || verb === 'list' || verb === 'ls') {
      const name = args[0] === 'dev' ? args[1] : args[0];
      if (!json) throw unsupported('ip link show without -j');
      if (name === undefined) return `${jsonText([...ns.devices.values()].map((d) => this.linkJson(d)))}\n`;
      const device = ns.devices.get(name);
      if (!device) throw usage(`Device "${name}" does not exist.`);
      return `${jsonText([this.linkJson(device)])}\n`;
    }
    if (verb === 'add') {
      let name: string | undefined;
      let type: string | undefined;
      let peer: string | undefined;
      for (let i = 0; i < args.length; i += 1) {
        const arg = args[i];
        if (arg === 'name' || arg === 'dev') name = args[++i];
        else if (arg === 'type') {
          type = args[++i];
          if (type === 'veth' && args[i + 1] === 'peer') {
            i += 1;
            if (args[i + 1] === 'name') i += 1;
            peer = args[++i];
          }
        } else if (name === undefined && arg !== undefined) name = arg;
        else throw unsupported(`ip link add … ${String(arg)}`);
      }
      if (name === undefined || type === undefined) throw usage('Not enough information: "type" argument is required');
      if (!['ifb', 'dummy', 'veth', 'wireguard'].includes(type)) throw usage('Error: Unknown device type.');
      if (ns.devices.has(name) || (peer !== undefined && ns.devices.has(peer))) throw rtnetlink('File exists');
      const device = this.createDevice(ns, name, type as DeviceKind);
      if (type === 'veth') {
        const other = this.createDevice(ns, peer ?? `veth${ns.nextIfindex}`, 'veth');
        device.peer = other.name;
        other.peer = device.name;
      }
      return '';
    }
    if (verb === 'del' || verb === 'delete') {
      const name = args[0] === 'dev' ? args[1] : args[0];
      this.destroyDevice(ns, this.device(ns, name));
      return '';
    }
    if (verb === 'set') {
      const name = args[0] === 'dev' ? args[1] : args[0];
      const device = this.device(ns, name);
      for (const arg of args.slice(args[0] === 'dev' ? 2 : 1)) {
        if (arg === 'up') device.up = true;
        else if (arg === 'down') device.up = false;
        else throw unsupported(`ip link set … ${arg}`);
      }
      return '';
    }
    throw unsupported(`ip link ${verb}`);
  }

  private linkJson(device: Device): Pairs {
    const flags: Record<DeviceKind, string[]> = {
      ifb: ['BROADCAST', 'NOARP'],
      dummy: ['BROADCAST', 'NOARP'],
      veth: ['BROADCAST', 'MULTICAST'],
      wireguard: ['POINTOPOINT', 'NOARP'],
      loopback: ['LOOPBACK'],
    };
    const shown = [...flags[device.kind], ...(device.up ? ['UP', 'LOWER_UP'] : [])];
    const entries: [string, Json][] = [
      ['ifindex', device.ifindex],
      ['ifname', device.name],
      ['flags', shown],
      ['mtu', device.kind === 'wireguard' ? 1420 : device.kind === 'loopback' ? 65536 : 1500],
      ['qdisc', device.root?.kind ?? (device.up ? this.defaultRootKind(device) : 'noop')],
      ['operstate', device.up ? 'UNKNOWN' : 'DOWN'],
      ['linkmode', 'DEFAULT'],
      ['group', 'default'],
      ['txqlen', device.txqlen],
      ['link_type', device.kind === 'wireguard' ? 'none' : device.kind === 'loopback' ? 'loopback' : 'ether'],
    ];
    if (device.mac !== '') entries.push(['address', device.mac], ['broadcast', 'ff:ff:ff:ff:ff:ff']);
    return new Pairs(entries);
  }

  private defaultRootKind(device: Device): string {
    // An IFB has a tx queue length (32): the default qdisc is pfifo_fast. The others have none or are
    // lltx software devices: noqueue.
    return device.kind === 'ifb' ? 'pfifo_fast' : 'noqueue';
  }

  // ---- qdiscs ----

  private findQdisc(device: Device, handleMajor: number): Qdisc | null {
    if (device.root && device.root.major === handleMajor) return device.root;
    if (device.ingress && device.ingress.major === handleMajor) return device.ingress;
    return device.hashed.find((q) => q.major === handleMajor) ?? null;
  }

  private qdiscShow(ns: Netns, args: readonly string[], json: boolean): string {
    if (!json) throw unsupported('tc qdisc show without -j');
    const device = this.device(ns, args[0] === 'dev' ? args[1] : undefined);
    const out: Json[] = [];
    if (device.root) out.push(this.qdiscJson(device, device.root));
    else if (device.up) {
      out.push(
        device.kind === 'ifb'
          ? obj(
              ['kind', 'pfifo_fast'],
              ['handle', '0:'],
              ['root', true],
              ['refcnt', 2],
              ['options', obj(['bands', 3], ['priomap', [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]], ['multiqueue', false])],
            )
          : obj(['kind', 'noqueue'], ['handle', '0:'], ['root', true], ['refcnt', 2], ['options', obj()]),
      );
    }
    for (const q of hashOrder(device)) out.push(this.qdiscJson(device, q));
    if (device.ingress) out.push(this.qdiscJson(device, device.ingress));
    return `${jsonText(out)}\n`;
  }

  private qdiscJson(device: Device, q: Qdisc): Pairs {
    const entries: [string, Json][] = [
      ['kind', q.kind],
      ['handle', `${hex(q.major)}:`],
    ];
    if (q.parent === 'root') entries.push(['root', true], ['refcnt', device.kind === 'ifb' ? 2 : 3]);
    else if (q.parent === 'ingress') entries.push(['parent', 'ffff:fff1']);
    else entries.push(['parent', classidText(q.parent)]);
    let options: Pairs;
    if (q.htb) {
      options = obj(
        ['r2q', q.htb.r2q],
        ['default', q.htb.defcls === 0 ? '0' : `0x${hex(q.htb.defcls)}`],
        ['direct_packets_stat', 0],
        ['direct_qlen', device.txqlen],
      );
    } else if (q.kind === 'tbf') {
      options = tbfJson(Number(q.options.rate), Number(q.options.burst), Number(q.options.limit));
    } else {
      options = new Pairs(Object.entries(q.options));
    }
    entries.push(['options', options]);
    return new Pairs(entries);
  }

  /** `tc qdisc add|replace|change|del …` (net/sched/sch_api.c `tc_modify_qdisc` / `tc_get_qdisc`). */
  private qdiscModify(ns: Netns, verb: string, args: readonly string[]): string {
    let devName: string | undefined;
    let parent: number | null = null;
    let handle: number | null = null;
    let kind: string | undefined;
    let kindArgs: string[] = [];
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i];
      if (arg === 'dev') devName = args[++i];
      else if (arg === 'root') parent = TC_H_ROOT;
      else if (arg === 'ingress') {
        parent = TC_H_INGRESS;
        handle = 0xffff0000;
        kind = 'ingress';
      } else if (arg === 'parent') {
        const value = parseClassid(args[++i] ?? '');
        if (value === null) throw usage('Invalid parent ID');
        parent = value;
      } else if (arg === 'handle') {
        const value = parseClassid(args[++i] ?? '');
        if (value === null) throw usage('Invalid handle');
        handle = value;
      } else if (arg !== undefined) {
        if (kind === 'ingress' && arg === 'ingress') continue;
        kind = arg;
        kindArgs = args.slice(i + 1);
        break;
      }
    }
    const device = this.device(ns, devName);
    if (kind === 'ingress' && parent === null) parent = TC_H_INGRESS;
    const options = kind === undefined ? {} : this.qdiscOptions(kind, kindArgs, device);
    const flags =
      verb === 'add'
        ? { create: true, excl: true, replace: false }
        : verb === 'replace'
          ? { create: true, excl: false, replace: true }
          : verb === 'change'
            ? { create: false, excl: false, replace: false }
            : verb === 'del' || verb === 'delete'
              ? null
              : undefined;
    if (flags === undefined) throw unsupported(`tc qdisc ${verb}`);
    if (flags === null) return this.qdiscDelete(ns, device, parent, handle ?? 0, kind);

    // Locate what sits at the parent now.
    let p: Qdisc | null = null;
    let current: Qdisc | null;
    let leafClass: HtbClass | null = null;
    if (parent === null) {
      if (!handle) throw extackError('Handle cannot be zero');
      current = this.findQdisc(device, major(handle));
      return this.qdiscChange(current, flags, kind, options);
    }
    if (parent === TC_H_ROOT) current = device.root;
    else if (parent === TC_H_INGRESS) {
      device.ingressQueue = true;
      current = device.ingress;
    } else {
      p = this.findQdisc(device, major(parent));
      if (!p) throw extackError('Failed to find specified qdisc');
      if (p.kind === 'tbf') throw unsupported("a qdisc under a tbf's class");
      const cls = p.htb?.classes.get(minorOf(parent));
      if (!p.htb || !cls) throw extackError('Specified class not found');
      leafClass = cls;
      current = cls.leaf;
    }
    if (!current || !handle || current.major !== major(handle)) {
      if (handle) {
        if (current && !flags.replace) throw extackError('NLM_F_REPLACE needed to override');
        if (minorOf(handle)) throw extackError('Invalid minor handle');
        const existing = this.findQdisc(device, major(handle));
        if (!existing) return this.createAndGraft(ns, device, parent, handle, kind, options, flags, p, leafClass);
        const existingParent = existing.parent === 'root' ? TC_H_ROOT : existing.parent === 'ingress' ? TC_H_INGRESS : existing.parent;
        if (existingParent !== parent) throw extackError('Cannot move an existing qdisc to a different parent');
        if (flags.excl) throw extackError('Exclusivity flag on, cannot override');
        if (kind !== undefined && kind !== existing.kind) throw extackError('Invalid qdisc name: must match existing qdisc');
        throw unsupported('regrafting an existing qdisc');
      }
      if (!current) return this.createAndGraft(ns, device, parent, handle ?? 0, kind, options, flags, p, leafClass);
      if (flags.create && flags.replace && (flags.excl || (kind !== undefined && kind !== current.kind))) {
        return this.createAndGraft(ns, device, parent, 0, kind, options, flags, p, leafClass);
      }
    }
    return this.qdiscChange(current, flags, kind, options);
  }

  private qdiscChange(q: Qdisc | null, flags: { excl: boolean }, kind: string | undefined, options: Record<string, number | boolean | string>): string {
    if (!q) throw extackError('Specified qdisc not found');
    if (flags.excl) throw extackError('Exclusivity flag on, cannot modify');
    if (kind !== undefined && kind !== q.kind) throw extackError('Invalid qdisc name: must match existing qdisc');
    // HTB and ingress have no `change` operation (HTB takes options, so it is refused; ingress none).
    if (q.kind === 'htb') throw extackError('Change operation not supported by specified qdisc');
    Object.assign(q.options, options);
    return '';
  }

  private createAndGraft(
    ns: Netns,
    device: Device,
    parent: number,
    handle: number,
    kind: string | undefined,
    options: Record<string, number | boolean | string>,
    flags: { create: boolean },
    p: Qdisc | null,
    leafClass: HtbClass | null,
  ): string {
    if (!flags.create) throw extackError('Qdisc not found. To create specify NLM_F_CREATE flag');
    if (kind === undefined) throw usage('Unknown qdisc "", hence option "" is unparsable');
    if (!this.qdiscKinds.has(kind)) throw extackError('Specified qdisc kind is unknown');
    if (parent === TC_H_INGRESS && kind !== 'ingress') throw unsupported('a non-ingress qdisc at ingress');
    if (kind === 'ingress' && parent !== TC_H_INGRESS) throw extackError('Specified qdisc is not ingress');
    let majorNumber = major(handle);
    if (majorNumber === 0) {
      do {
        this.autoHandle = this.autoHandle >= 0xffff ? 0x8001 : this.autoHandle + 1;
      } while (this.findQdisc(device, this.autoHandle));
      majorNumber = this.autoHandle;
    }
    const q: Qdisc = {
      kind,
      major: majorNumber,
      parent: parent === TC_H_ROOT ? 'root' : parent === TC_H_INGRESS ? 'ingress' : parent,
      options: kind === 'htb' ? {} : options,
      htb: kind === 'htb' ? { defcls: Number(options.default ?? 0), r2q: Number(options.r2q ?? 10), classes: new Map(), hash: new ClassHash() } : null,
      block: kind === 'htb' || kind === 'ingress' ? { tps: [], u32: null } : null,
      seq: (this.seq += 1),
    };
    if (parent === TC_H_ROOT) {
      if (device.root) this.destroyQdisc(ns, device, device.root);
      device.root = q;
    } else if (parent === TC_H_INGRESS) {
      device.ingress = q;
    } else {
      if (!p?.htb || !leafClass) throw extackError('Specified class not found');
      if (leafClass.children > 0) throw rtnetlink('Invalid argument');
      if (leafClass.leaf) this.destroyQdisc(ns, device, leafClass.leaf);
      leafClass.leaf = q;
      device.hashed.push(q);
    }
    return '';
  }

  private qdiscDelete(ns: Netns, device: Device, parent: number | null, handle: number, kind: string | undefined): string {
    let q: Qdisc | null;
    let isDefault = false;
    if (parent === null) {
      q = this.findQdisc(device, major(handle));
      if (!q) throw extackError('Failed to find qdisc with specified handle');
      throw extackError('Classid cannot be zero');
    }
    if (parent === TC_H_ROOT) {
      q = device.root;
      isDefault = q === null;
      if (q === null && !device.up) isDefault = true;
    } else if (parent === TC_H_INGRESS) {
      if (!device.ingressQueue) throw extackError('Cannot find specified qdisc on specified device');
      q = device.ingress;
      isDefault = q === null;
    } else {
      const p = this.findQdisc(device, major(parent));
      if (!p) throw extackError('Failed to find qdisc with specified classid');
      const cls = p.htb?.classes.get(minorOf(parent));
      if (!cls) throw extackError('Specified class not found');
      q = cls.leaf;
      isDefault = q === null;
    }
    // A default qdisc (noop, noqueue, pfifo_fast, HTB's own leaf pfifo) has handle 0.
    const currentHandle = isDefault || q === null ? 0 : handleOf(q.major);
    if (handle && currentHandle !== handle) throw extackError('Invalid handle');
    if (kind !== undefined && !isDefault && q && kind !== q.kind) throw extackError('Invalid qdisc name: must match existing qdisc');
    if (isDefault || q === null) throw extackError('Cannot delete qdisc with handle of zero');
    this.destroyQdisc(ns, device, q);
    if (parent === TC_H_ROOT) device.root = null;
    else if (parent === TC_H_INGRESS) device.ingress = null;
    return '';
  }

  /** Frees a qdisc with its classes, leaves and filters (no deferred effects outlive it). */
  private destroyQdisc(ns: Netns, device: Device, q: Qdisc): void {
    if (q.htb) {
      for (const cls of q.htb.classes.values()) if (cls.leaf) this.destroyQdisc(ns, device, cls.leaf);
    }
    if (q.block?.u32) {
      for (const table of q.block.u32.tables) {
        table.alive = false;
        for (const bucket of table.buckets) for (const node of bucket) for (const action of node.actions) ns.mirredIndices.delete(action.index);
      }
    }
    if (q.block) q.block = { tps: [], u32: null };
    device.hashed = device.hashed.filter((other) => other !== q);
    if (device.root === q) device.root = null;
    if (device.ingress === q) device.ingress = null;
    if (typeof q.parent === 'number') {
      const owner = this.findQdisc(device, major(q.parent));
      const cls = owner?.htb?.classes.get(minorOf(q.parent));
      if (cls && cls.leaf === q) cls.leaf = null;
    }
  }

  private qdiscOptions(kind: string, args: readonly string[], device: Device): Record<string, number | boolean | string> {
    const out: Record<string, number | boolean | string> = {};
    const number = (i: number, what: string, radix = 10): number => {
      const text = args[i] ?? '';
      const value = radix === 16 ? parseInt(text, 16) : Number(text);
      if (!Number.isInteger(value) || text === '') throw usage(`Illegal "${what}"`);
      return value;
    };
    switch (kind) {
      case 'htb':
        for (let i = 0; i < args.length; i += 1) {
          if (args[i] === 'default') out.default = number(++i, 'default', 16);
          else if (args[i] === 'r2q') out.r2q = number(++i, 'r2q');
          else if (args[i] === 'direct_qlen') out.direct_qlen = number(++i, 'direct_qlen');
          else throw usage(`What is "${args[i] ?? ''}"?`);
        }
        return out;
      case 'pfifo':
      case 'bfifo':
        out.limit = device.txqlen;
        for (let i = 0; i < args.length; i += 1) {
          if (args[i] === 'limit') out.limit = number(++i, 'limit');
          else throw usage(`What is "${args[i] ?? ''}"?`);
        }
        return out;
      case 'sfq':
        Object.assign(out, { limit: 127, perturb: 0, quantum: 1514, divisor: 1024 });
        for (let i = 0; i < args.length; i += 1) {
          if (args[i] === 'perturb') out.perturb = number(++i, 'perturb');
          else if (args[i] === 'limit') out.limit = number(++i, 'limit');
          else if (args[i] === 'quantum') out.quantum = number(++i, 'quantum');
          else throw usage(`What is "${args[i] ?? ''}"?`);
        }
        return out;
      case 'fq_codel':
        Object.assign(out, { limit: 10240, flows: 1024, quantum: 1514, target: 4999, interval: 99999, memory_limit: 33554432, ecn: true, drop_batch: 64 });
        for (let i = 0; i < args.length; i += 1) {
          if (args[i] === 'limit') out.limit = number(++i, 'limit');
          else if (args[i] === 'flows') out.flows = number(++i, 'flows');
          else if (args[i] === 'quantum') out.quantum = number(++i, 'quantum');
          else throw usage(`What is "${args[i] ?? ''}"?`);
        }
        return out;
      case 'tbf':
        return tbfOptions(args);
      case 'ingress':
        if (args.length > 0) throw usage(`What is "${args[0] ?? ''}"?`);
        return out;
      default:
        if (args.length > 0) throw unsupported(`options of qdisc ${kind}`);
        return out;
    }
  }

  // ---- classes ----

  private classModify(ns: Netns, verb: string, args: readonly string[]): string {
    let devName: string | undefined;
    let parent: number | null = null;
    let classid: number | null = null;
    let kind: string | undefined;
    let kindArgs: string[] = [];
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i];
      if (arg === 'dev') devName = args[++i];
      else if (arg === 'root') parent = TC_H_ROOT;
      else if (arg === 'parent') parent = parseClassid(args[++i] ?? '');
      else if (arg === 'classid') classid = parseClassid(args[++i] ?? '');
      else if (arg !== undefined) {
        kind = arg;
        kindArgs = args.slice(i + 1);
        break;
      }
    }
    const device = this.device(ns, devName);
    if (classid === null) throw unsupported('class without classid');
    const qid = parent !== null && parent !== TC_H_ROOT ? major(parent) : major(classid);
    if (parent !== null && parent !== TC_H_ROOT && major(classid) !== 0 && major(classid) !== major(parent)) throw rtnetlink('Invalid argument');
    const q = this.findQdisc(device, qid);
    if (!q) throw rtnetlink('No such file or directory');
    if (!q.htb) throw rtnetlink(q.kind === 'ingress' ? 'Operation not supported' : 'Invalid argument');
    const htb = q.htb;
    const minor = minorOf(classid);
    const existing = htb.classes.get(minor);
    if (verb === 'del' || verb === 'delete') {
      if (!existing) throw rtnetlink('No such file or directory');
      if (existing.children > 0 || this.boundCount(q, minor) > 0) throw extackError('HTB class in use');
      if (existing.leaf) this.destroyQdisc(ns, device, existing.leaf);
      htb.classes.delete(minor);
      htb.hash.remove(classid);
      if (existing.parentMinor !== null) {
        const up = htb.classes.get(existing.parentMinor);
        if (up) up.children -= 1;
      }
      return '';
    }
    if (kind !== 'htb') throw unsupported(`class kind ${String(kind)}`);
    const opts = this.htbClassOptions(kindArgs);
    if (verb === 'add' || verb === 'replace' || verb === 'change') {
      if (existing) {
        if (verb === 'add') throw rtnetlink('File exists');
        existing.rateBytes = opts.rate;
        existing.ceilBytes = opts.ceil;
        existing.bufferTicks = opts.buffer;
        existing.cbufferTicks = opts.cbuffer;
        existing.quantum = opts.quantum;
        existing.prio = opts.prio;
        return '';
      }
      if (verb === 'change') throw rtnetlink('No such file or directory');
      if (major(classid) !== q.major) throw rtnetlink('Invalid argument');
      const parentClass = parent !== null && parent !== TC_H_ROOT ? htb.classes.get(minorOf(parent)) ?? null : null;
      if (parentClass) {
        // The parent becomes an inner class: its leaf qdisc goes.
        if (parentClass.leaf) this.destroyQdisc(ns, device, parentClass.leaf);
        parentClass.children += 1;
      }
      htb.classes.set(minor, {
        minor,
        parentMinor: parentClass ? parentClass.minor : null,
        rateBytes: opts.rate,
        ceilBytes: opts.ceil,
        bufferTicks: opts.buffer,
        cbufferTicks: opts.cbuffer,
        quantum: opts.quantum,
        prio: opts.prio,
        leaf: null,
        children: 0,
      });
      htb.hash.insert(classid);
      return '';
    }
    throw unsupported(`tc class ${verb}`);
  }

  /** Filters holding the class: keys bound when they were added (orphaned tables included). */
  private boundCount(q: Qdisc, minor: number): number {
    let count = 0;
    for (const table of q.block?.u32?.tables ?? []) for (const bucket of table.buckets) for (const node of bucket) if (node.boundMinor === minor) count += 1;
    return count;
  }

  private htbClassOptions(args: readonly string[]): { rate: number; ceil: number; buffer: number; cbuffer: number; quantum: number | null; prio: number } {
    let rate: number | null = null;
    let ceil: number | null = null;
    let burst: number | null = null;
    let cburst: number | null = null;
    let quantum: number | null = null;
    let prio = 0;
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i];
      const value = args[++i] ?? '';
      if (arg === 'rate') rate = parseRate(value);
      else if (arg === 'ceil') ceil = parseRate(value);
      else if (arg === 'burst' || arg === 'buffer' || arg === 'maxburst') burst = parseSize(value);
      else if (arg === 'cburst' || arg === 'cbuffer' || arg === 'cmaxburst') cburst = parseSize(value);
      else if (arg === 'quantum') quantum = Number(value);
      else if (arg === 'prio') prio = Number(value);
      else throw usage(`What is "${arg ?? ''}"?`);
      if ((arg === 'rate' && rate === null) || (arg === 'ceil' && ceil === null)) throw usage(`Illegal "${arg}"`);
    }
    if (!rate) throw usage('"rate" is required.');
    const c = ceil ?? rate;
    // iproute2: the default burst is rate / HZ + mtu (HZ read as 1e9 here, mtu 1600).
    const b = burst ?? Math.floor(rate / 1e9) + 1600;
    const cb = cburst ?? Math.floor(c / 1e9) + 1600;
    return { rate, ceil: c, buffer: xmitTicks(rate, b), cbuffer: xmitTicks(c, cb), quantum, prio };
  }

  private classShow(ns: Netns, args: readonly string[], stats: boolean): string {
    const device = this.device(ns, args[0] === 'dev' ? args[1] : undefined);
    const root = device.root;
    if (!root) return '';
    const lines: string[] = [];
    // tc_dump_tclass_root: the root's classes, then those of every qdisc in the device's hash. A tbf has
    // one class, `N:1` (its inner bfifo, invisible, handle 0: no `leaf`), and no class statistics.
    const tbfClass = (q: Qdisc): void => {
      if (q.kind !== 'tbf') return;
      lines.push(`class tbf ${hex(q.major)}:1 parent ${hex(q.major)}: `);
      if (stats) lines.push('');
    };
    tbfClass(root);
    const htb = root.htb;
    for (const classid of htb?.hash.order() ?? []) {
      const cls = htb?.classes.get(minorOf(classid));
      if (!cls) continue;
      const where = cls.parentMinor === null ? 'root' : `parent ${classidText((handleOf(root.major) | cls.parentMinor) >>> 0)}`;
      const leaf = cls.leaf ? `leaf ${hex(cls.leaf.major)}: ` : '';
      const prio = cls.children === 0 ? `prio ${cls.prio} ` : '';
      lines.push(
        `class htb ${classidText(classid)} ${where} ${leaf}${prio}rate ${rateText(cls.rateBytes)} ceil ${rateText(cls.ceilBytes)} ` +
          `burst ${sizeText(xmitSize(cls.rateBytes, cls.bufferTicks))} cburst ${sizeText(xmitSize(cls.ceilBytes, cls.cbufferTicks))} `,
      );
      if (stats) {
        lines.push(
          ' Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) ',
          ' backlog 0b 0p requeues 0',
          ' lended: 0 borrowed: 0 giants: 0',
          ` tokens: ${cls.bufferTicks | 0} ctokens: ${cls.cbufferTicks | 0}`,
          '',
        );
      }
    }
    for (const q of hashOrder(device)) tbfClass(q);
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  // ---- filters ----

  private filterBlock(device: Device, parent: number | null): { q: Qdisc; block: Block } {
    if (parent === null) throw unsupported('filter without parent');
    if (minorOf(parent) !== 0) throw unsupported('class-level filters');
    const q = this.findQdisc(device, major(parent));
    if (!q) throw filterError("Parent Qdisc doesn't exists");
    if (!q.block) throw filterError('Class doesn\'t support blocks');
    return { q, block: q.block };
  }

  private filterShow(ns: Netns, args: readonly string[], json: boolean): string {
    if (!json) throw unsupported('tc filter show without -j');
    let devName: string | undefined;
    let parent: number | null = null;
    for (let i = 0; i < args.length; i += 1) {
      if (args[i] === 'dev') devName = args[++i];
      else if (args[i] === 'parent') parent = parseClassid(args[++i] ?? '');
      else if (args[i] === 'root') parent = TC_H_ROOT;
      else throw unsupported(`tc filter show … ${args[i] ?? ''}`);
    }
    const device = this.device(ns, devName);
    if (parent === null) throw unsupported('filter show without parent');
    const q = parent === TC_H_ROOT ? device.root : this.findQdisc(device, major(parent));
    if (!q?.block) return '[]\n';
    const out: Json[] = [];
    for (const tp of q.block.tps) {
      const head: [string, Json][] = [
        ['protocol', protocolName(tp.protocol)],
        ['pref', tp.prio],
        ['kind', 'u32'],
        ['chain', 0],
      ];
      out.push(new Pairs(head));
      for (const table of q.block.u32?.tables ?? []) {
        if (table.prio !== tp.prio) continue;
        out.push(new Pairs([...head, ['options', obj(['fh', `${hex(table.id)}:`], ['ht_divisor', table.divisor])]]));
        table.buckets.forEach((bucket) => {
          for (const node of bucket) out.push(new Pairs([...head, ['options', this.keyJson(ns, node)]]));
        });
      }
    }
    return `${jsonText(out)}\n`;
  }

  private keyJson(ns: Netns, node: U32Node): Pairs {
    const entries: [string, Json][] = [
      ['fh', u32HandleText(node.table.id, node.bucket, node.node)],
      ['order', node.node],
      ['key_ht', hex(node.table.id)],
      ['bkt', hex(node.bucket)],
    ];
    if (node.classid !== null) entries.push(['flowid', classidText(node.classid)]);
    if (node.link) entries.push(['link', `${hex(node.link.id)}:`]);
    entries.push(['not_in_hw', true]);
    for (const key of node.keys) entries.push(['match', obj(['value', hex(key.value)], ['mask', hex(key.mask)], ['offmask', ''], ['off', key.off])]);
    if (node.hashMask !== 0) entries.push(['hash_mask', hex(node.hashMask)], ['hash_off', node.hashOffset]);
    if (node.actions.length > 0) {
      const target = (action: MirredAction): string => {
        if (action.target === null) return '*';
        return [...ns.devices.values()].find((d) => d.ifindex === action.target)?.name ?? '*';
      };
      entries.push([
        'actions',
        node.actions.map((action, index) =>
          obj(
            ['order', index + 1],
            ['kind', 'mirred'],
            ['mirred_action', action.mode],
            ['direction', 'egress'],
            ['to_dev', target(action)],
            ['control_action', obj(['type', action.mode === 'redirect' ? 'stolen' : 'pipe'])],
            ['index', action.index],
            ['ref', 1],
            ['bind', 1],
          ),
        ),
      ]);
    }
    return new Pairs(entries);
  }

  /** `tc filter add|replace|change|del …` (net/sched/cls_api.c + cls_u32.c). */
  private filterModify(ns: Netns, verb: string, args: readonly string[]): string {
    const isDelete = verb === 'del' || verb === 'delete';
    if (!isDelete && verb !== 'add' && verb !== 'replace' && verb !== 'change') throw unsupported(`tc filter ${verb}`);
    let devName: string | undefined;
    let parent: number | null = null;
    let handleText: string | undefined;
    let prio = 0;
    let protocol: number | null = null;
    let kind: string | undefined;
    let kindArgs: string[] = [];
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i] ?? '';
      if (arg === 'dev') devName = args[++i];
      else if (arg === 'root') parent = TC_H_ROOT;
      else if (arg === 'parent') {
        parent = parseClassid(args[++i] ?? '');
        if (parent === null) throw usage(`Illegal "parent"`);
      } else if (arg === 'handle') handleText = args[++i];
      else if (['prio', 'pref', 'priority', 'preference'].includes(arg)) {
        const value = Number(args[++i]);
        if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw usage('Illegal "priority"');
        prio = value;
      } else if (arg === 'protocol') {
        const name = (args[++i] ?? '').toLowerCase();
        const value = PROTOCOLS[name];
        if (value === undefined) throw usage(`Illegal "protocol"`);
        protocol = value;
      } else {
        kind = arg;
        kindArgs = args.slice(i + 1);
        break;
      }
    }
    const device = this.device(ns, devName);
    if (kind !== undefined && kind !== 'u32') throw unsupported(`filter kind ${kind}`);
    if (handleText !== undefined && kind === undefined) throw usage('Must specify filter type when using "handle"');
    let handle = 0;
    if (handleText !== undefined) {
      const value = parseU32Handle(handleText);
      if (value === null) throw usage('Illegal filter ID');
      handle = value;
    }
    if (parent === TC_H_ROOT) parent = device.root ? handleOf(device.root.major) : 0;
    const { q, block } = this.filterBlock(device, parent);
    if (isDelete) return this.filterDelete(ns, q, block, prio, protocol ?? 0, handle);
    const options = kind === undefined ? null : this.u32Options(ns, kindArgs, handle);
    if (options === null) throw usage('Unknown filter "", hence option "" is unparsable');
    if (prio === 0) throw unsupported('automatic filter priority');
    return this.filterAdd(ns, q, block, prio, protocol ?? PROTOCOLS.all ?? 3, handle, options, verb !== 'add');
  }

  private u32Options(ns: Netns, args: readonly string[], handle: number): U32Options {
    const opts: U32Options = { present: args.length > 0, sel: null, hashMask: 0, hashOffset: 0, classid: null, divisor: null, link: null, ht: null, terminal: false, mirred: [] };
    const sel: U32Key[] = [];
    let selOk = false;
    const pack = (value: number, mask: number, off: number): boolean => {
      const v = (value & mask) >>> 0;
      const existing = sel.find((k) => k.off === off);
      if (existing) {
        if (((v ^ existing.value) & mask & existing.mask) !== 0) return false;
        existing.value = (existing.value | v) >>> 0;
        existing.mask = (existing.mask | mask) >>> 0;
        return true;
      }
      if (off % 4 !== 0 || sel.length >= 128) return false;
      sel.push({ value: v, mask: mask >>> 0, off });
      return true;
    };
    const num = (text: string | undefined, radix: 0 | 16): number | null => {
      if (text === undefined || text === '') return null;
      const value = radix === 16 ? Number(`0x${text.replace(/^0x/i, '')}`) : Number(text);
      return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : null;
    };
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i];
      if (arg === 'match') {
        const type = args[++i];
        let ok = false;
        if (type === 'u32' || type === 'u16' || type === 'u8') {
          const value = num(args[++i], 0);
          const mask = num(args[++i], 16);
          let off = 0;
          if (args[i + 1] === 'at') {
            i += 2;
            off = Number(args[i]);
          }
          const width = type === 'u32' ? 32 : type === 'u16' ? 16 : 8;
          if (value !== null && mask !== null && Number.isInteger(off) && value < 2 ** width && mask < 2 ** width) {
            const shift = width === 32 ? 0 : width === 16 ? ((off & 3) === 0 ? 16 : 0) : 24 - (off & 3) * 8;
            ok = pack((value * 2 ** shift) >>> 0, (mask * 2 ** shift) >>> 0, width === 32 ? off : off & ~3);
          }
        } else if (type === 'ip' || type === 'ip6') {
          const dir = args[++i];
          const cidr = args[++i] ?? '';
          const base = type === 'ip' ? { src: 12, dst: 16 } : { src: 8, dst: 24 };
          const off = dir === 'src' || dir === 'dst' ? base[dir] : null;
          const prefix = parsePrefix(cidr, type === 'ip' ? 4 : 6);
          if (off !== null && prefix) {
            ok = true;
            if (type === 'ip') {
              ok = pack(prefix.words[0] ?? 0, prefix.length === 0 ? 0 : (0xffffffff << (32 - prefix.length)) >>> 0, off);
            } else {
              for (let bit = 0; bit < prefix.length && ok; bit += 32) {
                const bits = Math.min(32, prefix.length - bit);
                ok = pack(prefix.words[bit / 32] ?? 0, (0xffffffff << (32 - bits)) >>> 0, off + bit / 8);
              }
            }
          }
        } else {
          throw unsupported(`match ${String(type)}`);
        }
        if (!ok) throw usage('Illegal "match"');
        selOk = true;
      } else if (arg === 'hashkey') {
        if (args[i + 1] !== 'mask') throw usage('Illegal "hashkey"');
        const mask = num(args[i + 2], 16);
        i += 2;
        let off = 0;
        if (args[i + 1] === 'at') {
          off = Number(args[i + 2]);
          i += 2;
        }
        if (mask === null || !Number.isInteger(off) || off % 4 !== 0) throw usage('Illegal "hashkey"');
        opts.hashMask = mask;
        opts.hashOffset = off;
        selOk = true;
      } else if (arg === 'classid' || arg === 'flowid') {
        const value = parseClassid(args[++i] ?? '');
        if (value === null) throw usage('Illegal "classid"');
        opts.classid = value;
        opts.terminal = true;
      } else if (arg === 'divisor') {
        const value = Number(args[++i]);
        if (!Number.isInteger(value) || value === 0 || value > 0x100 || ((value - 1) & value) !== 0) throw usage('Illegal "divisor"');
        opts.divisor = value;
      } else if (arg === 'link') {
        const value = parseU32Handle(args[++i] ?? '');
        if (value === null) throw usage('Illegal "link"');
        if (value && NODE(value)) throw usage('"link" must be a hash table.');
        opts.link = value;
      } else if (arg === 'ht') {
        const value = parseU32Handle(args[++i] ?? '');
        if (value === null) throw usage('Illegal "ht"');
        if (handle && NODE(value)) throw usage('"ht" must be a hash table.');
        opts.ht = (value & 0xfffff000) >>> 0;
      } else if (arg === 'action' || arg === 'actions') {
        // action mirred egress redirect|mirror dev X
        if (args[i + 1] !== 'mirred' || args[i + 2] !== 'egress' || (args[i + 3] !== 'redirect' && args[i + 3] !== 'mirror') || args[i + 4] !== 'dev') {
          throw unsupported(`action ${args.slice(i + 1).join(' ')}`);
        }
        const mode = args[i + 3] as 'redirect' | 'mirror';
        const target = args[i + 5] ?? '';
        if (!ns.devices.has(target)) {
          throw usage(`Cannot find device "${target}"\nbad action parsing\nparse_action: bad value (${i + 1}:mirred)!\nIllegal "action"`);
        }
        opts.mirred.push({ mode, target });
        opts.terminal = true;
        i += 5;
      } else {
        throw usage(`What is "${String(arg)}"?`);
      }
    }
    if (selOk) opts.sel = sel;
    return opts;
  }

  private u32Common(block: Block): U32Common {
    if (!block.u32) block.u32 = { tables: [], rootIds: new Set(), nextRootId: 1, tpCount: 0 };
    return block.u32;
  }

  /** `u32_init`: a new tp's root table (the first on a qdisc is 800:, then cyclic 801:, 802:, …). */
  private createTp(block: Block, prio: number, protocol: number): Tp | CommandFailure {
    const common = block.u32;
    let id = 0x800;
    let idrId = 0;
    if (common) {
      idrId = allocCyclic(common);
      if (idrId === 0) return rtnetlink('Cannot allocate memory');
      id = 0x800 | idrId;
    }
    const tpc = this.u32Common(block);
    const root: U32Table = { id, prio, divisor: 1, isRoot: true, refcnt: 2, buckets: [[]], alive: true, idrId };
    tpc.tables.unshift(root);
    tpc.tpCount += 1;
    const tp: Tp = { prio, protocol, root };
    block.tps.push(tp);
    block.tps.sort((a, b) => a.prio - b.prio);
    return tp;
  }

  /** `u32_destroy`: the tp's root table goes; the rest of the qdisc's tables only with the last tp. */
  private destroyTp(ns: Netns, q: Qdisc, block: Block, tp: Tp): void {
    block.tps = block.tps.filter((other) => other !== tp);
    const common = block.u32;
    if (!common) return;
    this.destroyTable(ns, common, tp.root);
    common.tpCount -= 1;
    if (common.tpCount === 0) {
      for (const table of common.tables) this.clearTable(ns, table);
      for (const table of common.tables) table.alive = false;
      block.u32 = null;
    }
    void q;
  }

  /** `u32_clear_hnode`: unbinds and removes every key; their link references are released later. */
  private clearTable(ns: Netns, table: U32Table): void {
    for (const bucket of table.buckets) {
      for (const node of bucket) this.releaseKey(ns, node);
      bucket.length = 0;
    }
  }

  private releaseKey(ns: Netns, node: U32Node): void {
    node.boundMinor = null;
    for (const action of node.actions) ns.mirredIndices.delete(action.index);
    // u32_delete_key → tcf_queue_work: the key (and its hold on the linked table) is freed after an
    // RCU grace period. Measured here: a table delete right after its link key's delete fails in the
    // same batch and succeeds ~0.1 s later.
    if (node.link) this.pendingReleases.push(node.link);
  }

  private destroyTable(ns: Netns, common: U32Common, table: U32Table): void {
    this.clearTable(ns, table);
    common.tables = common.tables.filter((t) => t !== table);
    if (table.idrId) common.rootIds.delete(table.idrId);
    table.alive = false;
  }

  private flushDeferred(): void {
    for (const table of this.pendingReleases) table.refcnt -= 1;
    this.pendingReleases = [];
  }

  private findTable(common: U32Common | null, id: number): U32Table | null {
    return common?.tables.find((t) => t.id === id) ?? null;
  }

  private findKey(common: U32Common | null, handle: number): U32Node | U32Table | null {
    const table = this.findTable(common, HTID(handle));
    if (!table) return null;
    if ((handle & 0xfffff) === 0) return table;
    if (HASH(handle) >= table.buckets.length) return null;
    return table.buckets[HASH(handle)]?.find((n) => n.node === NODE(handle)) ?? null;
  }

  private filterAdd(ns: Netns, q: Qdisc, block: Block, prio: number, protocol: number, handle: number, opts: U32Options, replace: boolean): string {
    let tp = block.tps.find((t) => t.prio === prio) ?? null;
    if (tp && tp.protocol !== protocol) throw filterError('Protocol mismatch for filter with specified priority');
    let created = false;
    if (!tp) {
      const made = this.createTp(block, prio, protocol);
      if (made instanceof CommandFailure) throw made;
      tp = made;
      created = true;
    }
    const undo = (failure: CommandFailure): CommandFailure => {
      if (created && tp) this.destroyTp(ns, q, block, tp);
      return failure;
    };
    const common = block.u32 as U32Common;
    if (handle) {
      const existing = this.findKey(common, handle);
      if (existing) {
        if (!replace) throw undo(filterError('Filter already exists'));
        throw undo(unsupported('changing an existing u32 filter'));
      }
    }
    if (!opts.present) {
      if (handle) throw undo(filterError('cls_u32: Filter handle requires options'));
      return '';
    }
    if (opts.divisor !== null) {
      if (handle & 0xfffff) throw undo(filterError('cls_u32: Divisor can only be used on a hash table'));
      let id = HTID(handle);
      let idrId = 0;
      if (!id) {
        idrId = allocCyclic(common);
        if (idrId === 0) throw undo(rtnetlink('Cannot allocate memory'));
        id = 0x800 | idrId;
      }
      const table: U32Table = { id, prio: tp.prio, divisor: opts.divisor, isRoot: false, refcnt: 1, buckets: Array.from({ length: opts.divisor }, () => []), alive: true, idrId };
      common.tables.unshift(table);
      return '';
    }
    let table: U32Table;
    let htid: number;
    if (opts.ht !== null) {
      const found = HTID(opts.ht) === 0xfff ? tp.root : this.findTable(common, HTID(opts.ht));
      if (!found) throw undo(filterError('cls_u32: Specified hash table not found'));
      table = found;
      htid = HTID(opts.ht) === 0xfff ? (found.id << 20) >>> 0 : opts.ht;
    } else {
      table = tp.root;
      htid = (tp.root.id << 20) >>> 0;
    }
    if (table.divisor - 1 < HASH(htid)) throw undo(filterError('cls_u32: Specified hash table buckets exceed configured value'));
    let node: number;
    const bucketKeys = table.buckets[HASH(htid)] as U32Node[];
    if (handle) {
      if (HTID(handle) && HTID(handle) !== HTID(htid)) throw undo(filterError('cls_u32: Handle specified hash table address mismatch'));
      if (NODE(handle) === 0) node = genNewKid(bucketKeys);
      else {
        node = NODE(handle);
        if (bucketKeys.some((n) => n.node === node)) throw undo(rtnetlink('No space left on device'));
      }
    } else {
      node = genNewKid(bucketKeys);
    }
    if (opts.sel === null) throw undo(filterError('cls_u32: Selector not specified'));
    let link: U32Table | null = null;
    if (opts.link !== null && opts.link !== 0) {
      const target = this.findTable(common, HTID(opts.link));
      if (!target) throw undo(filterError('cls_u32: Link hash table not found'));
      if (target.isRoot) throw undo(filterError('cls_u32: Not linking to root node'));
      link = target;
    }
    const actions: MirredAction[] = opts.mirred.map((m) => {
      let index = 1;
      while (ns.mirredIndices.has(index)) index += 1;
      ns.mirredIndices.add(index);
      return { index, mode: m.mode, target: ns.devices.get(m.target)?.ifindex ?? null };
    });
    if (link) link.refcnt += 1;
    // tcf_bind_filter: a reference on the class only if it exists now (a class created later is not
    // held by this key: checked on 6.18, `class del` then succeeds).
    let boundMinor: number | null = null;
    if (opts.classid !== null && q.htb && major(opts.classid) === q.major && q.htb.classes.has(minorOf(opts.classid))) {
      boundMinor = minorOf(opts.classid);
    }
    const key: U32Node = {
      table,
      bucket: HASH(htid),
      node,
      keys: opts.sel,
      hashMask: opts.hashMask,
      hashOffset: opts.hashOffset,
      link,
      classid: opts.classid,
      terminal: opts.terminal,
      boundMinor,
      actions,
    };
    const at = bucketKeys.findIndex((n) => node < n.node);
    bucketKeys.splice(at === -1 ? bucketKeys.length : at, 0, key);
    return '';
  }

  private filterDelete(ns: Netns, q: Qdisc, block: Block, prio: number, protocol: number, handle: number): string {
    if (prio === 0) {
      // No prio: flush every tp of chain 0 (nothing to do, and no error, when there is none).
      for (const tp of [...block.tps]) this.destroyTp(ns, q, block, tp);
      return '';
    }
    if (block.tps.length === 0) throw filterError('Cannot find specified filter chain');
    const tp = block.tps.find((t) => t.prio === prio);
    if (!tp) throw filterError('Filter with specified priority/protocol not found');
    if (protocol !== 0 && tp.protocol !== protocol) throw filterError('Protocol mismatch for filter with specified priority');
    if (!handle) {
      this.destroyTp(ns, q, block, tp);
      return '';
    }
    const common = block.u32 as U32Common;
    const target = this.findKey(common, handle);
    if (!target) throw filterError('Specified filter handle not found');
    if ('node' in target) {
      const bucket = target.table.buckets[target.bucket] as U32Node[];
      bucket.splice(bucket.indexOf(target), 1);
      this.releaseKey(ns, target);
    } else {
      if (target.isRoot) throw filterError('cls_u32: Not allowed to delete root node');
      if (target.refcnt !== 1) throw filterError('cls_u32: Can not delete in-use filter');
      this.destroyTable(ns, common, target);
    }
    // `*last = tp_c->refcnt == 1 && tp_c->knodes == 0`: the core then deletes the (empty) tp.
    if (common.tpCount === 1 && countKeys(common) === 0) this.destroyTp(ns, q, block, tp);
    return '';
  }
}

interface U32Options {
  /** False for `… u32` with nothing after it (no TCA_OPTIONS). */
  present: boolean;
  sel: U32Key[] | null;
  hashMask: number;
  hashOffset: number;
  classid: number | null;
  divisor: number | null;
  link: number | null;
  ht: number | null;
  terminal: boolean;
  mirred: { mode: 'redirect' | 'mirror'; target: string }[];
}

function countKeys(common: U32Common): number {
  let count = 0;
  for (const table of common.tables) for (const bucket of table.buckets) count += bucket.length;
  return count;
}

/** `idr_alloc_cyclic(…, 1, 0x7ff)`: root-table ids 1..0x7fe, searching on from the last one handed out. */
function allocCyclic(common: U32Common): number {
  for (let tries = 0; tries < 0x7fe; tries += 1) {
    const id = common.nextRootId;
    common.nextRootId = id >= 0x7fe ? 1 : id + 1;
    if (!common.rootIds.has(id)) {
      common.rootIds.add(id);
      return id;
    }
  }
  return 0;
}

/** `gen_new_kid`: the lowest free node id from 0x800, else from 1, in the key's bucket. */
function genNewKid(bucket: readonly U32Node[]): number {
  const used = new Set(bucket.map((n) => n.node));
  for (let id = 0x800; id <= 0xfff; id += 1) if (!used.has(id)) return id;
  for (let id = 1; id <= 0xfff; id += 1) if (!used.has(id)) return id;
  return 0xfff;
}

/** `match ip|ip6 …/L`: the address as 32-bit words (host order of the network bytes), host bits cleared by the mask. */
function parsePrefix(text: string, family: 4 | 6): { words: number[]; length: number } | null {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const max = family === 4 ? 32 : 128;
  const length = slash === -1 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(length) || length < 0 || length > max) return null;
  const bytes = family === 4 ? ipv4Bytes(address) : ipv6Bytes(address);
  if (!bytes) return null;
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) words.push((((bytes[i] ?? 0) << 24) | ((bytes[i + 1] ?? 0) << 16) | ((bytes[i + 2] ?? 0) << 8) | (bytes[i + 3] ?? 0)) >>> 0);
  return { words, length };
}

function ipv4Bytes(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return null;
  return parts.map(Number);
}

function ipv6Bytes(text: string): number[] | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string | undefined): number[] | null => {
    if (!part) return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  if (!head || !tail) return null;
  const all = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  if (all.length !== 8) return null;
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

/** The sim's own tables as the evaluator walks them (orphans reachable through links included). */
function evalTable(table: U32Table, seen = new Map<U32Table, EvalTable>()): EvalTable {
  const known = seen.get(table);
  if (known) return known;
  const buckets: EvalNode[][] = [];
  const view: EvalTable = { divisor: table.divisor, bucket: (index) => buckets[index] ?? [] };
  seen.set(table, view);
  table.buckets.forEach((bucket, index) => {
    buckets[index] = bucket.map((node) => ({
      keys: node.keys,
      link: node.link ? evalTable(node.link, seen) : null,
      hashMask: node.hashMask,
      hashOffset: node.hashOffset,
      flowidMinor: node.classid === null ? null : minorOf(node.classid),
      terminal: node.terminal,
    }));
  });
  return view;
}
