import { KernelError } from '../shaping/errors.js';
import { DesiredStateError } from '../shaping/model.js';
import { PlanError } from '../shaping/plan.js';
import type { OutcomeReason } from './outcome-reason.js';

/**
 * The reason of a failed apply, from the error's type: the kernel refused (`KernelError`), or the
 * desired state cannot be shaped (`DesiredStateError`, `PlanError`). Anything else is a bug, not an
 * outcome: null, and the message says what happened.
 */
export function failureReason(error: unknown): OutcomeReason | null {
  if (error instanceof KernelError) return 'kernel_refused';
  if (error instanceof DesiredStateError || error instanceof PlanError) return 'plan_invalid';
  return null;
}
