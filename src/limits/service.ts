import type { Knex } from 'knex';
import type { HostRecords, Logger, SubjectType, ValidationIssue } from '../plugin-api.js';
import { deleteLimit, getLimit, isLimited, limitsOnInterface, saveLimit, toLimitRow, type LimitRow, type SubjectLimit } from '../db/limits.js';
import { recordEvent } from '../db/events.js';
import { deleteNetworkCaps, getNetworkCaps, hasNetworkCap, moveNetworkCaps, NO_NETWORK_CAPS, setNetworkCaps, type NetworkCaps, type NetworkCapsInput } from '../db/network-caps.js';
import { LOCAL_NODE } from '../nodes/node-name.js';
import { nextClassMinor } from '../shaping/class-ids.js';
import { KeyedMutex } from '../shaping/lock.js';
import { DesiredStateError, parseDesiredInterface } from '../shaping/model.js';
import { rejectedSubjects } from '../shaping/plan.js';
import type { RateChange } from '../shaping/rate-change.js';
import type { InterfaceOutcome } from './applier.js';
import { networkShapeIssues, subjectShapeIssues } from './cap-rules.js';
import { BURST_BYTES_FIELD, BURST_KBPS_FIELD, MIN_FIELD } from '../hooks/bandwidth-fields.js';
import { appliedNumbers, desiredInterface } from './desired.js';
import { resyncWithHost, type ResyncResult } from './resync.js';

/** What the service needs of an applier: the panel's {@link NodeApplier}, or the engine's own LimitApplier (the CLI). */
export interface Applier {
  readonly mode: 'local' | 'recording';
  /** `rateChanges`: subjects whose numbers alone moved while the kernel had the old ones (the engine's fast path). */
  applyInterface(iface: string, netns: string | null, rateChanges?: RateChange | readonly RateChange[], node?: string): Promise<InterfaceOutcome>;
  removeInterface(iface: string, netns: string | null, node?: string): Promise<InterfaceOutcome>;
  reconcileAll(): Promise<InterfaceOutcome[]>;
}

type Stored = Pick<LimitRow, 'upKbps' | 'downKbps' | 'minKbps' | 'burstKbps' | 'burstBytes'>;

/** A subject's stored values for the audit log: its caps, with its guarantee and burst where it has them. */
const caps = (row: Stored | undefined, other?: Stored) => ({
  up_kbps: row?.upKbps ?? 0,
  down_kbps: row?.downKbps ?? 0,
  ...((row?.minKbps ?? 0) > 0 || (other?.minKbps ?? 0) > 0 ? { min_kbps: row?.minKbps ?? 0 } : {}),
  ...((row?.burstKbps ?? 0) > 0 || (other?.burstKbps ?? 0) > 0 ? { burst_kbps: row?.burstKbps ?? 0, burst_bytes: row?.burstBytes ?? 0 } : {}),
});

/** What a change of a subject may set; a field left out keeps its stored value. */
export interface SubjectChange {
  upKbps?: number | undefined;
  downKbps?: number | undefined;
  minKbps?: number | undefined;
  burstKbps?: number | undefined;
  burstBytes?: number | undefined;
}

/** Where a network's interface is, for {@link LimitsService.changeNetworkCaps}. */
export interface NetworkRef {
  networkId: string;
  node: string;
  interface: string;
  netns: string | null;
}

const networkJson = (caps: Pick<NetworkCaps, 'totalUpKbps' | 'totalDownKbps' | 'defaultUpKbps' | 'defaultDownKbps'>) => ({
  total_up_kbps: caps.totalUpKbps, total_down_kbps: caps.totalDownKbps, default_up_kbps: caps.defaultUpKbps, default_down_kbps: caps.defaultDownKbps,
});

/** The values a change asks for, over what is stored (absent fields keep theirs). */
function merged(subject: SubjectLimit, change: SubjectChange, stored: LimitRow | undefined): SubjectLimit {
  return {
    ...subject,
    upKbps: change.upKbps ?? stored?.upKbps ?? 0,
    downKbps: change.downKbps ?? stored?.downKbps ?? 0,
    minKbps: change.minKbps ?? subject.minKbps ?? stored?.minKbps ?? 0,
    burstKbps: change.burstKbps ?? subject.burstKbps ?? stored?.burstKbps ?? 0,
    burstBytes: change.burstBytes ?? subject.burstBytes ?? stored?.burstBytes ?? 0,
  };
}

