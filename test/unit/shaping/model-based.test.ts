/**
 * Model-based test of the shaping core (issues 9 and 14): random sequences of panel actions (caps,
 * network caps, guaranteed shares, bursts, several subjects' rates at once) and hand edits, each
 * followed by ONE `reconcileInterface` — or, for a rates step, ONE `changeSubjectRates` — against the
 * simulated kernel (test/support/tc-sim.ts, checked against the real kernel by tc-sim-kernel.test.ts),
 * then:
 *   (a) it did not throw, and the kernel did not refuse the incremental plan; a fast path did class
 *       changes and tbf option changes only;
 *   (b) it converged in one pass: a second plan from the kernel's state is empty;
 *   (c) each device carries exactly the engine's tree: 1:1 at the root (the network cap on that side,
 *       or unlimited), under it 1:ffff and one class per subject that is capped on that side — every
 *       subject when the side has a network cap — at the rate and ceil `treeShape` computes (itself
 *       checked against the spec: ceilings, guarantees, who bursts); a tbf leaf (rate = cap, the
 *       bucket exactly as the kernel prints it) exactly for the bursting directions, the probe's leaf
 *       elsewhere; no tree, ingress or IFB on a side with nothing capped and no network cap;
 *   (d) packets classify (u32-eval on the tree AS READ, and the sim's own kernel-side walk, orphans
 *       included) to the class of the subject owning the longest matching prefix, or 1:ffff.
 *
 * The seed is printed; replay with PBW_SEED=<seed> (PBW_RUNS=<n> for a longer soak, PBW_SHRINK=0 to
 * stop at the first failure unshrunk, PBW_STRICT=1 / PBW_SKIP: see KNOWN_OPEN). Every failing
 * sequence found becomes a named regression test at the end of this file.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';

import fc from 'fast-check';

import type { ActualInterface, ActualTree } from '../../../src/shaping/actual.js';
import { formatPrefix, parseCidr, type Prefix } from '../../../src/shaping/addresses.js';
import { nextClassMinor } from '../../../src/shaping/class-ids.js';
import { capOn, placementOf, type Direction } from '../../../src/shaping/directions.js';
import { ifbNameFor } from '../../../src/shaping/ifb-name.js';
import { KeyedMutex } from '../../../src/shaping/lock.js';
import type { DesiredInterface, DesiredSubject } from '../../../src/shaping/model.js';
import { formatOperations, type Operation } from '../../../src/shaping/operations.js';
import { htbDefaultMinor } from '../../../src/shaping/parse-qdisc-json.js';
import { rejectedSubjects } from '../../../src/shaping/plan.js';
import { changeSubjectRates, type RateChange } from '../../../src/shaping/rate-change.js';
import { UNLIMITED_KBPS, burstBytes, bytesPerSecond, htbClassArgs, printedRateBits } from '../../../src/shaping/rates.js';
import { readActual } from '../../../src/shaping/read.js';
import { planFromKernel, reconcileInterface, type ReconcileResult } from '../../../src/shaping/reconcile.js';
import { hasClassOn, MIN_SHARE_KBPS, TBF_LIMIT_BYTES, totalOn, treeShape, type TreeShape } from '../../../src/shaping/tree-shape.js';
import { TcSim, tbfShown } from '../../support/tc-sim.js';
import { treeClassifier, type Packet } from '../../support/u32-eval.js';
import { seededRandom } from '../../support/seeded-random.js';

const NETNS = 'pbw-model';
const WG = 'wg0';
const TAPS = ['tap1', 'tap2'] as const;
const CAPS = { leaf: 'pfifo' } as const;
/** In-process only: the default lock also takes a lock file through `flock`, a process per call. */
const LOCKS = new KeyedMutex({ fileLocks: null });
/**
 * Planner failures this test found that are still open (each has a `todo` regression below). The
 * property steps over exactly these signatures so that any OTHER failure fails the suite;
 * `PBW_STRICT=1` checks them too, `PBW_SKIP=a,b` replaces the list while exploring. The two it found
 * before issue 14 are fixed and kept as regressions below:
 * - `nested-uncapped`: packets of a subject not capped in a direction, whose prefix lies inside a
 *   capped subject's prefix, landed in the capped subject's class (fixed: a shield entry into 1:ffff);
 * - `vm-last-key`: the kernel refused the incremental plan with `filter del … prio 1: Cannot find
 *   specified filter chain` (the plan deleted the last key of the only tp, which takes the tp with
 *   it, then deleted the prio; fixed: root keys go with their priority).
 * Issue 14 (/tmp/i14/planner-bugs.md), all fixed and kept as regressions below: a tbf whose queue
 * outlasts its bucket prints `lat`, not `limit`, and a bucket over 2^32 ticks of 64 ns is dumped
 * wrapped (both replaced the leaf on every pass; 622b182); a VM interface under a network cap that
 * lost its VM kept the match-all to the VM's class, the kernel refused the class delete and the
 * interface was rebuilt (9ad0e51: a network cap alone builds no tree).
 */
const KNOWN_OPEN: string[] = [];
const SKIP = new Set(process.env.PBW_STRICT === '1' ? [] : (process.env.PBW_SKIP ?? KNOWN_OPEN.join(',')).split(',').filter((s) => s !== ''));

// ---- commands: plain data, so that a failing sequence can be pasted into a regression test ----

type Side = 'egress' | 'ifb';
type Iface = typeof WG | (typeof TAPS)[number];

/** One step of a scenario. Peers are named p0…p23 and live on wg0; each tap holds at most one VM. */
export type Cmd =
  | { op: 'peer'; id: string; addresses: string[]; up: number; down: number }
  | { op: 'caps'; id: string; up?: number; down?: number }
  | { op: 'addresses'; id: string; addresses: string[] }
  | { op: 'delete'; id: string }
  | { op: 'vm'; iface: Iface; up: number; down: number }
  | { op: 'vm-delete'; iface: Iface }
  | { op: 'iface-delete'; iface: Iface }
  | { op: 'iface-create'; iface: Iface }
  | { op: 'flush-root'; iface: Iface; side: Side }
  | { op: 'del-class'; iface: Iface; side: Side; pick: number }
  | { op: 'del-prio'; iface: Iface; side: Side; pick: number }
  | { op: 'foreign-filter'; iface: Iface; side: Side; prio: number; pick: number }
  | { op: 'reconcile'; iface: Iface }
  /** Network caps of an interface per side (0 = none); an absent side keeps its value. */
  | { op: 'net'; iface: Iface; up?: number; down?: number }
  /** A subject's guaranteed share (`id`: a peer, or a tap for its VM). */
  | { op: 'min'; id: string; min: number }
  /** A subject's burst, or none. */
  | { op: 'burst'; id: string; burst: Burst | null }
  /** Several subjects' caps, shares and bursts at once, through `changeSubjectRates`. */
  | { op: 'rates'; iface: Iface; changes: SubjectChange[] }
  /** Hand edits of a class's leaf: delete it (HTB's default takes over), or put another kind in its place. */
  | { op: 'del-leaf'; iface: Iface; side: Side; pick: number }
  | { op: 'swap-leaf'; iface: Iface; side: Side; pick: number }
  /** The tree as the engine built it before issue 14 (every class under `1:`), for a rebuild. */
  | { op: 'legacy-tree'; iface: Iface; side: Side };

