/**
 * The oracle of the kernel model test: what the panel's database says against what the kernel holds.
 *
 * For the database: exactly the expected subjects, with their caps, guarantee, burst, the network's
 * defaults, addresses and interface, none `failed` or still `pending`, a class id for every subject
 * the kernel shapes (an effective cap, or a network cap on its interface), distinct per interface.
 * For the kernel (`readActual`, the engine's own reader): on the interface's egress (subjects' down)
 * and its IFB (subjects' up), the engine's tree — 1:1 at the root at the network cap of that side
 * (unlimited without one), under it the default class `1:ffff` and one class per subject with an
 * effective cap on that side (every subject when the side has a network cap; a network cap on an
 * interface without subjects shapes nothing) at the rate and ceil
 * `treeShape` gives for the expected state, one leaf under each (a tbf holding the cap where the
 * subject bursts), and nothing else of the engine's; a side with no cap and no network cap has no
 * tree, an interface with neither up has no ingress qdisc and no IFB. Filters are checked by
 * classifying packets: each subject's prefixes (first, last and a random address) must land in its
 * class when it has one on that side and in `1:ffff` otherwise; addresses outside every prefix land
 * in `1:ffff`; on a VM's tap every packet lands in the VM's class.
 */
import { execa } from 'execa';

import type { ActualInterface, ActualTree } from '../../src/shaping/actual.js';
import type { Executor } from '../../src/shaping/executor.js';
import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readActual } from '../../src/shaping/read.js';
import { bytesPerSecond, printedRateBits } from '../../src/shaping/rates.js';
import type { DesiredSubject } from '../../src/shaping/model.js';
import { hasClassOn, TBF_LIMIT_BYTES, treeShape, type TreeShape } from '../../src/shaping/tree-shape.js';
import { effectiveBurst, effectiveCaps } from '../../src/limits/effective.js';
import { tbfShown } from './tc-sim.js';
import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { baseOf, contains, formatAddress, lastOf, parseCidr, randomAddress, randomInside, type Cidr } from './kernel-model-addresses.js';
import { waitFor } from './lab.js';
import { classify } from './u32-eval.js';
import type { PanelProcess } from './lab-panel.js';

/**
 * `classify` of the u32 evaluator: the class minor a packet lands in, by the tree's u32 filters.
 * Without one ({@link checkActual} with null) the filters' keys are decoded instead, which proves
 * less: not that a hash bucket is the right one.
 */
export type Classifier = typeof classify;

/** Minor of the class unlimited traffic goes to (the HTB default). */
export const DEFAULT_MINOR = 0xffff;

/** A subject as the model expects the database to hold it. */
export interface ExpectedSubject {
  type: 'peer' | 'vm';
  id: number;
  interface: string;
  /** Peers: allowed IPs (CIDR); VMs: []. */
  addresses: string[];
  /** Own caps (kbit/s, 0 = none). */
  up: number;
  down: number;
  /** Guarantee and burst (0 = none). @default 0 */
  min?: number;
  burstKbps?: number;
  burstBytes?: number;
  /** The network's default caps, materialized on the row (peers). @default 0 */
  defaultUp?: number;
  defaultDown?: number;
}

/** An interface's network caps (kbit/s, 0 = none). */
export interface InterfaceTotals {
  up: number;
  down: number;
}

/** The caps the kernel holds for a subject: its own, else the network's default (no quotas here). */
function effectiveOf(subject: ExpectedSubject): { up: number; down: number } {
  const caps = effectiveCaps({ upKbps: subject.up, downKbps: subject.down, defaultUpKbps: subject.defaultUp ?? 0, defaultDownKbps: subject.defaultDown ?? 0 });
  return { up: caps.upKbps, down: caps.downKbps };
}

