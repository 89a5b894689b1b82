import type { Knex } from 'knex';
import type { Logger, SubjectType, ValidationIssue } from '../plugin-api.js';
import { deleteLimit, getLimit, isLimited, limitsOnInterface, saveLimit, toLimitRow, type LimitRow, type SubjectLimit } from '../db/limits.js';
import { recordEvent } from '../db/events.js';
import { nextClassMinor } from '../shaping/class-ids.js';
import { DesiredStateError, parseDesiredInterface } from '../shaping/model.js';
import type { InterfaceOutcome, LimitApplier } from './applier.js';
import { desiredInterface } from './desired.js';

const caps = (row: { upKbps: number; downKbps: number } | undefined) => ({ up_kbps: row?.upKbps ?? 0, down_kbps: row?.downKbps ?? 0 });

/**
 * The plugin's one way to change limits: store the desired caps first, then apply them, then
 * write the audit event with what the kernel answered. Hooks, the JSON API and the admin page
 * all come through here.
 */
export class LimitsService {
  constructor(
    private readonly db: Knex,
    readonly applier: LimitApplier,
    private readonly logger: Logger,
  ) {}

  /**
   * Checks that a subject with these caps can be shaped next to the others on its interface
   * (valid addresses, none owned by another limited subject) before anything is written.
   */
  async validate(subject: SubjectLimit): Promise<ValidationIssue[]> {
    if (!isLimited(subject)) return [];
    const others = (await limitsOnInterface(this.db, subject.node ?? 'local', subject.interface, subject.netns)).filter(
      (row) => !(row.subjectType === subject.subjectType && row.subjectId === subject.subjectId),
    );
    const used = others.flatMap((row) => (row.classMinor === null ? [] : [row.classMinor]));
    const candidate: LimitRow = {
      ...subject,
      publicKey: subject.publicKey ?? null,
      node: subject.node ?? 'local',
      id: 0,
      classMinor: nextClassMinor(used),
      status: 'pending',
      lastError: null,
      appliedAt: null,
      updatedAt: new Date(),
    };
    try {
      parseDesiredInterface(desiredInterface({ node: candidate.node, interface: subject.interface, netns: subject.netns }, [...others, candidate]));
      return [];
    } catch (error) {
      if (!(error instanceof DesiredStateError)) throw error;
      const field = error.field.includes('addresses') ? (subject.subjectType === 'peer' ? 'allowed_ips' : 'interface') : error.field.startsWith('name') ? 'interface' : 'bandwidth';
      return [{ field, message: `Cannot shape this ${subject.subjectType}: ${error.message}` }];
    }
  }

  /**
   * Sets the directions `caps` mentions (the others keep their stored value), checks the result can
   * be shaped, then stores and applies it. Returns the first problem instead when it cannot.
   */
  async change(
    subject: SubjectLimit,
    caps: { upKbps?: number; downKbps?: number },
    actor: string,
  ): Promise<{ limit: LimitRow; issue?: never } | { issue: ValidationIssue; limit?: never }> {
    const stored = await getLimit(this.db, subject.subjectType, subject.subjectId);
    const wanted = { ...subject, upKbps: caps.upKbps ?? stored?.upKbps ?? 0, downKbps: caps.downKbps ?? stored?.downKbps ?? 0 };
    const issue = (await this.validate(wanted))[0];
    if (issue) return { issue };
    return { limit: (await this.set(wanted, actor)).limit };
  }