type Burst = { kbps: number; bytes: number };

/** Commands that change the kernel by hand (or the interface itself) before the reconcile. */
const HAND_EDITS = new Set<Cmd['op']>(['iface-delete', 'iface-create', 'flush-root', 'del-class', 'del-prio', 'foreign-filter', 'del-leaf', 'swap-leaf', 'legacy-tree']);

/** What a step's plan may touch (see {@link World.step}). */
type PlanScope = 'any' | 'no-rebuild' | 'class-and-leaf-changes' | 'class-changes';

/** Whether `operation` stays within `scope`, for a tree that exists before and after (`kept` devices). */
function withinScope(operation: Operation, scope: PlanScope, kept: ReadonlySet<string>): boolean {
  const argv = operation.argv;
  const device = argv[argv.indexOf('dev') + 1] ?? '';
  if (scope === 'any') return true;
  const rebuild = (argv[0] === 'qdisc' && (argv[1] === 'del' || argv[1] === 'add') && argv.includes('root')) || (operation.tool === 'ip' && argv[1] === 'del');
  if (scope === 'no-rebuild') return !(rebuild && kept.has(device));
  if (argv[0] === 'class' && argv[1] === 'change') return true;
  if (scope === 'class-changes') return false;
  // A leaf that changes kind or options: `qdisc del … parent 1:N` and `qdisc add|replace … parent 1:N handle N: …`.
  return argv[0] === 'qdisc' && !argv.includes('root') && argv.includes('parent') && ['del', 'add', 'replace'].includes(argv[1] ?? '');
}
interface SubjectChange {
  id: string;
  up?: number;
  down?: number;
  min?: number;
  burst?: Burst | null;
}

// ---- the world: desired state (the model) + the simulated kernel ----

interface WorldSubject {
  id: string;
  classMinor: number;
  addresses: string[];
  up: number;
  down: number;
  min: number;
  burst: Burst | null;
}

/** A subject's fields in the desired state (minKbps and burst only when set). */
function subjectFields(subject: WorldSubject): Pick<DesiredSubject, 'upKbps' | 'downKbps' | 'minKbps' | 'burst'> {
  return { upKbps: subject.up, downKbps: subject.down, ...(subject.min > 0 ? { minKbps: subject.min } : {}), ...(subject.burst ? { burst: { ...subject.burst } } : {}) };
}

/** Operations that leave every class, leaf and filter in place: class changes and a tbf's new options. */
function isHitless(operation: Operation): boolean {
  const [object, verb] = operation.argv;
  return (object === 'class' && verb === 'change') || (object === 'qdisc' && verb === 'replace' && operation.argv.includes('tbf'));
}

/** A failed check, with what is needed to understand it. */
class CheckFailure extends Error {
  override name = 'CheckFailure';
}

const prefixKey = (prefix: Prefix): string => `${prefix.family}/${prefix.bytes.join('.')}/${prefix.length}`;

function contains(prefix: Prefix, address: readonly number[]): boolean {
  let bits = prefix.length;
  for (let i = 0; bits > 0; i += 1, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((address[i] ?? 0) & mask) !== ((prefix.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}


/** Base address, last address and a random one inside the prefix. */
function samplesIn(prefix: Prefix, random: () => number): number[][] {
  const size = prefix.family === 4 ? 4 : 16;
  const last = prefix.bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, prefix.length - i * 8));
    return byte | (0xff >> bits);
  });
  const inside = prefix.bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, prefix.length - i * 8));
    return byte | (Math.floor(random() * 256) & (0xff >> bits));
  });
  return [prefix.bytes.slice(0, size), last, inside];
}

export class World {
  readonly sim = new TcSim();
  readonly peers = new Map<string, WorldSubject>();
  readonly vms = new Map<Iface, WorldSubject>();
  /** Network caps per interface (kbit/s, 0 = none). */
  readonly totals = new Map<Iface, { up: number; down: number }>();
  readonly exists = new Map<Iface, boolean>([
    [WG, true],
    ...TAPS.map((tap) => [tap, true] as [Iface, boolean]),
  ]);
  /** Steps run (all worlds), for the step count printed at the end. */
  static steps = 0;
  /** Rates steps, and how many of them the fast path took (not the fallback reconcile). */
  static rateSteps = 0;
  static fastPaths = 0;
  private stepNo = 0;

  constructor() {
    this.sim.addNamespace(NETNS);
    this.sim.addDevice(WG, { netns: NETNS, kind: 'wireguard' });
    for (const tap of TAPS) this.sim.addDevice(tap, { netns: NETNS, kind: 'veth' });
  }

  desired(iface: Iface): DesiredInterface {
    const total = this.totals.get(iface);
    const totals = total ? { totalUpKbps: total.up, totalDownKbps: total.down } : {};
    if (iface === WG) {
      const subjects: DesiredSubject[] = [...this.peers.values()].map((p) => ({ type: 'peer', id: p.id, classMinor: p.classMinor, addresses: [...p.addresses], ...subjectFields(p) }));
      return { name: WG, netns: NETNS, kind: 'wireguard', subjects, ...totals };
    }
    const vm = this.vms.get(iface);
    const subjects: DesiredSubject[] = vm ? [{ type: 'vm', id: vm.id, classMinor: vm.classMinor, addresses: [], ...subjectFields(vm) }] : [];
    return { name: iface, netns: NETNS, kind: 'vm', subjects, ...totals };
  }

