import { TcParseError } from './parse-class-text.js';

/** One 32-bit key of a u32 filter: `(packet[off..off+4] & mask) == value`. */
export interface U32Key {
  value: number;
  mask: number;
  off: number;
}

/** One filter from `tc -j filter show dev X parent P`, u32 fields decoded. */
export interface TcFilter {
  prio: number;
  protocol: string;
  kind: string;
  /** Filter handle (`fh`): `10:`, `800::800`, `10:2:1`. Absent for the per-priority header line. */
  handle?: string;
  /** u32: the handle split into hash table id, bucket and node. */
  htid?: number;
  bucket?: number;
  node?: number;
  /** u32 hash table: its number of buckets. */
  divisor?: number;
  /** u32 link filter: the hash table it jumps to. */
  link?: number;
  /** u32 link filter: offset of the hashed word (`hashkey … at N`). */
  hashOffset?: number;
  /** u32 link filter: mask of the hashed word (`hashkey mask 0x0000ff00 …`). */
  hashMask?: number;
  /** Target class minor (`flowid 1:2` → 2). */
  flowidMinor?: number;
  keys: U32Key[];
  /** mirred redirect target device (`*` when the device it pointed at was deleted). */
  mirredTo?: string;
  /** True when the filter carries a mirred action (with or without a target). */
  hasMirred?: boolean;
}

// Checked by hand rather than with a zod schema per item: a 10,000-subject interface lists tens of
// thousands of filters, and per-item schema parsing cost ~20 µs each (half a second per read).
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** `"10:2:1"` → [0x10, 2, 1]; `"10:"` → [0x10, 0, 0]; `"800::800"` → [0x800, 0, 0x800]. */
export function parseU32Handle(text: string): [number, number, number] {
  const parts = text.split(':');
  const num = (part: string | undefined): number => (part === undefined || part === '' ? 0 : parseInt(part, 16));
  return [num(parts[0]), num(parts[1]), num(parts[2])];
}

/**
 * Parses `tc -j filter show dev X [parent P]`. iproute2 6.1 prints one `"match"` key per u32 key
 * inside the same object (invalid-ish JSON: `JSON.parse` would keep only the last one, and an IPv6
 * /128 match has four), so the keys are renamed `"match#N"` before parsing.
 *
 * @throws {TcParseError} when the text is not JSON of that shape.
 */
export function parseFilterJson(text: string): TcFilter[] {
  // Numbered per filter (reset at each `"fh"`), so that every entry has the same keys and JSON.parse
  // keeps one object shape: numbering across the whole text made parsing 10,000 filters 3× slower.
  let counter = 0;
  const renamed = text.replace(/"fh":|"match":\{/g, (found) => {
    if (found === '"fh":') {
      counter = 0;
      return found;
    }
    return `"match#${(counter += 1)}":{`;
  });
  let data: unknown;
  try {
    data = JSON.parse(renamed.trim() === '' ? '[]' : renamed);
  } catch (error) {
    throw new TcParseError(`tc -j filter show did not print JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(data)) throw new TcParseError('Unexpected tc -j filter show output: not an array');
  return data.map((raw: unknown, index) => {
    if (!isRecord(raw) || typeof raw.protocol !== 'string' || typeof raw.pref !== 'number' || typeof raw.kind !== 'string') {
      throw new TcParseError(`Unexpected tc -j filter show output: item ${index} lacks protocol/pref/kind`);
    }
    if (raw.options !== undefined && !isRecord(raw.options)) throw new TcParseError(`Unexpected tc -j filter show output: item ${index} options`);
    const filter: TcFilter = { prio: raw.pref, protocol: raw.protocol, kind: raw.kind, keys: [] };
    const options = raw.options;
    if (options === undefined) return filter;
    if (typeof options.fh === 'string') {
      filter.handle = options.fh;
      const [htid, bucket, node] = parseU32Handle(options.fh);
      filter.htid = htid;
      filter.bucket = bucket;
      filter.node = node;
    }
    if (typeof options.ht_divisor === 'number') filter.divisor = options.ht_divisor;
    if (typeof options.link === 'string') filter.link = parseU32Handle(options.link)[0];
    if (typeof options.hash_off === 'number') filter.hashOffset = options.hash_off;
    if (typeof options.hash_mask === 'string') filter.hashMask = parseInt(options.hash_mask, 16) >>> 0;
    if (typeof options.flowid === 'string') {
      const minor = options.flowid.split(':')[1];
      if (minor !== undefined && minor !== '') filter.flowidMinor = parseInt(minor, 16);
    }
    for (const [key, value] of Object.entries(options)) {
      if (!key.startsWith('match#')) continue;
      if (!isRecord(value) || typeof value.value !== 'string' || typeof value.mask !== 'string' || typeof value.off !== 'number') continue;
      filter.keys.push({ value: parseInt(value.value, 16) >>> 0, mask: parseInt(value.mask, 16) >>> 0, off: value.off });
    }
    if (Array.isArray(options.actions)) {
      const mirred = options.actions.find((action: unknown) => isRecord(action) && action.kind === 'mirred') as Record<string, unknown> | undefined;
      if (mirred !== undefined) filter.hasMirred = true;
      if (typeof mirred?.to_dev === 'string') filter.mirredTo = mirred.to_dev;
    }
    return filter;
  });
}
