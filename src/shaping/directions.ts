import type { DesiredSubject, InterfaceKind } from './model.js';

/**
 * Where a tree of classes lives:
 * - `egress`: the root of the interface itself (traffic the host sends out of it);
 * - `ifb`: the root of the interface's IFB, fed by redirecting the interface's ingress.
 */
export type TreeSide = 'egress' | 'ifb';

/** What the filters of a tree look at: destination address, source address, or everything (a VM's interface). */
export type MatchKey = 'dst' | 'src' | 'all';

/** Direction from the subject's point of view. */
export type Direction = 'up' | 'down';

/**
 * THE one place where the subject's directions become kernel directions.
 *
 * | interface | subject's `down` (world → subject) | subject's `up` (subject → world) |
 * | --- | --- | --- |
 * | wireguard | egress of the interface, by destination | ingress → IFB, by source |
 * | vm (tap/veth, host side) | egress of the tap (host → VM), all traffic | ingress of the tap → IFB, all traffic |
 */
export function placementOf(kind: InterfaceKind, direction: Direction): { side: TreeSide; key: MatchKey } {
  const side: TreeSide = direction === 'down' ? 'egress' : 'ifb';
  if (kind === 'vm') return { side, key: 'all' };
  return { side, key: direction === 'down' ? 'dst' : 'src' };
}

/** The inverse of {@link placementOf}: which subject direction a tree shapes. */
export function directionOf(side: TreeSide): Direction {
  return side === 'egress' ? 'down' : 'up';
}

/** The cap (kbit/s, 0 = unlimited) a subject has in the tree on `side`. */
export function capOn(subject: DesiredSubject, side: TreeSide): number {
  return directionOf(side) === 'down' ? subject.downKbps : subject.upKbps;
}
