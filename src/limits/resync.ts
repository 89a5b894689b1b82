import type { Knex } from 'knex';
import type { HostRecords, Logger } from '../plugin-api.js';
import { isLimited, toLimitRow, type InterfaceRef, type LimitRow } from '../db/limits.js';
import { dropLimits, refreshLimits } from '../db/resync-limits.js';
import { recordEvent } from '../db/events.js';
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
  const plan = planResync(rows, await readHostSubjects(records));
  if (plan.gone.length === 0 && plan.stale.length === 0) return { dropped: [], refreshed: [], interfaces: [] };

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
  return { dropped, refreshed, interfaces: touchedInterfaces(dropped, refreshed) };
}
