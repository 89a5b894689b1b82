import type { InterfaceRef, LimitRow, SubjectLimit } from '../db/limits.js';
import { isLimited } from '../db/limits.js';
import { peerSubject, vmSubject } from '../hooks/subjects.js';
import type { HostSubjects } from './host-subjects.js';

/** The host data `bw_limits` copies, by the name the API and the audit log use. */
export type CopiedField = 'name' | 'network_id' | 'node' | 'interface' | 'netns' | 'addresses' | 'public_key';

/** A stored row whose copy of the host's data is out of date. */
export interface StaleRow {
  row: LimitRow;
  /** The subject as the host has it now, with the row's caps. */
  subject: SubjectLimit;
  /** What changed: the stored value and the host's. */
  old: Partial<Record<CopiedField, unknown>>;
  new: Partial<Record<CopiedField, unknown>>;
  /** The interface, its namespace or the addresses changed: the kernel has to follow. */
  shapingChanged: boolean;
}

/** What a resync has to do. */
export interface ResyncPlan {
  /** Rows whose peer or VM the host no longer has. */
  gone: LimitRow[];
  stale: StaleRow[];
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

function compare(row: LimitRow, subject: SubjectLimit): StaleRow | undefined {
  const stored: Record<CopiedField, unknown> = {
    name: row.name, network_id: row.networkId, node: row.node, interface: row.interface, netns: row.netns, addresses: row.addresses, public_key: row.publicKey,
  };
  const host: Record<CopiedField, unknown> = {
    name: subject.name, network_id: subject.networkId, node: subject.node ?? 'local', interface: subject.interface, netns: subject.netns,
    addresses: subject.addresses, public_key: subject.publicKey ?? null,
  };
  const stale: StaleRow = { row, subject, old: {}, new: {}, shapingChanged: false };
  for (const field of Object.keys(stored) as CopiedField[]) {
    const same = field === 'addresses' ? sameSet(row.addresses, subject.addresses) : stored[field] === host[field];
    if (same) continue;
    stale.old[field] = stored[field];
    stale.new[field] = host[field];
    if (field === 'node' || field === 'interface' || field === 'netns' || field === 'addresses') stale.shapingChanged = true;
  }
  return Object.keys(stale.new).length > 0 ? stale : undefined;
}

/** The host's id of a stored subject id, or undefined when it cannot name a host record. */
function hostId(subjectId: string): number | undefined {
  return /^[1-9]\d{0,15}$/.test(subjectId) ? Number(subjectId) : undefined;
}

/**
 * Compares the stored rows with what the host holds. Pure. A peer whose network the host does not
 * list is left alone: the host is inconsistent, and dropping a limit is not the way to find out.
 * Addresses compare as sets, so a host that returns them in another order changes nothing.
 */
export function planResync(rows: LimitRow[], host: HostSubjects): ResyncPlan {
  const plan: ResyncPlan = { gone: [], stale: [] };
  for (const row of rows) {
    const id = hostId(row.subjectId);
    const caps = { upKbps: row.upKbps, downKbps: row.downKbps };
    let subject: SubjectLimit;
    if (row.subjectType === 'peer') {
      const peer = id === undefined ? undefined : host.peers.get(id);
      if (!peer) {
        plan.gone.push(row);
        continue;
      }
      const network = host.networks.get(Number(peer.network_id));
      if (!network) continue;
      subject = peerSubject(peer, network, caps);
    } else {
      const vm = id === undefined ? undefined : host.vms.get(id);
      if (!vm) {
        plan.gone.push(row);
        continue;
      }
      subject = vmSubject(vm, caps);
    }
    const stale = compare(row, subject);
    if (stale) plan.stale.push(stale);
  }
  return plan;
}

const refKey = (ref: InterfaceRef) => JSON.stringify([ref.node, ref.interface, ref.netns]);

/**
 * The interfaces whose kernel state a resync changes: where a dropped limited subject was, and
 * where a limited subject's addresses were and are now.
 */
export function touchedInterfaces(gone: LimitRow[], stale: StaleRow[]): InterfaceRef[] {
  const refs = new Map<string, InterfaceRef>();
  const add = (ref: InterfaceRef) => refs.set(refKey(ref), ref);
  for (const row of gone) if (isLimited(row)) add({ node: row.node, interface: row.interface, netns: row.netns });
  for (const { row, subject, shapingChanged } of stale) {
    if (!shapingChanged || !isLimited(row)) continue;
    add({ node: row.node, interface: row.interface, netns: row.netns });
    add({ node: subject.node ?? 'local', interface: subject.interface, netns: subject.netns });
  }
  return [...refs.values()];
}
