import type { ActualInterface, ActualTree } from './actual.js';
import { formatPrefix, maskBytes, parseCidr, type Prefix } from './addresses.js';
import {
  CLASSIFY_PRIO,
  DISPATCH_HTID,
  entriesFor,
  isEngineHtid,
  KERNEL_HTID_MIN,
  MATCH_ALL_PRIO,
  MAX_NODE,
  placementProblems,
  prefixFromKeys,
  u32Handle,
  type EntrySpec,
  type LengthTable,
} from './classify.js';
import { capOn, placementOf, type MatchKey, type TreeSide } from './directions.js';
import { ifbNameFor } from './ifb-name.js';
import { leafArgs, type LeafKind } from './leaf.js';
import type { DesiredInterface, DesiredSubject } from './model.js';
import { op, type Operation } from './operations.js';
import type { TcFilter } from './parse-filter-json.js';
import { htbDefaultMinor, type TcQdisc } from './parse-qdisc-json.js';
import { htbClassArgs, printedRateBits } from './rates.js';
import { hasClassOn, ROOT_CLASS_MINOR, tbfArgs, tbfOptions, totalOn, treeShape, type SubjectShape, type TreeShape } from './tree-shape.js';

/** What the planner needs to know about the kernel (a subset of the probe's result). */
export interface PlanCapabilities {
  /** Leaf qdisc to put under each subject's class. */
  leaf: LeafKind;
}

/** Options of {@link planInterface}. */
export interface PlanOptions {
  /** {@link rejectedSubjects} of `desired` when the caller has it already. */
  rejected?: Map<string, string>;
  /**
   * Rebuild every tree of the interface from scratch (delete the engine's root qdiscs and IFB, then
   * build), whatever the kernel has: the repair when the kernel refused an incremental plan.
   * @default false
   */
  rebuild?: boolean;
}

/**
 * Thrown when the engine refuses to touch the interface: a foreign root qdisc, a clsact, a foreign
 * filter where the ingress redirect must go. The message names the object and why.
 */
export class PlanError extends Error {
  override name = 'PlanError';
}

/** Minor of the class for unlimited traffic, the HTB default. */
export const UNLIMITED_MINOR = 0xffff;
/** Priority of the ingress redirect to the IFB. */
export const INGRESS_REDIRECT_PRIO = 1;

interface TreeSubject {
  subject: DesiredSubject;
  /** Its cap on this side (0: none, it has a class because of the network cap). */
  kbps: number;
  shape: SubjectShape;
  prefixes: Prefix[];
}

interface TreeContext {
  device: string;
  netns: string | undefined;
  side: TreeSide;
  key: MatchKey;
  leaf: LeafKind;
  /** Prefixes of subjects without a cap on this side that lie inside a capped subject's prefix. */
  shields: Shield[];
  shape: TreeShape;
  /** Subjects with a class on this side, by class minor. */
  subjects: TreeSubject[];
}

/**
 * A prefix of a subject without a cap on this side that lies inside a capped subject's shorter
 * prefix (a peer `10.77.0.5/32` next to a peer routing `10.77.0.0/16`): WireGuard sends its traffic
 * to it, not to the wider peer, so it gets an entry into the unlimited class `1:ffff`. Without it,
 * the longest match in the tree would be the wider peer's prefix and its cap would hold the wrong peer.
 */
interface Shield {
  prefix: Prefix;
  owner: string;
}

const hex = (n: number): string => n.toString(16);
const classId = (minor: number): string => `1:${hex(minor)}`;

/**
 * Subjects of `desired` the planner leaves out because their prefixes cannot be placed (see
 * `placementProblems`): the rest of the interface is planned without them. Callers report these
 * subjects as failed (`plan_invalid`); validation refuses them before they are stored.
 */
export function rejectedSubjects(desired: DesiredInterface): Map<string, string> {
  const rejected = new Map<string, string>();
  if (desired.kind === 'vm') return rejected;
  const prefixes = new Map<string, Prefix[]>();
  const prefixesOf = (subject: DesiredSubject): Prefix[] => {
    let list = prefixes.get(subject.id);
    if (list === undefined) {
      list = subject.addresses.map((cidr) => parseCidr(cidr));
      prefixes.set(subject.id, list);
    }
    return list;
  };
  for (const direction of ['down', 'up'] as const) {
    const { side, key } = placementOf(desired.kind, direction);
    if (key === 'all') continue;
    const total = totalOn(desired, side);
    const capped = desired.subjects
      .filter((subject) => hasClassOn(subject, side, total))
      .map((subject) => ({ id: subject.id, type: subject.type, classMinor: subject.classMinor, prefixes: prefixesOf(subject) }));
    for (const [id, message] of placementProblems(capped, key)) if (!rejected.has(id)) rejected.set(id, message);
  }
  return rejected;
}

