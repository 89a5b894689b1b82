import type { TcClass } from './parse-class-text.js';
import type { TcFilter } from './parse-filter-json.js';
import type { TcQdisc } from './parse-qdisc-json.js';

/** What the kernel has at the root of one device (the interface or its IFB). */
export interface ActualTree {
  device: string;
  qdiscs: TcQdisc[];
  classes: TcClass[];
  /** Filters attached to the root qdisc (`parent 1:`); empty when the root is not the engine's HTB. */
  filters: TcFilter[];
}

/** The kernel state of one interface, as `readActual` sees it. */
export interface ActualInterface {
  name: string;
  netns?: string;
  /** False when the device does not exist (not created yet, VM stopped): nothing can be shaped. */
  exists: boolean;
  /** The interface's egress (root) side; `null` when the device does not exist. */
  egress: ActualTree | null;
  /** Filters on the interface's ingress qdisc (`parent ffff:`). */
  ingressFilters: TcFilter[];
  ifb: {
    name: string;
    exists: boolean;
    up: boolean;
    /** `null` when the IFB does not exist. */
    tree: ActualTree | null;
  };
}

/** The actual state of an interface that has nothing of the engine (and, if `exists`, no qdisc at all). */
export function emptyActual(name: string, ifbName: string, exists = true, netns?: string): ActualInterface {
  const actual: ActualInterface = {
    name,
    exists,
    egress: exists ? { device: name, qdiscs: [], classes: [], filters: [] } : null,
    ingressFilters: [],
    ifb: { name: ifbName, exists: false, up: false, tree: null },
  };
  if (netns !== undefined) actual.netns = netns;
  return actual;
}
