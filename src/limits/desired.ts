import type { DesiredInterface, DesiredSubject } from '../shaping/model.js';
import type { RateChange } from '../shaping/rate-change.js';
import { isLimited, type InterfaceRef, type LimitRow } from '../db/limits.js';
import { hasNetworkCap, type NetworkCaps } from '../db/network-caps.js';
import { effectiveBurst, effectiveCaps } from './effective.js';

/** What the shaping engine needs of a network's caps: its totals (kbit/s; 0 = none). */
export type InterfaceTotals = Pick<NetworkCaps, 'totalUpKbps' | 'totalDownKbps'>;

/** One row as the engine shapes it: effective caps (default and throttle resolved), its guaranteed rate and its burst while in force. */
export function desiredSubject(row: LimitRow): DesiredSubject {
  const caps = effectiveCaps(row);
  const burst = effectiveBurst(row);
  return {
    type: row.subjectType,
    id: row.subjectId,
    classMinor: row.classMinor as number,
    addresses: row.interfaceKind === 'vm' ? [] : row.addresses,
    upKbps: caps.upKbps,
    downKbps: caps.downKbps,
    ...(row.minKbps > 0 ? { minKbps: row.minKbps } : {}),
    ...(burst ? { burst } : {}),
  };
}

/** What the kernel holds for a row that is applied, as the engine's rate-change fast path wants it (`RateChange.previous`). */
export function appliedNumbers(row: LimitRow): RateChange['previous'] {
  const subject = desiredSubject(row);
  return { upKbps: subject.upKbps, downKbps: subject.downKbps, minKbps: subject.minKbps ?? 0, ...(subject.burst ? { burst: subject.burst } : {}) };
}

/**
 * The shaping engine's desired state of one interface, from its `bw_limits` rows and its network's
 * caps. Without a network cap only limited subjects are shaped; with one, every subject that has a
 * class (all of them, see `setNetworkCaps`) is, the unlimited ones too, so each gets its share.
 */
export function desiredInterface(ref: InterfaceRef, rows: LimitRow[], networkCaps?: InterfaceTotals | null): DesiredInterface {
  const capped = hasNetworkCap(networkCaps);
  const shaped = rows.filter((row) => row.classMinor !== null && (capped || isLimited(row)));
  const desired: DesiredInterface = {
    name: ref.interface,
    kind: rows[0]?.interfaceKind ?? 'wireguard',
    subjects: shaped.map(desiredSubject),
  };
  if (ref.netns !== null) desired.netns = ref.netns;
  if (networkCaps && networkCaps.totalUpKbps > 0) desired.totalUpKbps = networkCaps.totalUpKbps;
  if (networkCaps && networkCaps.totalDownKbps > 0) desired.totalDownKbps = networkCaps.totalDownKbps;
  return desired;
}