/** One row of `GET /api/bandwidth/limits`. */
export interface LimitJson {
  subject_type: 'peer' | 'vm';
  subject_id: string;
  interface: string;
  netns: string | null;
  addresses: string[];
  bandwidth_up_kbps: number;
  bandwidth_down_kbps: number;
  bandwidth_min_kbps?: number;
  bandwidth_burst_kbps?: number;
  bandwidth_burst_bytes?: number;
  default_up_kbps?: number;
  default_down_kbps?: number;
  bandwidth_status: string;
  bandwidth_error: string | null;
  class_id: string | null;
}

const keyOf = (type: string, id: number | string): string => `${type}:${String(id)}`;

/** Every limit row, once none is `pending` any more (or after `timeoutMs`, as they are). */
export async function readLimits(panel: PanelProcess, timeoutMs = 10_000): Promise<LimitJson[]> {
  const all = async (): Promise<LimitJson[]> => {
    const response = await panel.get('/api/bandwidth/limits?per_page=500');
    if (response.status !== 200) throw new Error(`GET /api/bandwidth/limits: ${response.status} ${response.text.slice(0, 300)}`);
    return response.body.limits as LimitJson[];
  };
  try {
    return await waitFor('no limit to be pending', async () => {
      const rows = await all();
      return rows.some((row) => row.bandwidth_status === 'pending') ? undefined : rows;
    }, timeoutMs);
  } catch {
    return all();
  }
}

const sameAddresses = (a: string[], b: string[]): boolean => {
  const canon = (list: string[]) => list.map((text) => { const c = parseCidr(text); return `${c.family}/${formatAddress(c.family, c.bytes)}/${c.length}`; }).sort().join(' ');
  return canon(a) === canon(b);
};

/** Minor of `1:<hex>`, or null. */
export function minorOf(classId: string | null): number | null {
  if (classId === null || !/^1:[0-9a-f]+$/.test(classId)) return null;
  return parseInt(classId.slice(2), 16);
}

/**
 * Differences between the expected subjects and the stored limits (empty when they agree).
 * @param totals - network caps by interface name (none when absent).
 */
export function compareDatabase(expected: ExpectedSubject[], limits: LimitJson[], totals: ReadonlyMap<string, InterfaceTotals> = new Map()): string[] {
  const problems: string[] = [];
  const rows = new Map(limits.map((row) => [keyOf(row.subject_type, row.subject_id), row]));
  const wanted = new Map(expected.map((subject) => [keyOf(subject.type, subject.id), subject]));
  for (const key of rows.keys()) if (!wanted.has(key)) problems.push(`db: ${key} is stored but should not exist`);
  const minorsByInterface = new Map<string, Map<number, string>>();
  for (const [key, subject] of wanted) {
    const row = rows.get(key);
    if (!row) {
      problems.push(`db: ${key} has no limit row`);
      continue;
    }
    const effective = effectiveOf(subject);
    // Limited (`applied`) with caps of its own or a network default; `unlimited` otherwise, even with
    // a class under a network cap.
    const status = effective.up > 0 || effective.down > 0 ? 'applied' : 'unlimited';
    const total = totals.get(subject.interface);
    const capped = status === 'applied' || (total !== undefined && (total.up > 0 || total.down > 0));
    if (row.bandwidth_up_kbps !== subject.up || row.bandwidth_down_kbps !== subject.down) {
      problems.push(`db: ${key} stores up ${row.bandwidth_up_kbps} down ${row.bandwidth_down_kbps}, expected up ${subject.up} down ${subject.down}`);
    }
    const stored = [row.bandwidth_min_kbps ?? 0, row.bandwidth_burst_kbps ?? 0, row.bandwidth_burst_bytes ?? 0, row.default_up_kbps ?? 0, row.default_down_kbps ?? 0];
    const wantedShare = [subject.min ?? 0, subject.burstKbps ?? 0, subject.burstBytes ?? 0, subject.defaultUp ?? 0, subject.defaultDown ?? 0];
    if (stored.join() !== wantedShare.join()) problems.push(`db: ${key} stores min/burst kbps/burst bytes/default up/default down ${stored.join('/')}, expected ${wantedShare.join('/')}`);
    if (row.interface !== subject.interface) problems.push(`db: ${key} is on ${row.interface}, expected ${subject.interface}`);
    if (!sameAddresses(row.addresses, subject.addresses)) problems.push(`db: ${key} has addresses ${row.addresses.join(',')}, expected ${subject.addresses.join(',')}`);
    if (row.bandwidth_status !== status) problems.push(`db: ${key} is ${row.bandwidth_status} (${row.bandwidth_error ?? 'no error'}), expected ${status}`);
    if (!capped) continue;
    const minor = minorOf(row.class_id);
    if (minor === null) {
      problems.push(`db: shaped ${key} has class id ${String(row.class_id)}`);
      continue;
    }
    const used = minorsByInterface.get(row.interface) ?? new Map<number, string>();
    minorsByInterface.set(row.interface, used);
    const other = used.get(minor);
    if (other !== undefined) problems.push(`db: ${key} and ${other} share class 1:${minor.toString(16)} on ${row.interface}`);
    used.set(minor, key);
  }
  return problems;
}

