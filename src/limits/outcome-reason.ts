/**
 * Why an outcome is what it is, stored beside its message (DESIGN.md "Effective caps"). Code
 * chooses by this word, never by the wording of the message.
 * - `dry_run`: the recording executor planned the caps and ran nothing (status `pending`);
 * - `interface_missing`: the subject's interface does not exist yet (status `pending`);
 * - `kernel_refused`: tc or ip refused an operation (status `failed`);
 * - `plan_invalid`: the desired state cannot be shaped as asked (status `failed`);
 * - `node_unreachable`: the node's agent cannot be reached (status `pending`; produced by the nodes work).
 */
export const OUTCOME_REASONS = ['dry_run', 'interface_missing', 'kernel_refused', 'plan_invalid', 'node_unreachable'] as const;

export type OutcomeReason = (typeof OUTCOME_REASONS)[number];

export function isOutcomeReason(value: unknown): value is OutcomeReason {
  return (OUTCOME_REASONS as readonly unknown[]).includes(value);
}

/** A stored reason as the type, or null (no reason, or a word this version does not know). */
export function toOutcomeReason(value: unknown): OutcomeReason | null {
  return isOutcomeReason(value) ? value : null;
}
