/**
 * Turns cycle counters into quota states, notifications and throttles. It runs right after every
 * ledger ingestion (the local node's collector tick included) on the cycles that ingestion added
 * to, and in full on the reconcile loop's timer, after a quota changed, and when a cycle ends.
 *
 * Several panel processes may share one database: a threshold is notified by the one process whose
 * conditional write of the cycle's evaluation wins (src/db/quota-cycles.ts `markEvaluated`), and a
 * throttle follows from the state, so any process may put it in force or lift it.
 */
import type { Knex } from 'knex';
import { getLimits, setThrottle, throttleEquals, toLimitRow, type LimitRow } from '../db/limits.js';
import { allQuotas } from '../db/quotas.js';
import { deleteCycles, dirtyCycles, latestCycles, markEvaluated, openCycle, settleCycles, settleEndedCycles, subjectKey, type CycleRow, type SubjectRef } from '../db/quota-cycles.js';
import { DAY_MS } from '../accounting/buckets.js';
import type { Logger, SubjectType } from '../plugin-api.js';
import { cycleAt, type Cycle } from './cycle.js';
import { QuotaBook } from './book.js';
import { assess, throttleFor, usedBytes, type Assessment, type QuotaSettings, type QuotaSource } from './rules.js';

/** How long ended cycles are kept (the subject page shows the last ones). */
const CYCLE_HISTORY_MS = 400 * DAY_MS;

/** Something a quota did that the world hears about (host hooks, webhooks, the audit log). */
export interface QuotaNotice {
  name: 'bandwidth.quota.warning' | 'bandwidth.quota.exceeded' | 'bandwidth.quota.reset';
  subject: { type: SubjectType; id: string; name: string };
  source: QuotaSource;
  settings: QuotaSettings;
  cycle: Cycle;
  /** The threshold crossed (warning, exceeded), in percent of the allowance plus extra bytes. */
  percent?: number;
  usedBytes: bigint;
  limitBytes: bigint;
  /** True when the action throttles the subject now. */
  throttled: boolean;
  /** reset: `cycle` (a new cycle began) or `manual`. */
  reason?: 'cycle' | 'manual';
  actor: string;
}

/** A throttle put in force or lifted, with what the kernel answered. */
export interface ThrottleChange {
  subject: { type: SubjectType; id: string; name: string };
  throttle: { upKbps: number; downKbps: number } | null;
}

export interface QuotaEnforcerOptions {
  db: Knex;
  logger: Logger;
  now: () => number;
  /** Brings a node's interface in line with the stored rows (the panel's NodeApplier). */
  applyInterface: (iface: string, netns: string | null, node: string) => Promise<unknown>;
  /** Tells the world once the notice is stored (the host's bus, the webhook deliverer's kick). */
  notify: (notice: QuotaNotice) => Promise<void>;
  /** Stores a threshold's notice (audit row, queued webhook) in the evaluation's own transaction. */
  record?: (trx: Knex.Transaction, notice: QuotaNotice) => Promise<void>;
  /** Audits a throttle put in force or lifted. */
  throttled?: (change: ThrottleChange) => Promise<void>;
}

export class QuotaEnforcer {
  private running: Promise<void> = Promise.resolve();
  /** The earliest end of a current cycle seen by the last full pass: a pass after it opens the next cycles. */
  private nextRollover = 0;

  constructor(private readonly options: QuotaEnforcerOptions) {}

  /** Runs passes one at a time in this process (a pass reads, decides, then writes). */
  private serial(pass: () => Promise<void>): Promise<void> {
    const next = this.running.then(pass, pass);
    this.running = next.catch(() => {});
    return next;
  }

  /** Resolves once the pass in flight (if any) has ended (close()). */
  async idle(): Promise<void> {
    await this.running;
  }

  /** After an ingestion: evaluates the cycles it added to, or everything when a cycle has ended. */
  afterIngest(): Promise<void> {
    return this.serial(async () => {
      if (this.options.now() >= this.nextRollover) return this.fullPass();
      const dirty = await dirtyCycles(this.options.db);
      if (dirty.length > 0) await this.evaluate(dirty.map((row) => ({ type: row.subjectType, id: row.subjectId })));
      // A dirty subject whose cycle has ended or whose rule changed: its current cycle is opened now, not a tick later.
      if (this.options.now() >= this.nextRollover) await this.fullPass();
    });
  }

  /** Everything: opens missing and new cycles, evaluates every subject, lifts throttles no quota justifies. */
  sync(): Promise<void> {
    return this.serial(() => this.fullPass());
  }

  /** These subjects only (after their quota, usage or traffic blocks changed). */
  syncSubjects(subjects: SubjectRef[], actor = 'quota'): Promise<void> {
    return this.serial(() => this.evaluate(subjects, { open: true, actor }));
  }