/** The stored value behind a guarantee or burst field (the fields a stored problem can sit in). */
const fieldValue = (row: Pick<SubjectLimit, 'minKbps' | 'burstKbps' | 'burstBytes'>, field: string): number | undefined =>
  field === MIN_FIELD ? row.minKbps : field === BURST_KBPS_FIELD ? row.burstKbps : field === BURST_BYTES_FIELD ? row.burstBytes : undefined;

/**
 * The issues an edit brings: a problem the stored subject already had (its network's default or
 * cap changed under its burst or guarantee since) in a field the edit leaves as it was is not the
 * edit's to fix, and must not block it (changing a peer's addresses). The planner shapes such a
 * subject as well as it can (a burst below its cap does not burst, guarantees are scaled to fit).
 */
function newIssues(wanted: ValidationIssue[], stored: ValidationIssue[], untouched: (field: string) => boolean): ValidationIssue[] {
  const before = new Set(stored.map((issue) => issue.field));
  return wanted.filter((issue) => !(before.has(issue.field) && untouched(issue.field)));
}

/**
 * Whether the kernel may hold a class for the row: it is limited, or it has a minor (a peer under a
 * network cap has a class without a cap of its own; a minor kept after its caps were cleared costs
 * one reconcile that changes nothing).
 */
const mayHoldClass = (row: LimitRow): boolean => isLimited(row) || row.classMinor !== null;

/**
 * The plugin's one way to change limits: store the desired caps first, then apply them, then
 * write the audit event with what the kernel answered. Hooks, the JSON API and the admin page
 * all come through here.
 */
export class LimitsService {
  /** Interfaces a resync changed that the next reconcile must visit even with no row left on them. */
  private readonly touched = new Map<string, { node: string; interface: string; netns: string | null }>();
  /**
   * One writer per subject in this process: a change reads the stored caps, merges the directions it
   * sets and writes both, so two requests for one subject (`{up}` and `{down}`) must not interleave,
   * or one of them is lost (found by the kernel model-based test).
   */
  private readonly subjectLocks = new KeyedMutex({ fileLocks: null });

  private bySubject<T>(subjectType: SubjectType, subjectId: string, fn: () => Promise<T>): Promise<T> {
    return this.subjectLocks.run(`${subjectType}:${subjectId}`, fn);
  }

  constructor(
    private readonly db: Knex,
    readonly applier: Applier,
    private readonly logger: Logger,
    /** The host's records; without them (the CLI) there is no resync. */
    private readonly records?: HostRecords,
  ) {}

  /**
   * Drops rows whose peer or VM the host no longer has and refreshes the host data the others
   * copy (see {@link resyncWithHost}); the next {@link reconcileAll} brings the kernel along.
   */
  async resync(actor: string): Promise<ResyncResult | null> {
    if (!this.records) return null;
    const result = await resyncWithHost(this.db, this.records, actor, this.logger);
    for (const ref of result.interfaces) this.touched.set(JSON.stringify([ref.node, ref.interface, ref.netns]), ref);
    return result;
  }

