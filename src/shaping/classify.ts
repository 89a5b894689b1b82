import { formatPrefix, maskBytes, type Prefix } from './addresses.js';
import type { U32Key } from './parse-filter-json.js';

/**
 * A u32 hash table the engine owns on one tree, with the priority it lives at.
 *
 * Layout (one tree = one device root, see `directions.ts`):
 * - prio 1, protocol all: a VM's match-all filter (no table);
 * - prio 10, protocol ip, table `10:` (256 buckets, keyed on the last address byte): IPv4 /24../32;
 * - prio 11, protocol ipv6, table `11:` (256 buckets, last byte): IPv6 /120../128;
 * - prio 200-L, protocol ip, table `1<LL>:` (1 bucket): IPv4 prefixes of length L < 24, linear;
 * - prio 1000-L, protocol ipv6, table `2<LL>:` (1 bucket): IPv6 prefixes of length L < 120, linear.
 *
 * A lower priority is tried first, and every hashed prefix is longer than every linear one, so the
 * most specific prefix wins, as in WireGuard's cryptokey routing. Priorities are per prefix length,
 * never per subject: the number of priorities is bounded by the distinct lengths in use.
 */
export interface TableSpec {
  prio: number;
  protocol: 'ip' | 'ipv6';
  htid: number;
  divisor: 1 | 256;
  /** Offset of the hashed 32-bit word (its last byte is the bucket); `null` for a linear table. */
  hashOffset: number | null;
}

/** One classification rule: a prefix sent to a class, in one bucket of one table. */
export interface EntrySpec {
  table: TableSpec;
  bucket: number;
  prefix: Prefix;
  /** Canonical text of the prefix, the identity of the entry inside its bucket. */
  prefixText: string;
  minor: number;
  /** Node ids this entry may take (inclusive); u32 walks a bucket in node order. */
  band: [number, number];
}

/** Priority of a VM's match-all filter. */
export const MATCH_ALL_PRIO = 1;
const IPV4_HASHED: Omit<TableSpec, 'hashOffset'> = { prio: 10, protocol: 'ip', htid: 0x10, divisor: 256 };
const IPV6_HASHED: Omit<TableSpec, 'hashOffset'> = { prio: 11, protocol: 'ipv6', htid: 0x11, divisor: 256 };
/** Hashed tables take prefixes whose last byte is at least partly fixed: ≤ 256 buckets to enumerate. */
const HASHED_MIN_LENGTH = { 4: 24, 6: 120 } as const;
/** Offsets from the network header: IPv4 src 12 / dst 16, IPv6 src 8..20 / dst 24..36. */
const ADDRESS_OFFSET = { 4: { src: 12, dst: 16 }, 6: { src: 8, dst: 24 } } as const;

/**
 * Where a prefix goes: its table and the buckets it occupies. A host goes in one bucket (its last
 * byte); a /30 in 4; a /24 (IPv4) or /120 (IPv6) in all 256 — enumerated, so lookups stay O(1).
 * Shorter prefixes go to the linear table of their length (one entry each).
 */
export function placePrefix(prefix: Prefix, key: 'dst' | 'src'): { table: TableSpec; buckets: number[]; band: [number, number] } {
  const max = prefix.family === 4 ? 32 : 128;
  const wordOffset = ADDRESS_OFFSET[prefix.family][key] + (prefix.family === 4 ? 0 : 12);
  if (prefix.length >= HASHED_MIN_LENGTH[prefix.family]) {
    const base = prefix.family === 4 ? IPV4_HASHED : IPV6_HASHED;
    const last = prefix.bytes[prefix.bytes.length - 1] ?? 0;
    const span = 2 ** (max - prefix.length);
    const buckets = Array.from({ length: span }, (_, i) => last + i);
    return { table: { ...base, hashOffset: wordOffset }, buckets, band: hashedBand(max - prefix.length) };
  }
  const table: TableSpec =
    prefix.family === 4
      ? { prio: 200 - prefix.length, protocol: 'ip', htid: 0x100 + prefix.length, divisor: 1, hashOffset: null }
      : { prio: 1000 - prefix.length, protocol: 'ipv6', htid: 0x200 + prefix.length, divisor: 1, hashOffset: null };
  return { table, buckets: [0], band: [1, 0xfff] };
}

/**
 * Node ids by prefix length inside a hashed bucket, most specific first (u32 tries nodes in id order):
 * hosts 0x001-0x7ff (2047 per bucket), then 256 ids per length: /31 (/127) 0x800-0x8ff … /24 (/120) 0xf00-0xfff.
 */
function hashedBand(hostBits: number): [number, number] {
  if (hostBits === 0) return [1, 0x7ff];
  const start = 0x800 + (hostBits - 1) * 0x100;
  return [start, start + 0xff];
}

/** The classification entries of one subject in one tree (`key` = dst or src). */
export function entriesFor(prefixes: readonly Prefix[], minor: number, key: 'dst' | 'src'): EntrySpec[] {
  return prefixes.flatMap((prefix) => {
    const { table, buckets, band } = placePrefix(prefix, key);
    const prefixText = formatPrefix(prefix);
    return buckets.map((bucket) => ({ table, bucket, prefix, prefixText, minor, band }));
  });
}

/** `10:2:1` */
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
