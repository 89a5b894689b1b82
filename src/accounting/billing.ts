import type { SubjectType } from '../plugin-api.js';
import { subjectDirections, type Sample, type SourceName } from './sample.js';
import { classDirectionOf, type ClassDirection } from './tc-classes.js';

/**
 * Which bytes bills count (the `billing_bytes` setting; docs/accounting.md, "Inner and wire bytes"):
 *
 * - `wire`: a peer's bytes are WireGuard's own counters (`wg show dump` transfer-rx/-tx): every
 *   packet with its WireGuard header, tag and padding, what the tunnel carries (the uplink adds
 *   UDP/IP headers on top).
 * - `inner`: per direction, the bytes through the peer's HTB class, the inner packets its cap
 *   governs. A direction without a class (unlimited, or its cap not in the kernel yet) has no
 *   other per-peer counter, so it is counted from WireGuard's counters.
 *
 * VMs are counted from their tap (sysfs or vnStat) either way: a tap carries the VM's own frames,
 * with no tunnel around them, so its counters already are the inner bytes.
 */
export type BillingBytes = 'inner' | 'wire';

/** How a tick's deltas become a subject's bytes. */
export interface CountOptions {
  /** @default 'wire' */
  billing: BillingBytes;
  /** The sources that count a subject's own traffic (every source but `tc`). @default wireguard, sysfs */
  billedSources: readonly SourceName[];
}

export const DEFAULT_COUNT_OPTIONS: CountOptions = { billing: 'wire', billedSources: ['wireguard', 'sysfs'] };

/** The billed sources for a `vm_counter_source`: vnStat's series count only when VMs are read from it. */
export function billedSourcesFor(vmSource: 'sysfs' | 'vnstat'): SourceName[] {
  return vmSource === 'vnstat' ? ['wireguard', 'sysfs', 'vnstat'] : ['wireguard', 'sysfs'];
}

/** One series' positive difference in a tick, as the delta engine found it (`delta` or `reset`). */
export interface SeriesDelta {
  /** The new reading (with its subject). */
  sample: Sample;
  kind: 'delta' | 'reset';
  rxBytes: bigint;
  txBytes: bigint;
  elapsedMs: number;
}

/** Bytes in one direction over a measured time. */
export interface DirectionBytes {
  bytes: bigint;
  elapsedMs: number;
}

/** Billed bytes of one subject from one source and interface, over one period: one `bw_usage` row. */
export interface UsageDraft {
  source: SourceName;
  node: string;
  interface: string;
  periodStart: number;
  periodEnd: number;
  up: bigint;
  down: bigint;
}

/** What one subject did in one tick. */
export interface SubjectCount {
  subjectType: SubjectType;
  subjectId: string;
  /** Billed bytes per direction; `null` when no billed counter of the subject moved on. */
  up: DirectionBytes | null;
  down: DirectionBytes | null;
  /**
   * Bytes through the subject's HTB class per direction: what its cap governs. `null` where the
   * direction has no class, or its class was not read over the same interval as the subject's own
   * counters (just created, re-created, or missing from a reading): see {@link countTick}.
   */
  classUp: DirectionBytes | null;
  classDown: DirectionBytes | null;
  /** Billed bytes as usage rows, one per source and interface that counted any. */
  rows: UsageDraft[];
  /** When the subject's newest reading was taken. */
  at: number;
}

const previousAt = (delta: SeriesDelta) => delta.sample.at - delta.elapsedMs;
const bytesOf = (delta: SeriesDelta, direction: ClassDirection) => subjectDirections({ rx: delta.rxBytes, tx: delta.txBytes })[direction];

/**
 * Per subject, its billed bytes, the bytes through its class, and its usage rows, from the deltas
 * of one tick (or of one live reading). Pure.
 *
 * A class delta counts only when it is a plain `delta` measured from a reading taken together with
 * the subject's own counters' previous one (not more than half their interval earlier). A class
 * that was just re-created (its counter went down) or that was missing from earlier readings (a
 * cap removed and set again) would otherwise count bytes from an unknown start, or bytes its own
 * counters already counted; for that tick, the subject's own counters are used.
 */
