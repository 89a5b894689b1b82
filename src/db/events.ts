import type { Knex } from 'knex';
import type { SubjectType } from '../plugin-api.js';
import { toOutcomeReason, type OutcomeReason } from '../limits/outcome-reason.js';
import { DAY_MS } from '../accounting/buckets.js';

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
  /** How many times this same event was recorded (1: once), from `at` to `lastSeenAt`. */
  repeatCount: number;
  /** When it was last recorded (`at` for an event seen once). */
  lastSeenAt: Date;
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
  /**
   * Names the stream this event repeats in (e.g. the reconcile of one interface). When the newest
   * event of the stream is the same event (actor, action, subject, values, result, message and
   * reason), that row's count goes up and its last-seen time moves instead of a new row being
   * written. Without a key every event is its own row.
   */
  repeatKey?: string | null;
}

/** Byte counts are bigints: kept exact as decimal strings (JSON.stringify cannot write a bigint). */
const bigintAsText = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

/**
 * Writes an audit event, or counts it as a repeat of the newest event of its stream (see
 * {@link NewEvent.repeatKey}). Two processes that count the same repeat at once both add one.
 */
export async function recordEvent(db: Knex, event: NewEvent, now = Date.now()): Promise<void> {
  const row = {
    actor: event.actor.slice(0, 128),
    subject_type: event.subjectType ?? null,
    subject_id: event.subjectId ?? null,
    action: event.action,
    old_value: event.oldValue === undefined ? null : JSON.stringify(event.oldValue, bigintAsText),
    new_value: event.newValue === undefined ? null : JSON.stringify(event.newValue, bigintAsText),
    result: event.result,
    message: event.message ? event.message.slice(0, 4000) : null,
    reason: event.reason ?? null,
  };
  const repeatKey = event.repeatKey ? event.repeatKey.slice(0, 160) : null;
  if (repeatKey !== null) {
    const newest = (await db('bw_events').where({ repeat_key: repeatKey }).orderBy('id', 'desc').first()) as Record<string, unknown> | undefined;
    if (newest && sameEvent(newest, row)) {
      await db('bw_events').where({ id: newest.id as number }).update({ repeat_count: db.raw('?? + 1', ['repeat_count']), last_seen_at: now });
      return;
    }
  }
  await db('bw_events').insert({ at: now, ...row, repeat_key: repeatKey, repeat_count: 1, last_seen_at: now });
}

/** True when a stored row records the same event as `row` (the columns recordEvent writes). */
function sameEvent(stored: Record<string, unknown>, row: Record<string, string | null>): boolean {
  return Object.entries(row).every(([column, value]) => (stored[column] === null || stored[column] === undefined ? null : String(stored[column])) === value);
}

/** Deletes events last seen more than `days` days before `now`; returns how many went. */
export async function enforceEventRetention(db: Knex, now: number, days: number): Promise<number> {
  const cutoff = now - days * DAY_MS;
  // Two statements, each on the last-seen index (MySQL does not use an index across an OR); the
  // second takes rows an older plugin version wrote while this one ran (no last-seen time).
  const seen = await db('bw_events').where('last_seen_at', '<', cutoff).delete();
  const unseen = await db('bw_events').whereNull('last_seen_at').where('at', '<', cutoff).delete();
  return seen + unseen;
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
  // Newest activity first: a failure that keeps repeating stays at the top.
  const rows = await base().orderBy([{ column: 'last_seen_at', order: 'desc' }, { column: 'id', order: 'desc' }]).offset(options.offset).limit(options.limit);
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
      repeatCount: Number(row.repeat_count ?? 1),
      lastSeenAt: new Date(Number(row.last_seen_at ?? row.at)),
    })),
  };
}
