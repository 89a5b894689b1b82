import { createHash } from 'node:crypto';

/**
 * The IFB device that carries an interface's ingress (the subjects' `up`): `ifb-` + 10 hex digits
 * of a SHA-256 over netns and interface name. Deterministic (no state to record: it is recomputed),
 * 14 characters (Linux allows 15), and distinct for the same interface name in two namespaces.
 *
 * @example ifbNameFor('wg0') // 'ifb-…' (same value every time)
 */
export function ifbNameFor(ifname: string, netns?: string): string {
  const digest = createHash('sha256').update(`${netns ?? ''}\0${ifname}`).digest('hex');
  return `ifb-${digest.slice(0, 10)}`;
}

/** True for names {@link ifbNameFor} produces (used to recognise the engine's own IFBs). */
export function isEngineIfbName(name: string): boolean {
  return /^ifb-[0-9a-f]{10}$/.test(name);
}
