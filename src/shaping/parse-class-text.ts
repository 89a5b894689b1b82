/** Counters of one class from `tc -s class show` (64-bit: kept as bigint). */
export interface ClassCounters {
  bytes: bigint;
  packets: bigint;
  dropped: bigint;
  overlimits: bigint;
  requeues: bigint;
  backlogBytes: bigint;
  backlogPackets: bigint;
}

/** One class as printed by `tc [-s] class show dev X`. */
export interface TcClass {
  /** `htb`, `fq_codel`, … */
  kind: string;
  /** `1:2` */
  classid: string;
  major: number;
  minor: number;
  /** Parent class id, or `null` for a class at the root of its qdisc. */
  parent: string | null;
  /** Handle of the qdisc attached under the class (`2:`), if any. */
  leaf: string | null;
  /** HTB only: rate and ceil in bit/s as printed (see `printedRateBits`). */
  rateBits?: number;
  ceilBits?: number;
  /** HTB only: burst and cburst in bytes as printed (iproute2 ≤ 6.14 rounds them down). */
  burstBytes?: number;
  cburstBytes?: number;
  /** Present when the output came from `tc -s`. */
  counters?: ClassCounters;
}

/** Thrown when `tc class show` output does not look like iproute2's. */
export class TcParseError extends Error {
  override name = 'TcParseError';
}

const RATE_UNITS: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
const SIZE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 * 1024, G: 1024 ** 3 };

/** `8Mbit` → 8000000, `1234Kbit` → 1234000, `12Kibit` (tc -iec) → 12288. */
export function parseTcRate(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(|K|M|G|T|Ki|Mi|Gi|Ti)bit$/.exec(text);
  if (!match) throw new TcParseError(`Unrecognised tc rate ${JSON.stringify(text)}`);
  return Math.round(Number(match[1]) * (RATE_UNITS[match[2] ?? ''] ?? 1));
}

/** `10000b` → 10000, `2Kb` → 2048, `1Mb` → 1048576 (iproute2's `sprint_size`). */
export function parseTcSize(text: string): number {
  const match = /^(\d+)(|K|M|G)b(?:\/\d+)?$/.exec(text);
  if (!match) throw new TcParseError(`Unrecognised tc size ${JSON.stringify(text)}`);
  return Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] ?? 1);
}

/**
 * Parses the TEXT of `tc [-s] [-d] class show dev X`. iproute2 6.1 prints HTB classes as text even
 * with `-j`, hence this parser. Works for every class kind; HTB rates/bursts and `-s` counters are
 * decoded when present. Exported for the accounting module (per-class byte/packet counters).
 *
 * @throws {TcParseError} on a block that does not start with `class <kind> <major:minor>`.
 */
export function parseClassText(text: string): TcClass[] {
  const classes: TcClass[] = [];
  let current: TcClass | null = null;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '') continue;
    if (rawLine.startsWith('class ')) {
      current = parseHeader(line);
      classes.push(current);
      continue;
    }
    if (current === null) throw new TcParseError(`Unexpected line before any class: ${JSON.stringify(line)}`);
    const sent = /^Sent (\d+) bytes (\d+) pkts? \(dropped (\d+), overlimits (\d+) requeues (\d+)\)/.exec(line);
    if (sent) {
      current.counters = {
        bytes: BigInt(sent[1] ?? '0'),
        packets: BigInt(sent[2] ?? '0'),
        dropped: BigInt(sent[3] ?? '0'),
        overlimits: BigInt(sent[4] ?? '0'),
        requeues: BigInt(sent[5] ?? '0'),
        backlogBytes: 0n,
        backlogPackets: 0n,
      };
      continue;
    }
    const backlog = /^backlog (\d+)(|K|M|G)b (\d+)p/.exec(line);
    if (backlog && current.counters) {
      current.counters.backlogBytes = BigInt(backlog[1] ?? '0') * BigInt(SIZE_UNITS[backlog[2] ?? ''] ?? 1);
      current.counters.backlogPackets = BigInt(backlog[3] ?? '0');
    }
    // Other statistics lines (lended/borrowed, tokens, fq_codel's) carry nothing the engine uses.
  }
  return classes;
}

function parseHeader(line: string): TcClass {
  const tokens = line.split(/\s+/);
  const kind = tokens[1];
  const classid = tokens[2];
  const id = classid === undefined ? null : /^([0-9a-f]+):([0-9a-f]*)$/.exec(classid);
  if (kind === undefined || classid === undefined || id === null) {
    throw new TcParseError(`Not a tc class line: ${JSON.stringify(line)}`);
  }
  const result: TcClass = {
    kind,
    classid,
    major: parseInt(id[1] ?? '0', 16),
    minor: parseInt(id[2] || '0', 16),
    parent: null,
    leaf: null,
  };
  for (let i = 3; i < tokens.length; i += 1) {
    const token = tokens[i];
    const next = tokens[i + 1];
    if (next === undefined) break;
    switch (token) {
      case 'parent':
        result.parent = next;
        i += 1;
        break;
      case 'leaf':
        result.leaf = next;
        i += 1;
        break;
      case 'rate':
        result.rateBits = parseTcRate(next);
        i += 1;
        break;
      case 'ceil':
        result.ceilBits = parseTcRate(next);
        i += 1;
        break;
      case 'burst':
        result.burstBytes = parseTcSize(next);
        i += 1;
        break;
      case 'cburst':
        result.cburstBytes = parseTcSize(next);
        i += 1;
        break;
      default:
        break;
    }
  }
  return result;
}
