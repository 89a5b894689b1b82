/** Counters of one interface from /sys/class/net/<if>/. */
export interface InterfaceCounters {
  ifindex: number;
  rxBytes: bigint;
  txBytes: bigint;
  rxPackets: bigint;
  txPackets: bigint;
}

/** The files read, in this order, by `cat` inside a namespace or directly on the host. */
export const SYSFS_FILES = ['ifindex', 'statistics/rx_bytes', 'statistics/tx_bytes', 'statistics/rx_packets', 'statistics/tx_packets'] as const;

export class SysfsError extends Error {
  override name = 'SysfsError';
}

/** Parses the five values (one per line, in {@link SYSFS_FILES} order). */
export function parseSysfsValues(text: string): InterfaceCounters {
  const values = text.split('\n').map((v) => v.trim()).filter((v) => v !== '');
  if (values.length !== SYSFS_FILES.length || !values.every((v) => /^\d+$/.test(v))) {
    throw new SysfsError(`Expected ${SYSFS_FILES.length} numbers from sysfs, got ${JSON.stringify(text.slice(0, 120))}`);
  }
  const [ifindex, rx, tx, rxp, txp] = values as [string, string, string, string, string];
  return { ifindex: Number(ifindex), rxBytes: BigInt(rx), txBytes: BigInt(tx), rxPackets: BigInt(rxp), txPackets: BigInt(txp) };
}