/**
 * Pure planner: the ordered operations that take `actual` to `desired` for one interface.
 *
 * - a tree (HTB `1:` with `default ffff`) on the interface's egress for subjects' `down`, and on its IFB
 *   (fed by an `ingress` qdisc redirecting with `act_mirred`) for subjects' `up`; no tree, no ingress
 *   qdisc and no IFB where no subject is limited;
 * - a missing root, the kernel's default root (handle `0:`) or a tree whose classification layout is
 *   not the engine's ⇒ full build; otherwise only the difference: a rate change is one `class change`,
 *   adding or removing a subject touches its class, leaf and filter entries only;
 * - every filter key that targets a class is deleted (by handle: the kernel unbinds it at once) before
 *   the class, on every device; additions of classes come before the filters that point at them;
 * - a foreign root qdisc on the interface, a clsact, or a foreign filter at the redirect's priority is
 *   refused with a {@link PlanError} naming it: the engine never replaces what it did not create.
 *
 * Subjects in {@link rejectedSubjects} are left out.
 *
 * @param desired - validated with `parseDesiredInterface`.
 * @param actual - from `readActual` (or `emptyActual` for a fresh interface).
 */
export function planInterface(desired: DesiredInterface, actual: ActualInterface, caps: PlanCapabilities, options: PlanOptions = {}): Operation[] {
  const netns = desired.netns;
  const ifb = ifbNameFor(desired.name, netns);
  const rebuild = options.rebuild === true;
  const before: Operation[] = [];
  const tc: Operation[] = [];
  const after: Operation[] = [];

  if (!actual.exists) {
    if (actual.ifb.exists) after.push(op('ip', ['link', 'del', 'dev', ifb], netns, `interface ${desired.name} is gone: remove its IFB`));
    return after;
  }

  const rejected = options.rejected ?? rejectedSubjects(desired);
  const treeOn = (side: TreeSide, key: MatchKey): TreeContext => {
    const total = totalOn(desired, side);
    const members = desired.subjects.filter((subject) => hasClassOn(subject, side, total) && !rejected.has(subject.id)).sort((a, b) => a.classMinor - b.classMinor);
    const shape = treeShape(desired, side, members);
    const subjects = members.map((subject) => ({
      subject,
      kbps: capOn(subject, side),
      shape: shape.subjects.get(subject.classMinor) as SubjectShape,
      prefixes: subject.addresses.map((cidr) => parseCidr(cidr)),
    }));
    const outside = desired.subjects.filter((subject) => !hasClassOn(subject, side, total) || rejected.has(subject.id));
    const shields = desired.kind === 'vm' ? [] : shieldsFor(subjects, outside);
    return { device: side === 'egress' ? desired.name : ifb, netns, side, key, leaf: caps.leaf, shields, shape, subjects };
  };

  // Down: the interface's own egress.
  const down = placementOf(desired.kind, 'down');
  const downTree = treeOn(down.side, down.key);
  if (wantsTree(downTree)) refuseForeignRoot(desired.name, actual.egress);
  tc.push(...planTree(downTree, actual.egress, rebuild));

  // Up: ingress → IFB.
  const up = placementOf(desired.kind, 'up');
  const upTree = treeOn(up.side, up.key);
  const ingress = actual.egress?.qdiscs.find((q) => q.kind === 'ingress') ?? null;
  const redirectKeys = actual.ingressFilters.filter((f) => f.prio === INGRESS_REDIRECT_PRIO && isKey(f));
  const ours = (f: TcFilter): boolean => f.hasMirred === true && (f.mirredTo === undefined || f.mirredTo === ifb || f.mirredTo === '*');
  const hasOurRedirect = ingress !== null && redirectKeys.some(ours);
  const deleteRedirect = (why: string): Operation =>
    actual.ingressFilters.some((f) => f.prio !== INGRESS_REDIRECT_PRIO)
      ? op('tc', ['filter', 'del', 'dev', desired.name, 'parent', 'ffff:', 'prio', String(INGRESS_REDIRECT_PRIO)], netns, why)
      : op('tc', ['qdisc', 'del', 'dev', desired.name, 'ingress'], netns, why);

  if (wantsTree(upTree)) {
    const clsact = actual.egress?.qdiscs.find((q) => q.kind === 'clsact');
    if (clsact) throw new PlanError(`${desired.name} has a clsact qdisc (not panel-bandwidth's): the engine needs the ingress qdisc to redirect uploads to ${ifb}; remove it or clear the up caps`);
    const foreign = redirectKeys.find((f) => !ours(f));
    if (ingress !== null && foreign) {
      const what = foreign.mirredTo !== undefined ? `a redirect to ${foreign.mirredTo}` : `filter ${foreign.handle ?? '?'}`;
      throw new PlanError(
        `${desired.name}'s ingress holds ${what} at prio ${INGRESS_REDIRECT_PRIO} (not panel-bandwidth's): the engine redirects uploads to ${ifb} at that priority; move it to another priority or clear the up caps`,
      );
    }
    const ifbFresh = rebuild || !actual.ifb.exists;
    if (rebuild && actual.ifb.exists) before.push(op('ip', ['link', 'del', 'dev', ifb], netns, `rebuild: remove ${ifb} with everything on it`));
    if (ifbFresh) before.push(op('ip', ['link', 'add', 'name', ifb, 'type', 'ifb'], netns, `IFB for the ingress of ${desired.name} (subjects' up)`));
    if (ifbFresh || !actual.ifb.up) before.push(op('ip', ['link', 'set', 'dev', ifb, 'up'], netns, `bring ${ifb} up`));
    if (ingress === null) tc.push(op('tc', ['qdisc', 'add', 'dev', desired.name, 'handle', 'ffff:', 'ingress'], netns, `ingress of ${desired.name}`));
    // A re-created IFB is a new device: a redirect to the old one points nowhere (`to_dev *`).
    const redirectOk =
      !ifbFresh &&
      ingress !== null &&
      redirectKeys.length === 1 &&
      redirectKeys[0]?.mirredTo === ifb &&
      redirectKeys[0]?.protocol === 'all' &&
      redirectKeys[0]?.keys.every((k) => k.mask === 0) === true;
    if (!redirectOk) {
      if (ingress !== null && actual.ingressFilters.some((f) => f.prio === INGRESS_REDIRECT_PRIO)) {
        tc.push(op('tc', ['filter', 'del', 'dev', desired.name, 'parent', 'ffff:', 'prio', String(INGRESS_REDIRECT_PRIO)], netns, 'replace the ingress redirect'));
      }
      tc.push(
        op(
          'tc',
          [
            'filter', 'add', 'dev', desired.name, 'parent', 'ffff:', 'prio', String(INGRESS_REDIRECT_PRIO), 'protocol', 'all',
            'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', ifb,
          ],
          netns,
          `redirect ingress of ${desired.name} to ${ifb}`,
        ),
      );
    }
    tc.push(...planTree(upTree, ifbFresh ? null : actual.ifb.tree, false));
  } else {
    if (hasOurRedirect) tc.push(deleteRedirect('no subject limits its up: drop the redirect'));
    if (actual.ifb.exists) after.push(op('ip', ['link', 'del', 'dev', ifb], netns, 'no subject limits its up: remove the IFB'));
  }
  return [...before, ...tc, ...after];
}

