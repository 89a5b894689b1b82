/** The program an operation runs: `tc` for qdiscs/classes/filters, `ip` for IFB links. */
export type Tool = 'tc' | 'ip';

/**
 * One kernel change: an argv **without** the program name (`['class', 'change', 'dev', 'wg0', …]`),
 * the program, the namespace, and a human note saying why the planner wants it.
 */
export interface Operation {
  tool: Tool;
  argv: readonly string[];
  /** Network namespace to run in (`tc -n <netns>` / `ip -n <netns>`); absent = current. */
  netns?: string;
  /** Why: `class for peer p1, down 8000 kbit/s`. Not part of the command. */
  note: string;
}

/** Builds an operation; drops an undefined netns so that deep-equal assertions stay simple. */
export function op(tool: Tool, argv: readonly string[], netns: string | undefined, note: string): Operation {
  return netns === undefined ? { tool, argv, note } : { tool, argv, netns, note };
}

/** The full argv with program and namespace, e.g. `['tc', '-n', 'ns1', 'qdisc', 'add', …]`. */
export function commandLine(operation: Operation): string[] {
  const prefix: string[] = operation.netns === undefined ? [operation.tool] : [operation.tool, '-n', operation.netns];
  return [...prefix, ...operation.argv];
}

/**
 * Printable plan, one command per line with its note as a trailing comment:
 * `tc -n lab class change dev wg0 parent 1: classid 1:2 htb rate 8000kbit … # peer p1 down 8000 kbit/s`.
 * Arguments are quoted only when they would not survive a shell unquoted (never the case for plans the
 * planner builds; the output is for humans and copy-paste).
 */
export function formatOperations(operations: readonly Operation[]): string {
  return operations
    .map((operation) => `${commandLine(operation).map(quoteForDisplay).join(' ')}  # ${operation.note}`)
    .join('\n');
}

function quoteForDisplay(arg: string): string {
  return /^[A-Za-z0-9_.:/@%+=,-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
