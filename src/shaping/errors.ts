import type { Operation } from './operations.js';

/** Details of a failed kernel command. */
export interface KernelErrorDetails {
  /** Full argv that ran, program first (`['tc', '-n', 'lab', '-batch', '-']`). */
  argv: readonly string[];
  stderr: string;
  /** `undefined` when the process did not exit by itself (timeout, spawn failure). */
  exitCode: number | undefined;
  timedOut: boolean;
  /** For a batch: the operation on the failing line (from tc's `Command failed -:N`). */
  operation?: Operation;
  cause?: unknown;
}

/**
 * A `tc`/`ip` command failed. `shortMessage` is one line for logs and the UI (the command and the
 * kernel's answer); `cause` keeps the underlying execa error.
 */
export class KernelError extends Error {
  override name = 'KernelError';
  readonly argv: readonly string[];
  readonly stderr: string;
  readonly exitCode: number | undefined;
  readonly timedOut: boolean;
  readonly operation: Operation | undefined;
  readonly shortMessage: string;

  constructor(details: KernelErrorDetails) {
    const what = details.operation ? `${details.operation.tool} ${details.operation.argv.join(' ')}` : details.argv.join(' ');
    const answer = details.timedOut
      ? 'timed out'
      : firstMeaningfulLine(details.stderr) ?? `exit code ${details.exitCode ?? 'unknown'}`;
    const shortMessage = `${what}: ${answer}`;
    super(shortMessage, { cause: details.cause });
    this.argv = details.argv;
    this.stderr = details.stderr;
    this.exitCode = details.exitCode;
    this.timedOut = details.timedOut;
    this.operation = details.operation;
    this.shortMessage = shortMessage;
  }
}

/** tc says `Error: Specified class not found.` then `We have an error talking to the kernel`: keep the first. */
function firstMeaningfulLine(stderr: string): string | undefined {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !/^Command failed /.test(line) && line !== 'We have an error talking to the kernel');
  return lines[0];
}

/** True when a tc/ip error says the device does not exist. */
export function isNoSuchDevice(error: unknown): boolean {
  return error instanceof KernelError && /Cannot find device|does not exist|No such device/i.test(error.stderr);
}
