import type { SubjectType } from '../plugin-api.js';

export type SourceName = 'sysfs' | 'wireguard' | 'tc' | 'vnstat';

/**
 * What makes one counter series: if any part changes (the machine rebooted, the interface was
 * re-created and got a new ifindex), the counter restarted and the old reading means nothing.
 */
export interface SeriesIdentity {
  node: string;
  source: SourceName;
  interface: string;
  /** Peer public key, VM interface name, or `class:<minor>:<side>` for tc. */
  seriesKey: string;
  ifindex: number | null;
  bootId: string;
}

/**
 * One reading of absolute counters, as the host sees them: `rx` is what the host received on the
 * interface (from the subject), `tx` what it sent (to the subject).
 */
export interface Sample {
  identity: SeriesIdentity;
  subjectType: SubjectType | null;
  subjectId: string | null;
  rxBytes: bigint;
  txBytes: bigint;
  rxPackets: bigint | null;
  txPackets: bigint | null;
  /** When the counters were read (epoch ms). */
  at: number;
}

/**
 * The one place where the host's directions become the subject's (DESIGN.md, "Directions in the
 * kernel"): what the host receives from a peer or a VM's tap is what the subject sent, its `up`;
 * what the host sends is the subject's `down`. In `wg show dump`, transfer-rx is the peer's up;
 * on a tap, the host's rx_bytes are the VM's up and tx_bytes its down.
 */
export function subjectDirections(host: { rx: bigint; tx: bigint }): { up: bigint; down: bigint } {
  return { up: host.rx, down: host.tx };
}

export function seriesKeyOf(identity: Pick<SeriesIdentity, 'node' | 'source' | 'interface' | 'seriesKey'>): string {
  return `${identity.node}\u0000${identity.source}\u0000${identity.interface}\u0000${identity.seriesKey}`;
}

/** Bytes over a time as kbit/s (bits per millisecond), the unit of caps and rates; 0 for no time. */
export function kbpsOf(bytes: bigint, elapsedMs: number): number {
  return elapsedMs > 0 ? Number((bytes * 8n) / BigInt(Math.round(elapsedMs))) : 0;
}