  /** A peer by id, or the VM of a tap named as the id, with its interface. */
  private subject(id: string): { subject: WorldSubject; iface: Iface } | undefined {
    const peer = this.peers.get(id);
    if (peer) return { subject: peer, iface: WG };
    const tap = TAPS.find((name) => name === id);
    const vm = tap === undefined ? undefined : this.vms.get(tap);
    return tap !== undefined && vm ? { subject: vm, iface: tap } : undefined;
  }

  /** Keeps only addresses nobody else owns (and no duplicates): `parseDesiredInterface` refuses the rest. */
  private freeAddresses(id: string, addresses: readonly string[]): string[] {
    const owned = new Set<string>();
    for (const peer of this.peers.values()) if (peer.id !== id) for (const a of peer.addresses) owned.add(prefixKey(parseCidr(a)));
    const out: string[] = [];
    for (const address of addresses) {
      const key = prefixKey(parseCidr(address));
      if (owned.has(key)) continue;
      owned.add(key);
      out.push(address);
    }
    return out;
  }

  private device(iface: Iface, side: Side): string {
    return side === 'egress' ? iface : ifbNameFor(iface, NETNS);
  }

  private async handEdit(argv: string[]): Promise<void> {
    // A hand edit may be refused (no such class, class in use, no tree): that is the admin's problem.
    await this.sim.run(argv, { netns: NETNS }).catch(() => undefined);
  }

  /** Applies one command, reconciles the interface it touched, and checks (a)-(d). */
  async step(cmd: Cmd): Promise<void> {
    World.steps += 1;
    this.stepNo += 1;
    let iface: Iface = 'iface' in cmd ? cmd.iface : WG;
    let rates: RateChange[] | undefined;
    const totalsBefore = { ...(this.totals.get(iface) ?? { up: 0, down: 0 }) };
    switch (cmd.op) {
      case 'peer': {
        if (this.peers.has(cmd.id)) break;
        const minor = nextClassMinor([...this.peers.values()].map((p) => p.classMinor));
        this.peers.set(cmd.id, { id: cmd.id, classMinor: minor, addresses: this.freeAddresses(cmd.id, cmd.addresses), up: cmd.up, down: cmd.down, min: 0, burst: null });
        break;
      }
      case 'net': {
        const total = this.totals.get(cmd.iface) ?? { up: 0, down: 0 };
        this.totals.set(cmd.iface, { up: cmd.up ?? total.up, down: cmd.down ?? total.down });
        break;
      }
      case 'min':
      case 'burst': {
        const found = this.subject(cmd.id);
        if (!found) break;
        iface = found.iface;
        if (cmd.op === 'min') found.subject.min = cmd.min;
        else found.subject.burst = cmd.burst;
        break;
      }
      case 'rates': {
        rates = [];
        for (const change of cmd.changes) {
          const found = this.subject(change.id);
          if (!found || found.iface !== cmd.iface || rates.some((r) => r.subjectId === found.subject.id)) continue;
          const s = found.subject;
          rates.push({ subjectId: s.id, previous: { upKbps: s.up, downKbps: s.down, ...(s.min > 0 ? { minKbps: s.min } : {}), ...(s.burst ? { burst: { ...s.burst } } : {}) } });
          if (change.up !== undefined) s.up = change.up;
          if (change.down !== undefined) s.down = change.down;
          if (change.min !== undefined) s.min = change.min;
          if (change.burst !== undefined) s.burst = change.burst;
        }
        if (rates.length === 0) rates = undefined;
        break;
      }
      case 'del-leaf':
      case 'swap-leaf': {
        const tree = await this.readTree(cmd.iface, cmd.side);
        const leaves = (tree?.qdiscs ?? []).filter((q) => q.parent?.startsWith('1:') === true);
        const leaf = leaves[cmd.pick % Math.max(1, leaves.length)];
        if (!leaf?.parent) break;
        const device = this.device(cmd.iface, cmd.side);
        await this.handEdit(['tc', 'qdisc', 'del', 'dev', device, 'parent', leaf.parent]);
        if (cmd.op === 'swap-leaf') {
          const spec = leaf.kind === 'tbf' ? ['pfifo', 'limit', '10'] : ['tbf', 'rate', '1000kbit', 'burst', '5000', 'limit', '10000'];
          await this.handEdit(['tc', 'qdisc', 'add', 'dev', device, 'parent', leaf.parent, 'handle', leaf.handle, ...spec]);
        }
        break;
      }
      case 'caps': {
        const peer = this.peers.get(cmd.id);
        if (!peer) break;
        if (cmd.up !== undefined) peer.up = cmd.up;
        if (cmd.down !== undefined) peer.down = cmd.down;
        break;
      }
      case 'addresses': {
        const peer = this.peers.get(cmd.id);
        if (peer) peer.addresses = this.freeAddresses(cmd.id, cmd.addresses);
        break;
      }
      case 'delete':
        this.peers.delete(cmd.id);
        break;
      case 'vm': {
        const vm = this.vms.get(cmd.iface);
        if (vm) Object.assign(vm, { up: cmd.up, down: cmd.down });
        else this.vms.set(cmd.iface, { id: `vm-${cmd.iface}`, classMinor: 2, addresses: [], up: cmd.up, down: cmd.down, min: 0, burst: null });
        break;
      }
      case 'vm-delete':
        this.vms.delete(cmd.iface);
        break;
      case 'iface-delete':
        if (this.exists.get(cmd.iface)) this.sim.deleteDevice(cmd.iface, NETNS);
        this.exists.set(cmd.iface, false);
        break;
      case 'iface-create':
        if (!this.exists.get(cmd.iface)) this.sim.addDevice(cmd.iface, { netns: NETNS, kind: cmd.iface === WG ? 'wireguard' : 'veth' });
        this.exists.set(cmd.iface, true);
        break;
      case 'flush-root':
        await this.handEdit(['tc', 'qdisc', 'del', 'dev', this.device(cmd.iface, cmd.side), 'root']);
        break;
      case 'del-class': {
        const tree = await this.readTree(cmd.iface, cmd.side);
        const classes = tree?.classes ?? [];
        const victim = classes[cmd.pick % Math.max(1, classes.length)];
        if (victim) await this.handEdit(['tc', 'class', 'del', 'dev', this.device(cmd.iface, cmd.side), 'classid', victim.classid]);
        break;
      }
      case 'del-prio': {
        const tree = await this.readTree(cmd.iface, cmd.side);
        const prios = [...new Set((tree?.filters ?? []).map((f) => f.prio))];
        const prio = prios[cmd.pick % Math.max(1, prios.length)];
        if (prio !== undefined) await this.handEdit(['tc', 'filter', 'del', 'dev', this.device(cmd.iface, cmd.side), 'parent', '1:', 'prio', String(prio)]);
        break;
      }
      case 'foreign-filter': {
        const tree = await this.readTree(cmd.iface, cmd.side);
        const minors = (tree?.classes ?? []).map((c) => c.minor);
        const minor = minors[cmd.pick % Math.max(1, minors.length)] ?? 0xffff;
        const matches = [['u32', '0', '0'], ['ip', 'dst', '10.77.1.0/24'], ['ip6', 'src', 'fd77::/64']][cmd.pick % 3] ?? [];
        await this.handEdit(['tc', 'filter', 'add', 'dev', this.device(cmd.iface, cmd.side), 'parent', '1:', 'prio', String(cmd.prio), 'protocol', 'all', 'u32', 'match', ...matches, 'flowid', `1:${minor.toString(16)}`]);
        break;
      }
      case 'legacy-tree': {
        if (!this.exists.get(cmd.iface)) break;
        const device = this.device(cmd.iface, cmd.side);
        const direction = cmd.side === 'egress' ? 'downKbps' : 'upKbps';
        const capped = this.desired(cmd.iface).subjects.filter((s) => s[direction] > 0);
        if (capped.length === 0) break;
        const lines = [
          ['qdisc', 'del', 'dev', device, 'root'],
          ['qdisc', 'add', 'dev', device, 'root', 'handle', '1:', 'htb', 'default', 'ffff'],
          ['class', 'add', 'dev', device, 'parent', '1:', 'classid', '1:ffff', 'htb', ...htbClassArgs(UNLIMITED_KBPS)],
          ...capped.flatMap((s) => [
            ['class', 'add', 'dev', device, 'parent', '1:', 'classid', `1:${s.classMinor.toString(16)}`, 'htb', ...htbClassArgs(s[direction])],
            ['qdisc', 'add', 'dev', device, 'parent', `1:${s.classMinor.toString(16)}`, 'handle', `${s.classMinor.toString(16)}:`, 'pfifo', 'limit', '200'],
          ]),
        ];
        for (const argv of lines) await this.handEdit(['tc', ...argv]);
        break;
      }
      case 'reconcile':
        break;
    }
    // What the plan may do: a hand edit anything; a panel edit never rebuilds a tree that stays; a
    // new guarantee, or a network cap that moves between two values (neither none), only changes
    // classes (and, for a network cap, the leaves of subjects whose burst it lets through or not).
    const after = this.totals.get(iface) ?? { up: 0, down: 0 };
    const moved = (side: 'up' | 'down') => totalsBefore[side] !== after[side] && (totalsBefore[side] === 0 || after[side] === 0);
    const scope: PlanScope = HAND_EDITS.has(cmd.op)
      ? 'any'
      : cmd.op === 'min'
        ? 'class-changes'
        : cmd.op === 'net' && !moved('up') && !moved('down')
          ? 'class-and-leaf-changes'
          : 'no-rebuild';
    await this.reconcileAndCheck(iface, JSON.stringify(cmd), rates, scope);
  }

