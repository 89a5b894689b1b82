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

/** What the enforcer and the quota service tell the world through. */
export interface QuotaNotifier {
  /** Stores a notice (audit row, queued webhook) in the caller's transaction; throws when it cannot. */
  record(db: Knex | Knex.Transaction, notice: QuotaNotice): Promise<void>;
  /** After the notice is stored: the host's event bus, and the deliverer is woken. Never throws. */
  announce(notice: QuotaNotice): Promise<void>;
  /** Both, for a notice of its own (a manual reset, a new cycle): stored, then announced. */
  notify(notice: QuotaNotice): Promise<void>;
}

/** The notifier of a running plugin: audit log, webhook outbox, host events. */
export function quotaNotifier(options: QuotaNotifierOptions): QuotaNotifier {
  const record = async (db: Knex | Knex.Transaction, notice: QuotaNotice) => {
    const payload = noticePayload(notice);
    // A manual reset is audited by the quota service, with the usage it cleared.
    if (notice.reason !== 'manual') {
      await recordEvent(db as Knex, {
        actor: notice.actor, subjectType: notice.subject.type, subjectId: notice.subject.id, action: notice.name.replace('bandwidth.', ''),
        newValue: payload, result: 'ok',
      }, options.now());
    }
    await enqueueWebhook(db, options.webhook, { name: notice.name, subjectType: notice.subject.type, subjectId: notice.subject.id, payload: { ...payload } }, options.now());
  };
  const announce = async (notice: QuotaNotice) => {
    if (options.webhook) options.deliverer?.kick();
    if (!options.hooks.emit) return;
    try {
      await options.hooks.emit(notice.name, noticePayload(notice));
    } catch (error) {
      options.logger.warn('a quota notice was not emitted to the host', { area: 'quotas', event: notice.name, error: (error as Error).message });
    }
  };
  return {
    record,
    announce,
    async notify(notice) {
      try {
        await record(options.db, notice);
      } catch (error) {
        options.logger.warn('a quota notice was not stored (audit, webhook)', { area: 'quotas', event: notice.name, error: (error as Error).message });
      }
      await announce(notice);
    },
  };
}
