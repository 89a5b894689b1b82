/**
 * The plugin's one way to read and change quotas: the quota API, the peer/VM hooks and the admin
 * pages come through here. Settings are stored first, audited, then the enforcer brings the
 * affected subjects' cycles, states and throttles along.
 */
import type { Knex } from 'knex';
import { recordEvent } from '../db/events.js';
import { getLimit } from '../db/limits.js';
import { addExtraBytes, latestCycles, resetCycle, subjectKey, type CycleRow } from '../db/quota-cycles.js';
import { allQuotas, deleteQuota, getQuota, putQuota, quotaJson, type QuotaRow } from '../db/quotas.js';
import { InputError, NotFoundError } from '../errors.js';
import { MAX_BYTES } from './input.js';
import type { Logger, SubjectType } from '../plugin-api.js';
import type { QuotaEnforcer, QuotaNotice } from './enforcer.js';
import { QuotaBook } from './book.js';
import { assess, projectedBytes, throttleFor, usedBytes, type QuotaSettings, type QuotaSource, type QuotaState, type QuotaTarget } from './rules.js';

/** A subject's quota as the API and the pages show it. */
export interface QuotaStatus {
  settings: QuotaSettings;
  source: QuotaSource;
  cycleStart: number;
  cycleEnd: number;
  countedFrom: number;
  upBytes: bigint;
  downBytes: bigint;
  usedBytes: bigint;
  extraBytes: bigint;
  limitBytes: bigint;
  remainingBytes: bigint;
  ratio: number;
  state: QuotaState;
  throttled: boolean;
  /** At the average rate since the cycle (or its reset) began; null right at its start. */
  projectedBytes: bigint | null;
}

export interface QuotaServiceOptions {
  db: Knex;
  enforcer: QuotaEnforcer;
  notify: (notice: QuotaNotice) => Promise<void>;
  now: () => number;
  logger: Logger;
}

/** Above this many subjects, statuses read every row of a table once instead of IN lists. */
const BULK = 2000;

const bigintText = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

export class QuotaService {
  constructor(private readonly options: QuotaServiceOptions) {}

  /** A target's own quota settings (not inherited), or undefined. */
  async own(target: QuotaTarget): Promise<QuotaRow | undefined> {
    return getQuota(this.options.db, target);
  }

  /** The own quota settings of many subjects of one type, by id. */
  async ownOf(type: SubjectType, ids: string[]): Promise<Map<string, QuotaRow>> {
    const found = new Map<string, QuotaRow>();
    if (ids.length === 0) return found;
    for (const row of await allQuotas(this.options.db)) if (row.target.type === type && ids.includes(row.target.id)) found.set(row.target.id, row);
    return found;
  }

  /** Brings one subject's cycle, state and throttle along (after its row was written); never throws. */
  async followSubject(type: SubjectType, id: string, actor: string): Promise<void> {
    await this.follow({ type, id }, actor);
  }

  /** Stores a target's quota and brings its subjects along; returns the settings before (if any). */
  async put(target: QuotaTarget, settings: QuotaSettings, actor: string): Promise<QuotaRow | undefined> {
    const { db, now } = this.options;
    const stored = await getQuota(db, target);
    // A form saved unchanged stores nothing and audits nothing (the subjects are still brought along).
    if (stored && JSON.stringify(quotaJson(stored), bigintText) === JSON.stringify(quotaJson(settings), bigintText)) {
      await this.follow(target, actor);
      return stored;
    }
    const previous = await putQuota(db, target, settings, now());
    await recordEvent(db, { actor, ...this.auditSubject(target), action: 'quota.set', oldValue: previous ? { target, ...quotaJson(previous) } : null, newValue: { target, ...quotaJson(settings) }, result: 'ok' }, now());
    await this.follow(target, actor);
    return previous;
  }

  /** Removes a target's own quota (its subjects inherit again); false when it had none. */
  async remove(target: QuotaTarget, actor: string): Promise<boolean> {
    const { db, now } = this.options;
    const previous = await deleteQuota(db, target);
    if (!previous) return false;
    await recordEvent(db, { actor, ...this.auditSubject(target), action: 'quota.removed', oldValue: { target, ...quotaJson(previous) }, newValue: null, result: 'ok' }, now());
    await this.follow(target, actor);
    return true;
  }