  /** The devices of `iface` (itself, its IFB) whose root is the engine's HTB. */
  private async engineRoots(iface: Iface): Promise<Set<string>> {
    const roots = new Set<string>();
    if (!this.exists.get(iface)) return roots;
    const actual = await readActual(this.sim, iface, NETNS);
    for (const tree of [actual.egress, actual.ifb.tree]) if (tree?.qdiscs.some((q) => q.root && q.kind === 'htb' && q.handle === '1:')) roots.add(tree.device);
    return roots;
  }

  private async readTree(iface: Iface, side: Side): Promise<ActualTree | null> {
    if (!this.exists.get(iface)) return null;
    const actual = await readActual(this.sim, iface, NETNS);
    return side === 'egress' ? actual.egress : actual.ifb.tree;
  }

  /**
   * Reconciles `iface` (or applies `rates` through the fast path) and checks (a)-(d).
   * @param rates - the subjects whose values moved, with what the kernel had: `changeSubjectRates`.
   */
  async reconcileAndCheck(iface: Iface, what: string, rates?: RateChange[], scope: PlanScope = 'any'): Promise<void> {
    const desired = this.desired(iface);
    const rootsBefore = await this.engineRoots(iface);
    const fail = (message: string): never => {
      const totals = desired.totalUpKbps !== undefined ? ` (network caps up ${desired.totalUpKbps} down ${desired.totalDownKbps ?? 0})` : '';
      throw new CheckFailure(`after ${what} (step ${this.stepNo}) on ${iface}: ${message}\ndesired${totals}: ${JSON.stringify(desired.subjects)}`);
    };
    // (a) one reconcile (or fast path), no throw, and no refusal of the incremental plan (reconcile
    // would then rebuild the interface from scratch: it converges, but tore down every class to get there).
    const applied: Promise<ReconcileResult & { fastPath?: boolean }> = rates
      ? changeSubjectRates(desired, rates, this.sim, CAPS, { locks: LOCKS })
      : reconcileInterface(desired, this.sim, CAPS, { locks: LOCKS });
    const result = await applied.catch((error: unknown) => fail(`${rates ? 'changeSubjectRates' : 'reconcile'} threw: ${(error as Error).message}`));
    const { repaired } = result;
    const knownRepair = SKIP.has('vm-last-key') && /prio 1: Error: Cannot find specified filter chain/.test(repaired ?? '');
    if (repaired !== undefined && !knownRepair) fail(`the kernel refused the incremental plan (${repaired}); reconcile rebuilt the interface`);
    if (rates) World.rateSteps += 1;
    if (result.fastPath === true) {
      World.fastPaths += 1;
      const touching = result.operations.filter((o) => !isHitless(o));
      if (touching.length > 0) fail(`the fast path did more than class changes and tbf option changes:\n${formatOperations(touching)}`);
    }
    // Hitless: the plan stays within what the step may touch.
    const rootsAfter = await this.engineRoots(iface);
    const kept = new Set([...rootsBefore].filter((device) => rootsAfter.has(device)));
    const outside = result.operations.filter((o) => !withinScope(o, scope, kept));
    if (outside.length > 0) fail(`the plan of a step limited to ${scope} (trees kept on ${[...kept].join(', ') || 'none'}) also did:\n${formatOperations(outside)}`);
    // (b) one-pass convergence
    const again = await planFromKernel(desired, this.sim, CAPS);
    if (again.length > 0) fail(`a second plan is not empty:\n${formatOperations(again)}`);
    const actual = await readActual(this.sim, iface, NETNS);
    if (!this.exists.get(iface)) {
      if (actual.ifb.exists) fail(`the interface is gone but its IFB ${actual.ifb.name} is still there`);
      return;
    }
    for (const direction of ['down', 'up'] as Direction[]) this.checkSide(desired, actual, direction, fail);
  }

