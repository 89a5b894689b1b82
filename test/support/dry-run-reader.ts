/**
 * Reconciles one interface with the executor `chooseExecutor(<setting>)` picks for this process and
 * prints what it planned (or applied), as JSON. The kernel test runs it inside a namespace, as root
 * to build the tree and as an unprivileged user for the dry run: both name the interface without a
 * namespace, as a panel running in that namespace would.
 *
 *   dry-run-reader.ts <auto|recording|local> <leaf> <desired interface as JSON>
 */
import { chooseExecutor } from '../../src/limits/executor-choice.js';
import type { DesiredInterface } from '../../src/shaping/model.js';
import { commandLine } from '../../src/shaping/operations.js';
import type { LeafKind } from '../../src/shaping/leaf.js';
import { reconcileInterface } from '../../src/shaping/reconcile.js';

const [setting, leaf, desired] = process.argv.slice(2);
if ((setting !== 'auto' && setting !== 'recording' && setting !== 'local') || !leaf || !desired) {
  throw new Error('usage: dry-run-reader.ts auto|recording|local <leaf> <desired JSON>');
}
const choice = chooseExecutor(setting);
const result = await reconcileInterface(JSON.parse(desired) as DesiredInterface, choice.executor, { leaf: leaf as LeafKind });
console.log(JSON.stringify({ mode: choice.mode, operations: result.operations.map((o) => commandLine(o).join(' ')) }));
