import type { Knex } from 'knex';
import type { SubjectType } from '../plugin-api.js';
import { toOutcomeReason, type OutcomeReason } from '../limits/outcome-reason.js';

/** One audit entry: who changed which limit when, and what the kernel answered. */
export interface BandwidthEvent {
  id: number;
  at: Date;
  actor: string;
  subjectType: SubjectType | null;
  subjectId: string | null;
  action: string;
  oldValue: unknown;
  newValue: unknown;
  result: string;
  message: string | null;
  /** Why the result is what it is (typed; the message is for people). */
  reason: OutcomeReason | null;
}

export interface NewEvent {
  actor: string;
  subjectType?: SubjectType | null;
  subjectId?: string | null;
  action: string;
  oldValue?: unknown;
  newValue?: unknown;
  result: 'ok' | 'applied' | 'pending' | 'failed' | 'rejected';
  message?: string | null;
  reason?: OutcomeReason | null;
}

export async function recordEvent(db: Knex, event: NewEvent, now = Date.now()): Promise<void> {
  await db('bw_events').insert({
    at: now,
    actor: event.actor.slice(0, 128),
    subject_type: event.subjectType ?? null,
    subject_id: event.subjectId ?? null,
    action: event.action,
    old_value: event.oldValue === undefined ? null : JSON.stringify(event.oldValue),
    new_value: event.newValue === undefined ? null : JSON.stringify(event.newValue),
    result: event.result,
    message: event.message ? event.message.slice(0, 4000) : null,
    reason: event.reason ?? null,
  });
}

function parseJson(text: unknown): unknown {
  return text === null || text === undefined ? null : JSON.parse(String(text));
}

/** Newest first; optionally for one subject. */
export async function listEvents(
  db: Knex,
  options: { offset: number; limit: number; subjectType?: SubjectType; subjectId?: string },
): Promise<{ events: BandwidthEvent[]; total: number }> {
  const base = () => {
    const query = db('bw_events');
    if (options.subjectType) query.where({ subject_type: options.subjectType });
    if (options.subjectId) query.where({ subject_id: options.subjectId });
    return query;
  };
  const [count] = await base().count({ n: '*' });
  const rows = await base().orderBy([{ column: 'at', order: 'desc' }, { column: 'id', order: 'desc' }]).offset(options.offset).limit(options.limit);
  return {
    total: Number(count?.n ?? 0),
    events: rows.map((row) => ({
      id: Number(row.id),
      at: new Date(Number(row.at)),
      actor: String(row.actor),
      subjectType: (row.subject_type as SubjectType | null) ?? null,
      subjectId: row.subject_id === null ? null : String(row.subject_id),
      action: String(row.action),
      oldValue: parseJson(row.old_value),
      newValue: parseJson(row.new_value),
      result: String(row.result),
      message: row.message === null ? null : String(row.message),
      reason: toOutcomeReason(row.reason),
    })),
  };
}