  /** (c) and (d) for one direction. */
  private checkSide(desired: DesiredInterface, actual: ActualInterface, direction: Direction, fail: (message: string) => never): void {
    const { side } = placementOf(desired.kind, direction);
    const total = totalOn(desired, side);
    const rejected = rejectedSubjects(desired);
    const members = desired.subjects.filter((s) => hasClassOn(s, side, total) && !rejected.has(s.id)).sort((a, b) => a.classMinor - b.classMinor);
    const tree = side === 'egress' ? actual.egress : actual.ifb.tree;
    const root = tree?.qdiscs.find((q) => q.root) ?? null;
    if (members.length === 0) {
      // Unlimited costs nothing: no subject shaped on this side (none capped, and no subject at all
      // under a network cap), no engine qdisc; a network cap alone builds no tree (9ad0e51).
      if (root?.kind === 'htb') fail(`no subject is shaped ${direction}, but ${tree?.device} still has an HTB root`);
      if (side === 'ifb') {
        if (actual.ifb.exists) fail(`no subject is shaped up, but the IFB ${actual.ifb.name} exists`);
        if (actual.egress?.qdiscs.some((q) => q.kind === 'ingress')) fail('no subject is shaped up, but the ingress qdisc is still there');
      }
      return;
    }
    if (side === 'ifb') {
      if (!actual.ifb.exists || !actual.ifb.up) fail(`up is shaped but the IFB is ${actual.ifb.exists ? 'down' : 'missing'}`);
      const redirects = actual.ingressFilters.filter((f) => f.mirredTo !== undefined);
      if (redirects.length !== 1 || redirects[0]?.mirredTo !== actual.ifb.name) fail(`ingress redirect is ${JSON.stringify(redirects.map((r) => r.mirredTo))}`);
    }
    if (!tree || root?.kind !== 'htb' || root.handle !== '1:' || htbDefaultMinor(root) !== 0xffff) fail(`${direction}: no engine HTB root on ${tree?.device ?? '?'}: ${JSON.stringify(root)}`);
    const t = tree as ActualTree;
    const shape = treeShape(desired, side, members);
    checkShape(shape, members, total, (message) => fail(`${direction}: treeShape: ${message}`));
    // Classes: 1:1 at the root, everything else under it, each at the rate and ceil of the shape.
    const classes = new Map(t.classes.filter((c) => c.kind === 'htb').map((c) => [c.minor, c]));
    const expected = new Map<number, { rateKbps: number; ceilKbps: number }>([[1, shape.root], [0xffff, shape.unlimited], ...shape.subjects]);
    const hexes = (minors: Iterable<number>): string => [...minors].sort((a, b) => a - b).map((m) => m.toString(16)).join(',');
    if (classes.size !== expected.size || [...expected.keys()].some((m) => !classes.has(m))) fail(`${direction}: classes ${hexes(classes.keys())} instead of ${hexes(expected.keys())}`);
    for (const [minor, want] of expected) {
      const cls = classes.get(minor);
      const parent = minor === 1 ? null : '1:1';
      if (cls?.parent !== parent) fail(`${direction}: class 1:${minor.toString(16)} hangs under ${cls?.parent ?? 'the root'}, not ${parent ?? 'the root'}`);
      if (cls?.rateBits !== printedRateBits(want.rateKbps) || cls.ceilBits !== printedRateBits(want.ceilKbps)) {
        fail(`${direction}: class 1:${minor.toString(16)} at rate ${cls?.rateBits} ceil ${cls?.ceilBits} bit/s, not ${want.rateKbps}/${want.ceilKbps} kbit/s`);
      }
    }
    // Leaves: a tbf exactly where the subject bursts on this side, the probe's leaf elsewhere.
    for (const [minor, want] of shape.subjects) {
      const leaf = t.qdiscs.find((q) => q.parent === `1:${minor.toString(16)}`);
      const kind = want.tbf ? 'tbf' : CAPS.leaf;
      if (leaf?.kind !== kind || leaf.handle !== `${minor.toString(16)}:`) fail(`${direction}: leaf of 1:${minor.toString(16)} is ${leaf ? `${leaf.kind} ${leaf.handle}` : 'missing'}, not ${kind} ${minor.toString(16)}:`);
      if (want.tbf) {
        // As the kernel prints the bucket the plan asked for; a reconcile leaves a bucket within 0.1 %
        // of the wanted one alone (the planner's tolerance for tc's rounding), the fast path does not.
        const shown = tbfShown(bytesPerSecond(want.tbf.kbps), want.tbf.depthBytes, TBF_LIMIT_BYTES);
        const got = (leaf?.options ?? {}) as Record<string, unknown>;
        const near = (key: 'burst' | 'lat', slack: number): boolean => typeof got[key] === 'number' && Math.abs(got[key] - (shown[key] ?? NaN)) <= slack;
        const queue = shown.limit !== undefined ? got.limit === shown.limit && got.lat === undefined : got.limit === undefined && near('lat', 1000 + (shown.lat ?? 0) / 100);
        if (got.rate !== shown.rate || !near('burst', 2 + want.tbf.depthBytes / 1000) || !queue) {
          fail(`${direction}: tbf of 1:${minor.toString(16)} shows ${JSON.stringify(leaf?.options)}, not ${JSON.stringify(shown)}`);
        }
      }
    }
    const stray = t.qdiscs.filter((q) => !q.root && q.kind !== 'ingress' && !shape.subjects.has(parseInt(q.parent?.split(':')[1] ?? '', 16)));
    if (stray.length > 0) fail(`${direction}: stray qdiscs ${stray.map((q) => `${q.kind} ${q.handle} under ${q.parent ?? '?'}`).join(', ')}`);
    // (d) classification
    const random = seededRandom(this.stepNo * 7919 + (direction === 'up' ? 1 : 0));
    const packets: number[][] = [];
    if (desired.kind === 'vm') packets.push([10, 0, 0, 1], [0xfd, ...new Array<number>(15).fill(1)]);
    for (const subject of desired.subjects) for (const cidr of subject.addresses) packets.push(...samplesIn(parseCidr(cidr), random));
    for (let i = 0; i < 6; i += 1) {
      packets.push([10, 77, Math.floor(random() * 32), Math.floor(random() * 256)]);
      packets.push([0xfd, 0x77, ...Array.from({ length: 14 }, (_, j) => (j < 5 || random() < 0.5 ? 0 : Math.floor(random() * 256)))]);
    }
    const owners = desired.subjects.flatMap((s) => s.addresses.map((cidr) => ({ subject: s, prefix: parseCidr(cidr) })));
    let fromRead: (packet: Packet) => number;
    try {
      // htb_classify sends a packet filtered to an inner class (1:1) through that class's own filters
      // (none), then to the default class, as if the class did not exist: leave inner classes out.
      const parents = new Set(t.classes.map((c) => c.parent));
      fromRead = treeClassifier({ ...t, classes: t.classes.filter((c) => !parents.has(c.classid)) });
    } catch (error) {
      fail(`${direction}: the tree as read cannot be evaluated: ${(error as Error).message}`);
    }
    const fromKernel = this.sim.classifier(t.device, NETNS);
    for (const address of packets) {
      const family: 4 | 6 = address.length === 4 ? 4 : 6;
      const other = family === 4 ? [192, 0, 2, 1] : [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(12).fill(0)];
      // down is classified by destination (traffic to the subject), up by source.
      const packet: Packet = direction === 'down' ? { family, src: other, dst: address } : { family, src: address, dst: other };
      let want = 0xffff;
      if (desired.kind === 'vm') {
        want = members[0]?.classMinor ?? 0xffff;
      } else {
        const covering = owners.filter((o) => o.prefix.family === family && contains(o.prefix, address)).sort((a, b) => b.prefix.length - a.prefix.length);
        const best = covering[0];
        // A subject the planner could not place: where its packets go is not specified.
        if (best && rejected.has(best.subject.id)) continue;
        if (best && shape.subjects.has(best.subject.classMinor)) want = best.subject.classMinor;
        // Exploration knob: skip the packets of an unshaped subject nested in a shaped one's prefix.
        else if (SKIP.has('nested-uncapped') && covering.some((o) => shape.subjects.has(o.subject.classMinor))) continue;
      }
      const addressText = formatPrefix({ family, bytes: address, length: family === 4 ? 32 : 128 });
      const read = fromRead(packet);
      const truth = fromKernel(packet);
      if (read !== want || truth !== want) {
        fail(`${direction}: ${addressText} lands in 1:${read.toString(16)} (kernel walk incl. orphans: 1:${truth?.toString(16)}), expected 1:${want.toString(16)}`);
      }
    }
  }
}