/** The {@link Shield}s of one tree: uncapped prefixes that a capped subject's shorter prefix covers. */
function shieldsFor(capped: readonly TreeSubject[], uncapped: readonly DesiredSubject[]): Shield[] {
  const cappedPrefixes = new Map<string, Set<string>>(); // `${family}/${length}` → prefixes
  for (const s of capped) {
    for (const prefix of s.prefixes) {
      const key = `${prefix.family}/${prefix.length}`;
      const set = cappedPrefixes.get(key) ?? new Set<string>();
      set.add(formatPrefix(prefix));
      cappedPrefixes.set(key, set);
    }
  }
  if (cappedPrefixes.size === 0) return [];
  const lengths = { 4: [] as number[], 6: [] as number[] };
  for (const key of cappedPrefixes.keys()) {
    const [family, length] = key.split('/').map(Number);
    lengths[family as 4 | 6].push(length ?? 0);
  }
  const shields: Shield[] = [];
  for (const subject of uncapped) {
    for (const cidr of subject.addresses) {
      const prefix = parseCidr(cidr);
      const covered = lengths[prefix.family].some(
        (length) =>
          length < prefix.length &&
          cappedPrefixes.get(`${prefix.family}/${length}`)?.has(formatPrefix({ family: prefix.family, bytes: maskBytes(prefix.bytes, length), length })) === true,
      );
      if (covered) shields.push({ prefix, owner: `${subject.type} ${subject.id}` });
    }
  }
  return shields;
}

/** A u32 key (a rule), not a priority's header line or a hash table. */
function isKey(filter: TcFilter): boolean {
  return filter.handle !== undefined && filter.divisor === undefined && (filter.node ?? 0) !== 0;
}

function rootQdisc(tree: ActualTree | null): TcQdisc | null {
  return tree?.qdiscs.find((q) => q.root) ?? null;
}

/** True when the root qdisc is the engine's HTB (`1:` with `default ffff`). */
export function isEngineRoot(qdisc: TcQdisc | null): boolean {
  return qdisc !== null && qdisc.kind === 'htb' && qdisc.handle === '1:' && htbDefaultMinor(qdisc) === UNLIMITED_MINOR;
}

/**
 * The interface's root must be the engine's HTB or the kernel's default (handle `0:`, e.g. noqueue,
 * pfifo_fast, mq): a root someone configured (a tbf, a cake, an HTB with another default) is theirs.
 */
function refuseForeignRoot(ifname: string, tree: ActualTree | null): void {
  const root = rootQdisc(tree);
  if (root === null || root.handle === '0:' || isEngineRoot(root)) return;
  throw new PlanError(
    `${ifname} has a root qdisc ${root.kind} ${root.handle} that panel-bandwidth did not create: the engine does not replace it. ` +
      `Remove it (tc qdisc del dev ${ifname} root) to let panel-bandwidth cap downloads on ${ifname}`,
  );
}

