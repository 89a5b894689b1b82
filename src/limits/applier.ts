import type { Knex } from 'knex';
import type { Logger } from '../plugin-api.js';
import { isLimited, limitsOnInterface, setStatus, interfacesWithLimits, type InterfaceRef, type LimitRow } from '../db/limits.js';
import { networkCapsOfInterface } from '../db/network-caps.js';
import type { Executor } from '../shaping/executor.js';
import { KeyedMutex, interfaceLockKey } from '../shaping/lock.js';
import { commandLine, type Operation } from '../shaping/operations.js';
import type { PlanCapabilities } from '../shaping/plan.js';
import { reconcileInterface, removeInterface } from '../shaping/reconcile.js';
import { changeSubjectRates, type RateChange } from '../shaping/rate-change.js';
import { desiredInterface, type InterfaceTotals } from './desired.js';
import { failureReason } from './failure-reason.js';
import type { OutcomeReason } from './outcome-reason.js';

/** What applying one interface did. */
export interface InterfaceOutcome {
  /** The node the interface is on (absent: the panel's machine). */
  node?: string;
  interface: string;
  netns: string | null;
  status: 'applied' | 'pending' | 'failed';
  /** tc commands run (or, for a dry run, recorded). */
  operations: string[];
  error: string | null;
  /** Why the status is what it is; null when applied. */
  reason: OutcomeReason | null;
}

export interface ApplierOptions {
  db: Knex;
  executor: Executor;
  mode: 'local' | 'recording';
  /** Why this executor (for the dry-run status text). */
  reason: string;
  capabilities: () => Promise<PlanCapabilities>;
  logger: Logger;
  node?: string;
  /**
   * The network caps an interface is shaped with. @default its network's row in `bw_network_caps`
   * ({@link networkCapsOfInterface}); the agent keeps the totals the panel pushed beside its interfaces.
   */
  networkCaps?: (ref: InterfaceRef, rows: LimitRow[]) => Promise<InterfaceTotals | null | undefined>;
}

const render = (operations: Operation[]) => operations.map((operation) => commandLine(operation).join(' '));

/**
 * Brings the kernel in line with `bw_limits`, one interface at a time. The rows are read under the
 * interface's lock, so the last writer's state is what the kernel ends with; each row's status
 * records what the kernel answered, unless a newer write superseded it meanwhile.
 */
export class LimitApplier {
  private readonly locks = new KeyedMutex();
  private readonly node: string;

  constructor(private readonly options: ApplierOptions) {
    this.node = options.node ?? 'local';
  }

  get mode(): 'local' | 'recording' {
    return this.options.mode;
  }

  /**
   * Reconciles one interface with every subject the database holds for it. With `rateChanges`
   * (subjects whose caps, guarantee or burst moved while the kernel had the old ones applied: one
   * subject's own change, or a network default's on every subject it applies to), it takes the
   * fast path: `class change`s only, no read of the interface.
   */
  async applyInterface(iface: string, netns: string | null, rateChanges?: RateChange | readonly RateChange[]): Promise<InterfaceOutcome> {
    const ref: InterfaceRef = { node: this.node, interface: iface, netns };
    return this.locks.run(interfaceLockKey(iface, netns ?? undefined), async () => {
      const { db, executor, logger } = this.options;
      const rows = await limitsOnInterface(db, this.node, iface, netns);
      const limited = rows.filter(isLimited);
      const outcome: InterfaceOutcome = { interface: iface, netns, status: 'applied', operations: [], error: null, reason: null };
      // Subjects the planner had to leave out (a full u32 bucket): failed, the rest applied.
      let rejected = new Map<string, string>();
      // The fast path of a rate change only knows about the subject it changed.
      let decided = limited;
      try {
        const totals = await (this.options.networkCaps ?? ((r, l) => networkCapsOfInterface(db, r, l)))(ref, rows);
        const desired = desiredInterface(ref, rows, totals);
        const caps = await this.options.capabilities();
        const list = rateChanges === undefined ? [] : 'subjectId' in rateChanges ? [rateChanges] : rateChanges;
        const fast = list.length > 0 ? list : undefined;
        const result = fast
          ? await changeSubjectRates(desired, fast, executor, caps, { locks: new KeyedMutex() })
          : await reconcileInterface(desired, executor, caps, { locks: new KeyedMutex() });
        outcome.operations = render(result.operations);
        rejected = new Map(result.rejected.map((r) => [r.subjectId, r.message]));
        if ('fastPath' in result && result.fastPath && fast) {
          const changedIds = new Set(fast.map((change) => change.subjectId));
          decided = limited.filter((row) => changedIds.has(row.subjectId));
        }
        if (result.repaired !== undefined) {
          logger.warn('the kernel refused the incremental plan; the interface was rebuilt from scratch', { interface: iface, netns, refused: result.repaired });
        }
        if (!result.interfaceExists && limited.length > 0) {
          outcome.status = 'pending';
          outcome.reason = 'interface_missing';
          outcome.error = `interface ${iface}${netns ? ` in namespace ${netns}` : ''} does not exist yet; the caps apply when it appears`;
        } else if (this.options.mode === 'recording' && limited.length > 0) {
          outcome.status = 'pending';
          outcome.reason = 'dry_run';
          outcome.error = `dry run: ${this.options.reason}`;
        }
      } catch (error) {
        outcome.status = 'failed';
        outcome.reason = failureReason(error);
        outcome.error = (error as Error).message;
        logger.warn('applying caps failed', { interface: iface, netns, reason: outcome.reason, error: outcome.error });
      }
      const left = decided.filter((row) => rejected.has(row.subjectId));
      for (const row of left) await setStatus(db, [row], 'failed', rejected.get(row.subjectId) ?? null, 'plan_invalid');
      await setStatus(db, decided.filter((row) => !rejected.has(row.subjectId)), outcome.status, outcome.error, outcome.reason);
      // Unlimited subjects need nothing from the kernel: they are never pending or failed.
      await setStatus(db, rows.filter((row) => !isLimited(row)), 'applied', null, null);
      return outcome;
    });
  }

  /** Removes everything the plugin put on an interface (it went away, or its network was deleted). */
  async removeInterface(iface: string, netns: string | null): Promise<InterfaceOutcome> {
    return this.locks.run(interfaceLockKey(iface, netns ?? undefined), async () => {
      try {
        const result = await removeInterface(iface, netns ?? undefined, this.options.executor, { locks: new KeyedMutex() });
        return { interface: iface, netns, status: 'applied', operations: render(result.operations), error: null, reason: null };
      } catch (error) {
        return { interface: iface, netns, status: 'failed', operations: [], error: (error as Error).message, reason: failureReason(error) };
      }
    });
  }

  /** Reconciles every interface that holds a subject. */
  async reconcileAll(): Promise<InterfaceOutcome[]> {
    const outcomes: InterfaceOutcome[] = [];
    for (const ref of await interfacesWithLimits(this.options.db)) {
      if (ref.node !== this.node) continue;
      outcomes.push(await this.applyInterface(ref.interface, ref.netns));
    }
    return outcomes;
  }
}
