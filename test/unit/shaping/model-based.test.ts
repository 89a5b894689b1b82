/**
 * Model-based test of the shaping core (issue 9): random sequences of panel actions and hand edits,
 * each followed by ONE `reconcileInterface` against the simulated kernel (test/support/tc-sim.ts,
 * checked against the real kernel by tc-sim-kernel.test.ts), then:
 *   (a) the reconcile did not throw;
 *   (b) it converged in one pass: a second plan from the kernel's state is empty;
 *   (c) each device carries exactly the engine's tree: one HTB class per capped subject direction at
 *       its printed rate, plus 1:ffff; no tree, ingress or IFB where nothing is capped;
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
import { formatOperations } from '../../../src/shaping/operations.js';
import { htbDefaultMinor } from '../../../src/shaping/parse-qdisc-json.js';
import { UNLIMITED_KBPS, printedRateBits } from '../../../src/shaping/rates.js';
import { readActual } from '../../../src/shaping/read.js';
import { planFromKernel, reconcileInterface } from '../../../src/shaping/reconcile.js';
import { TcSim } from '../../support/tc-sim.js';
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
 * `PBW_STRICT=1` checks them too, `PBW_SKIP=a,b` replaces the list while exploring. None is open now;
 * the two it found are fixed and kept as regressions below:
 * - `nested-uncapped`: packets of a subject not capped in a direction, whose prefix lies inside a
 *   capped subject's prefix, landed in the capped subject's class (fixed: a shield entry into 1:ffff);
 * - `vm-last-key`: the kernel refused the incremental plan with `filter del … prio 1: Cannot find
 *   specified filter chain` (the plan deleted the last key of the only tp, which takes the tp with
 *   it, then deleted the prio; fixed: root keys go with their priority).
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
  | { op: 'reconcile'; iface: Iface };

// ---- the world: desired state (the model) + the simulated kernel ----

interface WorldSubject {
  id: string;
  classMinor: number;
  addresses: string[];
  up: number;
  down: number;
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
  readonly exists = new Map<Iface, boolean>([
    [WG, true],
    ...TAPS.map((tap) => [tap, true] as [Iface, boolean]),
  ]);
  /** Steps run (all worlds), for the step count printed at the end. */
  static steps = 0;
  private stepNo = 0;

  constructor() {
    this.sim.addNamespace(NETNS);
    this.sim.addDevice(WG, { netns: NETNS, kind: 'wireguard' });
    for (const tap of TAPS) this.sim.addDevice(tap, { netns: NETNS, kind: 'veth' });
  }

  desired(iface: Iface): DesiredInterface {
    if (iface === WG) {
      const subjects: DesiredSubject[] = [...this.peers.values()].map((p) => ({ type: 'peer', id: p.id, classMinor: p.classMinor, addresses: [...p.addresses], upKbps: p.up, downKbps: p.down }));
      return { name: WG, netns: NETNS, kind: 'wireguard', subjects };
    }
    const vm = this.vms.get(iface);
    const subjects: DesiredSubject[] = vm ? [{ type: 'vm', id: vm.id, classMinor: vm.classMinor, addresses: [], upKbps: vm.up, downKbps: vm.down }] : [];
    return { name: iface, netns: NETNS, kind: 'vm', subjects };
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
    const iface: Iface = 'iface' in cmd ? cmd.iface : WG;
    switch (cmd.op) {
      case 'peer': {
        if (this.peers.has(cmd.id)) break;
        const minor = nextClassMinor([...this.peers.values()].map((p) => p.classMinor));
        this.peers.set(cmd.id, { id: cmd.id, classMinor: minor, addresses: this.freeAddresses(cmd.id, cmd.addresses), up: cmd.up, down: cmd.down });
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
        else this.vms.set(cmd.iface, { id: `vm-${cmd.iface}`, classMinor: 2, addresses: [], up: cmd.up, down: cmd.down });
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
      case 'reconcile':
        break;
    }
    await this.reconcileAndCheck(iface, JSON.stringify(cmd));
  }

  private async readTree(iface: Iface, side: Side): Promise<ActualTree | null> {
    if (!this.exists.get(iface)) return null;
    const actual = await readActual(this.sim, iface, NETNS);
    return side === 'egress' ? actual.egress : actual.ifb.tree;
  }

  async reconcileAndCheck(iface: Iface, what: string): Promise<void> {
    const desired = this.desired(iface);
    const fail = (message: string): never => {
      throw new CheckFailure(`after ${what} (step ${this.stepNo}) on ${iface}: ${message}\ndesired: ${JSON.stringify(desired.subjects)}`);
    };
    // (a) one reconcile, no throw, and no refusal of the incremental plan (reconcile would then
    // rebuild the interface from scratch: it converges, but tore down every class to get there).
    let repaired: string | undefined;
    try {
      repaired = (await reconcileInterface(desired, this.sim, CAPS, { locks: LOCKS })).repaired;
    } catch (error) {
      fail(`reconcile threw: ${(error as Error).message}`);
    }
    const knownRepair = SKIP.has('vm-last-key') && /prio 1: Error: Cannot find specified filter chain/.test(repaired ?? '');
    if (repaired !== undefined && !knownRepair) fail(`the kernel refused the incremental plan (${repaired}); reconcile rebuilt the interface`);
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
    const capped = desired.subjects.filter((s) => capOn(s, side) > 0);
    const tree = side === 'egress' ? actual.egress : actual.ifb.tree;
    const root = tree?.qdiscs.find((q) => q.root) ?? null;
    if (capped.length === 0) {
      if (root?.kind === 'htb') fail(`nothing is capped ${direction} but ${tree?.device} still has an HTB root`);
      if (side === 'ifb') {
        if (actual.ifb.exists) fail(`nothing is capped up but the IFB ${actual.ifb.name} exists`);
        if (actual.egress?.qdiscs.some((q) => q.kind === 'ingress')) fail('nothing is capped up but the ingress qdisc is still there');
      }
      return;
    }
    if (side === 'ifb') {
      if (!actual.ifb.exists || !actual.ifb.up) fail(`subjects are capped up but the IFB is ${actual.ifb.exists ? 'down' : 'missing'}`);
      const redirects = actual.ingressFilters.filter((f) => f.mirredTo !== undefined);
      if (redirects.length !== 1 || redirects[0]?.mirredTo !== actual.ifb.name) fail(`ingress redirect is ${JSON.stringify(redirects.map((r) => r.mirredTo))}`);
    }
    if (!tree || root?.kind !== 'htb' || root.handle !== '1:' || htbDefaultMinor(root) !== 0xffff) fail(`${direction}: no engine HTB root on ${tree?.device ?? '?'}: ${JSON.stringify(root)}`);
    const t = tree as ActualTree;
    const classes = new Map(t.classes.filter((c) => c.kind === 'htb').map((c) => [c.minor, c]));
    const expected = new Map<number, number>([[0xffff, UNLIMITED_KBPS], ...capped.map((s) => [s.classMinor, capOn(s, side)] as [number, number])]);
    if (classes.size !== expected.size || [...expected.keys()].some((m) => !classes.has(m))) {
      fail(`${direction}: classes ${[...classes.keys()].map((m) => m.toString(16)).join(',')} instead of ${[...expected.keys()].map((m) => m.toString(16)).join(',')}`);
    }
    for (const [minor, kbps] of expected) {
      const cls = classes.get(minor);
      if (cls?.rateBits !== printedRateBits(kbps) || cls.ceilBits !== printedRateBits(kbps)) fail(`${direction}: class 1:${minor.toString(16)} at ${cls?.rateBits}/${cls?.ceilBits} bit/s, not ${kbps} kbit/s`);
    }
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
      fromRead = treeClassifier(t);
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
        want = capped[0]?.classMinor ?? 0xffff;
      } else {
        const covering = owners.filter((o) => o.prefix.family === family && contains(o.prefix, address)).sort((a, b) => b.prefix.length - a.prefix.length);
        const best = covering[0];
        if (best && capOn(best.subject, side) > 0) want = best.subject.classMinor;
        // Exploration knob: skip the packets of an uncapped subject nested in a capped one's prefix.
        else if (SKIP.has('nested-uncapped') && covering.some((o) => capOn(o.subject, side) > 0)) continue;
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
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(fc.array(CMD, { minLength: 1, maxLength: 80, size: 'max' }), async (cmds) => {
      await runScenario(cmds);
    }),
    { seed, numRuns, endOnFailure: process.env.PBW_SHRINK === '0' },
  );
  const summary = `model-based: ${numRuns} runs, ${World.steps} steps in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${seed})`;
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