/**
 * A tree is wanted on a side where a subject has a class (with a network cap, every subject has
 * one). A network cap without a subject builds nothing: there is no traffic to hold, and the panel
 * finds a network's caps through its subjects' rows, so the tree appears with the first subject and
 * goes with the last.
 */
function wantsTree(ctx: TreeContext): boolean {
  return ctx.subjects.length > 0;
}

function planTree(ctx: TreeContext, actual: ActualTree | null, rebuild: boolean): Operation[] {
  const { device, netns, subjects } = ctx;
  const root = rootQdisc(actual);
  const ours = isEngineRoot(root);
  if (!wantsTree(ctx)) {
    return ours ? [op('tc', ['qdisc', 'del', 'dev', device, 'root'], netns, `no limited subject on ${device}: remove the engine's tree`)] : [];
  }
  if (!ours || actual === null || rebuild || !layoutOk(ctx, actual.filters)) return fullBuild(ctx, root);

  const ops = { filterDel: [] as Operation[], classDel: [] as Operation[], classSet: [] as Operation[], structure: [] as Operation[], entryAdd: [] as Operation[] };
  const classes = new Map(actual.classes.filter((c) => c.kind === 'htb' && c.major === 1).map((c) => [c.minor, c]));
  // Every class hangs under 1:1 (1:1 at the root): a tree from before 1:1, or a class moved by hand,
  // cannot be re-parented (HTB has no such change); rebuild it.
  const top = classes.get(ROOT_CLASS_MINOR);
  if (top === undefined || top.parent !== null) return fullBuild(ctx, root);
  const under = `1:${hex(ROOT_CLASS_MINOR)}`;
  const wanted = new Map(subjects.map((s) => [s.subject.classMinor, s]));
  if ([UNLIMITED_MINOR, ...wanted.keys()].some((minor) => classes.has(minor) && classes.get(minor)?.parent !== under)) return fullBuild(ctx, root);

  diffFilters(ctx, subjects, actual.filters, ops);
  // Children first: HTB refuses to delete a class that has children (a hand-made sub-class).
  const stray = [...classes.values()].filter((c) => c.minor !== UNLIMITED_MINOR && c.minor !== ROOT_CLASS_MINOR && !wanted.has(c.minor));
  stray.sort((a, b) => Number(b.parent !== null && b.parent !== under) - Number(a.parent !== null && a.parent !== under));
  for (const c of stray) ops.classDel.push(op('tc', ['class', 'del', 'dev', device, 'classid', classId(c.minor)], netns, `stray class ${classId(c.minor)}`));
  if (!rateMatches(top, ctx.shape.root)) ops.classSet.push(rootClass(ctx, 'change'));
  const unlimited = classes.get(UNLIMITED_MINOR);
  if (unlimited === undefined) ops.classSet.push(unlimitedClass(ctx, 'add'));
  else if (!rateMatches(unlimited, ctx.shape.unlimited)) ops.classSet.push(unlimitedClass(ctx, 'change'));

  const leaves = new Map(actual.qdiscs.filter((q) => q.parent !== null).map((q) => [q.parent, q]));
  for (const s of subjects) {
    const minor = s.subject.classMinor;
    const current = classes.get(minor);
    if (current === undefined) {
      ops.classSet.push(subjectClass(ctx, s, 'add'), subjectLeaf(ctx, s, 'add'));
      continue;
    }
    if (!rateMatches(current, s.shape)) ops.classSet.push(subjectClass(ctx, s, 'change'));
    ops.classSet.push(...leafDiff(ctx, s, leaves.get(classId(minor))));
  }
  return [...ops.filterDel, ...ops.classDel, ...ops.classSet, ...ops.structure, ...ops.entryAdd];
}

/**
 * What a subject's leaf needs: nothing, new options (`replace` keeps the qdisc when kind and handle
 * stay), or, when its kind changes (a burst starts or ends), a delete and an add: the kernel refuses
 * to replace a qdisc by one of another kind under the same handle.
 */
function leafDiff(ctx: TreeContext, s: TreeSubject, leaf: TcQdisc | undefined): Operation[] {
  const handle = `${hex(s.subject.classMinor)}:`;
  const kind = s.shape.tbf ? 'tbf' : ctx.leaf;
  if (leaf === undefined) return [subjectLeaf(ctx, s, 'add')];
  if (leaf.kind !== kind) {
    const drop = op('tc', ['qdisc', 'del', 'dev', ctx.device, 'parent', classId(s.subject.classMinor)], ctx.netns, `leaf of ${s.subject.type} ${s.subject.id} changes kind (${leaf.kind} → ${kind})`);
    return [drop, subjectLeaf(ctx, s, 'add')];
  }
  if (leaf.handle !== handle || (s.shape.tbf !== undefined && !tbfMatches(leaf, s.shape.tbf))) return [subjectLeaf(ctx, s, 'replace')];
  return [];
}