  /** Stores and applies a subject's caps; returns the stored row after applying and the kernel's answer. */
  async set(subject: SubjectLimit, actor: string, action = 'limit.set'): Promise<{ limit: LimitRow; outcome: InterfaceOutcome | null }> {
    const { previous, current } = await saveLimit(this.db, subject);
    const moved = previous && (previous.interface !== current.interface || previous.netns !== current.netns);
    if (moved && isLimited(previous)) await this.applier.applyInterface(previous.interface, previous.netns);
    const needsKernel = isLimited(current) || (previous !== undefined && isLimited(previous)) || current.status !== 'applied';
    const onlyRate =
      previous !== undefined && !moved && previous.status === 'applied' && isLimited(previous) && isLimited(current) &&
      previous.classMinor === current.classMinor && previous.addresses.join() === current.addresses.join();
    const outcome = needsKernel
      ? await this.applier.applyInterface(
        current.interface,
        current.netns,
        onlyRate ? { subjectId: current.subjectId, previous: { upKbps: previous.upKbps, downKbps: previous.downKbps } } : undefined,
      )
      : null;
    const changed = !previous || previous.upKbps !== current.upKbps || previous.downKbps !== current.downKbps;
    if (changed && (isLimited(current) || (previous && isLimited(previous)))) {
      await recordEvent(this.db, {
        actor,
        subjectType: current.subjectType,
        subjectId: current.subjectId,
        action: isLimited(current) ? action : 'limit.cleared',
        oldValue: previous ? caps(previous) : null,
        newValue: caps(current),
        result: outcome?.status ?? 'applied',
        message: outcome?.error ?? null,
      });
    }
    return { limit: (await getLimit(this.db, current.subjectType, current.subjectId)) ?? current, outcome };
  }

  /** Forgets a subject and removes its classes and filters. */
  async remove(subjectType: SubjectType, subjectId: string, actor: string): Promise<InterfaceOutcome | null> {
    const previous = await deleteLimit(this.db, subjectType, subjectId);
    if (!previous) return null;
    const outcome = isLimited(previous) ? await this.applier.applyInterface(previous.interface, previous.netns) : null;
    if (isLimited(previous)) {
      await recordEvent(this.db, {
        actor, subjectType, subjectId, action: 'subject.deleted', oldValue: caps(previous), newValue: null,
        // With its interface gone the subject has nothing left in the kernel: only a tc refusal is a failure.
        result: outcome?.status === 'failed' ? 'failed' : 'applied', message: outcome?.status === 'failed' ? outcome.error : null,
      });
    }
    return outcome;
  }

  /** A network's interface appeared (or was renamed): move its peers there and apply. */
  async interfaceAppeared(networkId: string, iface: string, netns: string | null, actor: string): Promise<InterfaceOutcome> {
    const rows = ((await this.db('bw_limits').where({ subject_type: 'peer', network_id: networkId })) as Record<string, unknown>[]).map(toLimitRow);
    for (const row of rows) {
      if (row.interface !== iface || row.netns !== netns) {
        await saveLimit(this.db, { ...row, interface: iface, netns });
      }
    }
    const outcome = await this.applier.applyInterface(iface, netns);
    if (outcome.operations.length > 0) {
      await recordEvent(this.db, { actor, action: 'interface.applied', newValue: { interface: iface, netns }, result: outcome.status, message: outcome.error });
    }
    return outcome;
  }

  /** An interface went away: remove the plugin's qdiscs and IFB from it. */
  async interfaceGone(iface: string, netns: string | null, actor: string): Promise<InterfaceOutcome> {
    const outcome = await this.applier.removeInterface(iface, netns);
    await recordEvent(this.db, {
      actor, action: 'interface.removed', oldValue: { interface: iface, netns }, result: outcome.status === 'applied' ? 'ok' : 'failed', message: outcome.error,
    });
    return outcome;
  }

  /** Reconciles every interface; logs an audit event for each one it had to change. */
  async reconcileAll(actor: string): Promise<InterfaceOutcome[]> {
    const outcomes = await this.applier.reconcileAll();
    for (const outcome of outcomes) {
      if (outcome.operations.length === 0 && outcome.status !== 'failed') continue;
      if (this.applier.mode === 'recording' && outcome.status === 'pending' && outcome.error?.startsWith('dry run')) continue;
      await recordEvent(this.db, {
        actor, action: 'reconcile', newValue: { interface: outcome.interface, netns: outcome.netns, operations: outcome.operations.length },
        result: outcome.status, message: outcome.error,
      });
      this.logger.info('reconciled', { interface: outcome.interface, operations: outcome.operations.length, status: outcome.status });
    }
    return outcomes;
  }
}
