/**
 * Classifies a packet the way the kernel's HTB + cls_u32 would (net/sched/cls_u32.c `u32_classify`,
 * net/sched/sch_htb.c `htb_classify`), from the filters as `tc -j filter show` printed them.
 *
 * Used as an oracle: "does this tree send 10.77.20.9 to the class of the subject that owns it?".
 * Checked against the real kernel by test/unit/shaping/u32-eval.test.ts (root only).
 *
 * What it models (Linux 6.x):
 * - tps (one per prio) tried in ascending prio; a tp sees a packet only when its protocol is the
 *   packet's (`ip` = IPv4, `ipv6` = IPv6) or `all`;
 * - per tp, the walk starts in bucket 0 of the tp's root table and tries the keys of the bucket in
 *   node order; a key matches when every (value, mask, off) word matches the network header;
 * - a matching key with `link` descends (at most 8 levels) into bucket
 *   `((word at hashOffset & hashMask) >> (ffs(hashMask) - 1)) & (divisor - 1)` of the linked table
 *   (bucket 0 when the divisor is 1); when nothing there returns a result, the walk comes back, takes
 *   the linking key's own result if it is terminal (has a flowid or an action), else goes on with the
 *   next key of the parent bucket;
 * - a matching terminal key without `link` is the result; a non-terminal one is skipped;
 * - reading a word past the end of the packet ends the tp with no match (`goto out`);
 * - HTB: a result whose class does not exist (or no result) goes to the `default` class; when that
 *   does not exist either, HTB sends the packet to its direct queue (reported as minor 0).
 *
 * Not modelled: `offset`/`eat`/`nexthdr+` (variable offsets), `mark`, `indev`, skb priority
 * shortcuts, classes with their own filters (nested HTB), actions other than "terminal".
 */
import type { ActualTree } from '../../src/shaping/actual.js';
import type { TcFilter, U32Key } from '../../src/shaping/parse-filter-json.js';
import { htbDefaultMinor } from '../../src/shaping/parse-qdisc-json.js';

/** A packet reduced to what the engine's filters look at. Addresses are 4 (IPv4) or 16 (IPv6) bytes. */
export interface Packet {
  family: 4 | 6;
  src: readonly number[];
  dst: readonly number[];
}

/** One u32 table as the evaluator walks it. */
export interface EvalTable {
  /** Buckets: 1..256, a power of two (the kernel's `divisor`). */
  divisor: number;
  /** The keys of bucket `index`, in node order. */
  bucket(index: number): readonly EvalNode[];
}

/** One u32 key node. */
export interface EvalNode {
  keys: readonly U32Key[];
  link: EvalTable | null;
  hashMask: number;
  hashOffset: number;
  /** Class minor of `flowid`, or null. */
  flowidMinor: number | null;
  /** TC_U32_TERMINAL: set by iproute2 for a key with a flowid or an action. */
  terminal: boolean;
}

/** One tp: a priority with its protocol and root table. */
export interface EvalProto {
  prio: number;
  protocol: string;
  root: EvalTable;
}

/** The kernel's TC_U32_MAXDEPTH. */
const MAX_DEPTH = 8;

