import { emptyActual, type ActualInterface } from './actual.js';
import { KernelError } from './errors.js';
import type { Executor } from './executor.js';
import { ifbNameFor } from './ifb-name.js';
import { interfaceLockKey, interfaceLocks, type KeyedMutex } from './lock.js';
import { parseDesiredInterface, type DesiredInterface } from './model.js';
import { formatOperations, type Operation } from './operations.js';
import { planInterface, rejectedSubjects, type PlanCapabilities } from './plan.js';
import { readActual } from './read.js';

/** What a reconcile did. */
export interface ReconcileResult {
  /** The operations applied (empty when the kernel already matched). */
  operations: Operation[];
  changed: boolean;
  /** False when the interface does not exist (nothing could be shaped; its IFB, if any, was removed). */
  interfaceExists: boolean;
  /** Subjects left out because they cannot be placed (see `rejectedSubjects`), with why. */
  rejected: { subjectId: string; message: string }[];
  /**
   * Set when the kernel refused the incremental plan and the interface was rebuilt from scratch:
   * what it refused (the repair worked; the tree now matches).
   */
  repaired?: string;
}

/** Options of {@link reconcileInterface} and {@link removeInterface}. */
export interface ReconcileOptions {
  /**
   * Lock table serialising changes per interface.
   * @default the process-wide `interfaceLocks`
   */
  locks?: KeyedMutex;
}

/**
 * Reads the interface's actual state, diffs it against `desired` and applies the difference as one
 * `tc -batch` (plus `ip` for the IFB), under the interface's lock.
 *
 * @param desired - validated here (throws `DesiredStateError` before touching the kernel).
 * @throws {KernelError} when tc refuses an operation (`operation` says which); the next reconcile
 *   starts again from what the kernel then has.
 */
export async function reconcileInterface(
  desired: DesiredInterface,
  executor: Executor,
  caps: PlanCapabilities,
  options: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const valid = parseDesiredInterface(desired);
  const locks = options.locks ?? interfaceLocks;
  const rejectedById = rejectedSubjects(valid);
  const rejected = [...rejectedById].map(([subjectId, message]) => ({ subjectId, message }));
  return locks.run(interfaceLockKey(valid.name, valid.netns), async () => {
    const actual = await readActual(executor, valid.name, valid.netns);
    const operations = planInterface(valid, actual, caps, { rejected: rejectedById });
    if (operations.length === 0) return { operations, changed: false, interfaceExists: actual.exists, rejected };
    try {
      await executor.batch(operations, valid.netns);
      return { operations, changed: true, interfaceExists: actual.exists, rejected };
    } catch (error) {
      // The kernel refused a step of the difference (a hand-edited tree, objects the reader cannot
      // see, a half-applied batch): rebuild the interface's trees from scratch in the same pass.
      // A rebuild that is refused too is the error to report.
      if (!(error instanceof KernelError) || error.timedOut) throw error;
      const now = await readActual(executor, valid.name, valid.netns);
      const rebuild = planInterface(valid, now, caps, { rebuild: true, rejected: rejectedById });
      await executor.batch(rebuild, valid.netns);
      return { operations: rebuild, changed: true, interfaceExists: now.exists, rejected, repaired: error.shortMessage };
    }
  });
}

/**
 * The plan a reconcile would apply now, without applying it (`panel-bandwidth plan` against the kernel).
 */
export async function planFromKernel(desired: DesiredInterface, executor: Executor, caps: PlanCapabilities): Promise<Operation[]> {
  const valid = parseDesiredInterface(desired);
  const actual = await readActual(executor, valid.name, valid.netns);
  return planInterface(valid, actual, caps);
}

/**
 * Printable tc commands that build `desired` from scratch (or from `actual` when given), without
 * running anything (`panel-bandwidth plan --offline`).
 */
export function printPlan(desired: DesiredInterface, caps: PlanCapabilities, actual?: ActualInterface): string {
  const valid = parseDesiredInterface(desired);
  const from = actual ?? emptyActual(valid.name, ifbNameFor(valid.name, valid.netns), true, valid.netns);
  return formatOperations(planInterface(valid, from, caps));
}

/**
 * Removes everything the engine put on an interface: its HTB root, its ingress redirect (and the
 * ingress qdisc when nothing else uses it) and its IFB. Foreign qdiscs are left alone.
 */
export async function removeInterface(
  ifname: string,
  netns: string | undefined,
  executor: Executor,
  options: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const desired: DesiredInterface = netns === undefined ? { name: ifname, kind: 'wireguard', subjects: [] } : { name: ifname, netns, kind: 'wireguard', subjects: [] };
  // Any leaf kind: with no subjects the planner only removes.
  return reconcileInterface(desired, executor, { leaf: 'pfifo' }, options);
}