  /**
   * Checks that a subject with these caps can be shaped next to the others on its interface
   * (valid addresses, none owned by another limited subject) before anything is written.
   */
  async validate(subject: SubjectLimit): Promise<ValidationIssue[]> {
    const network = subject.networkId === null ? undefined : await getNetworkCaps(this.db, subject.networkId);
    const stored = await getLimit(this.db, subject.subjectType, subject.subjectId);
    const wanted: SubjectLimit = {
      ...subject,
      minKbps: subject.minKbps ?? stored?.minKbps ?? 0,
      burstKbps: subject.burstKbps ?? stored?.burstKbps ?? 0,
      burstBytes: subject.burstBytes ?? stored?.burstBytes ?? 0,
    };
    const shapeOf = (row: Pick<LimitRow, 'upKbps' | 'downKbps'> & Pick<SubjectLimit, 'minKbps' | 'burstKbps' | 'burstBytes'>) =>
      ({ upKbps: row.upKbps, downKbps: row.downKbps, minKbps: row.minKbps ?? 0, burstKbps: row.burstKbps ?? 0, burstBytes: row.burstBytes ?? 0 });
    const shapeIssues = newIssues(
      subjectShapeIssues(shapeOf(wanted), network ?? NO_NETWORK_CAPS),
      stored === undefined ? [] : subjectShapeIssues(shapeOf(stored), network ?? NO_NETWORK_CAPS),
      (field) => fieldValue(wanted, field) === (stored === undefined ? undefined : fieldValue(stored, field)),
    );
    if (shapeIssues.length > 0) return shapeIssues;
    const defaults = { defaultUpKbps: network?.defaultUpKbps ?? 0, defaultDownKbps: network?.defaultDownKbps ?? 0 };
    if (!isLimited({ ...subject, ...defaults }) && !hasNetworkCap(network)) return [];
    const others = (await limitsOnInterface(this.db, subject.node ?? 'local', subject.interface, subject.netns)).filter(
      (row) => !(row.subjectType === subject.subjectType && row.subjectId === subject.subjectId),
    );
    const used = others.flatMap((row) => (row.classMinor === null ? [] : [row.classMinor]));
    const candidate: LimitRow = {
      ...wanted,
      minKbps: wanted.minKbps ?? 0,
      burstKbps: wanted.burstKbps ?? 0,
      burstBytes: wanted.burstBytes ?? 0,
      ...defaults,
      publicKey: subject.publicKey ?? null,
      node: subject.node ?? 'local',
      id: 0,
      classMinor: nextClassMinor(used),
      throttleUpKbps: null,
      throttleDownKbps: null,
      status: 'pending',
      lastError: null,
      reason: null,
      appliedAt: null,
      updatedAt: new Date(),
    };
    try {
      const ref = { node: candidate.node, interface: subject.interface, netns: subject.netns };
      const desired = parseDesiredInterface(desiredInterface(ref, [...others, candidate], network));
      // The planner's own limits (a u32 bucket holds 4095 prefixes): refuse the subject that would
      // cross them, or push an existing subject out, instead of storing a cap that cannot apply.
      const before = rejectedSubjects(parseDesiredInterface(desiredInterface(ref, others, network)));
      const after = rejectedSubjects(desired);
      const displaced = [...after].find(([id]) => !before.has(id));
      if (displaced) {
        const field = subject.subjectType === 'peer' ? 'allowed_ips' : 'interface';
        return [{ field, message: `Cannot shape this ${subject.subjectType}: ${after.get(String(subject.subjectId)) ?? displaced[1]}` }];
      }
      return [];
    } catch (error) {
      if (!(error instanceof DesiredStateError)) throw error;
      const field = error.field.includes('addresses') ? (subject.subjectType === 'peer' ? 'allowed_ips' : 'interface') : error.field.startsWith('name') ? 'interface' : 'bandwidth';
      return [{ field, message: `Cannot shape this ${subject.subjectType}: ${error.message}` }];
    }
  }

  /**
   * Sets the caps, guarantee and burst `caps` mentions (the others keep their stored value), checks
   * the result can be shaped, then stores and applies it. Returns the first problem instead when it cannot.
   */
  async change(
    subject: SubjectLimit,
    caps: SubjectChange,
    actor: string,
  ): Promise<{ limit: LimitRow; issue?: never } | { issue: ValidationIssue; limit?: never }> {
    return this.bySubject(subject.subjectType, subject.subjectId, async () => {
      const stored = await getLimit(this.db, subject.subjectType, subject.subjectId);
      const wanted = merged(subject, caps, stored);
      const issue = (await this.validate(wanted))[0];
      if (issue) return { issue };
      return { limit: (await this.store(wanted, actor)).limit };
    });
  }

  /**
   * Like {@link change} without the check (the host's validate hook has run): the fields `caps`
   * mentions are set, the others keep their stored value; for the host's update hooks.
   */
  async merge(subject: SubjectLimit, caps: SubjectChange, actor: string): Promise<{ limit: LimitRow; outcome: InterfaceOutcome | null }> {
    return this.bySubject(subject.subjectType, subject.subjectId, async () => {
      const stored = await getLimit(this.db, subject.subjectType, subject.subjectId);
      return this.store(merged(subject, caps, stored), actor);
    });
  }

