import { formatPrefix, maskBytes, type Prefix } from './addresses.js';
import type { U32Key } from './parse-filter-json.js';

/**
 * Classification layout of a peer tree (one device root, see `directions.ts`): ONE u32 filter
 * (`prio 5 protocol all`) holding every table the engine uses:
 *
 * - its root table (id chosen by the kernel, `800:`…) has one key: `link 3ff:`;
 * - the dispatch table `3ff:` (1 bucket) has one key per prefix length in use, in node order
 *   longest prefix first per family: `match u8 0x40 0xf0 at 0` (IPv4; IPv6: `0x60`),
 *   `hashkey` on the prefix's last fixed bits, `link` into that length's table;
 * - one table per (family, length): `3LL:` (IPv4, LL = length in hex) / `4LL:` (IPv6), with
 *   2^b buckets where b = the number of fixed bits in the prefix's last fixed byte. Every prefix
 *   sits in exactly one bucket: O(1) lookups without copies, 4095 prefixes per bucket.
 *
 * u32 returns from a sub-table without a match to the next key of its parent, so the longest prefix
 * wins, as in WireGuard's cryptokey routing. The kernel releases a table's reference from a deleted
 * `link` key only after an RCU grace period, and deleting a filter priority leaves its non-root
 * tables alive (and invisible) while another u32 priority exists on the qdisc: so the engine never
 * deletes its own tables or priority while the tree lives. It empties them (deleting keys unbinds
 * their classes at once) and drops the whole tree with the root qdisc.
 */

/** Priority of a VM's match-all filter. */
export const MATCH_ALL_PRIO = 1;
/** Priority of the one u32 filter that classifies peers by address. */
export const CLASSIFY_PRIO = 5;
/** The dispatch table: one link per prefix length in use. */
export const DISPATCH_HTID = 0x3ff;
/** u32 node ids are 12 bits: 1..0xfff keys per bucket. */
export const MAX_NODE = 0xfff;
/** Table ids the kernel allocates itself (a filter's root table) start here. */
export const KERNEL_HTID_MIN = 0x800;

/** Offsets from the network header: IPv4 src 12 / dst 16, IPv6 src 8..23 / dst 24..39. */
const ADDRESS_OFFSET = { 4: { src: 12, dst: 16 }, 6: { src: 8, dst: 24 } } as const;
/** The IP version nibble in the first byte of the network header. */
const VERSION_MATCH = { 4: 0x40, 6: 0x60 } as const;

/** The table of one prefix length in one tree, and the dispatch key that links to it. */
export interface LengthTable {
  family: 4 | 6;
  length: number;
  htid: number;
  /** 1, 2, 4 … 256. */
  divisor: number;
  /** Offset of the hashed 32-bit word, `null` for /0 (one bucket, no hash). */
  hashOffset: number | null;
  /** Mask of the hashed word (the prefix's last fixed bits), 0 for /0. */
  hashMask: number;
  /** Node id of the dispatch key in `3ff:0:` (longest prefix first). */
  dispatchNode: number;
  /** The dispatch key's version match: one word at offset 0. */
  versionKey: U32Key;
}

/** One classification rule: a prefix sent to a class, in one bucket of its length's table. */
export interface EntrySpec {
  table: LengthTable;
  bucket: number;
  prefix: Prefix;
  /** Canonical text of the prefix, the identity of the entry inside its bucket. */
  prefixText: string;
  minor: number;
}

/** The table for prefixes of `length` in `family`, matched on `key` (destination or source). */
export function lengthTable(family: 4 | 6, length: number, key: 'dst' | 'src'): LengthTable {
  const versionKey: U32Key = { value: (VERSION_MATCH[family] << 24) >>> 0, mask: 0xf0000000, off: 0 };
  const dispatchNode = family === 4 ? 1 + (32 - length) : 0x40 + (128 - length);
  const htid = (family === 4 ? 0x300 : 0x400) + length;
  if (length === 0) return { family, length, htid, divisor: 1, hashOffset: null, hashMask: 0, dispatchNode, versionKey };
  const byte = Math.floor((length - 1) / 8);
  const bits = length - byte * 8;
  const hashOffset = ADDRESS_OFFSET[family][key] + 4 * Math.floor(byte / 4);
  const hashMask = ((((0xff << (8 - bits)) & 0xff) << (8 * (3 - (byte % 4)))) >>> 0);
  return { family, length, htid, divisor: 2 ** bits, hashOffset, hashMask, dispatchNode, versionKey };
}