/**
 * `treeShape` against the spec (/tmp/i14/SPEC.md, "Kernel tree"), from the subjects' own numbers: the
 * root is the network cap (unlimited without one); a subject's ceil is its cap (at most the network
 * cap; the network cap when it has none), or its burst rate where it bursts; without a network cap
 * rate = ceil; under one a subject with a minimum gets it (at most its ceil), the others an equal
 * share of what is left (at least 8 kbit/s, at most their ceil); a tbf at the cap exactly where the
 * burst rate is above a cap > 0 and the ceil lets it through.
 */
function checkShape(shape: TreeShape, members: readonly DesiredSubject[], total: number, fail: (message: string) => never): void {
  const root = total > 0 ? total : UNLIMITED_KBPS;
  if (shape.root.rateKbps !== root || shape.root.ceilKbps !== root) fail(`1:1 at ${shape.root.rateKbps}/${shape.root.ceilKbps}, not ${root}`);
  if (shape.unlimited.ceilKbps !== root || shape.unlimited.rateKbps > root) fail(`1:ffff at ${shape.unlimited.rateKbps}/${shape.unlimited.ceilKbps} under ${root}`);
  if (shape.subjects.size !== members.length) fail(`${shape.subjects.size} subjects shaped, not ${members.length}`);
  const side = shape.side;
  const ceilings = new Map<number, number>();
  for (const s of members) {
    const got = shape.subjects.get(s.classMinor);
    if (!got) fail(`no class for ${s.id}`);
    const cap = capOn(s, side);
    const capped = cap > 0 ? (total > 0 ? Math.min(cap, total) : cap) : total;
    const bursting = s.burst !== undefined && cap > 0 && s.burst.kbps > cap;
    const ceil = bursting && s.burst ? (total > 0 ? Math.min(s.burst.kbps, total) : s.burst.kbps) : capped;
    ceilings.set(s.classMinor, capped);
    if (got.ceilKbps !== ceil) fail(`${s.id}: ceil ${got.ceilKbps}, not ${ceil}`);
    if (got.rateKbps > got.ceilKbps) fail(`${s.id}: rate ${got.rateKbps} above its ceil ${got.ceilKbps}`);
    if (total === 0 && got.rateKbps !== got.ceilKbps) fail(`${s.id}: rate ${got.rateKbps} below its ceil ${got.ceilKbps} without a network cap`);
    if (total > 0 && got.rateKbps < Math.min(MIN_SHARE_KBPS, got.ceilKbps)) fail(`${s.id}: guarantee ${got.rateKbps} below ${MIN_SHARE_KBPS}`);
    const tbf = bursting && ceil > cap;
    if (tbf !== (got.tbf !== undefined)) fail(`${s.id}: ${tbf ? 'bursts but has no tbf' : 'has a tbf but does not burst'}`);
    if (got.tbf && (got.tbf.kbps !== cap || !(got.tbf.depthBytes > 0) || got.tbf.depthBytes > Math.max(s.burst?.bytes ?? 0, burstBytes(cap)))) {
      fail(`${s.id}: tbf ${JSON.stringify(got.tbf)} for cap ${cap} and burst ${JSON.stringify(s.burst)}`);
    }
  }
  if (total === 0) return;
  // Guarantees: the default class keeps MIN_SHARE_KBPS; minimums first (scaled down when they do not fit).
  const budget = Math.max(0, total - MIN_SHARE_KBPS);
  const explicit = members.filter((s) => (s.minKbps ?? 0) > 0);
  const rest = members.filter((s) => !((s.minKbps ?? 0) > 0));
  const wanted = explicit.reduce((sum, s) => sum + Math.min(s.minKbps ?? 0, ceilings.get(s.classMinor) ?? 0), 0);
  const rateOf = (s: DesiredSubject): number => shape.subjects.get(s.classMinor)?.rateKbps ?? -1;
  const ceilOf = (s: DesiredSubject): number => shape.subjects.get(s.classMinor)?.ceilKbps ?? -1;
  if (wanted <= budget) {
    for (const s of explicit) {
      const want = Math.min(Math.max(MIN_SHARE_KBPS, Math.min(s.minKbps ?? 0, ceilings.get(s.classMinor) ?? 0)), ceilOf(s));
      if (rateOf(s) !== want) fail(`${s.id}: guarantee ${rateOf(s)}, not its minimum ${want}`);
    }
  } else if (explicit.reduce((sum, s) => sum + rateOf(s), 0) > budget + MIN_SHARE_KBPS * explicit.length) {
    fail(`minimums ${wanted} over ${budget} were not scaled down: ${explicit.map(rateOf).join('+')}`);
  }
  // What is left for the others: the minimums given, each counted at least MIN_SHARE_KBPS (a subject
  // capped below it is guaranteed its cap, the planner books MIN_SHARE_KBPS for it: either is fine).
  const given = explicit.reduce((sum, s) => sum + rateOf(s), 0);
  const booked = explicit.reduce((sum, s) => sum + Math.max(MIN_SHARE_KBPS, rateOf(s)), 0);
  const shareOf = (used: number): number => (rest.length === 0 ? 0 : Math.floor(Math.max(0, budget - used) / rest.length));
  for (const s of rest) {
    const wants = [shareOf(given), shareOf(booked)].map((share) => Math.min(Math.max(MIN_SHARE_KBPS, Math.min(share, ceilings.get(s.classMinor) ?? 0)), ceilOf(s)));
    if (!wants.includes(rateOf(s))) fail(`${s.id}: guarantee ${rateOf(s)}, not the equal share ${wants.join(' or ')} (of ${budget - given} left for ${rest.length})`);
  }
  const sum = members.reduce((acc, s) => acc + rateOf(s), 0) + shape.unlimited.rateKbps;
  if (sum > total && members.every((s) => rateOf(s) > MIN_SHARE_KBPS)) fail(`guarantees add up to ${sum}, over the network cap ${total}`);
}