  /** Stores and applies a subject's caps; returns the stored row after applying and the kernel's answer. */
  async set(subject: SubjectLimit, actor: string, action = 'limit.set'): Promise<{ limit: LimitRow; outcome: InterfaceOutcome | null }> {
    return this.bySubject(subject.subjectType, subject.subjectId, () => this.store(subject, actor, action));
  }

  /**
   * Stores, then applies. Once the caps are stored nothing after may throw: a failure to apply or
   * to audit (the database or a node went away meanwhile) leaves the row `pending`, which the
   * reconcile loop applies; a caller that saw an error would undo a write whose caps are kept.
   * Only a failure to store throws, and then nothing was written.
   */
  private async store(subject: SubjectLimit, actor: string, action = 'limit.set'): Promise<{ limit: LimitRow; outcome: InterfaceOutcome | null }> {
    const { previous, current } = await saveLimit(this.db, subject);
    const moved = previous && (previous.node !== current.node || previous.interface !== current.interface || previous.netns !== current.netns);
    if (moved && mayHoldClass(previous)) await this.applyStored(previous.interface, previous.netns, undefined, previous.node);
    const needsKernel = isLimited(current) || (previous !== undefined && isLimited(previous)) || current.status !== 'applied';
    const onlyRate =
      previous !== undefined && !moved && (previous.status === 'applied' || previous.status === 'throttled') && isLimited(previous) && isLimited(current) &&
      previous.classMinor === current.classMinor && previous.addresses.join() === current.addresses.join();
    const outcome = needsKernel
      ? await this.applyStored(current.interface, current.netns, onlyRate ? [{ subjectId: current.subjectId, previous: appliedNumbers(previous) }] : undefined, current.node)
      : null;
    // A new subject without caps of its own (a peer under its network's default) has nothing of its own to audit.
    const ownCaps = caps(current, previous);
    const changed = previous ? JSON.stringify(caps(previous, current)) !== JSON.stringify(ownCaps) : Object.values(ownCaps).some((value) => value > 0);
    if (changed && (isLimited(current) || (previous && isLimited(previous)))) {
      await recordEvent(this.db, {
        actor,
        subjectType: current.subjectType,
        subjectId: current.subjectId,
        action: isLimited(current) ? action : 'limit.cleared',
        oldValue: previous ? caps(previous, current) : null,
        newValue: ownCaps,
        result: outcome?.status ?? 'applied',
        message: outcome?.error ?? null,
        reason: outcome?.reason ?? null,
      }).catch((error: unknown) => this.logger.error('the audit event of stored caps was not written', { subject: `${current.subjectType}:${current.subjectId}`, error: (error as Error).message }));
    }
    const limit = await getLimit(this.db, current.subjectType, current.subjectId).catch(() => undefined);
    return { limit: limit ?? current, outcome };
  }

  /** Applies an interface whose rows are stored; a failure is logged and answered as `pending` (the reconcile loop retries). */
  private async applyStored(...args: Parameters<Applier['applyInterface']>): Promise<InterfaceOutcome> {
    try {
      return await this.applier.applyInterface(...args);
    } catch (error) {
      const message = (error as Error).message;
      this.logger.warn('applying stored caps failed; the reconcile loop retries', { interface: args[0], netns: args[1], error: message });
      return { ...(args[3] === undefined ? {} : { node: args[3] }), interface: args[0], netns: args[1], status: 'pending', operations: [], error: `not applied yet, the reconcile loop retries: ${message}`, reason: null };
    }
  }

  /** Forgets a subject and removes its classes and filters. */
  async remove(subjectType: SubjectType, subjectId: string, actor: string): Promise<InterfaceOutcome | null> {
    return this.bySubject(subjectType, subjectId, () => this.forget(subjectType, subjectId, actor));
  }

