import assert from 'node:assert/strict';
import { test } from 'node:test';

import { failureReason } from '../../../src/limits/failure-reason.js';
import { OUTCOME_REASONS, toOutcomeReason } from '../../../src/limits/outcome-reason.js';
import { KernelError } from '../../../src/shaping/errors.js';
import { DesiredStateError } from '../../../src/shaping/model.js';
import { PlanError } from '../../../src/shaping/plan.js';
import { TcParseError } from '../../../src/shaping/parse-class-text.js';
import { outcomeVerdict, REASON_TEXT, reasonText } from '../../../src/views/reason.js';

test('a failure is typed by what threw it, not by its message', () => {
  const refused = new KernelError({ argv: ['tc', '-batch', '-'], stderr: 'Error: Specified class not found.', exitCode: 2, timedOut: false });
  assert.equal(failureReason(refused), 'kernel_refused');
  const timedOut = new KernelError({ argv: ['tc', '-batch', '-'], stderr: '', exitCode: undefined, timedOut: true });
  assert.equal(failureReason(timedOut), 'kernel_refused', 'a tc that never answered is the kernel side too');
  assert.equal(failureReason(new DesiredStateError('Address 10.0.0.2/32 is already owned by peer:1', 'subjects.1.addresses.0')), 'plan_invalid');
  assert.equal(failureReason(new PlanError('wg0 has a clsact qdisc; the engine needs the ingress qdisc')), 'plan_invalid');
  // A message that reads like a kernel answer does not make a bug a kernel refusal.
  assert.equal(failureReason(new Error('RTNETLINK answers: Operation not permitted')), null);
  assert.equal(failureReason(new TcParseError('Unexpected tc -j qdisc show output')), null);
  assert.equal(failureReason('a string'), null);
});

test('stored reasons read back as the type; unknown words and nulls as no reason', () => {
  for (const reason of OUTCOME_REASONS) assert.equal(toOutcomeReason(reason), reason);
  assert.deepEqual(OUTCOME_REASONS, ['dry_run', 'interface_missing', 'kernel_refused', 'plan_invalid', 'node_unreachable'], 'the words of DESIGN.md');
  assert.equal(toOutcomeReason(null), null);
  assert.equal(toOutcomeReason(undefined), null);
  assert.equal(toOutcomeReason('dry run'), null, 'prose is not a reason');
  assert.equal(toOutcomeReason('DRY_RUN'), null);
});

test('every reason has its own words on the admin pages', () => {
  const texts = OUTCOME_REASONS.map(reasonText);
  assert.ok(texts.every((text) => text !== ''), texts.join());
  assert.equal(new Set(texts).size, OUTCOME_REASONS.length, 'no two reasons read the same');
  assert.equal(reasonText(null), '');
  assert.equal(REASON_TEXT.interface_missing, 'interface missing');
});

test('the flash after a save says who refused, chosen by the reason', () => {
  const message = 'tc class add dev wg0: Error: Specified class not found.';
  assert.equal(outcomeVerdict({ status: 'failed', reason: 'kernel_refused', lastError: message }), ` — the kernel refused: ${message}`);
  assert.equal(outcomeVerdict({ status: 'failed', reason: 'plan_invalid', lastError: 'Address 10.0.0.2/32 is already owned by peer:1' }), ' — cannot be shaped: Address 10.0.0.2/32 is already owned by peer:1');
  assert.equal(outcomeVerdict({ status: 'failed', reason: null, lastError: 'boom' }), ' — failed: boom', 'an unclassified failure blames no one');
  assert.equal(outcomeVerdict({ status: 'pending', reason: 'dry_run', lastError: 'dry run: the `executor` option is `recording` (dry run)' }), ' (pending: dry run: the `executor` option is `recording` (dry run))');
  assert.equal(outcomeVerdict({ status: 'applied', reason: null, lastError: null }), '');
});
