import type { OutcomeReason } from '../limits/outcome-reason.js';
import type { LimitStatus } from '../db/limits.js';

/** How the admin pages name each reason, beside the status badge. */
export const REASON_TEXT: Readonly<Record<OutcomeReason, string>> = {
  dry_run: 'dry run',
  interface_missing: 'interface missing',
  kernel_refused: 'kernel refused',
  plan_invalid: 'cannot be shaped',
  node_unreachable: 'node unreachable',
};

/** The words beside a status badge; empty without a reason. */
export function reasonText(reason: OutcomeReason | null): string {
  return reason ? REASON_TEXT[reason] : '';
}

/**
 * What the flash after a save adds to the caps: `(pending: …)` while waiting, and for a failure
 * who said no, chosen by the reason: the kernel, or the plan before anything reached the kernel.
 */
export function outcomeVerdict(outcome: { status: LimitStatus; reason: OutcomeReason | null; lastError: string | null }): string {
  const message = outcome.lastError ?? '';
  if (outcome.status === 'pending') return ` (pending: ${message})`;
  if (outcome.status !== 'failed') return '';
  if (outcome.reason === 'kernel_refused') return ` — the kernel refused: ${message}`;
  if (outcome.reason === 'plan_invalid') return ` — cannot be shaped: ${message}`;
  return ` — failed: ${message}`;
}