  private async forget(subjectType: SubjectType, subjectId: string, actor: string): Promise<InterfaceOutcome | null> {
    const previous = await deleteLimit(this.db, subjectType, subjectId);
    if (!previous) return null;
    const outcome = mayHoldClass(previous) ? await this.applier.applyInterface(previous.interface, previous.netns, undefined, previous.node) : null;
    if (isLimited(previous)) {
      await recordEvent(this.db, {
        actor, subjectType, subjectId, action: 'subject.deleted', oldValue: caps(previous), newValue: null,
        // With its interface gone the subject has nothing left in the kernel: only a tc refusal is a failure.
        result: outcome?.status === 'failed' ? 'failed' : 'applied', message: outcome?.status === 'failed' ? outcome.error : null,
        reason: outcome?.status === 'failed' ? outcome.reason : null,
      });
    }
    return outcome;
  }

  /** A network's interface appeared (or was renamed): move its peers there and apply. */
  async interfaceAppeared(networkId: string, iface: string, netns: string | null, actor: string, node = 'local'): Promise<InterfaceOutcome> {
    await moveNetworkCaps(this.db, networkId, { node, interface: iface, netns });
    const rows = ((await this.db('bw_limits').where({ subject_type: 'peer', network_id: networkId })) as Record<string, unknown>[]).map(toLimitRow);
    for (const row of rows) {
      if (row.interface !== iface || row.netns !== netns || row.node !== node) {
        await saveLimit(this.db, { ...row, node, interface: iface, netns });
      }
    }
    const outcome = await this.applier.applyInterface(iface, netns, undefined, node);
    if (outcome.operations.length > 0) {
      await recordEvent(this.db, { actor, action: 'interface.applied', newValue: { interface: iface, netns }, result: outcome.status, message: outcome.error, reason: outcome.reason });
    }
    return outcome;
  }

  /** Checks a network's caps as they would be after a change (fields left out keep their stored values; `null`: a new network). */
  async validateNetworkCaps(networkId: string | null, caps: NetworkCapsInput): Promise<ValidationIssue[]> {
    const stored = (networkId === null ? undefined : await getNetworkCaps(this.db, networkId)) ?? NO_NETWORK_CAPS;
    return networkShapeIssues({
      totalUpKbps: caps.totalUpKbps ?? stored.totalUpKbps,
      totalDownKbps: caps.totalDownKbps ?? stored.totalDownKbps,
      defaultUpKbps: caps.defaultUpKbps ?? stored.defaultUpKbps,
      defaultDownKbps: caps.defaultDownKbps ?? stored.defaultDownKbps,
    });
  }

  /**
   * Changes a network's caps (fields left out keep their stored values): checks them, stores them
   * with the defaults copied onto its peers and a class for each peer under a network cap (one
   * transaction), applies the interface and audits `network.caps`. A change of the defaults alone
   * goes through the engine's fast path for the subjects it moves (class changes only); a change of
   * a network cap is a normal reconcile, whose diff is class changes only.
   * Like {@link change}, nothing after the store throws: an apply that fails leaves the rows `pending`.
   * @returns the stored caps and the kernel's answer (null when nothing changed), or the first problem.
   */
  async changeNetworkCaps(
    network: NetworkRef,
    caps: NetworkCapsInput,
    actor: string,
  ): Promise<{ caps: NetworkCaps; outcome: InterfaceOutcome | null; issue?: never } | { issue: ValidationIssue; caps?: never; outcome?: never }> {
    const issue = (await this.validateNetworkCaps(network.networkId, caps))[0];
    if (issue) return { issue };
    const { previous, current, changes } = await setNetworkCaps(this.db, network, caps);
    const before = previous ?? { ...NO_NETWORK_CAPS, node: current.node, interface: current.interface, netns: current.netns };
    const same = JSON.stringify(networkJson(before)) === JSON.stringify(networkJson(current));
    const moved = before.node !== current.node || before.interface !== current.interface || before.netns !== current.netns;
    if (same && changes.length === 0 && !moved) return { caps: current, outcome: null };
    const totalsSame = before.totalUpKbps === current.totalUpKbps && before.totalDownKbps === current.totalDownKbps;
    // The defaults alone moved subjects that the kernel holds with a class: their numbers change, nothing else.
    const fast = totalsSame && !moved && changes.some(({ after }) => after.status === 'pending') &&
      changes.every(({ before: row }) => row.classMinor !== null && (row.status === 'applied' || row.status === 'throttled') && row.interface === current.interface);
    // Rows whose default moved in a direction they have their own cap in kept their kernel state (not pending).
    const moving = changes.filter(({ after }) => after.status === 'pending');
    const outcome = await this.applyStored(
      current.interface,
      current.netns,
      fast ? moving.map(({ before: row }) => ({ subjectId: row.subjectId, previous: appliedNumbers(row) })) : undefined,
      current.node,
    );
    // Peers left on another interface (the host moved the network; a resync has not followed yet).
    const elsewhere = new Map(changes.filter(({ after }) => after.interface !== current.interface || after.node !== current.node || after.netns !== current.netns)
      .map(({ after }) => [JSON.stringify([after.node, after.interface, after.netns]), after]));
    for (const row of elsewhere.values()) await this.applyStored(row.interface, row.netns, undefined, row.node);
    if (!same) {
      await recordEvent(this.db, {
        actor,
        action: 'network.caps',
        oldValue: { network_id: network.networkId, ...networkJson(before) },
        newValue: { network_id: network.networkId, ...networkJson(current) },
        result: outcome.status,
        message: outcome.error,
        reason: outcome.reason,
      }).catch((error: unknown) => this.logger.error('the audit event of stored network caps was not written', { network: network.networkId, error: (error as Error).message }));
    }
    return { caps: (await getNetworkCaps(this.db, network.networkId).catch(() => undefined)) ?? current, outcome };
  }

