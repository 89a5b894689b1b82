/**
 * Where a quota notice goes: the audit log, the outgoing webhook (queued, then sent by the
 * deliverer) and the host's event bus. Each part is tried even when another failed.
 */
import type { Knex } from 'knex';
import { recordEvent } from '../db/events.js';
import type { HookBus, Logger, QuotaEventPayload } from '../plugin-api.js';
import type { QuotaNotice } from './enforcer.js';
import { enqueueWebhook, type WebhookDeliverer } from './webhooks.js';

/** A notice as the host's hook, the webhook's `data` and the audit log carry it. */
export function noticePayload(notice: QuotaNotice): QuotaEventPayload {
  return {
    subject_type: notice.subject.type,
    subject_id: notice.subject.id,
    subject_name: notice.subject.name,
    source: notice.source,
    percent: notice.percent ?? null,
    used_bytes: notice.usedBytes.toString(),
    limit_bytes: notice.limitBytes.toString(),
    allowance_bytes: notice.settings.allowanceBytes.toString(),
    counted: notice.settings.counted,
    cycle_start: new Date(notice.cycle.start).toISOString(),
    cycle_end: new Date(notice.cycle.end).toISOString(),
    action: notice.settings.action,
    throttled: notice.throttled,
    reason: notice.reason ?? null,
    actor: notice.actor,
  };
}

export interface QuotaNotifierOptions {
  db: Knex;
  hooks: HookBus;
  logger: Logger;
  now: () => number;
  /** The configured webhook, or null. */
  webhook: { url: string } | null;
  deliverer: WebhookDeliverer | null;
}

/** The enforcer's `notify`: audit, webhook, host event. */
export function quotaNotifier(options: QuotaNotifierOptions): (notice: QuotaNotice) => Promise<void> {
  return async (notice) => {
    const payload = noticePayload(notice);
    const failures: unknown[] = [];
    const attempt = async (part: string, work: () => Promise<unknown>) => {
      try {
        await work();
      } catch (error) {
        failures.push(error);
        options.logger.warn(`a quota notice was not ${part}`, { area: 'quotas', event: notice.name, error: (error as Error).message });
      }
    };
    // A manual reset is audited by the quota service, with the usage it cleared.
    if (notice.reason !== 'manual') await attempt('audited', () =>
      recordEvent(options.db, {
        actor: notice.actor, subjectType: notice.subject.type, subjectId: notice.subject.id, action: notice.name.replace('bandwidth.', ''),
        newValue: payload, result: 'ok',
      }, options.now()));
    await attempt('queued for the webhook', async () => {
      const id = await enqueueWebhook(options.db, options.webhook, { name: notice.name, subjectType: notice.subject.type, subjectId: notice.subject.id, payload: { ...payload } }, options.now());
      if (id) options.deliverer?.kick();
    });
    if (options.hooks.emit) await attempt('emitted to the host', async () => options.hooks.emit!(notice.name, payload));
    if (failures.length === 3) throw new AggregateError(failures, 'the quota notice went nowhere');
  };
}
