import type { Sample } from '../../src/accounting/sample.js';

/** One reading of a subject's counters as a collector would take it (wg dump for peers, sysfs for VMs). */
export function counterSample(
  subject: { type: 'peer' | 'vm'; id: number; iface: string; key: string },
  at: number,
  rx: bigint,
  tx: bigint,
): Sample {
  return {
    identity: { node: 'local', source: subject.type === 'peer' ? 'wireguard' : 'sysfs', interface: subject.iface, seriesKey: subject.key, ifindex: null, bootId: 'boot-1' },
    subjectType: subject.type,
    subjectId: String(subject.id),
    rxBytes: rx,
    txBytes: tx,
    rxPackets: null,
    txPackets: null,
    at,
  };
}