  /** A manual reset: the subject's cycle counts from now, thresholds re-armed, throttle lifted. */
  async reset(type: SubjectType, id: string, actor: string): Promise<QuotaStatus> {
    const { db, now } = this.options;
    const { cycle, status, name } = await this.current(type, id);
    await resetCycle(db, cycle.id, now());
    await recordEvent(db, { actor, subjectType: type, subjectId: id, action: 'quota.manual_reset', oldValue: { used_bytes: status.usedBytes.toString(), state: status.state }, newValue: { used_bytes: '0', state: 'ok' }, result: 'ok' }, now());
    await this.options.enforcer.syncSubjects([{ type, id }], actor);
    const after = await this.status(type, id);
    await this.options.notify({
      name: 'bandwidth.quota.reset', subject: { type, id, name }, source: status.source, settings: status.settings, cycle: { start: status.cycleStart, end: status.cycleEnd },
      usedBytes: 0n, limitBytes: after?.limitBytes ?? status.limitBytes, throttled: after?.throttled ?? false, reason: 'manual', actor,
    }).catch(() => {});
    return after ?? status;
  }

  /** Adds a traffic block to the subject's current cycle only. */
  async extra(type: SubjectType, id: string, bytes: bigint, actor: string): Promise<QuotaStatus> {
    const { db, now } = this.options;
    const { cycle, status } = await this.current(type, id);
    // A sum past the largest BIGINT would be stored as a float by SQLite and make the row unreadable.
    if (status.extraBytes + bytes > MAX_BYTES) throw new InputError('bytes', `the cycle's traffic blocks would pass ${MAX_BYTES} bytes (it has ${status.extraBytes})`);
    if (!(await addExtraBytes(db, cycle.id, bytes, now()))) throw new InputError('bytes', `the cycle's traffic blocks would pass ${MAX_BYTES} bytes`);
    await recordEvent(db, { actor, subjectType: type, subjectId: id, action: 'quota.extra', oldValue: { extra_bytes: status.extraBytes.toString() }, newValue: { extra_bytes: (status.extraBytes + bytes).toString(), added_bytes: bytes.toString() }, result: 'ok' }, now());
    await this.options.enforcer.syncSubjects([{ type, id }], actor);
    return (await this.status(type, id)) ?? status;
  }

  /** A subject's effective quota and its current cycle; null when no quota applies to it. */
  async status(type: SubjectType, id: string): Promise<QuotaStatus | null> {
    return (await this.statuses(type, [id])).get(subjectKey(type, id)) ?? null;
  }

  /** The quota status of many subjects of one type (the overview, the CSV export, /metrics). */
  async statuses(type: SubjectType, ids: string[]): Promise<Map<string, QuotaStatus>> {
    const { db, now } = this.options;
    const at = now();
    const result = new Map<string, QuotaStatus>();
    if (ids.length === 0) return result;
    const rows = await allQuotas(db);
    if (rows.length === 0) return result;
    const book = new QuotaBook(rows);
    const quotaOf = (id: string) => book.of({ subjectType: type, subjectId: id, networkId: limits.get(id)?.networkId ?? null });
    const limits = await this.facts(type, ids);
    // Many subjects (a /metrics scrape, a CSV export): one read of them all beats hundreds of IN lists.
    const cyclesOf = () => (ids.length > BULK ? latestCycles(db, at) : latestCycles(db, at, ids.map((subjectId) => ({ type, id: subjectId }))));
    let cycles = await cyclesOf();
    // A quota whose cycle just ended (or was just set) before the enforcer's next pass: open it now.
    const stale = ids.filter((id) => {
      const limit = limits.get(id);
      const cycle = cycles.get(subjectKey(type, id));
      return limit && (!cycle || cycle.cycleStart > at) && quotaOf(id);
    });
    if (stale.length > 0) {
      await this.options.enforcer.syncSubjects(stale.map((id) => ({ type, id })));
      cycles = await cyclesOf();
    }
    for (const id of ids) {
      const limit = limits.get(id);
      const quota = quotaOf(id);
      const cycle = cycles.get(subjectKey(type, id));
      if (!quota || !cycle || cycle.cycleStart > at) continue;
      result.set(subjectKey(type, id), this.describe(quota.settings, quota.source, cycle, limit?.throttled ?? false, at));
    }
    return result;
  }