  /** The host deleted a network: its caps are forgotten (its peers' rows went with their own hooks). */
  async forgetNetworkCaps(networkId: string, actor: string): Promise<void> {
    const previous = await deleteNetworkCaps(this.db, networkId);
    if (!previous) return;
    await recordEvent(this.db, { actor, action: 'network.caps', oldValue: { network_id: networkId, ...networkJson(previous) }, newValue: null, result: 'ok' })
      .catch((error: unknown) => this.logger.error('the audit event of dropped network caps was not written', { network: networkId, error: (error as Error).message }));
  }

  /** An interface went away: remove the plugin's qdiscs and IFB from it. */
  async interfaceGone(iface: string, netns: string | null, actor: string, node = 'local'): Promise<InterfaceOutcome> {
    const outcome = await this.applier.removeInterface(iface, netns, node);
    await recordEvent(this.db, {
      actor, action: 'interface.removed', oldValue: { node, interface: iface, netns }, result: outcome.status === 'applied' ? 'ok' : 'failed', message: outcome.error, reason: outcome.reason,
    });
    return outcome;
  }

  /**
   * Resyncs with the host (unless `resync` is false), then reconciles every interface; logs an
   * audit event for each one it had to change. A failed resync is logged and the reconcile goes on.
   */
  async reconcileAll(actor: string, options: { resync?: boolean } = {}): Promise<InterfaceOutcome[]> {
    if (options.resync ?? true) {
      await this.resync(actor).catch((error: unknown) => this.logger.warn('resync with the host failed', { error: (error as Error).message }));
    }
    const outcomes = await this.applier.reconcileAll();
    // An interface whose last subject a resync dropped has no row left to be found by: visit it too.
    const visited = new Set(outcomes.map((outcome) => JSON.stringify([outcome.node ?? 'local', outcome.interface, outcome.netns])));
    for (const [key, ref] of [...this.touched]) {
      this.touched.delete(key);
      if (!visited.has(key)) outcomes.push(await this.applier.applyInterface(ref.interface, ref.netns, undefined, ref.node));
    }
    for (const outcome of outcomes) {
      if (outcome.operations.length === 0 && outcome.status !== 'failed') continue;
      // A dry run changed nothing: its plan stands on every pass, so logging it would repeat it forever.
      if (outcome.reason === 'dry_run') continue;
      // The same failure every interval (a foreign clsact qdisc on a tap) is one row with a count.
      await recordEvent(this.db, {
        actor, action: 'reconcile', newValue: { interface: outcome.interface, netns: outcome.netns, operations: outcome.operations.length },
        result: outcome.status, message: outcome.error, reason: outcome.reason,
        repeatKey: JSON.stringify(['reconcile', outcome.node ?? LOCAL_NODE, outcome.netns, outcome.interface]),
      });
      this.logger.info('reconciled', { interface: outcome.interface, operations: outcome.operations.length, status: outcome.status });
    }
    return outcomes;
  }
}
