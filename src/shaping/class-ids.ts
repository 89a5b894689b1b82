/**
 * Minors the engine never hands out:
 * - `0` is not a class;
 * - `1` because a subject's leaf qdisc takes its class minor as handle (`<minor>:`), and `1:` is the HTB root;
 * - `0xffff` is the class for unlimited traffic (`1:ffff`, the HTB default) and `ffff:` the ingress qdisc.
 */
export const RESERVED_CLASS_MINORS: readonly number[] = [0, 1, 0xffff];

/** Highest minor a subject can get. */
export const MAX_CLASS_MINOR = 0xfffe;

/** Thrown when every class minor of an interface is taken. */
export class ClassMinorsExhaustedError extends Error {
  override name = 'ClassMinorsExhaustedError';
}

/**
 * The next free HTB class minor for a new subject, given the minors already allocated
 * (on the same interface, persisted by the caller). Pure: allocate once, store it, reuse it forever,
 * so a subject keeps its class (and its counters) across restarts.
 *
 * @param used - minors already allocated on this interface.
 * @param reserved - extra minors to skip, besides {@link RESERVED_CLASS_MINORS}.
 * @returns the lowest free minor in 2..0xfffe.
 * @throws {ClassMinorsExhaustedError} when 2..0xfffe are all taken.
 * @example nextClassMinor([2, 3, 5]) // 4
 */
export function nextClassMinor(used: Iterable<number>, reserved: Iterable<number> = []): number {
  const taken = new Set<number>([...RESERVED_CLASS_MINORS, ...used, ...reserved]);
  for (let minor = 2; minor <= MAX_CLASS_MINOR; minor += 1) {
    if (!taken.has(minor)) return minor;
  }
  throw new ClassMinorsExhaustedError(
    `No free HTB class minor left: 2..0x${MAX_CLASS_MINOR.toString(16)} (${MAX_CLASS_MINOR - 1} subjects) are all allocated on this interface`,
  );
}

/** True when `minor` may be given to a subject. */
export function isAssignableClassMinor(minor: number): boolean {
  return Number.isInteger(minor) && minor >= 2 && minor <= MAX_CLASS_MINOR;
}