  /** What statuses need of each subject's row: its network and whether a throttle is in force. */
  private async facts(type: SubjectType, ids: string[]): Promise<Map<string, { networkId: string | null; throttled: boolean }>> {
    const found = new Map<string, { networkId: string | null; throttled: boolean }>();
    const keep = (rows: Record<string, unknown>[]) => {
      for (const row of rows) {
        found.set(String(row.subject_id), {
          networkId: row.network_id === null || row.network_id === undefined ? null : String(row.network_id),
          throttled: row.throttle_up_kbps !== null || row.throttle_down_kbps !== null,
        });
      }
    };
    const query = () => this.options.db('bw_limits').select('subject_id', 'network_id', 'throttle_up_kbps', 'throttle_down_kbps').where({ subject_type: type });
    if (ids.length > BULK) keep(await query());
    else for (let i = 0; i < ids.length; i += 500) keep(await query().whereIn('subject_id', ids.slice(i, i + 500)));
    return found;
  }

  private describe(settings: QuotaSettings, source: QuotaSource, cycle: CycleRow, throttled: boolean, at: number): QuotaStatus {
    const used = usedBytes(settings.counted, cycle.upBytes, cycle.downBytes);
    const assessment = assess({ allowanceBytes: settings.allowanceBytes, extraBytes: cycle.extraBytes, used, warnPercents: settings.warnPercents, fired: cycle.fired });
    return {
      settings, source, cycleStart: cycle.cycleStart, cycleEnd: cycle.cycleEnd, countedFrom: cycle.countedFrom, upBytes: cycle.upBytes, downBytes: cycle.downBytes,
      usedBytes: used, extraBytes: cycle.extraBytes, limitBytes: assessment.limitBytes, remainingBytes: assessment.remaining, ratio: assessment.ratio,
      state: assessment.state, throttled: throttled && throttleFor(settings, assessment.state) !== null, projectedBytes: projectedBytes(used, cycle.countedFrom, cycle.cycleEnd, at),
    };
  }

  /** The subject's current cycle (opened now if it is not yet), or NotFoundError when no quota applies. */
  private async current(type: SubjectType, id: string): Promise<{ cycle: CycleRow; status: QuotaStatus; name: string }> {
    const limit = await getLimit(this.options.db, type, id);
    if (!limit) throw new NotFoundError(`${type} ${id} is not known to the bandwidth plugin`);
    await this.options.enforcer.syncSubjects([{ type, id }]);
    const status = await this.status(type, id);
    const cycle = (await latestCycles(this.options.db, this.options.now(), [{ type, id }])).get(subjectKey(type, id));
    if (!status || !cycle) throw new NotFoundError(`${type} ${id} has no quota: set one on it, its network or as the default`);
    return { cycle, status, name: limit.name };
  }

  /**
   * After a target's settings changed: its subjects (all of them for a network or the default). The
   * settings are stored: a failure here is logged, and the reconcile loop's pass brings them along.
   */
  private async follow(target: QuotaTarget, actor: string): Promise<void> {
    await this.followNow(target, actor).catch((error: unknown) =>
      this.options.logger.warn('evaluating quotas after a change failed; the reconcile loop retries', { area: 'quotas', error: (error as Error).message }));
  }

  private async followNow(target: QuotaTarget, actor: string): Promise<void> {
    if (target.type === 'peer' || target.type === 'vm') return this.options.enforcer.syncSubjects([{ type: target.type, id: target.id }], actor);
    if (target.type === 'network') {
      const rows = (await this.options.db('bw_limits').select('subject_type', 'subject_id').where({ subject_type: 'peer', network_id: target.id })) as Record<string, unknown>[];
      return this.options.enforcer.syncSubjects(rows.map((row) => ({ type: String(row.subject_type), id: String(row.subject_id) })), actor);
    }
    return this.options.enforcer.sync();
  }

  private auditSubject(target: QuotaTarget): { subjectType?: SubjectType; subjectId?: string } {
    return target.type === 'peer' || target.type === 'vm' ? { subjectType: target.type, subjectId: target.id } : {};
  }
}