/** A subject on one interface as the kernel check sees it: the expectation and its stored class minor. */
export interface PlacedSubject extends ExpectedSubject {
  minor: number | null;
}

/** Joins expectations with the stored class ids. */
export function placeSubjects(expected: ExpectedSubject[], limits: LimitJson[]): PlacedSubject[] {
  const rows = new Map(limits.map((row) => [keyOf(row.subject_type, row.subject_id), row]));
  return expected.map((subject) => ({ ...subject, minor: minorOf(rows.get(keyOf(subject.type, subject.id))?.class_id ?? null) }));
}

type Side = 'egress' | 'ifb';

/**
 * Differences between one interface's kernel state and its subjects (empty when they agree).
 * `kind`: a `vm` tap belongs to one VM, classified whole; a `wireguard` interface by address.
 * `next` draws the random probes (seeded: a failing check can be replayed).
 */
export async function checkInterface(
  executor: Executor,
  netns: string,
  ifname: string,
  kind: 'wireguard' | 'vm',
  subjects: PlacedSubject[],
  next: () => number,
  totals: InterfaceTotals = { up: 0, down: 0 },
): Promise<string[]> {
  const actual = await readActual(executor, ifname, netns);
  return checkActual(actual, kind, subjects, next, classify, totals);
}

/** {@link checkInterface} on an already read interface. */
export function checkActual(
  actual: ActualInterface,
  kind: 'wireguard' | 'vm',
  subjects: PlacedSubject[],
  next: () => number,
  classify: Classifier | null,
  totals: InterfaceTotals = { up: 0, down: 0 },
): string[] {
  // A network cap shapes the subjects of its interface: without any, there is no tree (the panel finds
  // a network's caps through its subjects; the tree comes with the first and goes with the last).
  const shaping = subjects.some((s) => s.minor !== null) ? totals : { up: 0, down: 0 };
  const checkTree = (tree: ActualTree | null, side: Side, device: string) =>
    checkSide({ tree, side, kind, subjects, next, device, classify, total: side === 'egress' ? shaping.down : shaping.up });
  const problems: string[] = [];
  if (!actual.exists) return [`kernel: ${actual.name} does not exist`];
  problems.push(...checkTree(actual.egress, 'egress', actual.name));
  const ingress = actual.egress?.qdiscs.find((q) => q.kind === 'ingress');
  const upCapped = shaping.up > 0 || subjects.some((s) => s.minor !== null && effectiveOf(s).up > 0);
  if (upCapped) {
    if (!ingress) problems.push(`kernel: ${actual.name} has no ingress qdisc, but a subject is capped up`);
    const redirects = actual.ingressFilters.filter((f) => f.mirredTo !== undefined);
    if (redirects.length !== 1 || redirects[0]?.mirredTo !== actual.ifb.name) {
      problems.push(`kernel: ingress of ${actual.name} redirects to [${redirects.map((f) => f.mirredTo).join(', ')}], expected exactly [${actual.ifb.name}]`);
    }
    if (!actual.ifb.exists) problems.push(`kernel: IFB ${actual.ifb.name} of ${actual.name} does not exist`);
    else if (!actual.ifb.up) problems.push(`kernel: IFB ${actual.ifb.name} of ${actual.name} is down`);
    problems.push(...checkTree(actual.ifb.tree, 'ifb', actual.ifb.name));
  } else {
    if (ingress) problems.push(`kernel: ${actual.name} keeps an ingress qdisc, but nothing is capped up`);
    if (actual.ifb.exists) problems.push(`kernel: IFB ${actual.ifb.name} of ${actual.name} exists, but nothing is capped up`);
  }
  return problems;
}

