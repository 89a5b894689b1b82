/**
 * Node names: what networks, VMs and `bw_limits.node` refer to, and what an agent is registered as.
 * One source for the panel machine's own name and for the rule every other name follows.
 */

/** The panel's own machine: its agent runs in the panel's process. Reserved: no agent registers as it. */
export const LOCAL_NODE = 'local';

/** 1-64 characters of letters, digits, `_`, `.` and `-`. */
export const NODE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Why `name` cannot name a remote node, or undefined when it can. */
export function nodeNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${name === null ? 'null' : typeof name}`;
  if (!NODE_NAME.test(name)) return 'must be 1-64 characters of letters, digits, `_`, `.` or `-`';
  if (name === LOCAL_NODE) return `\`${LOCAL_NODE}\` is reserved for the panel's own machine`;
  return undefined;
}
