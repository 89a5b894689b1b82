import { commandLine, type Operation, type Tool } from './operations.js';

/** Options of one command. */
export interface RunOptions {
  /** Network namespace: `tc -n`/`ip -n` for tc and ip, `ip netns exec` for anything else. */
  netns?: string;
  /** Text written to the command's stdin. */
  input?: string;
  /** Overrides the executor's timeout for this call, in milliseconds. */
  timeoutMs?: number;
}

/** What a command printed. */
export interface RunResult {
  stdout: string;
  stderr: string;
}

/** The one door to the kernel: local (execa), recording (tests, `--dry-run`), later remote (agent). */
export interface Executor {
  /**
   * Runs one command, program first (`['tc', '-j', 'qdisc', 'show', 'dev', 'wg0']`).
   * @throws {KernelError} when it exits non-zero or times out.
   */
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  /**
   * Runs a plan: each run of consecutive `tc` (or `ip`) operations as ONE `tc -batch -` (`ip -batch -`)
   * process with the commands on stdin, in order, stopping at the first failure.
   * @param netns - namespace for operations that carry none.
   * @throws {KernelError} with `operation` set to the failing one.
   */
  batch(operations: readonly Operation[], netns?: string): Promise<void>;
}

/** The argv of a command run in a namespace. */
export function withNetns(argv: readonly string[], netns: string | undefined): string[] {
  if (netns === undefined) return [...argv];
  const [program, ...rest] = argv;
  if (program === 'tc' || program === 'ip') return [program, '-n', netns, ...rest];
  return ['ip', 'netns', 'exec', netns, ...argv];
}

/** A group of consecutive operations that go to one `-batch` process. */
export interface BatchGroup {
  tool: Tool;
  netns: string | undefined;
  operations: Operation[];
  /** Index of the group's first operation in the plan. */
  start: number;
}

/** Splits a plan into runs of the same program and namespace, keeping the order. */
export function groupForBatch(operations: readonly Operation[], netns?: string): BatchGroup[] {
  const groups: BatchGroup[] = [];
  operations.forEach((operation, index) => {
    const ns = operation.netns ?? netns;
    const last = groups[groups.length - 1];
    if (last && last.tool === operation.tool && last.netns === ns) last.operations.push(operation);
    else groups.push({ tool: operation.tool, netns: ns, operations: [operation], start: index });
  });
  return groups;
}

/**
 * The stdin of `tc -batch -`: one command per line. iproute2 splits batch lines on white space and
 * treats quotes, backslashes and `#` specially, so an argument holding any of them is refused.
 */
export function batchScript(operations: readonly Operation[]): string {
  return operations
    .map((operation) => {
      for (const arg of operation.argv) {
        if (arg === '' || /[\s"'\\#]/.test(arg)) {
          throw new TypeError(`Expected batch arguments without white space, quotes, \`\\\` or \`#\`, got ${JSON.stringify(arg)} in ${commandLine(operation).join(' ')}`);
        }
      }
      return operation.argv.join(' ');
    })
    .join('\n')
    .concat('\n');
}

/** The line number tc/ip report for a failing batch line (`Command failed -:12`), 1-based. */
export function failedBatchLine(stderr: string): number | undefined {
  const match = /Command failed -:(\d+)/.exec(stderr);
  return match ? Number(match[1]) : undefined;
}