interface SideContext {
  tree: ActualTree | null;
  side: Side;
  kind: 'wireguard' | 'vm';
  subjects: PlacedSubject[];
  next: () => number;
  device: string;
  classify: Classifier | null;
  /** The network cap on this side (0 = none). */
  total: number;
}

/** The subjects of one interface as the engine should shape them (`src/limits/desired.ts`, from the model). */
function desiredOf(subjects: PlacedSubject[]): DesiredSubject[] {
  return subjects.flatMap((s): DesiredSubject[] => {
    if (s.minor === null) return [];
    const effective = effectiveOf(s);
    const burst = effectiveBurst({ upKbps: s.up, downKbps: s.down, defaultUpKbps: s.defaultUp ?? 0, defaultDownKbps: s.defaultDown ?? 0, burstKbps: s.burstKbps ?? 0, burstBytes: s.burstBytes ?? 0 });
    return [{
      type: s.type, id: String(s.id), classMinor: s.minor, addresses: s.type === 'vm' ? [] : s.addresses, upKbps: effective.up, downKbps: effective.down,
      ...((s.min ?? 0) > 0 ? { minKbps: s.min } : {}), ...(burst ? { burst } : {}),
    }];
  });
}

function checkSide(ctx: SideContext): string[] {
  const { tree, side, subjects, device, total } = ctx;
  const problems: string[] = [];
  const members = desiredOf(subjects).filter((s) => hasClassOn(s, side, total));
  const root = tree?.qdiscs.find((q) => q.root) ?? null;
  const engineRoot = root !== null && root.kind === 'htb' && root.handle === '1:';
  const direction = side === 'egress' ? 'down' : 'up';
  if (members.length === 0 && total === 0) {
    if (engineRoot) problems.push(`kernel: ${device} keeps the engine's HTB root, but no subject is capped ${direction} and there is no network cap`);
    const leaves = tree?.qdiscs.filter((q) => !q.root && q.kind !== 'ingress') ?? [];
    if (leaves.length > 0) problems.push(`kernel: ${device} keeps qdiscs ${leaves.map((q) => `${q.kind} ${q.handle} parent ${q.parent}`).join(', ')}`);
    return problems;
  }
  const why = total > 0 ? `a network cap of ${total} kbit/s` : `${members.length} subject(s) capped`;
  if (!tree || !engineRoot) return [`kernel: ${device} has no engine HTB root (root: ${root ? `${root.kind} ${root.handle}` : 'none'}), but ${direction} has ${why}`];
  const defaultOption = root.options.default;
  const defaultMinor = typeof defaultOption === 'number' ? defaultOption : parseInt(String(defaultOption), 16);
  if (defaultMinor !== DEFAULT_MINOR) problems.push(`kernel: HTB root of ${device} has default ${String(defaultOption)}, expected 0xffff`);

  // Classes: 1:1 at the root, 1:ffff and one per shaped subject under it, at treeShape's numbers; nothing else.
  const shape: TreeShape = treeShape(side === 'egress' ? { totalDownKbps: total } : { totalUpKbps: total }, side, members);
  const who = new Map(members.map((s) => [s.classMinor, `${s.type} ${s.id}`]));
  const wanted = new Map<number, { rateKbps: number; ceilKbps: number; what: string }>([
    [1, { ...shape.root, what: 'the root class 1:1' }],
    [DEFAULT_MINOR, { ...shape.unlimited, what: 'the default class' }],
    ...[...shape.subjects].map(([minor, s]) => [minor, { ...s, what: who.get(minor) ?? '?' }] as [number, { rateKbps: number; ceilKbps: number; what: string }]),
  ]);
  const classes = new Map(tree.classes.filter((c) => c.kind === 'htb' && c.major === 1).map((c) => [c.minor, c]));
  for (const [minor, want] of wanted) {
    const found = classes.get(minor);
    const id = `1:${minor.toString(16)}`;
    const parent = minor === 1 ? null : '1:1';
    const numbers = `rate ${want.rateKbps} ceil ${want.ceilKbps} kbit/s`;
    if (!found) problems.push(`kernel: ${device} has no class ${id} for ${want.what} (${direction} ${numbers})`);
    else {
      if (found.parent !== parent) problems.push(`kernel: class ${id} on ${device} hangs under ${found.parent ?? 'the root'}, expected ${parent ?? 'the root'}`);
      if (found.rateBits !== printedRateBits(want.rateKbps) || found.ceilBits !== printedRateBits(want.ceilKbps)) {
        problems.push(`kernel: class ${id} on ${device} has rate ${found.rateBits} ceil ${found.ceilBits} bit/s, expected ${numbers} for ${want.what}`);
      }
    }
  }
  for (const c of tree.classes) {
    if (c.kind === 'htb' && !(c.major === 1 && wanted.has(c.minor))) problems.push(`kernel: ${device} has a stray class ${c.classid} (rate ${c.rateBits})`);
  }
  // Leaves: exactly one under each subject's class, a tbf holding the cap where it bursts; none elsewhere.
  const leaves = tree.qdiscs.filter((q) => !q.root && q.kind !== 'ingress');
  for (const [minor, want] of shape.subjects) {
    const id = `1:${minor.toString(16)}`;
    const under = leaves.filter((q) => q.parent === id);
    const leaf = under[0];
    if (under.length !== 1 || !leaf) {
      problems.push(`kernel: class ${id} on ${device} has ${under.length} leaf qdiscs`);
      continue;
    }
    if (!want.tbf) {
      if (leaf.kind === 'tbf') problems.push(`kernel: class ${id} on ${device} (${who.get(minor) ?? '?'}) has a tbf leaf, but does not burst ${direction}`);
      continue;
    }
    // As the kernel prints the bucket asked for, within the planner's tolerance for tc's rounding.
    const shown = tbfShown(bytesPerSecond(want.tbf.kbps), want.tbf.depthBytes, TBF_LIMIT_BYTES);
    const got = leaf.options as Record<string, unknown>;
    const near = (key: 'burst' | 'lat', slack: number): boolean => typeof got[key] === 'number' && Math.abs((got[key] as number) - (shown[key] ?? NaN)) <= slack;
    const queue = shown.limit !== undefined ? got.limit === shown.limit : near('lat', 1000 + (shown.lat ?? 0) / 100);
    if (leaf.kind !== 'tbf' || got.rate !== shown.rate || !near('burst', 2 + want.tbf.depthBytes / 1000) || !queue) {
      problems.push(`kernel: class ${id} on ${device} (${who.get(minor) ?? '?'}, bursting ${direction}) has leaf ${leaf.kind} ${JSON.stringify(leaf.options)}, expected tbf ${JSON.stringify(shown)}`);
    }
  }
  for (const q of leaves) {
    const minor = /^1:([0-9a-f]+)$/.exec(q.parent ?? '')?.[1];
    if (minor === undefined || !shape.subjects.has(parseInt(minor, 16))) problems.push(`kernel: ${device} has a stray qdisc ${q.kind} ${q.handle} under ${q.parent ?? '?'}`);
  }
  // Filters: every flowid points at a subject's class or the default class.
  for (const f of tree.filters) {
    if (f.flowidMinor !== undefined && f.flowidMinor !== DEFAULT_MINOR && !shape.subjects.has(f.flowidMinor)) {
      problems.push(`kernel: filter ${f.handle ?? '?'} (prio ${f.prio}) on ${device} points at 1:${f.flowidMinor.toString(16)}, which no subject owns`);
    }
  }
  const shaped = new Set(shape.subjects.keys());
  problems.push(...(ctx.classify ? checkClassification({ ...ctx, tree, shaped }, ctx.classify) : checkFilterKeys({ ...ctx, tree, shaped })));
  return problems;
}