// ---- generators ----

const KBPS = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 5, arbitrary: fc.constantFrom(1, 64, 1000, 1234, 2000, 8000, 20000, 100000, 1234567) });
const IPV4 = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(0, 1, 20, 21, 23), fc.integer({ min: 0, max: 255 })).map(([c, d]) => `10.77.${c}.${d}/32`) },
  { weight: 2, arbitrary: fc.constantFrom('10.77.1.0/24', '10.77.20.0/24', '10.77.20.0/22', '10.77.0.0/16', '10.78.0.0/16', '10.77.1.112/30', '10.77.1.113/31', '10.77.21.0/25') },
  { weight: 1, arbitrary: fc.constantFrom('0.0.0.0/0', '10.0.0.0/8', '10.77.16.0/20') },
);
const IPV6 = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x1ff }).map((n) => `fd77::${n.toString(16)}/128`) },
  { weight: 2, arbitrary: fc.constantFrom('fd77::/64', 'fd77:0:0:1::/64', 'fd77::/48', 'fd77::100/120', 'fd77::12e/127', 'fd77::/63') },
  { weight: 1, arbitrary: fc.constantFrom('::/0', 'fd00::/8', 'fd77::/16') },
);
const ADDRESSES = fc.array(fc.oneof(IPV4, IPV6), { minLength: 0, maxLength: 3 });
const PEER_ID = fc.integer({ min: 0, max: 23 }).map((n) => `p${n}`);
const IFACE = fc.constantFrom<Iface>(WG, WG, WG, ...TAPS);
const SIDE = fc.constantFrom<Side>('egress', 'ifb');
/** A peer, or a tap for its VM. */
const SUBJECT_ID = fc.oneof({ weight: 5, arbitrary: PEER_ID }, { weight: 1, arbitrary: fc.constantFrom<string>(...TAPS) });
const TOTAL = fc.constantFrom(0, 0, 8, 1000, 5000, 30000, 100000, 1234567);
const MIN = fc.constantFrom(0, 0, 8, 1000, 5000, 12000, 30000, 1234567);
/** Burst rates below, at and above the caps; buckets from one frame to past what the kernel's 32-bit dump holds. */
const BURST = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  {
    weight: 3,
    arbitrary: fc.record({
      kbps: fc.constantFrom(5, 1000, 2000, 8000, 20000, 30000, 100000, 1234567, 100_000_000),
      bytes: fc.constantFrom(1, 3028, 12345, 250_000, 500_000, 5_000_000, 90_000_000, 4_294_967_296),
    }),
  },
);
const CHANGE: fc.Arbitrary<SubjectChange> = fc.record({ id: SUBJECT_ID, up: KBPS, down: KBPS, min: MIN, burst: BURST }, { requiredKeys: ['id'] });

const CMD: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('peer' as const), id: PEER_ID, addresses: ADDRESSES, up: KBPS, down: KBPS }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('caps' as const), id: PEER_ID, up: KBPS, down: KBPS }, { requiredKeys: ['op', 'id'] }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('caps' as const), id: PEER_ID, up: fc.constant(0), down: fc.constant(0) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('addresses' as const), id: PEER_ID, addresses: ADDRESSES }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), id: PEER_ID }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('vm' as const), iface: fc.constantFrom<Iface>(...TAPS), up: KBPS, down: KBPS }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('vm-delete' as const), iface: fc.constantFrom<Iface>(...TAPS) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('iface-delete' as const), iface: IFACE }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('iface-create' as const), iface: IFACE }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('flush-root' as const), iface: IFACE, side: SIDE }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('del-class' as const), iface: IFACE, side: SIDE, pick: fc.nat(50) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('del-prio' as const), iface: IFACE, side: SIDE, pick: fc.nat(50) }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('foreign-filter' as const), iface: IFACE, side: SIDE, prio: fc.constantFrom(1, 2, 4, 5, 6, 10, 11, 100, 999, 49151), pick: fc.nat(50) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reconcile' as const), iface: IFACE }) },
  // Issue 14: network caps, shares, bursts, several subjects' rates at once, and leaves changed by hand.
  { weight: 3, arbitrary: fc.record({ op: fc.constant('net' as const), iface: IFACE, up: TOTAL, down: TOTAL }, { requiredKeys: ['op', 'iface'] }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('min' as const), id: SUBJECT_ID, min: MIN }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('burst' as const), id: SUBJECT_ID, burst: BURST }) },
  {
    weight: 7,
    arbitrary: fc.oneof(
      fc.record({ op: fc.constant('rates' as const), iface: fc.constant<Iface>(WG), changes: fc.array(CHANGE, { minLength: 1, maxLength: 4 }) }),
      fc
        .tuple(fc.constantFrom<Iface>(...TAPS), CHANGE)
        .map(([tap, change]): Cmd => ({ op: 'rates', iface: tap, changes: [{ ...change, id: tap }] })),
    ),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('del-leaf' as const), iface: IFACE, side: SIDE, pick: fc.nat(50) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('swap-leaf' as const), iface: IFACE, side: SIDE, pick: fc.nat(50) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('legacy-tree' as const), iface: IFACE, side: SIDE }) },
);