/** The bytes of the packet's network header the evaluator reads, plus 8 bytes of UDP header. */
export function packetBytes(packet: Packet): Uint8Array {
  const size = packet.family === 4 ? 4 : 16;
  if (packet.src.length !== size || packet.dst.length !== size) {
    throw new TypeError(`Expected ${size}-byte addresses for IPv${packet.family}, got ${packet.src.length} and ${packet.dst.length}`);
  }
  if (packet.family === 4) {
    // version 4, IHL 5, total length 28, DF, TTL 64, UDP; the checksum is not looked at by anyone here.
    return Uint8Array.from([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, ...packet.src, ...packet.dst, 0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
  }
  // version 6, payload length 8, next header UDP, hop limit 64.
  return Uint8Array.from([0x60, 0, 0, 0, 0, 8, 17, 64, ...packet.src, ...packet.dst, 0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
}

function word(bytes: Uint8Array, off: number): number | null {
  if (off < 0 || off + 4 > bytes.length) return null;
  return (((bytes[off] ?? 0) << 24) | ((bytes[off + 1] ?? 0) << 16) | ((bytes[off + 2] ?? 0) << 8) | (bytes[off + 3] ?? 0)) >>> 0;
}

/** ffs(mask) - 1, as the kernel computes `fshift`. */
function shiftOf(mask: number): number {
  if (mask === 0) return 0;
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift += 1;
  return shift;
}

/** The outcome of one tp: a terminal key's node, or nothing. */
type ProtoResult = { node: EvalNode } | null;

/** `u32_classify` for one tp. */
function classifyProto(root: EvalTable, bytes: Uint8Array): ProtoResult {
  const stack: { list: readonly EvalNode[]; index: number }[] = [];
  let list = root.bucket(0);
  let index = 0;
  for (;;) {
    const node = list[index];
    if (node !== undefined) {
      let matched = true;
      for (const key of node.keys) {
        const data = word(bytes, key.off);
        if (data === null) return null;
        if (((data ^ key.value) & key.mask) !== 0) {
          matched = false;
          break;
        }
      }
      if (!matched) {
        index += 1;
        continue;
      }
      if (node.link === null) {
        if (node.terminal) return { node };
        index += 1;
        continue;
      }
      if (stack.length >= MAX_DEPTH) return null; // "cls_u32: dead loop"
      stack.push({ list, index });
      const down = node.link;
      let bucket = 0;
      if (down.divisor > 1) {
        const data = word(bytes, node.hashOffset);
        if (data === null) return null;
        bucket = (down.divisor - 1) & ((data & node.hashMask) >>> shiftOf(node.hashMask));
      }
      list = down.bucket(bucket);
      index = 0;
      continue;
    }
    const top = stack.pop();
    if (top === undefined) return null;
    list = top.list;
    index = top.index;
    const parent = list[index];
    if (parent?.terminal) return { node: parent };
    index += 1;
  }
}

/** ETH_P_* names iproute2 prints, for the protocols a tp can see. */
function protoSees(protocol: string, family: 4 | 6): boolean {
  if (protocol === 'all') return true;
  return family === 4 ? protocol === 'ip' : protocol === 'ipv6';
}

/**
 * Runs the tps (given in ascending prio, as `tcf_classify` walks them) and returns the first
 * result's class minor, or null when no tp returns one.
 */
export function evaluateProtos(protos: readonly EvalProto[], packet: Packet): number | null {
  const bytes = packetBytes(packet);
  for (const proto of protos) {
    if (!protoSees(proto.protocol, packet.family)) continue;
    const result = classifyProto(proto.root, bytes);
    if (result === null) continue;
    // A terminal key without a flowid (an action only, e.g. mirred) ends classification with classid 0.
    return result.node.flowidMinor ?? 0;
  }
  return null;
}

/** Thrown when filters as read cannot be walked the way the kernel would (see {@link protosFromFilters}). */
export class U32EvalError extends Error {
  override name = 'U32EvalError';
}

class ListedTable implements EvalTable {
  readonly buckets = new Map<number, EvalNode[]>();
  constructor(
    readonly htid: number,
    readonly prio: number,
    readonly divisor: number,
  ) {}
  bucket(index: number): readonly EvalNode[] {
    return this.buckets.get(index) ?? [];
  }
}

/**
 * Rebuilds the tps from `tc -j filter show` output.
 *
 * Which table is a tp's root is not printed. The rule used here: the root of prio P is the table
 * listed at P whose id is ≥ 0x800 (the kernel numbers roots 800:, 801:, … and the engine never
 * creates tables there) and that no key links to (the kernel refuses links to a root table). When
 * that does not single out one table, this throws rather than guess.
 *
 * A key that links to a table that is not listed (a table left alive, unlisted, by a deleted prio)
 * cannot be walked from what was read: this throws too, naming it.
 */
export function protosFromFilters(filters: readonly TcFilter[]): EvalProto[] {
  const tables = new Map<number, ListedTable>();
  const headers = new Map<number, string>();
  const keys: TcFilter[] = [];
  for (const filter of filters) {
    if (filter.kind !== 'u32') throw new U32EvalError(`Cannot evaluate a ${filter.kind} filter at prio ${filter.prio}`);
    if (filter.handle === undefined) {
      headers.set(filter.prio, filter.protocol);
    } else if (filter.divisor !== undefined) {
      if (tables.has(filter.htid ?? -1)) throw new U32EvalError(`Table ${filter.handle} is listed twice`);
      tables.set(filter.htid ?? 0, new ListedTable(filter.htid ?? 0, filter.prio, filter.divisor));
    } else {
      keys.push(filter);
    }
  }
  const linked = new Set<number>();
  for (const key of keys) if (key.link !== undefined) linked.add(key.link);
  for (const key of keys) {
    const table = tables.get(key.htid ?? -1);
    if (table === undefined) throw new U32EvalError(`Key ${key.handle} sits in a table that is not listed`);
    const list = table.buckets.get(key.bucket ?? 0) ?? [];
    let link: EvalTable | null = null;
    if (key.link !== undefined) {
      const target = tables.get(key.link);
      if (target === undefined) {
        throw new U32EvalError(`Key ${key.handle} links to ${key.link.toString(16)}:, which is not listed (a table orphaned by a deleted prio?)`);
      }
      link = target;
    }
    list.push({
      keys: key.keys,
      link,
      hashMask: key.hashMask ?? 0,
      hashOffset: key.hashOffset ?? 0,
      flowidMinor: key.flowidMinor ?? null,
      terminal: key.flowidMinor !== undefined || key.mirredTo !== undefined,
    });
    table.buckets.set(key.bucket ?? 0, list);
  }
  // Listed order is node order within a bucket; sort anyway in case a caller reordered the list.
  const protos: EvalProto[] = [];
  for (const [prio, protocol] of headers) {
    const roots = [...tables.values()].filter((t) => t.prio === prio && t.htid >= 0x800 && !linked.has(t.htid));
    if (roots.length !== 1) {
      throw new U32EvalError(
        `Cannot tell the root table of prio ${prio}: candidates ${roots.map((t) => `${t.htid.toString(16)}:`).join(', ') || 'none'}`,
      );
    }
    protos.push({ prio, protocol, root: roots[0] as ListedTable });
  }
  return protos;
}

/**
 * The HTB class minor a packet lands in on `tree`: the flowid of the first matching u32 key, when
 * that class exists; else the HTB `default`; 0 when HTB would use its direct queue (no such class).
 *
 * @throws {U32EvalError} when the tree's filters cannot be walked from what was read.
 * @example classify(readTree, { family: 4, src: [10, 0, 0, 9], dst: [10, 77, 20, 9] }) // 3
 */
export function classify(tree: ActualTree, packet: Packet): number {
  return treeClassifier(tree)(packet);
}

/** {@link classify} with the tree's filters decoded once, for classifying many packets. */
export function treeClassifier(tree: ActualTree): (packet: Packet) => number {
  const root = tree.qdiscs.find((q) => q.root);
  if (root === undefined || root.kind !== 'htb') throw new U32EvalError(`${tree.device} has no HTB root`);
  // htb_classify takes a filter's class only when it is a leaf: an inner class (the engine's 1:1)
  // runs its own filter list, which the engine leaves empty, so the packet goes to the default.
  const mine = tree.classes.filter((c) => c.major === root.major);
  const parents = new Set(mine.map((c) => c.parent));
  const classes = new Set(mine.filter((c) => !parents.has(c.classid)).map((c) => c.minor));
  const protos = protosFromFilters(tree.filters).sort((a, b) => a.prio - b.prio);
  const defaultMinor = htbDefaultMinor(root) ?? 0;
  return (packet) => htbLanding(evaluateProtos(protos, packet), classes, defaultMinor);
}

/** `htb_classify` after the filters: an existing leaf class (`classes` holds leaves only), else the default class, else direct (0). */
export function htbLanding(minor: number | null, classes: ReadonlySet<number>, defaultMinor: number): number {
  if (minor !== null && minor !== 0 && classes.has(minor)) return minor;
  return classes.has(defaultMinor) ? defaultMinor : 0;
}
