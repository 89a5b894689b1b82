import { placementOf } from './directions.js';
import { KernelError } from './errors.js';
import type { Executor } from './executor.js';
import { ifbNameFor } from './ifb-name.js';
import { interfaceLockKey, interfaceLocks } from './lock.js';
import { parseSubjectOf, type DesiredInterface } from './model.js';
import { op, type Operation } from './operations.js';
import type { PlanCapabilities } from './plan.js';
import { htbClassArgs } from './rates.js';
import { reconcileInterface, type ReconcileOptions, type ReconcileResult } from './reconcile.js';

/** What {@link changeSubjectRate} did. */
export interface RateChangeResult extends ReconcileResult {
  /**
   * True when the change went through the fast path (class changes only, no read of the kernel):
   * only the changed subject's outcome is known then (`rejected` is empty).
   */
  fastPath: boolean;
}

/**
 * Applies one subject's new caps without reading the whole interface: a `class change` per
 * direction whose cap moved between two non-zero values — one tc process, whatever the number of
 * subjects on the interface. Anything else (a cap to or from 0, the class missing because the kernel
 * drifted, any tc error) falls back to {@link reconcileInterface}, which reads, diffs and repairs.
 * Drift elsewhere on the interface is left to the reconcile loop.
 *
 * @param desired - the interface's full desired state, with the subject's new caps.
 * @param previous - the subject's caps the kernel had (as persisted by the caller).
 */
export async function changeSubjectRate(
  desired: DesiredInterface,
  subjectId: string,
  previous: { upKbps: number; downKbps: number },
  executor: Executor,
  caps: PlanCapabilities,
  options: ReconcileOptions = {},
): Promise<RateChangeResult> {
  // Only the changed subject is checked here; the fallback (a full reconcile) checks everything.
  const subject = parseSubjectOf(desired, subjectId);
  const valid = desired;
  const fallback = async (): Promise<RateChangeResult> => ({ ...(await reconcileInterface(desired, executor, caps, options)), fastPath: false });
  if (subject === undefined) return fallback();
  // Placement is untouched by a rate change (no prefix or class appears or goes), so nothing about
  // rejected subjects changes either: the fast path reports none and its caller updates this subject only.
  const rejected: RateChangeResult['rejected'] = [];
  const operations: Operation[] = [];
  for (const direction of ['down', 'up'] as const) {
    const now = direction === 'down' ? subject.downKbps : subject.upKbps;
    const before = direction === 'down' ? previous.downKbps : previous.upKbps;
    if ((now === 0) !== (before === 0)) return fallback(); // a class and its filters appear or go
    if (now === 0 || now === before) continue;
    const { side } = placementOf(valid.kind, direction);
    const device = side === 'egress' ? valid.name : ifbNameFor(valid.name, valid.netns);
    operations.push(
      op(
        'tc',
        ['class', 'change', 'dev', device, 'parent', '1:', 'classid', `1:${subject.classMinor.toString(16)}`, 'htb', ...htbClassArgs(now)],
        valid.netns,
        `${subject.type} ${subject.id} ${direction} ${now} kbit/s`,
      ),
    );
  }
  if (operations.length === 0) return { operations, changed: false, interfaceExists: true, rejected, fastPath: true };
  const locks = options.locks ?? interfaceLocks;
  try {
    await locks.run(interfaceLockKey(valid.name, valid.netns), () => executor.batch(operations, valid.netns));
  } catch (error) {
    if (error instanceof KernelError) return fallback();
    throw error;
  }
  return { operations, changed: true, interfaceExists: true, rejected, fastPath: true };
}