  private async fullPass(): Promise<void> {
    const { db, now } = this.options;
    const at = now();
    const rows = ((await db('bw_limits').select('*')) as Record<string, unknown>[]).map(toLimitRow);
    await this.evaluate(rows.map((row) => ({ type: row.subjectType, id: row.subjectId })), { open: true, rows, actor: 'quota' });
    const latest = await latestCycles(db, at);
    // A loop, not Math.min(...ends): a spread of 150,000 arguments throws.
    this.nextRollover = Infinity;
    for (const row of latest.values()) this.nextRollover = Math.min(this.nextRollover, row.cycleEnd);
    // Cycles of subjects that are gone (their rows deleted) go with them; ended cycles are kept a while.
    const known = new Set(rows.map((row) => subjectKey(row.subjectType, row.subjectId)));
    const orphans = ((await db('bw_quota_cycles').distinct('subject_type', 'subject_id')) as Record<string, unknown>[])
      .map((row) => ({ type: String(row.subject_type), id: String(row.subject_id) }))
      .filter((ref) => !known.has(subjectKey(ref.type, ref.id)));
    await deleteCycles(db, orphans, at - CYCLE_HISTORY_MS);
  }

  /**
   * Evaluates these subjects: (with `open`) opens the cycle each one's quota says is current,
   * records each state, notifies the thresholds crossed, and puts throttles in force or lifts them.
   */
  private async evaluate(subjects: SubjectRef[], options: { open?: boolean; rows?: LimitRow[]; actor?: string } = {}): Promise<void> {
    const { db, now, logger } = this.options;
    const at = now();
    const book = new QuotaBook(await allQuotas(db));
    const limits = options.rows ?? (await this.limitRows(subjects));
    let cycles = await latestCycles(db, at - CYCLE_HISTORY_MS, options.rows ? undefined : subjects);
    const actor = options.actor ?? 'quota';

    if (options.open) {
      // Subjects whose current cycle is not open yet, grouped by cycle (one history read per group).
      const groups = new Map<string, { cycle: Cycle; subjects: SubjectRef[]; previous: (CycleRow | undefined)[] }>();
      for (const row of limits) {
        const quota = book.of(row);
        if (!quota) continue;
        const cycle = cycleAt({ cycleDay: quota.settings.cycleDay, timeZone: quota.settings.timeZone }, at);
        const latest = cycles.get(subjectKey(row.subjectType, row.subjectId));
        if (latest && latest.cycleStart === cycle.start && latest.cycleEnd === cycle.end) continue;
        const key = `${cycle.start}:${cycle.end}`;
        const group = groups.get(key) ?? { cycle, subjects: [], previous: [] };
        group.subjects.push({ type: row.subjectType, id: row.subjectId });
        group.previous.push(latest);
        groups.set(key, group);
      }
      const limitByKey = new Map(limits.map((limit) => [subjectKey(limit.subjectType, limit.subjectId), limit]));
      for (const group of groups.values()) {
        const opened = await openCycle(db, group.subjects, group.cycle, at);
        // A new cycle restores a subject its last one had warned about or throttled: say so, once (the process that opened it).
        for (const [index, ref] of group.subjects.entries()) {
          const previous = group.previous[index];
          const row = limitByKey.get(subjectKey(ref.type, ref.id));
          const quota = row ? book.of(row) : null;
          if (!row || !quota || !previous || previous.state === 'ok' || previous.cycleEnd > group.cycle.start || !opened.has(subjectKey(ref.type, ref.id))) continue;
          await this.tell({
            name: 'bandwidth.quota.reset', subject: { type: row.subjectType, id: row.subjectId, name: row.name }, source: quota.source, settings: quota.settings,
            cycle: group.cycle, usedBytes: 0n, limitBytes: quota.settings.allowanceBytes, throttled: false, reason: 'cycle', actor,
          });
        }
      }
      if (groups.size > 0) cycles = await latestCycles(db, at - CYCLE_HISTORY_MS, options.rows ? undefined : subjects);
    }

    const interfaces = new Map<string, { iface: string; netns: string | null; node: string }>();
    const settled: { row: CycleRow; state: Assessment['state'] }[] = [];
    for (const row of limits) {
      const quota = book.of(row);
      const cycle = cycles.get(subjectKey(row.subjectType, row.subjectId));
      // Only the cycle the quota's rule gives now: a cycle of the rule before (its day or time zone changed, the
      // cycle not reopened yet) holds another period's bytes. The state is then unknown until a full pass opens it.
      const rule = quota ? cycleAt({ cycleDay: quota.settings.cycleDay, timeZone: quota.settings.timeZone }, at) : null;
      const current = rule && cycle && cycle.cycleStart === rule.start && cycle.cycleEnd === rule.end ? cycle : undefined;
      // A cycle opened or seen since the last full pass (syncSubjects, another process) rolls over at its end too.
      if (quota && cycle) this.nextRollover = Math.min(this.nextRollover, current ? cycle.cycleEnd : at);
      let assessment: Assessment | null = null;
      // Counted while no quota applies (it was removed): nothing to decide, only the flag to clear.
      if (!quota && cycle?.dirty) settled.push({ row: cycle, state: cycle.state });
      if (quota && current) {
        assessment = assess({
          allowanceBytes: quota.settings.allowanceBytes, extraBytes: current.extraBytes, used: usedBytes(quota.settings.counted, current.upBytes, current.downBytes),
          warnPercents: quota.settings.warnPercents, fired: current.fired,
        });
        // Nothing to notify: settled with the others in a few statements (a tick makes every active subject dirty).
        if (assessment.toFire.length === 0 && (current.dirty || assessment.state !== current.state)) settled.push({ row: current, state: assessment.state });
        else if (assessment.toFire.length > 0) {
          const fired = [...new Set([...current.fired, ...assessment.toFire])].sort((a, b) => a - b);
          const judged = assessment;
          const notices: QuotaNotice[] = judged.toFire.map((percent) => ({
            name: percent >= 100 ? 'bandwidth.quota.exceeded' : 'bandwidth.quota.warning',
            subject: { type: row.subjectType, id: row.subjectId, name: row.name }, source: quota.source, settings: quota.settings,
            cycle: { start: current.cycleStart, end: current.cycleEnd }, percent, usedBytes: judged.used, limitBytes: judged.limitBytes,
            throttled: throttleFor(quota.settings, judged.state) !== null, actor,
          }));
          // The evaluation and what it notifies (audit rows, queued webhooks) commit together: a
          // notice is never lost between them, nor written for an evaluation another process won.
          const won = await db.transaction(async (trx) => {
            if (!(await markEvaluated(trx, current, { state: judged.state, fired }, at))) return false;
            for (const notice of notices) await this.options.record?.(trx, notice);
            return true;
          }).catch((error: unknown) => {
            logger.warn('recording a quota evaluation failed; the next pass tries again', { area: 'quotas', subject: subjectKey(row.subjectType, row.subjectId), error: (error as Error).message });
            return false;
          });
          if (won) for (const notice of notices) await this.tell(notice);
        }
      }
      // The throttle follows the state: in force while exceeded under a throttling quota, lifted otherwise.
      const want = quota && assessment ? throttleFor(quota.settings, assessment.state) : null;
      if (throttleEquals(row, want)) continue;
      // Without a current cycle yet (none opened: `open` was not asked) the state is unknown: leave it.
      if (quota && !assessment) continue;
      const changed = await setThrottle(db, row.subjectType, row.subjectId, want, at);
      if (!changed) continue;
      interfaces.set(JSON.stringify([changed.node, changed.interface, changed.netns]), { iface: changed.interface, netns: changed.netns, node: changed.node });
      await this.options.throttled?.({ subject: { type: row.subjectType, id: row.subjectId, name: row.name }, throttle: want }).catch((error: unknown) =>
        logger.warn('auditing a throttle failed', { area: 'quotas', error: (error as Error).message }));
    }
    await settleEndedCycles(db, options.rows ? limits.map((row) => ({ type: row.subjectType, id: row.subjectId })) : subjects, at, new Set([...cycles.values()].map((row) => row.id)));
    await settleCycles(db, settled, at);
    for (const ref of interfaces.values()) {
      // Stored first: a node that cannot be reached gets the throttle when it is back (the row is pending).
      await this.options.applyInterface(ref.iface, ref.netns, ref.node).catch((error: unknown) =>
        logger.warn('applying a quota throttle failed; the reconcile loop retries', { area: 'quotas', interface: ref.iface, node: ref.node, error: (error as Error).message }));
    }
  }

  private async limitRows(subjects: SubjectRef[]): Promise<LimitRow[]> {
    const rows: LimitRow[] = [];
    for (const type of ['peer', 'vm'] as const) {
      const ids = subjects.filter((s) => s.type === type).map((s) => s.id);
      if (ids.length > 0) rows.push(...(await getLimits(this.options.db, type, [...new Set(ids)])).values());
    }
    return rows;
  }

  private async tell(notice: QuotaNotice): Promise<void> {
    await this.options.notify(notice).catch((error: unknown) =>
      this.options.logger.warn('a quota notification failed', { area: 'quotas', event: notice.name, subject: subjectKey(notice.subject.type, notice.subject.id), error: (error as Error).message }));
  }
}