/**
 * tc prints a tbf's burst as the size its bucket time holds at the rate (a few bytes below what was
 * asked), and its queue either as `limit` or as `lat` (see `tbfOptions`): allow for both.
 */
function tbfMatches(leaf: TcQdisc, tbf: NonNullable<SubjectShape['tbf']>): boolean {
  const want = tbfOptions(tbf);
  const { rate, burst, limit, lat } = leaf.options;
  const near = (value: unknown, wanted: number, slack: number) => typeof value === 'number' && Math.abs(value - wanted) <= slack;
  const queue = limit !== undefined ? limit === want.limit : near(lat, want.latUs, 1000 + want.latUs / 100);
  return rate === want.rate && queue && near(burst, want.burst, 2 + want.burst / 1000);
}

function rateMatches(current: { rateBits?: number; ceilBits?: number }, wanted: { rateKbps: number; ceilKbps: number }): boolean {
  return current.rateBits === printedRateBits(wanted.rateKbps) && current.ceilBits === printedRateBits(wanted.ceilKbps);
}

function describe(ctx: TreeContext, s: TreeSubject): string {
  const direction = ctx.side === 'egress' ? 'down' : 'up';
  const { rateKbps, ceilKbps, tbf } = s.shape;
  const what =
    ctx.shape.totalKbps === 0
      ? `${s.kbps} kbit/s`
      : `share ${rateKbps} kbit/s, up to ${ceilKbps} kbit/s of the network's ${ctx.shape.totalKbps}`;
  return `${s.subject.type} ${s.subject.id} ${direction} ${what}${tbf ? `, bursting at ${ceilKbps} kbit/s for ${tbf.depthBytes} B of bucket` : ''}`;
}

/** A class of the tree: `1:1` at the root, everything else under it. */
export function classOp(device: string, netns: string | undefined, minor: number, rates: { rateKbps: number; ceilKbps: number }, verb: 'add' | 'change', note: string): Operation {
  const parent = minor === ROOT_CLASS_MINOR ? '1:' : `1:${hex(ROOT_CLASS_MINOR)}`;
  return op('tc', ['class', verb, 'dev', device, 'parent', parent, 'classid', classId(minor), 'htb', ...htbClassArgs(rates.rateKbps, rates.ceilKbps)], netns, note);
}

function rootClass(ctx: TreeContext, verb: 'add' | 'change'): Operation {
  const note = ctx.shape.totalKbps > 0 ? `network cap ${ctx.shape.totalKbps} kbit/s` : 'root of every class (no network cap)';
  return classOp(ctx.device, ctx.netns, ROOT_CLASS_MINOR, ctx.shape.root, verb, note);
}

function unlimitedClass(ctx: TreeContext, verb: 'add' | 'change'): Operation {
  return classOp(ctx.device, ctx.netns, UNLIMITED_MINOR, ctx.shape.unlimited, verb, 'class for unlimited traffic (HTB default)');
}

function subjectClass(ctx: TreeContext, s: TreeSubject, verb: 'add' | 'change'): Operation {
  return classOp(ctx.device, ctx.netns, s.subject.classMinor, s.shape, verb, describe(ctx, s));
}

function subjectLeaf(ctx: TreeContext, s: TreeSubject, verb: 'add' | 'replace'): Operation {
  const minor = s.subject.classMinor;
  const spec = s.shape.tbf ? tbfArgs(s.shape.tbf) : leafArgs(ctx.leaf);
  const note = s.shape.tbf ? `leaf of ${s.subject.type} ${s.subject.id}: holds ${s.shape.tbf.kbps} kbit/s once the burst is spent` : `leaf of ${s.subject.type} ${s.subject.id}`;
  return op('tc', ['qdisc', verb, 'dev', ctx.device, 'parent', classId(minor), 'handle', `${hex(minor)}:`, ...spec], ctx.netns, note);
}

// ---- filters -------------------------------------------------------------------------------

/** The priority a tree classifies at: a VM's match-all or the peers' address tables. */
function treePrio(ctx: TreeContext): number {
  return ctx.key === 'all' ? MATCH_ALL_PRIO : CLASSIFY_PRIO;
}

function filterArgs(ctx: TreeContext, prio: number): string[] {
  return ['filter', 'add', 'dev', ctx.device, 'parent', '1:', 'prio', String(prio), 'protocol', 'all'];
}

function matchAllOp(ctx: TreeContext, s: TreeSubject): Operation {
  return op('tc', [...filterArgs(ctx, MATCH_ALL_PRIO), 'u32', 'match', 'u32', '0', '0', 'flowid', classId(s.subject.classMinor)], ctx.netns, `all traffic of ${describe(ctx, s)}`);
}

