/** Quota settings in `bw_quotas`: one row per subject, network or the plugin-wide default. */
import type { Knex } from 'knex';
import { bigintColumn, fromBigInt, toBigInt } from './bigint.js';
import type { Counted, QuotaAction, QuotaSettings, QuotaTarget, QuotaTargetType } from '../quotas/rules.js';

/** The default's row key (`subject_id` of the `default` target). */
const DEFAULT_ID = '*';

export interface QuotaRow extends QuotaSettings {
  target: QuotaTarget;
  updatedAt: number;
}

const keyOf = (target: QuotaTarget) => ({ subject_type: target.type, subject_id: target.type === 'default' ? DEFAULT_ID : target.id });

function toQuotaRow(row: Record<string, unknown>): QuotaRow {
  const type = String(row.subject_type) as QuotaTargetType;
  return {
    target: { type, id: type === 'default' ? '' : String(row.subject_id) },
    allowanceBytes: toBigInt(row.allowance_bytes) as bigint,
    counted: String(row.counted) as Counted,
    cycleDay: Number(row.cycle_day),
    timeZone: String(row.time_zone),
    warnPercents: JSON.parse(String(row.warn_percents)) as number[],
    action: String(row.action) as QuotaAction,
    throttleUpKbps: Number(row.throttle_up_kbps),
    throttleDownKbps: Number(row.throttle_down_kbps),
    updatedAt: Number(row.updated_at),
  };
}

const columns = (db: Knex) => ['subject_type', 'subject_id', bigintColumn(db, 'allowance_bytes'), 'counted', 'cycle_day', 'time_zone', 'warn_percents', 'action', 'throttle_up_kbps', 'throttle_down_kbps', 'updated_at'];

export async function getQuota(db: Knex, target: QuotaTarget): Promise<QuotaRow | undefined> {
  const row = (await db('bw_quotas').select(columns(db)).where(keyOf(target)).first()) as Record<string, unknown> | undefined;
  return row ? toQuotaRow(row) : undefined;
}

/** Every quota row (the enforcer resolves inheritance from them in memory). */
export async function allQuotas(db: Knex): Promise<QuotaRow[]> {
  return ((await db('bw_quotas').select(columns(db)).orderBy('id')) as Record<string, unknown>[]).map(toQuotaRow);
}

/** Stores a target's quota (insert or replace); returns the row before, if any. */
export async function putQuota(db: Knex, target: QuotaTarget, settings: QuotaSettings, now: number): Promise<QuotaRow | undefined> {
  return db.transaction(async (trx) => {
    const previous = (await trx('bw_quotas').select(columns(trx)).where(keyOf(target)).first()) as Record<string, unknown> | undefined;
    const values = {
      allowance_bytes: fromBigInt(settings.allowanceBytes),
      counted: settings.counted,
      cycle_day: settings.cycleDay,
      time_zone: settings.timeZone,
      warn_percents: JSON.stringify(settings.warnPercents),
      action: settings.action,
      throttle_up_kbps: settings.throttleUpKbps,
      throttle_down_kbps: settings.throttleDownKbps,
      updated_at: now,
    };
    if (previous) await trx('bw_quotas').where(keyOf(target)).update(values);
    else await trx('bw_quotas').insert({ ...keyOf(target), ...values, created_at: now });
    return previous ? toQuotaRow(previous) : undefined;
  });
}

/** Removes a target's quota; returns what it held. */
export async function deleteQuota(db: Knex, target: QuotaTarget): Promise<QuotaRow | undefined> {
  const previous = await getQuota(db, target);
  if (previous) await db('bw_quotas').where(keyOf(target)).delete();
  return previous;
}

/** The settings as the API and audit log show them. */
export function quotaJson(settings: QuotaSettings): Record<string, unknown> {
  return {
    allowance_bytes: settings.allowanceBytes,
    counted: settings.counted,
    cycle_day: settings.cycleDay,
    time_zone: settings.timeZone,
    warn_percents: settings.warnPercents,
    action: settings.action,
    throttle_up_kbps: settings.throttleUpKbps,
    throttle_down_kbps: settings.throttleDownKbps,
  };
}