export function countTick(deltas: readonly SeriesDelta[], options: CountOptions = DEFAULT_COUNT_OPTIONS): Map<string, SubjectCount> {
  const billed = new Set(options.billedSources);
  const bySubject = new Map<string, SeriesDelta[]>();
  for (const delta of deltas) {
    const { subjectType, subjectId } = delta.sample;
    if (!subjectType || !subjectId) continue;
    const key = `${subjectType}:${subjectId}`;
    const list = bySubject.get(key);
    if (list) list.push(delta);
    else bySubject.set(key, [delta]);
  }
  const counts = new Map<string, SubjectCount>();
  for (const [key, list] of bySubject) {
    const first = list[0]!;
    const own = list.filter((d) => billed.has(d.sample.identity.source));
    const classes = list.filter((d) => d.sample.identity.source === 'tc' && classDirectionOf(d.sample.identity.seriesKey) !== null);
    if (own.length === 0 && classes.length === 0) continue;
    const reference = own.reduce<SeriesDelta | undefined>((latest, d) => (!latest || previousAt(d) > previousAt(latest) ? d : latest), undefined);
    const usable = (d: SeriesDelta) => d.kind === 'delta' && (!reference || previousAt(d) >= previousAt(reference) - reference.elapsedMs / 2);
    const classFor = (direction: ClassDirection): SeriesDelta | undefined =>
      classes.find((d) => classDirectionOf(d.sample.identity.seriesKey) === direction && usable(d));
    const classDeltas = { up: classFor('up'), down: classFor('down') };
    const inner = options.billing === 'inner' && first.sample.subjectType === 'peer';
    const fromClass = (direction: ClassDirection) => inner && classDeltas[direction] !== undefined;

    const rows = new Map<string, UsageDraft>();
    const addRow = (delta: SeriesDelta, up: bigint, down: bigint) => {
      const { source, node, interface: iface } = delta.sample.identity;
      const rowKey = `${source}\u0000${node}\u0000${iface}`;
      const row = rows.get(rowKey);
      if (row) {
        row.up += up;
        row.down += down;
        row.periodStart = Math.min(row.periodStart, previousAt(delta));
        row.periodEnd = Math.max(row.periodEnd, delta.sample.at);
      } else {
        rows.set(rowKey, { source, node, interface: iface, periodStart: previousAt(delta), periodEnd: delta.sample.at, up, down });
      }
    };
    const billedBytes = { up: null as DirectionBytes | null, down: null as DirectionBytes | null };
    for (const direction of ['up', 'down'] as const) {
      const classDelta = classDeltas[direction];
      if (fromClass(direction) && classDelta) {
        billedBytes[direction] = { bytes: bytesOf(classDelta, direction), elapsedMs: classDelta.elapsedMs };
      } else if (reference) {
        billedBytes[direction] = { bytes: own.reduce((sum, d) => sum + bytesOf(d, direction), 0n), elapsedMs: reference.elapsedMs };
      }
    }
    for (const delta of own) {
      addRow(delta, fromClass('up') ? 0n : bytesOf(delta, 'up'), fromClass('down') ? 0n : bytesOf(delta, 'down'));
    }
    for (const direction of ['up', 'down'] as const) {
      const classDelta = classDeltas[direction];
      if (fromClass(direction) && classDelta) addRow(classDelta, direction === 'up' ? bytesOf(classDelta, 'up') : 0n, direction === 'down' ? bytesOf(classDelta, 'down') : 0n);
    }
    const classBytes = (direction: ClassDirection): DirectionBytes | null => {
      const classDelta = classDeltas[direction];
      return classDelta ? { bytes: bytesOf(classDelta, direction), elapsedMs: classDelta.elapsedMs } : null;
    };
    counts.set(key, {
      subjectType: first.sample.subjectType!,
      subjectId: first.sample.subjectId!,
      up: billedBytes.up,
      down: billedBytes.down,
      classUp: classBytes('up'),
      classDown: classBytes('down'),
      rows: [...rows.values()].filter((row) => row.up !== 0n || row.down !== 0n),
      at: Math.max(...list.map((d) => d.sample.at)),
    });
  }
  return counts;
}

/** The counting a panel's settings ask for. */
export function countOptionsOf(settings: { billing_bytes: BillingBytes; vm_counter_source: 'sysfs' | 'vnstat' }): CountOptions {
  return { billing: settings.billing_bytes, billedSources: billedSourcesFor(settings.vm_counter_source) };
}