/** A side's tree and the class minors of the subjects it shapes. */
type ShapedSide = SideContext & { tree: ActualTree; shaped: ReadonlySet<number> };

function checkClassification(ctx: ShapedSide, classify: Classifier): string[] {
  const { tree, side, kind, subjects, next, device, shaped } = ctx;
  const problems: string[] = [];
  const classOf = (subject: PlacedSubject): number => (subject.minor !== null && shaped.has(subject.minor) ? subject.minor : DEFAULT_MINOR);
  const probe = (family: 4 | 6, address: number[], expected: number, why: string): void => {
    const other = randomAddress(family, next);
    const packet = side === 'egress' ? { family, src: other, dst: address } : { family, src: address, dst: other };
    let got: number;
    try {
      got = classify(tree, packet);
    } catch (error) {
      problems.push(`kernel: classifying ${formatAddress(family, address)} on ${device} failed: ${(error as Error).message}`);
      return;
    }
    if (got !== expected) {
      problems.push(
        `kernel: on ${device} a packet ${side === 'egress' ? 'to' : 'from'} ${formatAddress(family, address)} (${why}) lands in 1:${got.toString(16)}, expected 1:${expected.toString(16)}`,
      );
    }
  };
  if (kind === 'vm') {
    const vm = subjects[0];
    const expected = vm ? classOf(vm) : DEFAULT_MINOR;
    for (const family of [4, 6] as const) probe(family, randomAddress(family, next), expected, `any address, VM ${vm?.id ?? '-'}`);
    return problems;
  }
  const owned: Cidr[] = [];
  for (const subject of subjects) {
    for (const text of subject.addresses) {
      const cidr = parseCidr(text);
      owned.push(cidr);
      const expected = classOf(subject);
      probe(cidr.family, baseOf(cidr), expected, `first of ${text}, peer ${subject.id}`);
      probe(cidr.family, lastOf(cidr), expected, `last of ${text}, peer ${subject.id}`);
      probe(cidr.family, randomInside(cidr, next), expected, `inside ${text}, peer ${subject.id}`);
    }
  }
  for (const family of [4, 6, 4, 6] as const) {
    const address = randomAddress(family, next);
    if (owned.some((cidr) => contains(cidr, family, address))) continue;
    probe(family, address, DEFAULT_MINOR, 'outside every prefix');
  }
  return problems;
}

