import { execa, ExecaError } from 'execa';

import { KernelError } from './errors.js';
import { batchScript, failedBatchLine, groupForBatch, withNetns, type Executor, type RunOptions, type RunResult } from './executor.js';
import type { Operation } from './operations.js';

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /**
   * Timeout of every command, in milliseconds.
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * Timeout of a `-batch` process; a full apply of 10,000 subjects is ~60,000 commands.
   * @default 60000
   */
  batchTimeoutMs?: number;
}

function checkTimeout(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`Expected \`${name}\` to be a finite number > 0, got \`${String(value)}\` (${typeof value})`);
  }
  return value;
}

/** Runs commands on this machine with execa: argv arrays, never a shell, always a timeout. */
export class LocalExecutor implements Executor {
  private readonly timeoutMs: number;
  private readonly batchTimeoutMs: number;

  constructor(options: LocalExecutorOptions = {}) {
    this.timeoutMs = checkTimeout('timeoutMs', options.timeoutMs ?? 10_000);
    this.batchTimeoutMs = checkTimeout('batchTimeoutMs', options.batchTimeoutMs ?? 60_000);
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = withNetns(argv, options.netns);
    const [file, ...args] = full;
    if (file === undefined) throw new TypeError('Expected a non-empty argv');
    try {
      const result = await execa(file, args, {
        timeout: options.timeoutMs ?? this.timeoutMs,
        input: options.input ?? '',
        stripFinalNewline: false,
      });
      return { stdout: result.stdout, stderr: result.stderr };
    } catch (error) {
      throw toKernelError(full, error);
    }
  }

  async batch(operations: readonly Operation[], netns?: string): Promise<void> {
    for (const group of groupForBatch(operations, netns)) {
      const argv = group.netns === undefined ? [group.tool, '-batch', '-'] : [group.tool, '-n', group.netns, '-batch', '-'];
      try {
        await this.run(argv, { input: batchScript(group.operations), timeoutMs: this.batchTimeoutMs });
      } catch (error) {
        if (!(error instanceof KernelError)) throw error;
        const line = failedBatchLine(error.stderr);
        const operation = line === undefined ? undefined : group.operations[line - 1];
        throw new KernelError({
          argv: error.argv,
          stderr: error.stderr,
          exitCode: error.exitCode,
          timedOut: error.timedOut,
          ...(operation ? { operation } : {}),
          cause: error.cause,
        });
      }
    }
  }
}

function toKernelError(argv: readonly string[], error: unknown): KernelError {
  if (error instanceof ExecaError) {
    return new KernelError({
      argv,
      stderr: typeof error.stderr === 'string' ? error.stderr : error.shortMessage,
      exitCode: error.exitCode,
      timedOut: error.timedOut,
      cause: error,
    });
  }
  return new KernelError({ argv, stderr: String(error), exitCode: undefined, timedOut: false, cause: error });
}
