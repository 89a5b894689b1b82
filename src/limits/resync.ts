import type { Knex } from 'knex';
import type { HostRecords, Logger, NetworkRecord } from '../plugin-api.js';
import { isLimited, toLimitRow, type InterfaceRef, type LimitRow } from '../db/limits.js';
import { dropLimits, refreshLimits } from '../db/resync-limits.js';
import { recordEvent } from '../db/events.js';
import { deleteNetworkCaps, listNetworkCaps, moveNetworkCaps } from '../db/network-caps.js';
import { LOCAL_NODE } from '../nodes/node-name.js';
import { readHostSubjects } from './host-subjects.js';
import { planResync, touchedInterfaces, type StaleRow } from './resync-plan.js';

/** What a resync changed. */
export interface ResyncResult {
  /** Rows deleted because the host no longer has their peer or VM. */
  dropped: LimitRow[];
  /** Rows whose copy of the host's data was refreshed. */
  refreshed: StaleRow[];
  /** Interfaces whose kernel state has to follow (reconcile them, also when no row is left on them). */
  interfaces: InterfaceRef[];
}

const what = (row: LimitRow) => ({
  name: row.name, interface: row.interface, netns: row.netns, addresses: row.addresses, up_kbps: row.upKbps, down_kbps: row.downKbps,
});

/**
 * Brings `bw_limits`' copies of the host's data in line with the host (hooks are missed while the
 * plugin is disabled, or by a host that writes around them): drops rows whose subject is gone and
 * refreshes name, network, interface, namespace, addresses and key. Costs one read of `bw_limits`
 * and one listing per host table (per 10,000 records); writes only what differs. Every change to
 * a limited subject is audited (`subject.gone`, `subject.refreshed`); unlimited ones are counted
 * in the log only. Does not touch the kernel: reconcile {@link ResyncResult.interfaces} afterwards.
 */
export async function resyncWithHost(db: Knex, records: HostRecords, actor: string, logger: Logger): Promise<ResyncResult> {
  // The rows first, the host second: a subject created in between has no row in this read, so it
  // can never look deleted; one deleted in between is dropped, as its hook would have done.
  const rows = ((await db('bw_limits').orderBy('id')) as Record<string, unknown>[]).map(toLimitRow);
  const host = await readHostSubjects(records);
  const plan = planResync(rows, host);
  const capsMoved = await resyncNetworkCaps(db, host.networks, actor);
  if (plan.gone.length === 0 && plan.stale.length === 0) return { dropped: [], refreshed: [], interfaces: capsMoved };

  const dropped = await dropLimits(db, plan.gone);
  const refreshed = await refreshLimits(db, plan.stale);
  await db.transaction(async (trx) => {
    for (const row of dropped.filter(isLimited)) {
      await recordEvent(trx, {
        actor, subjectType: row.subjectType, subjectId: row.subjectId, action: 'subject.gone', oldValue: what(row), newValue: null,
        result: 'ok', message: `The host no longer has ${row.subjectType} ${row.subjectId}: its limit was dropped`,
      });
    }
    for (const { row, old, new: now } of refreshed.filter((entry) => isLimited(entry.row))) {
      await recordEvent(trx, {
        actor, subjectType: row.subjectType, subjectId: row.subjectId, action: 'subject.refreshed', oldValue: old, newValue: now,
        result: 'ok', message: `Copied ${Object.keys(now).join(', ')} from the host`,
      });
    }
  });
  if (dropped.length > 0 || refreshed.length > 0) {
    logger.info('resynchronised limits with the host', {
      dropped: dropped.length, refreshed: refreshed.length, limitedDropped: dropped.filter(isLimited).length,
      skipped: plan.gone.length + plan.stale.length - dropped.length - refreshed.length,
    });
  }
  const interfaces = new Map([...touchedInterfaces(dropped, refreshed), ...capsMoved].map((ref) => [JSON.stringify([ref.node, ref.interface, ref.netns]), ref]));
  return { dropped, refreshed, interfaces: [...interfaces.values()] };
}

/**
 * Network caps follow the host's networks: a network the host no longer lists loses its caps (and
 * its peers' defaults), one whose interface moved has it recorded where it is now.
 * @returns the interfaces whose shaping changes with it.
 */
async function resyncNetworkCaps(db: Knex, networks: Map<number, NetworkRecord>, actor: string): Promise<InterfaceRef[]> {
  const touched: InterfaceRef[] = [];
  for (const caps of await listNetworkCaps(db)) {
    const network = /^[1-9]\d{0,15}$/.test(caps.networkId) ? networks.get(Number(caps.networkId)) : undefined;
    const was = { node: caps.node, interface: caps.interface, netns: caps.netns };
    if (!network) {
      await deleteNetworkCaps(db, caps.networkId);
      touched.push(was);
      await recordEvent(db, {
        actor, action: 'network.caps', oldValue: { network_id: caps.networkId, total_up_kbps: caps.totalUpKbps, total_down_kbps: caps.totalDownKbps, default_up_kbps: caps.defaultUpKbps, default_down_kbps: caps.defaultDownKbps },
        newValue: null, result: 'ok', message: `The host no longer has network ${caps.networkId}: its caps were dropped`,
      });
      continue;
    }
    const now = { node: network.node ?? LOCAL_NODE, interface: network.interface, netns: network.netns };
    if (now.node !== was.node || now.interface !== was.interface || now.netns !== was.netns) {
      await moveNetworkCaps(db, caps.networkId, now);
      touched.push(was, now);
    }
  }
  return touched;
}