/**
 * Without the u32 evaluator: decodes each entry's keys (a prefix at the source or destination
 * address of IPv4 or IPv6) and compares, per class, with the subjects' prefixes.
 */
function checkFilterKeys(ctx: ShapedSide): string[] {
  const { tree, side, kind, subjects, device, shaped } = ctx;
  const problems: string[] = [];
  const capped = subjects.filter((s) => s.minor !== null && shaped.has(s.minor));
  const found = new Map<number, string[]>();
  for (const f of tree.filters) {
    if (f.flowidMinor === undefined) continue;
    const decoded = decodeKeys(f.keys, side);
    if (decoded === null) {
      problems.push(`kernel: cannot read filter ${f.handle ?? '?'} on ${device}: keys ${f.keys.map((k) => `${k.value.toString(16)}/${k.mask.toString(16)} at ${k.off}`).join(', ')}`);
      continue;
    }
    found.set(f.flowidMinor, [...(found.get(f.flowidMinor) ?? []), decoded]);
  }
  const canon = (text: string) => {
    const c = parseCidr(text);
    return `${formatAddress(c.family, c.bytes)}/${c.length}`;
  };
  for (const subject of capped) {
    // Sets, not lists: a prefix shorter than the hashed byte may sit in several buckets.
    const wanted = [...new Set(kind === 'vm' ? ['all'] : subject.addresses.map(canon))].sort();
    const got = [...new Set(found.get(subject.minor as number) ?? [])].sort();
    if (wanted.join(' ') !== got.join(' ')) {
      problems.push(`kernel: filters on ${device} send [${got.join(', ')}] to 1:${(subject.minor as number).toString(16)}, expected [${wanted.join(', ')}] of ${subject.type} ${subject.id}`);
    }
  }
  return problems;
}

