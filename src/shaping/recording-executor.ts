import { isNoSuchDevice, KernelError } from './errors.js';
import { batchScript, groupForBatch, withNetns, type Executor, type RunOptions, type RunResult } from './executor.js';
import type { Operation } from './operations.js';
import { isReadOnlyCommand } from './read-only-command.js';

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
  /**
   * Answers reads that have no canned answer from this executor: a dry run planned against the
   * real kernel. Only read-only commands (`tc … show`, `ip … link show`, which iproute2 answers
   * without CAP_NET_ADMIN) are passed on; batches and every other command are only recorded. A
   * missing device stays an error, as from the kernel; any other refusal (entering a namespace
   * without CAP_SYS_ADMIN) gets the empty answer, as if nothing were there yet.
   * @example new RecordingExecutor({ reads: new LocalExecutor(), history: 'latest' })
   */
  reads?: Executor;
  /**
   * What {@link RecordingExecutor.calls} keeps: `all`, every call in order (tests), or `latest`,
   * only the newest call of each command line and the newest batch of each program, namespace
   * and set of devices, so a dry run that reconciles every minute for months holds one plan per
   * interface instead of every plan it ever made.
   * @default 'all'
   */
  history?: 'all' | 'latest';
}

/**
 * Runs nothing that changes the kernel: records every call (unit tests, dry runs) and answers reads
 * from canned outputs, else (with `reads`) from the real kernel.
 */
export class RecordingExecutor implements Executor {
  private readonly options: RecordingExecutorOptions;
  private readonly every: RecordedCall[] = [];
  private readonly latest = new Map<string, RecordedCall>();

  constructor(options: RecordingExecutorOptions = {}) {
    if (options.history !== undefined && options.history !== 'all' && options.history !== 'latest') {
      throw new TypeError(`Expected \`history\` to be 'all' or 'latest', got \`${String(options.history)}\` (${typeof options.history})`);
    }
    this.options = options;
  }

  /** The calls kept, oldest first: every call, or with `history: 'latest'` the newest of each. */
  get calls(): RecordedCall[] {
    return this.options.history === 'latest' ? [...this.latest.values()] : this.every;
  }

  /** All operations passed to {@link batch}, flattened. */
  get operations(): Operation[] {
    return this.calls.flatMap((call) => (call.kind === 'batch' ? call.operations : []));
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = withNetns(argv, options.netns);
    this.record(full.join(' '), options.input === undefined ? { kind: 'run', argv: full } : { kind: 'run', argv: full, input: options.input });
    const answer = this.options.respond?.(full) ?? this.options.outputs?.[full.join(' ')];
    if (answer === undefined) return this.options.reads && isReadOnlyCommand(full) ? this.readKernel(argv, options) : { stdout: '', stderr: '' };
    if ('error' in answer) {
      throw new KernelError({ argv: full, stderr: answer.error, exitCode: answer.exitCode ?? 1, timedOut: false });
    }
    return answer;
  }

  async batch(operations: readonly Operation[], netns?: string): Promise<void> {
    for (const group of groupForBatch(operations, netns)) {
      const argv = group.netns === undefined ? [group.tool, '-batch', '-'] : [group.tool, '-n', group.netns, '-batch', '-'];
      const devices = [...new Set(group.operations.map(deviceOf))].sort().join(',');
      this.record(`${argv.join(' ')} ${devices}`, { kind: 'batch', argv, operations: group.operations, script: batchScript(group.operations) });
    }
  }

  private record(key: string, call: RecordedCall): void {
    if (this.options.history !== 'latest') {
      this.every.push(call);
      return;
    }
    this.latest.delete(key); // re-inserted last: `calls` stays in the order of the newest calls
    this.latest.set(key, call);
  }

  private async readKernel(argv: readonly string[], options: RunOptions): Promise<RunResult> {
    try {
      return await this.options.reads!.run(argv, options.netns === undefined ? {} : { netns: options.netns });
    } catch (error) {
      if (isNoSuchDevice(error)) throw error;
      return { stdout: '', stderr: '' };
    }
  }
}

/** The device an operation works on (`… dev wg0 …`, `link add name ifb-… …`). */
function deviceOf(operation: Operation): string {
  const at = operation.argv.findIndex((arg) => arg === 'dev' || arg === 'name');
  return at === -1 ? '' : operation.argv[at + 1] ?? '';
}