/** The classifying filter with its dispatch table and the root's one link into it. */
function skeletonOps(ctx: TreeContext): Operation[] {
  const base = filterArgs(ctx, CLASSIFY_PRIO);
  const dispatch = `${hex(DISPATCH_HTID)}:`;
  return [
    op('tc', [...base, 'u32'], ctx.netns, `u32 at prio ${CLASSIFY_PRIO}`),
    op('tc', [...base, 'handle', dispatch, 'u32', 'divisor', '1'], ctx.netns, `dispatch table ${dispatch} (one link per prefix length)`),
    op('tc', [...base, 'u32', 'match', 'u32', '0', '0', 'link', dispatch], ctx.netns, `root → ${dispatch}`),
  ];
}

function tableOp(ctx: TreeContext, table: LengthTable): Operation {
  return op(
    'tc',
    [...filterArgs(ctx, CLASSIFY_PRIO), 'handle', `${hex(table.htid)}:`, 'u32', 'divisor', String(table.divisor)],
    ctx.netns,
    `table of IPv${table.family} /${table.length} prefixes (${table.divisor} bucket${table.divisor === 1 ? '' : 's'})`,
  );
}

function dispatchKeyOp(ctx: TreeContext, table: LengthTable): Operation {
  const version = ['match', 'u8', `0x${hex(table.versionKey.value >>> 24)}`, '0xf0', 'at', '0'];
  const hash = table.hashOffset === null ? [] : ['hashkey', 'mask', `0x${table.hashMask.toString(16).padStart(8, '0')}`, 'at', String(table.hashOffset)];
  return op(
    'tc',
    [...filterArgs(ctx, CLASSIFY_PRIO), 'handle', u32Handle(DISPATCH_HTID, 0, table.dispatchNode), 'u32', 'ht', `${hex(DISPATCH_HTID)}:0:`, ...version, ...hash, 'link', `${hex(table.htid)}:`],
    ctx.netns,
    `IPv${table.family} /${table.length} → table ${hex(table.htid)}:`,
  );
}

function entryOp(ctx: TreeContext, entry: EntrySpec, node: number, note: string): Operation {
  const t = entry.table;
  return op(
    'tc',
    [
      ...filterArgs(ctx, CLASSIFY_PRIO), 'handle', u32Handle(t.htid, entry.bucket, node), 'u32', 'ht', `${hex(t.htid)}:${hex(entry.bucket)}:`,
      'match', t.family === 4 ? 'ip' : 'ip6', ctx.key, entry.prefixText, 'flowid', classId(entry.minor),
    ],
    ctx.netns,
    note,
  );
}

/** Deletes one key by handle: the kernel unbinds its class at once (a whole priority's tables would linger). */
function deleteKey(ctx: TreeContext, filter: TcFilter, why: string): Operation {
  return op('tc', ['filter', 'del', 'dev', ctx.device, 'parent', '1:', 'prio', String(filter.prio), 'protocol', filter.protocol, 'handle', filter.handle ?? '', filter.kind], ctx.netns, why);
}

/**
 * Removes a priority that is not the tree's own: first every key that targets a class, by handle
 * (deleting only the priority would leave its non-root u32 tables, and their keys' hold on classes,
 * alive and invisible while another u32 priority exists), then the priority.
 */
function deletePrio(ctx: TreeContext, prio: number, present: readonly TcFilter[], why: string): Operation[] {
  // Keys in the priority's root table go with the priority, at once; deleting them one by one could
  // delete the priority itself first (the kernel drops the only u32 filter of a qdisc with its last key).
  const keys = present.filter((f) => isKey(f) && f.flowidMinor !== undefined && f.kind === 'u32' && (f.htid ?? 0) < KERNEL_HTID_MIN);
  return [
    ...keys.map((f) => deleteKey(ctx, f, `${why}: key ${f.handle ?? '?'} → 1:${hex(f.flowidMinor ?? 0)}`)),
    op('tc', ['filter', 'del', 'dev', ctx.device, 'parent', '1:', 'prio', String(prio)], ctx.netns, why),
  ];
}

/** Allocates node ids per (table, bucket), lowest free. */
class NodeAllocator {
  private readonly used = new Map<string, Set<number>>();

  reserve(htid: number, bucket: number, node: number): void {
    this.bucket(htid, bucket).add(node);
  }

  /** Like {@link allocate}, or null when the bucket is full. */
  tryAllocate(entry: EntrySpec): number | null {
    const used = this.bucket(entry.table.htid, entry.bucket);
    return used.size >= MAX_NODE ? null : this.allocate(entry);
  }

  allocate(entry: EntrySpec): number {
    const used = this.bucket(entry.table.htid, entry.bucket);
    for (let node = 1; node <= MAX_NODE; node += 1) {
      if (!used.has(node)) {
        used.add(node);
        return node;
      }
    }
    // rejectedSubjects() leaves out every subject that would not fit: reaching this is a bug.
    throw new Error(`Bucket ${hex(entry.table.htid)}:${hex(entry.bucket)}: is full; cannot place ${entry.prefixText}`);
  }

