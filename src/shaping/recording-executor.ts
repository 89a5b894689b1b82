import { KernelError } from './errors.js';
import { batchScript, groupForBatch, withNetns, type Executor, type RunOptions, type RunResult } from './executor.js';
import type { Operation } from './operations.js';

/** One call seen by {@link RecordingExecutor}. */
export type RecordedCall =
  | { kind: 'run'; argv: string[]; input?: string }
  | { kind: 'batch'; argv: string[]; operations: Operation[]; script: string };

/** A canned answer: output, or a failure with tc's stderr. */
export type CannedResponse = RunResult | { error: string; exitCode?: number };

/** Options of {@link RecordingExecutor}. */
export interface RecordingExecutorOptions {
  /**
   * Canned outputs for reads, by full command line joined with spaces
   * (`tc -n lab -j qdisc show dev wg0`). Unknown commands print nothing.
   */
  outputs?: Record<string, CannedResponse>;
  /** Computes an answer; wins over `outputs` when it returns something. */
  respond?: (argv: readonly string[]) => CannedResponse | undefined;
}

/**
 * Runs nothing: records every call (unit tests, `--dry-run`) and answers reads from canned outputs.
 */
export class RecordingExecutor implements Executor {
  /** Every call, in order. */
  readonly calls: RecordedCall[] = [];
  private readonly options: RecordingExecutorOptions;

  constructor(options: RecordingExecutorOptions = {}) {
    this.options = options;
  }

  /** All operations passed to {@link batch}, flattened. */
  get operations(): Operation[] {
    return this.calls.flatMap((call) => (call.kind === 'batch' ? call.operations : []));
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = withNetns(argv, options.netns);
    this.calls.push(options.input === undefined ? { kind: 'run', argv: full } : { kind: 'run', argv: full, input: options.input });
    const answer = this.options.respond?.(full) ?? this.options.outputs?.[full.join(' ')];
    if (answer === undefined) return { stdout: '', stderr: '' };
    if ('error' in answer) {
      throw new KernelError({ argv: full, stderr: answer.error, exitCode: answer.exitCode ?? 1, timedOut: false });
    }
    return answer;
  }

  async batch(operations: readonly Operation[], netns?: string): Promise<void> {
    for (const group of groupForBatch(operations, netns)) {
      const argv = group.netns === undefined ? [group.tool, '-batch', '-'] : [group.tool, '-n', group.netns, '-batch', '-'];
      this.calls.push({ kind: 'batch', argv, operations: group.operations, script: batchScript(group.operations) });
    }
  }
}