/** Runs a scenario in a fresh world; throws the first failed check. */
export async function runScenario(cmds: readonly Cmd[]): Promise<void> {
  const world = new World();
  for (const cmd of cmds) await world.step(cmd);
}

function seedFromEnv(): number {
  const text = process.env.PBW_SEED;
  if (text !== undefined && text !== '') {
    const seed = Number(text);
    if (!Number.isInteger(seed)) throw new TypeError(`Expected PBW_SEED to be an integer, got ${JSON.stringify(text)}`);
    return seed;
  }
  return (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
}

test('random panel actions and hand edits: every reconcile converges in one pass to the exact tree, classifying by longest prefix', async (t: TestContext) => {
  const seed = seedFromEnv();
  const numRuns = Number(process.env.PBW_RUNS ?? 180);
  const note = `model-based seed ${seed} (replay: PBW_SEED=${seed} node --import tsx --test test/unit/shaping/model-based.test.ts)`;
  t.diagnostic(note);
  console.log(note);
  World.steps = 0;
  World.rateSteps = 0;
  World.fastPaths = 0;
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(fc.array(CMD, { minLength: 1, maxLength: 80, size: 'max' }), async (cmds) => {
      await runScenario(cmds);
    }),
    { seed, numRuns, endOnFailure: process.env.PBW_SHRINK === '0' },
  );
  const summary = `model-based: ${numRuns} runs, ${World.steps} steps (${World.rateSteps} through changeSubjectRates, ${World.fastPaths} of them on its fast path) in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${seed})`;
  t.diagnostic(summary);
  console.log(summary);
  assert.ok(World.steps >= 5000 || process.env.PBW_RUNS !== undefined, `expected at least 5,000 steps, ran ${World.steps}`);
});

// ---- regressions: every failing sequence found by the property above, by name ----

/** A failing sequence, kept by name; `open` marks one the planner does not pass yet (a `todo` test). */
const regression = (name: string, cmds: Cmd[], open?: string): void => {
  test(name, open === undefined ? {} : { todo: open }, async () => {
    const before = new Set(SKIP);
    SKIP.clear(); // a regression is always checked strictly
    try {
      await runScenario(cmds);
    } finally {
      for (const known of before) SKIP.add(known);
    }
  });
};

regression("wedge: deleting the last IPv4 peer's up cap orphaned table 10: (issue 9)", [
  { op: 'peer', id: 'c1', addresses: ['fd77::d0/128'], up: 100000, down: 1000 },
  { op: 'peer', id: 'c2', addresses: ['10.77.1.113/32'], up: 20000, down: 8000 },
  { op: 'peer', id: 'c3', addresses: ['fd77::12f/128'], up: 1000, down: 5000 },
  { op: 'caps', id: 'c2', down: 1234 },
  { op: 'caps', id: 'c3', up: 0, down: 2000 },
  { op: 'caps', id: 'c3', up: 1234, down: 1234 },
  { op: 'caps', id: 'c2', up: 0 },
]);

regression(
  'nested prefixes: a peer not capped up, inside a peer capped up, must not be shaped by the covering peer (found by seed 1)',
  [
    { op: 'peer', id: 'p0', addresses: ['0.0.0.0/0'], up: 1, down: 0 },
    { op: 'peer', id: 'p1', addresses: ['10.77.0.0/32'], up: 0, down: 1 },
  ],
);

regression(
  'VM tree with a foreign key at prio 1: the repair must not delete the prio its last key already took with it (found by seed 5)',
  [
    { op: 'vm', iface: 'tap2', up: 1, down: 1 },
    { op: 'foreign-filter', iface: 'tap2', side: 'egress', prio: 1, pick: 0 },
  ],
);

// Issue 14.

regression('a tbf whose queue outlasts its bucket prints `lat`, not `limit`: the leaf must not be replaced on every pass (found with tc-sim)', [
  { op: 'peer', id: 'p0', addresses: ['10.77.0.2/32'], up: 0, down: 10000 },
  { op: 'burst', id: 'p0', burst: { kbps: 20000, bytes: 500000 } },
  { op: 'reconcile', iface: 'wg0' },
]);

regression('a bucket longer than 2^32 ticks of 64 ns is dumped wrapped: the depth is clamped, the tree converges (found with tc-sim)', [
  { op: 'peer', id: 'p0', addresses: ['10.77.0.2/32'], up: 0, down: 1000 },
  { op: 'burst', id: 'p0', burst: { kbps: 10000, bytes: 100_000_000 } },
  { op: 'reconcile', iface: 'wg0' },
]);

regression('a network cap below the burst rate moves the tbf depth by less than tc rounds: the leaf stays (found by seed 4)', [
  { op: 'peer', id: 'p21', addresses: [], up: 64, down: 0 },
  { op: 'burst', id: 'p21', burst: { kbps: 1234567, bytes: 250000 } },
  { op: 'net', iface: 'wg0', up: 100000 },
  { op: 'flush-root', iface: 'wg0', side: 'egress' },
]);

regression(
  'a VM interface under a network cap loses its VM: its match-all key must not outlive its class (found by seed 1)',
  [
    { op: 'vm', iface: 'tap1', up: 0, down: 1000 },
    { op: 'net', iface: 'tap1', down: 30000 },
    { op: 'vm-delete', iface: 'tap1' },
  ],
);
