import type { DesiredInterface } from '../shaping/model.js';
import { isLimited, type InterfaceRef, type LimitRow } from '../db/limits.js';

/** The shaping engine's desired state of one interface, from its `bw_limits` rows. */
export function desiredInterface(ref: InterfaceRef, rows: LimitRow[]): DesiredInterface {
  const limited = rows.filter((row) => isLimited(row) && row.classMinor !== null);
  const desired: DesiredInterface = {
    name: ref.interface,
    kind: rows[0]?.interfaceKind ?? 'wireguard',
    subjects: limited.map((row) => ({
      type: row.subjectType,
      id: row.subjectId,
      classMinor: row.classMinor as number,
      addresses: row.interfaceKind === 'vm' ? [] : row.addresses,
      upKbps: row.upKbps,
      downKbps: row.downKbps,
    })),
  };
  if (ref.netns !== null) desired.netns = ref.netns;
  return desired;
}