  private bucket(htid: number, bucket: number): Set<number> {
    const key = `${htid}:${bucket}`;
    let set = this.used.get(key);
    if (!set) {
      set = new Set();
      this.used.set(key, set);
    }
    return set;
  }
}

interface WantedEntry {
  entry: EntrySpec;
  note: string;
  /** A {@link Shield}: placed only where its bucket has room (validation counts capped prefixes only). */
  shield?: boolean;
}

/** The tables and entries a peer tree needs, by table id. */
function wantedEntries(ctx: TreeContext, subjects: TreeSubject[]): { tables: Map<number, LengthTable>; entries: WantedEntry[] } {
  const tables = new Map<number, LengthTable>();
  const entries: WantedEntry[] = [];
  if (ctx.key === 'all') return { tables, entries };
  for (const s of subjects) {
    for (const entry of entriesFor(s.prefixes, s.subject.classMinor, ctx.key)) {
      tables.set(entry.table.htid, entry.table);
      entries.push({ entry, note: `${entry.prefixText} → ${describe(ctx, s)}` });
    }
  }
  for (const shield of ctx.shields) {
    for (const entry of entriesFor([shield.prefix], UNLIMITED_MINOR, ctx.key)) {
      tables.set(entry.table.htid, entry.table);
      entries.push({ entry, note: `${entry.prefixText} → unlimited (${shield.owner}, inside a capped prefix)`, shield: true });
    }
  }
  return { tables, entries };
}

function fullBuild(ctx: TreeContext, root: TcQdisc | null): Operation[] {
  const { device, netns, subjects } = ctx;
  const out: Operation[] = [];
  // `replace` of a qdisc with the same kind and handle only changes its options and keeps every
  // class and filter: anything that is not the kernel's default root is deleted first.
  if (root !== null && root.handle !== '0:') out.push(op('tc', ['qdisc', 'del', 'dev', device, 'root'], netns, `rebuild ${device} from scratch`));
  out.push(op('tc', ['qdisc', 'add', 'dev', device, 'root', 'handle', '1:', 'htb', 'default', 'ffff'], netns, `engine's HTB on ${device}`), rootClass(ctx, 'add'), unlimitedClass(ctx, 'add'));
  for (const s of subjects) out.push(subjectClass(ctx, s, 'add'), subjectLeaf(ctx, s, 'add'));
  if (ctx.key === 'all') {
    const first = subjects[0];
    if (first) out.push(matchAllOp(ctx, first));
    return out;
  }
  const { tables, entries } = wantedEntries(ctx, subjects);
  out.push(...skeletonOps(ctx));
  for (const table of [...tables.values()].sort((a, b) => a.htid - b.htid)) out.push(tableOp(ctx, table), dispatchKeyOp(ctx, table));
  const nodes = new NodeAllocator();
  for (const { entry, note, shield } of entries) {
    const node = shield ? nodes.tryAllocate(entry) : nodes.allocate(entry);
    if (node !== null) out.push(entryOp(ctx, entry, node, note));
  }
  return out;
}

/**
 * The tree's own priority is in a shape the incremental diff can work from: for a VM tree anything
 * (it is replaced whole), for a peer tree either absent or exactly the engine's skeleton: one root
 * table linking to `3ff:`, only engine table ids with the divisor their length needs. Anything else
 * (a hand-made table, a key in the root) means a rebuild: deleting the engine's tables one by one
 * is not possible while the tree lives (see classify.ts).
 */
function layoutOk(ctx: TreeContext, filters: readonly TcFilter[]): boolean {
  if (ctx.key === 'all') return true;
  const present = filters.filter((f) => f.prio === CLASSIFY_PRIO);
  if (present.length === 0) return true;
  if (present.some((f) => f.kind !== 'u32' || f.protocol !== 'all')) return false;
  const tables = present.filter((f) => f.divisor !== undefined && f.handle !== undefined);
  const roots = tables.filter((f) => (f.htid ?? 0) >= KERNEL_HTID_MIN);
  if (roots.length !== 1) return false;
  const rootId = roots[0]?.htid;
  const rootKeys = present.filter((f) => isKey(f) && f.htid === rootId);
  const link = rootKeys[0];
  if (rootKeys.length !== 1 || link?.link !== DISPATCH_HTID || link.flowidMinor !== undefined || link.hashMask !== undefined || !link.keys.every((k) => k.mask === 0)) return false;
  for (const table of tables) {
    const htid = table.htid ?? 0;
    if (htid >= KERNEL_HTID_MIN) continue;
    if (!isEngineHtid(htid)) return false;
    if (htid === DISPATCH_HTID ? table.divisor !== 1 : table.divisor !== divisorOf(htid)) return false;
  }
  if (!tables.some((t) => t.htid === DISPATCH_HTID)) return false;
  // Every key sits in an engine table.
  return present.filter(isKey).every((f) => f.htid === rootId || isEngineHtid(f.htid ?? 0));
}

/** Divisor of the engine's length table `htid` (0x3LL / 0x4LL). */
function divisorOf(htid: number): number {
  const length = htid & 0xff;
  if (length === 0) return 1;
  return 2 ** (length - Math.floor((length - 1) / 8) * 8);
}