/** The bucket a prefix falls in: the fixed bits of its last fixed byte. */
export function bucketOf(prefix: Prefix): number {
  if (prefix.length === 0) return 0;
  const byte = Math.floor((prefix.length - 1) / 8);
  const bits = prefix.length - byte * 8;
  return (prefix.bytes[byte] ?? 0) >> (8 - bits);
}

/** The classification entries of one subject in one tree (`key` = dst or src). */
export function entriesFor(prefixes: readonly Prefix[], minor: number, key: 'dst' | 'src'): EntrySpec[] {
  return prefixes.map((prefix) => ({
    table: lengthTable(prefix.family, prefix.length, key),
    bucket: bucketOf(prefix),
    prefix,
    prefixText: formatPrefix(prefix),
    minor,
  }));
}

/** True for the ids of the tables {@link lengthTable} and the dispatch table use. */
export function isEngineHtid(htid: number): boolean {
  return htid === DISPATCH_HTID || (htid >= 0x300 && htid <= 0x320) || (htid >= 0x400 && htid <= 0x480);
}

/** `316:5:1` */
export function u32Handle(htid: number, bucket: number, node: number): string {
  return `${htid.toString(16)}:${bucket.toString(16)}:${node.toString(16)}`;
}

/**
 * Reads back the prefix a u32 entry matches, from its keys, or null when the keys are not one
 * address match of this family and direction (then the entry is not the engine's: it is removed).
 */
export function prefixFromKeys(keys: readonly U32Key[], family: 4 | 6, key: 'dst' | 'src'): string | null {
  const start = ADDRESS_OFFSET[family][key];
  const size = family === 4 ? 4 : 16;
  const value = new Array<number>(size).fill(0);
  const mask = new Array<number>(size).fill(0);
  for (const k of keys) {
    const index = k.off - start;
    if (index < 0 || index >= size || index % 4 !== 0) return null;
    for (let b = 0; b < 4; b += 1) {
      const shift = 24 - b * 8;
      value[index + b] = (k.value >>> shift) & 0xff;
      mask[index + b] = (k.mask >>> shift) & 0xff;
    }
  }
  let length = 0;
  let ended = false;
  for (const byte of mask) {
    for (let bit = 7; bit >= 0; bit -= 1) {
      const set = (byte >> bit) & 1;
      if (set && ended) return null;
      if (set) length += 1;
      else ended = true;
    }
  }
  const bytes = maskBytes(value, length);
  if (bytes.some((byte, i) => byte !== value[i])) return null;
  return formatPrefix({ family, bytes, length });
}

/**
 * Subjects whose prefixes cannot be placed: a bucket of a length table holds at most
 * {@link MAX_NODE} prefixes. Subjects are taken in class-minor order, so the ones refused are
 * always the later ones and an interface's existing subjects keep their place.
 *
 * @returns a message per refused subject id, naming the full bucket.
 */
export function placementProblems(
  subjects: readonly { id: string; type: string; classMinor: number; prefixes: readonly Prefix[] }[],
  key: 'dst' | 'src',
): Map<string, string> {
  const problems = new Map<string, string>();
  // Cheap first pass: most interfaces are nowhere near a full bucket, and then no one is refused.
  const totals = new Map<number, number>();
  let fullest = 0;
  for (const subject of subjects) {
    for (const prefix of subject.prefixes) {
      const id = prefix.family * 0x100000 + prefix.length * 0x1000 + bucketOf(prefix);
      const n = (totals.get(id) ?? 0) + 1;
      totals.set(id, n);
      if (n > fullest) fullest = n;
    }
  }
  if (fullest <= MAX_NODE) return problems;
  const counts = new Map<string, number>();
  for (const subject of [...subjects].sort((a, b) => a.classMinor - b.classMinor)) {
    const entries = entriesFor(subject.prefixes, subject.classMinor, key);
    const added = new Map<string, number>();
    const full = entries.find((entry) => {
      const id = `${entry.table.htid}:${entry.bucket}`;
      const next = (added.get(id) ?? counts.get(id) ?? 0) + 1;
      added.set(id, next);
      return next > MAX_NODE;
    });
    if (full) {
      problems.set(
        subject.id,
        `${full.prefixText}: bucket ${u32Handle(full.table.htid, full.bucket, 0).slice(0, -2)}: of the IPv${full.prefix.family} /${full.prefix.length} table already holds ` +
          `${MAX_NODE} prefixes (the most one u32 bucket can hold); ${subject.type} ${subject.id} cannot be classified`,
      );
      continue;
    }
    for (const [id, n] of added) counts.set(id, n);
  }
  return problems;
}
