/**
 * Addresses as bytes for the kernel model test's classification checks: CIDR text → family, bytes and
 * prefix length, and the base, last and a random address inside a prefix. Written here rather than
 * borrowed from `src/shaping/addresses.ts`: the oracle must not share the engine's code.
 */

/** A parsed CIDR: network bytes (host bits cleared), 4 or 16 of them. */
export interface Cidr {
  family: 4 | 6;
  bytes: number[];
  length: number;
  text: string;
}

function parseV4(text: string): number[] {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${text}`);
  return parts.map((part) => {
    const value = Number(part);
    if (!/^\d{1,3}$/.test(part) || value > 255) throw new Error(`not an IPv4 address: ${text}`);
    return value;
  });
}

function parseV6(text: string): number[] {
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${text}`);
  const groups = (half: string | undefined) => (half === undefined || half === '' ? [] : half.split(':'));
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) throw new Error(`not an IPv6 address: ${text}`);
  const all = [...head, ...Array.from({ length: halves.length === 2 ? missing : 0 }, () => '0'), ...tail];
  return all.flatMap((group) => {
    if (!/^[0-9a-f]{1,4}$/i.test(group)) throw new Error(`not an IPv6 address: ${text}`);
    const value = parseInt(group, 16);
    return [value >> 8, value & 0xff];
  });
}

/** `10.81.3.0/24`, `fd00:85:1::/64`, `10.80.0.12` (a host) → {@link Cidr} with host bits cleared. */
export function parseCidr(text: string): Cidr {
  const [address = '', lengthText] = text.split('/');
  const family = address.includes(':') ? 6 : 4;
  const bytes = family === 4 ? parseV4(address) : parseV6(address);
  const length = lengthText === undefined ? bytes.length * 8 : Number(lengthText);
  if (!Number.isInteger(length) || length < 0 || length > bytes.length * 8) throw new Error(`bad prefix length in ${text}`);
  return { family, bytes: masked(bytes, length), length, text };
}

function masked(bytes: number[], length: number): number[] {
  return bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, length - i * 8));
    return byte & ((0xff << (8 - bits)) & 0xff);
  });
}

/** True when `address` (bytes of the same family) lies inside `cidr`. */
export function contains(cidr: Cidr, family: 4 | 6, address: number[]): boolean {
  if (family !== cidr.family) return false;
  const inside = masked(address, cidr.length);
  return inside.every((byte, i) => byte === cidr.bytes[i]);
}

/** The first address of a prefix. */
export function baseOf(cidr: Cidr): number[] {
  return [...cidr.bytes];
}

/** The last address of a prefix (all host bits set). */
export function lastOf(cidr: Cidr): number[] {
  return cidr.bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, cidr.length - i * 8));
    return byte | (0xff >> bits);
  });
}

/** A random address inside the prefix (host bits from `next`, a generator of [0, 1)). */
export function randomInside(cidr: Cidr, next: () => number): number[] {
  return cidr.bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, cidr.length - i * 8));
    return byte | (Math.floor(next() * 256) & (0xff >> bits));
  });
}

/** A random address of the family (used for the far end of a packet and for outside probes). */
export function randomAddress(family: 4 | 6, next: () => number): number[] {
  const bytes = Array.from({ length: family === 4 ? 4 : 16 }, () => Math.floor(next() * 256));
  // Stay inside the lab's ranges: 10.0.0.0/8 and fd00::/16.
  if (family === 4) bytes[0] = 10;
  else {
    bytes[0] = 0xfd;
    bytes[1] = 0;
  }
  return bytes;
}

/** Bytes back to text (IPv6 uncompressed, enough for messages). */
export function formatAddress(family: 4 | 6, bytes: number[]): string {
  if (family === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

export { seededRandom } from './seeded-random.js';
