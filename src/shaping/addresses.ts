/** An IP prefix with its host bits cleared. `bytes` has 4 (IPv4) or 16 (IPv6) entries. */
export interface Prefix {
  family: 4 | 6;
  bytes: number[];
  length: number;
}

/**
 * Parses `10.0.0.2`, `10.0.0.0/24`, `fd00::2`, `fd00::/64`. A bare address is a host prefix.
 * Host bits are cleared, as WireGuard does with allowed IPs.
 *
 * @throws {Error} on anything else.
 */
export function parseCidr(text: string): Prefix {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const bytes = address.includes(':') ? parseIpv6(address) : parseIpv4(address);
  const family: 4 | 6 = bytes.length === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  let length = max;
  if (slash !== -1) {
    const lengthText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > max) {
      throw new Error(`prefix length must be 0-${max}, got ${JSON.stringify(lengthText)}`);
    }
    length = Number(lengthText);
  }
  return { family, bytes: maskBytes(bytes, length), length };
}

/** Clears every bit past `length`. */
export function maskBytes(bytes: readonly number[], length: number): number[] {
  return bytes.map((byte, index) => {
    const bits = Math.max(0, Math.min(8, length - index * 8));
    return bits === 8 ? byte : byte & ((0xff << (8 - bits)) & 0xff);
  });
}

/** `10.0.0.0/24`, `fd00::2/128` — the form tc's `match ip[6] dst|src` takes. */
export function formatPrefix(prefix: Prefix): string {
  return `${formatAddress(prefix.family, prefix.bytes)}/${prefix.length}`;
}

/** Formats 4 or 16 bytes as an IPv4 address or a compressed IPv6 address. */
export function formatAddress(family: 4 | 6, bytes: readonly number[]): string {
  if (family === 4) return bytes.join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // Longest run of zero groups (length ≥ 2) becomes `::` (RFC 5952).
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

function parseIpv4(text: string): number[] {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((part) => !/^\d{1,3}$/.test(part) || Number(part) > 255)) {
    throw new Error(`not an IPv4 address: ${JSON.stringify(text)}`);
  }
  return parts.map(Number);
}

function parseIpv6(text: string): number[] {
  const fail = (): never => {
    throw new Error(`not an IPv6 address: ${JSON.stringify(text)}`);
  };
  const halves = text.split('::');
  if (halves.length > 2) fail();
  const parseGroups = (part: string | undefined): number[] => {
    if (part === undefined || part === '') return [];
    const out: number[] = [];
    const groups = part.split(':');
    groups.forEach((group, index) => {
      if (index === groups.length - 1 && group.includes('.')) {
        const v4 = parseIpv4(group);
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
        return;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(group)) fail();
      out.push(parseInt(group, 16));
    });
    return out;
  };
  const head = parseGroups(halves[0]);
  const tail = parseGroups(halves[1]);
  let groups: number[];
  if (halves.length === 2) {
    if (head.length + tail.length > 7) fail();
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) fail();
  return groups.flatMap((group) => [group >> 8, group & 0xff]);
}
