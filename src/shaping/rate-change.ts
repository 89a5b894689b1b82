import { placementOf } from './directions.js';
import { KernelError } from './errors.js';
import type { Executor } from './executor.js';
import { ifbNameFor } from './ifb-name.js';
import { interfaceLockKey, interfaceLocks } from './lock.js';
import { parseSubjectsOf, type DesiredInterface, type DesiredSubject } from './model.js';
import { op, type Operation } from './operations.js';
import { classOp, rejectedSubjects, type PlanCapabilities } from './plan.js';
import { hasClassOn, tbfArgs, totalOn, treeShape } from './tree-shape.js';
import { reconcileInterface, type ReconcileOptions, type ReconcileResult } from './reconcile.js';

/** What {@link changeSubjectRate} did. */
export interface RateChangeResult extends ReconcileResult {
  /**
   * True when the change went through the fast path (class changes only, no read of the kernel):
   * only the changed subject's outcome is known then (`rejected` is empty).
   */
  fastPath: boolean;
}

/** One subject whose caps (or guarantee, or burst) moved, with what the kernel had for it. */
export interface RateChange {
  subjectId: string;
  previous: Pick<DesiredSubject, 'upKbps' | 'downKbps' | 'minKbps' | 'burst'>;
}

/**
 * Applies subjects' new caps without reading the interface: a `class change` (and a tbf leaf's new
 * options) for every class whose numbers moved — the changed subjects', and under a network cap the
 * guarantees of the others when the changed ones' minimums moved them — as one tc process, whatever
 * the number of subjects on the interface. Anything that adds or removes a class or changes a leaf's
 * kind (a cap to or from 0 without a network cap, a burst that starts or ends), the class missing
 * because the kernel drifted, or any tc error falls back to {@link reconcileInterface}, which reads,
 * diffs and repairs. Drift elsewhere on the interface is left to the reconcile loop.
 *
 * @param desired - the interface's full desired state, with the subjects' new values.
 * @param changes - the changed subjects with the values the kernel had (as persisted by the caller).
 */
export async function changeSubjectRates(
  desired: DesiredInterface,
  changes: readonly RateChange[],
  executor: Executor,
  caps: PlanCapabilities,
  options: ReconcileOptions = {},
): Promise<RateChangeResult> {
  const fallback = async (): Promise<RateChangeResult> => ({ ...(await reconcileInterface(desired, executor, caps, options)), fastPath: false });
  const previous = new Map(changes.map((change) => [change.subjectId, change.previous]));
  // Only the changed subjects are checked here; the fallback (a full reconcile) checks everything.
  const changed = parseSubjectsOf(desired, [...previous.keys()]);
  if (changed === undefined) return fallback();
  const byMinor = new Map(desired.subjects.map((subject) => [subject.classMinor, subject]));
  const before: DesiredInterface = {
    ...desired,
    subjects: desired.subjects.map((subject) => {
      const was = previous.get(subject.id);
      if (was === undefined) return subject;
      const { minKbps: _min, burst: _burst, ...rest } = subject;
      return { ...rest, upKbps: was.upKbps, downKbps: was.downKbps, ...(was.minKbps === undefined ? {} : { minKbps: was.minKbps }), ...(was.burst === undefined ? {} : { burst: was.burst }) };
    }),
  };
  // Placement is untouched by a rate change (no prefix appears or goes), so the rejected subjects
  // stay the same; they only matter where guarantees are shared (a network cap).
  const shared = totalOn(desired, 'egress') > 0 || totalOn(desired, 'ifb') > 0;
  const rejected = shared ? rejectedSubjects(desired) : new Map<string, string>();
  const operations: Operation[] = [];
  for (const direction of ['down', 'up'] as const) {
    const { side } = placementOf(desired.kind, direction);
    const total = totalOn(desired, side);
    const members = (state: DesiredInterface) => state.subjects.filter((subject) => (total > 0 || previous.has(subject.id)) && hasClassOn(subject, side, total) && !rejected.has(subject.id));
    const now = treeShape(desired, side, members(desired));
    const was = treeShape(before, side, members(before));
    const device = side === 'egress' ? desired.name : ifbNameFor(desired.name, desired.netns);
    for (const subject of changed) {
      const a = was.subjects.get(subject.classMinor);
      const b = now.subjects.get(subject.classMinor);
      // A class or a tbf leaf appears or goes.
      if ((a === undefined) !== (b === undefined) || (a?.tbf === undefined) !== (b?.tbf === undefined)) return fallback();
    }
    for (const [minor, shape] of now.subjects) {
      const old = was.subjects.get(minor);
      if (old === undefined) continue;
      const subject = byMinor.get(minor);
      const what = `${subject?.type ?? 'subject'} ${subject?.id ?? minor} ${direction}`;
      if (old.rateKbps !== shape.rateKbps || old.ceilKbps !== shape.ceilKbps) {
        const note = `${what} ${shape.rateKbps === shape.ceilKbps ? `${shape.ceilKbps}` : `${shape.rateKbps}..${shape.ceilKbps}`} kbit/s`;
        operations.push(classOp(device, desired.netns, minor, shape, 'change', note));
      }
      if (shape.tbf && (old.tbf?.kbps !== shape.tbf.kbps || old.tbf.depthBytes !== shape.tbf.depthBytes)) {
        operations.push(op('tc', ['qdisc', 'replace', 'dev', device, 'parent', `1:${minor.toString(16)}`, 'handle', `${minor.toString(16)}:`, ...tbfArgs(shape.tbf)], desired.netns, `${what}: holds ${shape.tbf.kbps} kbit/s after its burst`));
      }
    }
  }
  const result = { rejected: [] as RateChangeResult['rejected'], interfaceExists: true, fastPath: true };
  if (operations.length === 0) return { ...result, operations, changed: false };
  const locks = options.locks ?? interfaceLocks;
  try {
    await locks.run(interfaceLockKey(desired.name, desired.netns), () => executor.batch(operations, desired.netns));
  } catch (error) {
    if (error instanceof KernelError) return fallback();
    throw error;
  }
  return { ...result, operations, changed: true };
}

/** {@link changeSubjectRates} for one subject. */
export function changeSubjectRate(
  desired: DesiredInterface,
  subjectId: string,
  previous: RateChange['previous'],
  executor: Executor,
  caps: PlanCapabilities,
  options: ReconcileOptions = {},
): Promise<RateChangeResult> {
  return changeSubjectRates(desired, [{ subjectId, previous }], executor, caps, options);
}