function diffFilters(ctx: TreeContext, subjects: TreeSubject[], actual: readonly TcFilter[], ops: { filterDel: Operation[]; structure: Operation[]; entryAdd: Operation[] }): void {
  const own = treePrio(ctx);
  const byPrio = new Map<number, TcFilter[]>();
  for (const filter of actual) {
    const list = byPrio.get(filter.prio) ?? [];
    list.push(filter);
    byPrio.set(filter.prio, list);
  }
  for (const [prio, present] of [...byPrio].sort((a, b) => a[0] - b[0])) {
    if (prio !== own) ops.filterDel.push(...deletePrio(ctx, prio, present, `prio ${prio} is not the engine's`));
  }
  const present = byPrio.get(own) ?? [];

  if (ctx.key === 'all') {
    const first = subjects[0];
    if (!first) return;
    const keys = present.filter(isKey);
    const ok =
      keys.length === 1 &&
      keys[0]?.flowidMinor === first.subject.classMinor &&
      keys[0]?.protocol === 'all' &&
      keys[0]?.link === undefined &&
      keys[0]?.keys.every((k) => k.mask === 0) === true &&
      present.filter((f) => f.divisor !== undefined).length <= 1;
    if (!ok) {
      if (present.length > 0) ops.filterDel.push(...deletePrio(ctx, own, present, 'wrong match-all filter'));
      ops.entryAdd.push(matchAllOp(ctx, first));
    }
    return;
  }

  const { tables: wantedTables, entries } = wantedEntries(ctx, subjects);
  if (present.length === 0) ops.structure.push(...skeletonOps(ctx));
  const tablesPresent = new Set(present.filter((f) => f.divisor !== undefined).map((f) => f.htid ?? 0));

  // Dispatch keys: exactly one per length in use, at its node.
  const keptLinks = new Set<number>();
  for (const key of present.filter((f) => isKey(f) && f.htid === DISPATCH_HTID)) {
    const table = key.link === undefined ? undefined : wantedTables.get(key.link);
    const ok =
      table !== undefined &&
      key.node === table.dispatchNode &&
      key.flowidMinor === undefined &&
      key.keys.length === 1 &&
      key.keys[0]?.value === table.versionKey.value &&
      key.keys[0]?.mask === table.versionKey.mask &&
      key.keys[0]?.off === 0 &&
      (table.hashOffset === null ? (key.hashMask ?? 0) === 0 : key.hashMask === table.hashMask && key.hashOffset === table.hashOffset);
    if (ok && table) keptLinks.add(table.htid);
    else ops.filterDel.push(deleteKey(ctx, key, `stray link ${key.handle ?? '?'}`));
  }
  for (const table of [...wantedTables.values()].sort((a, b) => a.htid - b.htid)) {
    if (!tablesPresent.has(table.htid)) ops.structure.push(tableOp(ctx, table));
    if (!keptLinks.has(table.htid)) ops.structure.push(dispatchKeyOp(ctx, table));
  }

  // Entries: keep those that already match (same table, bucket, prefix and class); delete the rest.
  const want = new Map<string, WantedEntry>();
  for (const item of entries) want.set(`${item.entry.table.htid}|${item.entry.bucket}|${item.entry.prefixText}`, item);
  const kept = new Set<string>();
  const nodes = new NodeAllocator();
  for (const filter of present) {
    if (!isKey(filter) || filter.htid === DISPATCH_HTID || (filter.htid ?? 0) >= KERNEL_HTID_MIN) continue;
    const htid = filter.htid ?? 0;
    const family = htid >= 0x400 ? 6 : 4;
    const prefix = filter.link === undefined ? prefixFromKeys(filter.keys, family, ctx.key === 'src' ? 'src' : 'dst') : null;
    const id = `${htid}|${filter.bucket ?? -1}|${prefix ?? '?'}`;
    const item = want.get(id);
    if (item && !kept.has(id) && item.entry.minor === filter.flowidMinor && prefix !== null && Number(prefix.split('/')[1]) === (htid & 0xff)) {
      kept.add(id);
      nodes.reserve(htid, item.entry.bucket, filter.node ?? 0);
      continue;
    }
    ops.filterDel.push(deleteKey(ctx, filter, `stray entry ${filter.handle ?? '?'}${prefix ? ` (${prefix} → 1:${hex(filter.flowidMinor ?? 0)})` : ''}`));
  }
  // Capped subjects' entries first: a shield takes a node only where one is left.
  const missing = [...want].filter(([id]) => !kept.has(id)).sort((a, b) => Number(a[1].shield === true) - Number(b[1].shield === true));
  for (const [, item] of missing) {
    const node = item.shield ? nodes.tryAllocate(item.entry) : nodes.allocate(item.entry);
    if (node !== null) ops.entryAdd.push(entryOp(ctx, item.entry, node, item.note));
  }
}