/** `all`, or the prefix the keys of one u32 entry match (`10.80.0.11/32`), or null when they are not one prefix. */
function decodeKeys(keys: { value: number; mask: number; off: number }[], side: Side): string | null {
  if (keys.length === 0 || keys.every((k) => k.mask === 0)) return 'all';
  const offsets = new Set(keys.map((k) => k.off));
  const v6 = side === 'egress' ? keys.every((k) => k.off >= 24 && k.off < 40) : offsets.has(8);
  const base = side === 'egress' ? (v6 ? 24 : 16) : (v6 ? 8 : 12);
  const size = v6 ? 16 : 4;
  const bytes = Array.from({ length: size }, () => 0);
  const mask = Array.from({ length: size }, () => 0);
  for (const key of keys) {
    const at = key.off - base;
    if (at < 0 || at + 4 > size || at % 4 !== 0) return null;
    for (let i = 0; i < 4; i += 1) {
      bytes[at + i] = (key.value >>> (24 - 8 * i)) & 0xff;
      mask[at + i] = (key.mask >>> (24 - 8 * i)) & 0xff;
    }
  }
  const bits = mask.map((m) => m.toString(2).padStart(8, '0')).join('');
  const length = bits.indexOf('0') === -1 ? bits.length : bits.indexOf('0');
  if (bits.slice(length).includes('1')) return null;
  return `${formatAddress(v6 ? 6 : 4, bytes)}/${length}`;
}

/**
 * A cheap look at every interface of the namespace at once (two processes): each device's qdiscs
 * and whether its IFB exists. Interfaces a step did not touch must not change between steps.
 */
export async function signatures(executor: Executor, netns: string, interfaces: string[]): Promise<Map<string, string>> {
  const qdiscText = (await executor.run(['tc', '-j', 'qdisc', 'show'], { netns })).stdout;
  const linkText = (await executor.run(['ip', '-j', 'link', 'show'], { netns })).stdout;
  const qdiscs = JSON.parse(qdiscText.trim() === '' ? '[]' : qdiscText) as { dev: string; kind: string; handle: string; parent?: string }[];
  const links = new Set((JSON.parse(linkText.trim() === '' ? '[]' : linkText) as { ifname: string; flags?: string[] }[]).map((l) => `${l.ifname}${l.flags?.includes('UP') ? '+' : '-'}`));
  const of = (dev: string) => qdiscs.filter((q) => q.dev === dev).map((q) => `${q.kind} ${q.handle} ${q.parent ?? 'root'}`).sort().join(', ');
  const result = new Map<string, string>();
  for (const ifname of interfaces) {
    const ifb = ifbNameFor(ifname, netns);
    const ifbLink = [...links].find((l) => l.slice(0, -1) === ifb);
    result.set(ifname, `${ifname}: [${of(ifname)}] ifb ${ifbLink ?? 'none'}: [${of(ifb)}]`);
  }
  return result;
}

/** `tc` as a person would read it, for failure messages: qdiscs, classes, filters of an interface and its IFB. */
export async function describeKernel(executor: Executor, netns: string, ifname: string): Promise<string> {
  const lines: string[] = [];
  for (const device of [ifname, ifbNameFor(ifname, netns)]) {
    for (const args of [['qdisc', 'show', 'dev', device], ['class', 'show', 'dev', device], ['filter', 'show', 'dev', device], ['filter', 'show', 'dev', device, 'ingress']]) {
      const text = await executor.run(['tc', ...args], { netns }).then((r) => r.stdout.trimEnd(), (error: Error) => `(${error.message.split('\n')[0]})`);
      if (text !== '') lines.push(`$ tc ${args.join(' ')}`, text);
    }
  }
  return lines.join('\n');
}

/** What the engine itself would now do to bring each interface in line (`panel-bandwidth plan`). */
export async function enginePlan(databaseUrl: string): Promise<string> {
  const result = await execa(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'plan', '--database-url', databaseUrl], {
    cwd: REPO_ROOT, reject: false, timeout: 30_000, all: true,
  });
  return String(result.all ?? '').trimEnd();
}

/** Everything {@link verify} needs to know about the world. */
export interface VerifyContext {
  panel: PanelProcess;
  executor: Executor;
  netns: string;
  /** Interfaces to read in full, with what sits behind them. */
  interfaces: { name: string; kind: 'wireguard' | 'vm' }[];
  /** Every subject the database should hold (on any interface). */
  expected: ExpectedSubject[];
  /** Network caps by interface name (none where absent). */
  totals?: ReadonlyMap<string, InterfaceTotals>;
  /** Draws the random probes. */
  next: () => number;
}

/** Compares the database with `expected` and the listed interfaces' kernel state with the database. */
export async function verify(ctx: VerifyContext): Promise<{ problems: string[]; limits: LimitJson[] }> {
  const limits = await readLimits(ctx.panel);
  const totals = ctx.totals ?? new Map<string, InterfaceTotals>();
  const problems = compareDatabase(ctx.expected, limits, totals);
  const placed = placeSubjects(ctx.expected, limits);
  // Read in parallel; the probes are drawn afterwards, in order, so a seed still gives the same ones.
  const actuals = await Promise.all(ctx.interfaces.map(({ name }) => readActual(ctx.executor, name, ctx.netns)));
  ctx.interfaces.forEach(({ name, kind }, i) => {
    const on = placed.filter((subject) => subject.interface === name);
    problems.push(...checkActual(actuals[i]!, kind, on, ctx.next, classify, totals.get(name)));
  });
  return { problems, limits };
}

/** The full state for a failure message: expectations, stored limits, recent events, the kernel, the engine's plan, the panel's warnings. */
export async function describeWorld(ctx: VerifyContext, limits: LimitJson[], interfaces: string[]): Promise<string> {
  const events = await ctx.panel.get('/api/bandwidth/events?per_page=15').then((r) => JSON.stringify(r.body?.events ?? r.text, null, 1), (e: Error) => e.message);
  const kernel: string[] = [];
  for (const name of interfaces) {
    const lines = (await describeKernel(ctx.executor, ctx.netns, name)).split('\n');
    kernel.push(`--- ${name}`, ...lines.slice(0, 300), ...(lines.length > 300 ? [`… ${lines.length - 300} more lines`] : []));
  }
  const output = ctx.panel.output().split('\n').filter((line) => line.trim() !== '').slice(-20).join('\n');
  return [
    '=== expected subjects', JSON.stringify(ctx.expected),
    '=== network caps', JSON.stringify(Object.fromEntries(ctx.totals ?? [])),
    '=== stored limits', JSON.stringify(limits.map((l) => ({ [`${l.subject_type}:${l.subject_id}`]: [l.interface, l.addresses.join(','), l.bandwidth_up_kbps, l.bandwidth_down_kbps, l.bandwidth_status, l.class_id, l.bandwidth_error] }))),
    '=== recent events', events,
    '=== kernel', kernel.join('\n'),
    '=== the engine\'s plan now (panel-bandwidth plan)', await enginePlan(ctx.panel.databaseUrl),
    '=== panel output (last lines)', output,
  ].join('\n');
}
