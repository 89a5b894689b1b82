import type { ActualInterface, ActualTree } from './actual.js';
import { parseCidr, type Prefix } from './addresses.js';
import {
  entriesFor,
  MATCH_ALL_PRIO,
  prefixFromKeys,
  u32Handle,
  type EntrySpec,
  type TableSpec,
} from './classify.js';
import { capOn, placementOf, type MatchKey, type TreeSide } from './directions.js';
import { ifbNameFor } from './ifb-name.js';
import { leafArgs, type LeafKind } from './leaf.js';
import type { DesiredInterface, DesiredSubject } from './model.js';
import { op, type Operation } from './operations.js';
import type { TcFilter } from './parse-filter-json.js';
import { htbDefaultMinor, type TcQdisc } from './parse-qdisc-json.js';
import { htbClassArgs, printedRateBits, UNLIMITED_KBPS } from './rates.js';

/** What the planner needs to know about the kernel (a subset of the probe's result). */
export interface PlanCapabilities {
  /** Leaf qdisc to put under each subject's class. */
  leaf: LeafKind;
}

/** Thrown when the desired state cannot be expressed (a bucket is full, a foreign clsact is in the way). */
export class PlanError extends Error {
  override name = 'PlanError';
}

/** Minor of the class for unlimited traffic, the HTB default. */
export const UNLIMITED_MINOR = 0xffff;
/** Priority of the ingress redirect to the IFB. */
export const INGRESS_REDIRECT_PRIO = 1;

interface TreeSubject {
  subject: DesiredSubject;
  kbps: number;
  prefixes: Prefix[];
}

interface TreeContext {
  device: string;
  netns: string | undefined;
  side: TreeSide;
  key: MatchKey;
  leaf: LeafKind;
}

const hex = (n: number): string => n.toString(16);
const classId = (minor: number): string => `1:${hex(minor)}`;

/**
 * Pure planner: the ordered operations that take `actual` to `desired` for one interface.
 *
 * - a tree (HTB `1:` with `default ffff`) on the interface's egress for subjects' `down`, and on its IFB
 *   (fed by an `ingress` qdisc redirecting with `act_mirred`) for subjects' `up`; no tree, no ingress
 *   qdisc and no IFB where no subject is limited;
 * - a missing or foreign root ⇒ full build; otherwise only the difference: a rate change is one
 *   `class change`, adding or removing a subject touches its class, leaf and filters only;
 * - deletions of filters come before deletions of classes (HTB refuses to delete a class filters
 *   point at), additions of classes before the filters that point at them.
 *
 * @param desired - validated with `parseDesiredInterface`.
 * @param actual - from `readActual` (or `emptyActual` for a fresh interface).
 */
export function planInterface(desired: DesiredInterface, actual: ActualInterface, caps: PlanCapabilities): Operation[] {
  const netns = desired.netns;
  const ifb = ifbNameFor(desired.name, netns);
  const before: Operation[] = [];
  const tc: Operation[] = [];
  const after: Operation[] = [];

  if (!actual.exists) {
    if (actual.ifb.exists) after.push(op('ip', ['link', 'del', 'dev', ifb], netns, `interface ${desired.name} is gone: remove its IFB`));
    return after;
  }

  const subjectsOn = (side: TreeSide): TreeSubject[] =>
    desired.subjects
      .filter((subject) => capOn(subject, side) > 0)
      .sort((a, b) => a.classMinor - b.classMinor)
      .map((subject) => ({ subject, kbps: capOn(subject, side), prefixes: subject.addresses.map((cidr) => parseCidr(cidr)) }));

  // Down: the interface's own egress.
  const down = placementOf(desired.kind, 'down');
  tc.push(
    ...planTree(
      { device: desired.name, netns, side: down.side, key: down.key, leaf: caps.leaf },
      subjectsOn(down.side),
      actual.egress,
    ),
  );

  // Up: ingress → IFB.
  const up = placementOf(desired.kind, 'up');
  const upSubjects = subjectsOn(up.side);
  const ours = (filter: TcFilter): boolean => filter.prio === INGRESS_REDIRECT_PRIO;
  // At prio 1 the kernel lists a header, the root table (`800:`) and our one redirect entry.
  const redirect = actual.ingressFilters.filter((filter) => ours(filter) && filter.mirredTo !== undefined);
  const otherEntries = actual.ingressFilters.filter(
    (filter) => ours(filter) && filter.mirredTo === undefined && filter.handle !== undefined && filter.divisor === undefined,
  );
  const hasIngressQdisc = ingressQdisc(actual.egress) !== null;
  if (upSubjects.length > 0) {
    if (!actual.ifb.exists) {
      before.push(op('ip', ['link', 'add', 'name', ifb, 'type', 'ifb'], netns, `IFB for the ingress of ${desired.name} (subjects' up)`));
    }
    if (!actual.ifb.exists || !actual.ifb.up) before.push(op('ip', ['link', 'set', 'dev', ifb, 'up'], netns, `bring ${ifb} up`));
    const clsact = actual.egress?.qdiscs.find((q) => q.kind === 'clsact');
    if (clsact) throw new PlanError(`${desired.name} has a clsact qdisc; the engine needs the ingress qdisc to redirect to ${ifb}`);
    if (!hasIngressQdisc) {
      tc.push(op('tc', ['qdisc', 'add', 'dev', desired.name, 'handle', 'ffff:', 'ingress'], netns, `ingress of ${desired.name}`));
    }
    const redirectOk =
      hasIngressQdisc && redirect.length === 1 && redirect[0]?.mirredTo === ifb && redirect[0]?.protocol === 'all' && otherEntries.length === 0;
    if (!redirectOk) {
      if (hasIngressQdisc && actual.ingressFilters.some(ours)) {
        tc.push(op('tc', ['filter', 'del', 'dev', desired.name, 'parent', 'ffff:', 'prio', String(INGRESS_REDIRECT_PRIO)], netns, 'wrong ingress redirect'));
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
    tc.push(
      ...planTree(
        { device: ifb, netns, side: up.side, key: up.key, leaf: caps.leaf },
        upSubjects,
        actual.ifb.exists ? actual.ifb.tree : null,
      ),
    );
  } else {
    if (hasIngressQdisc && redirect.some((filter) => filter.mirredTo === ifb)) {
      const foreign = actual.ingressFilters.some((filter) => !ours(filter));
      tc.push(
        foreign
          ? op('tc', ['filter', 'del', 'dev', desired.name, 'parent', 'ffff:', 'prio', String(INGRESS_REDIRECT_PRIO)], netns, 'no subject limits its up: drop the redirect')
          : op('tc', ['qdisc', 'del', 'dev', desired.name, 'ingress'], netns, 'no subject limits its up: drop the ingress qdisc'),
      );
    }
    if (actual.ifb.exists) after.push(op('ip', ['link', 'del', 'dev', ifb], netns, 'no subject limits its up: remove the IFB'));
  }
  return [...before, ...tc, ...after];
}

function ingressQdisc(tree: ActualTree | null): TcQdisc | null {
  return tree?.qdiscs.find((q) => q.kind === 'ingress') ?? null;
}

function rootQdisc(tree: ActualTree | null): TcQdisc | null {
  return tree?.qdiscs.find((q) => q.root) ?? null;
}

/** True when the root qdisc is the engine's HTB (`1:` with `default ffff`). */
export function isEngineRoot(qdisc: TcQdisc | null): boolean {
  return qdisc !== null && qdisc.kind === 'htb' && qdisc.handle === '1:' && htbDefaultMinor(qdisc) === UNLIMITED_MINOR;
}

function planTree(ctx: TreeContext, subjects: TreeSubject[], actual: ActualTree | null): Operation[] {
  const { device, netns } = ctx;
  const root = rootQdisc(actual);
  const ours = isEngineRoot(root);
  if (subjects.length === 0) {
    return ours ? [op('tc', ['qdisc', 'del', 'dev', device, 'root'], netns, `no limited subject on ${device}: remove the engine's tree`)] : [];
  }
  const filters = desiredFilters(ctx, subjects);
  if (!ours || actual === null) return fullBuild(ctx, subjects, filters, root);

  const ops = { filterDel: [] as Operation[], classDel: [] as Operation[], classSet: [] as Operation[], structure: [] as Operation[], entryAdd: [] as Operation[] };
  diffFilters(ctx, filters, actual.filters, ops);

  const wanted = new Map(subjects.map((s) => [s.subject.classMinor, s]));
  const classes = new Map(actual.classes.filter((c) => c.kind === 'htb' && c.major === 1).map((c) => [c.minor, c]));
  for (const [minor] of classes) {
    if (minor !== UNLIMITED_MINOR && !wanted.has(minor)) {
      ops.classDel.push(op('tc', ['class', 'del', 'dev', device, 'classid', classId(minor)], netns, `stray class ${classId(minor)}`));
    }
  }
  const unlimited = classes.get(UNLIMITED_MINOR);
  if (unlimited === undefined) ops.classSet.push(unlimitedClass(ctx, 'add'));
  else if (!rateMatches(unlimited, UNLIMITED_KBPS)) ops.classSet.push(unlimitedClass(ctx, 'change'));

  const leaves = new Map(actual.qdiscs.filter((q) => q.parent !== null).map((q) => [q.parent, q]));
  for (const s of subjects) {
    const minor = s.subject.classMinor;
    const current = classes.get(minor);
    if (current === undefined) {
      ops.classSet.push(subjectClass(ctx, s, 'add'), subjectLeaf(ctx, s, 'add'));
      continue;
    }
    if (!rateMatches(current, s.kbps)) ops.classSet.push(subjectClass(ctx, s, 'change'));
    const leaf = leaves.get(classId(minor));
    if (leaf === undefined) ops.classSet.push(subjectLeaf(ctx, s, 'add'));
    else if (leaf.kind !== ctx.leaf || leaf.handle !== `${hex(minor)}:`) ops.classSet.push(subjectLeaf(ctx, s, 'replace'));
  }
  return [...ops.filterDel, ...ops.classDel, ...ops.classSet, ...ops.structure, ...ops.entryAdd];
}

function rateMatches(current: { rateBits?: number; ceilBits?: number }, kbps: number): boolean {
  const expected = printedRateBits(kbps);
  return current.rateBits === expected && current.ceilBits === expected;
}

function describe(ctx: TreeContext, s: TreeSubject): string {
  const direction = ctx.side === 'egress' ? 'down' : 'up';
  return `${s.subject.type} ${s.subject.id} ${direction} ${s.kbps} kbit/s`;
}

function unlimitedClass(ctx: TreeContext, verb: 'add' | 'change'): Operation {
  return op(
    'tc',
    ['class', verb, 'dev', ctx.device, 'parent', '1:', 'classid', classId(UNLIMITED_MINOR), 'htb', ...htbClassArgs(UNLIMITED_KBPS)],
    ctx.netns,
    'class for unlimited traffic (HTB default)',
  );
}

function subjectClass(ctx: TreeContext, s: TreeSubject, verb: 'add' | 'change'): Operation {
  return op(
    'tc',
    ['class', verb, 'dev', ctx.device, 'parent', '1:', 'classid', classId(s.subject.classMinor), 'htb', ...htbClassArgs(s.kbps)],
    ctx.netns,
    describe(ctx, s),
  );
}

function subjectLeaf(ctx: TreeContext, s: TreeSubject, verb: 'add' | 'replace'): Operation {
  const minor = s.subject.classMinor;
  return op(
    'tc',
    ['qdisc', verb, 'dev', ctx.device, 'parent', classId(minor), 'handle', `${hex(minor)}:`, ...leafArgs(ctx.leaf)],
    ctx.netns,
    `leaf of ${s.subject.type} ${s.subject.id}`,
  );
}

// ---- filters -------------------------------------------------------------------------------

interface DesiredFilters {
  /** VM interface: the one match-all target. */
  matchAll: { minor: number; note: string } | null;
  tables: Map<number, TableSpec>;
  /** Entries per table prio, in planning order. */
  entries: Map<number, { entry: EntrySpec; note: string }[]>;
}

function desiredFilters(ctx: TreeContext, subjects: TreeSubject[]): DesiredFilters {
  const result: DesiredFilters = { matchAll: null, tables: new Map(), entries: new Map() };
  if (ctx.key === 'all') {
    const first = subjects[0];
    if (first) result.matchAll = { minor: first.subject.classMinor, note: `all traffic of ${describe(ctx, first)}` };
    return result;
  }
  for (const s of subjects) {
    for (const entry of entriesFor(s.prefixes, s.subject.classMinor, ctx.key)) {
      result.tables.set(entry.table.prio, entry.table);
      const list = result.entries.get(entry.table.prio) ?? [];
      list.push({ entry, note: `${entry.prefixText} → ${describe(ctx, s)}` });
      result.entries.set(entry.table.prio, list);
    }
  }
  return result;
}

function matchAllOp(ctx: TreeContext, minor: number, note: string): Operation {
  return op(
    'tc',
    ['filter', 'add', 'dev', ctx.device, 'parent', '1:', 'prio', String(MATCH_ALL_PRIO), 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'flowid', classId(minor)],
    ctx.netns,
    note,
  );
}

function tableOps(ctx: TreeContext, table: TableSpec): Operation[] {
  const base = ['filter', 'add', 'dev', ctx.device, 'parent', '1:', 'prio', String(table.prio), 'protocol', table.protocol];
  const ht = `${hex(table.htid)}:`;
  const link =
    table.hashOffset === null
      ? ['u32', 'match', 'u32', '0', '0', 'link', ht]
      : ['u32', 'match', 'u32', '0', '0', 'hashkey', 'mask', '0x000000ff', 'at', String(table.hashOffset), 'link', ht];
  const what = table.hashOffset === null ? `linear table ${ht} (${table.protocol})` : `hash table ${ht} (${table.protocol}, last byte at ${table.hashOffset})`;
  return [
    op('tc', [...base, 'u32'], ctx.netns, `u32 at prio ${table.prio}`),
    op('tc', [...base, 'handle', ht, 'u32', 'divisor', String(table.divisor)], ctx.netns, what),
    // No `ht 800::` here: the root table's id is allocated by the kernel per priority (800:, 801:, … and
    // cyclically after deletions), so the link goes to this priority's root by omitting `ht`.
    op('tc', [...base, ...link], ctx.netns, `link into ${ht}`),
  ];
}

function entryOp(ctx: TreeContext, entry: EntrySpec, node: number, note: string): Operation {
  const t = entry.table;
  const bucketHt = `${hex(t.htid)}:${hex(entry.bucket)}:`;
  const family = t.protocol === 'ip' ? 'ip' : 'ip6';
  return op(
    'tc',
    [
      'filter', 'add', 'dev', ctx.device, 'parent', '1:', 'prio', String(t.prio), 'protocol', t.protocol,
      'handle', u32Handle(t.htid, entry.bucket, node), 'u32', 'ht', bucketHt,
      'match', family, ctx.key, entry.prefixText, 'flowid', classId(entry.minor),
    ],
    ctx.netns,
    note,
  );
}

function deletePrio(ctx: TreeContext, prio: number, why: string): Operation {
  return op('tc', ['filter', 'del', 'dev', ctx.device, 'parent', '1:', 'prio', String(prio)], ctx.netns, why);
}

/** Allocates node ids per (table, bucket), lowest free in the entry's band. */
class NodeAllocator {
  private readonly used = new Map<string, Set<number>>();

  reserve(htid: number, bucket: number, node: number): void {
    this.bucket(htid, bucket).add(node);
  }

  allocate(entry: EntrySpec): number {
    const used = this.bucket(entry.table.htid, entry.bucket);
    for (let node = entry.band[0]; node <= entry.band[1]; node += 1) {
      if (!used.has(node)) {
        used.add(node);
        return node;
      }
    }
    throw new PlanError(
      `Bucket ${hex(entry.table.htid)}:${hex(entry.bucket)}: is full for /${entry.prefix.length} prefixes ` +
        `(${entry.band[1] - entry.band[0] + 1} entries); cannot place ${entry.prefixText}`,
    );
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

function fullBuild(ctx: TreeContext, subjects: TreeSubject[], filters: DesiredFilters, root: TcQdisc | null): Operation[] {
  const { device, netns } = ctx;
  const verb = root === null || root.handle === '0:' ? 'add' : 'replace';
  const out: Operation[] = [
    op('tc', ['qdisc', verb, 'dev', device, 'root', 'handle', '1:', 'htb', 'default', 'ffff'], netns, `engine's HTB on ${device}`),
    unlimitedClass(ctx, 'add'),
  ];
  for (const s of subjects) out.push(subjectClass(ctx, s, 'add'), subjectLeaf(ctx, s, 'add'));
  if (filters.matchAll) out.push(matchAllOp(ctx, filters.matchAll.minor, filters.matchAll.note));
  const nodes = new NodeAllocator();
  for (const prio of [...filters.tables.keys()].sort((a, b) => a - b)) {
    const table = filters.tables.get(prio);
    if (table) out.push(...tableOps(ctx, table));
    for (const { entry, note } of filters.entries.get(prio) ?? []) out.push(entryOp(ctx, entry, nodes.allocate(entry), note));
  }
  return out;
}

function diffFilters(
  ctx: TreeContext,
  wanted: DesiredFilters,
  actual: readonly TcFilter[],
  ops: { filterDel: Operation[]; structure: Operation[]; entryAdd: Operation[] },
): void {
  const byPrio = new Map<number, TcFilter[]>();
  for (const filter of actual) {
    const list = byPrio.get(filter.prio) ?? [];
    list.push(filter);
    byPrio.set(filter.prio, list);
  }

  // The VM's match-all priority.
  const matchAll = byPrio.get(MATCH_ALL_PRIO) ?? [];
  if (wanted.matchAll) {
    const targets = matchAll.filter((f) => f.flowidMinor !== undefined);
    const ok =
      targets.length === 1 &&
      targets[0]?.flowidMinor === wanted.matchAll.minor &&
      targets[0]?.protocol === 'all' &&
      targets[0]?.keys.every((k) => k.mask === 0) === true &&
      matchAll.every((f) => f.flowidMinor !== undefined || f.link === undefined);
    if (!ok) {
      if (matchAll.length > 0) ops.filterDel.push(deletePrio(ctx, MATCH_ALL_PRIO, 'wrong match-all filter'));
      ops.entryAdd.push(matchAllOp(ctx, wanted.matchAll.minor, wanted.matchAll.note));
    }
  } else if (matchAll.length > 0) {
    ops.filterDel.push(deletePrio(ctx, MATCH_ALL_PRIO, 'stray filters at prio 1'));
  }

  const nodes = new NodeAllocator();
  const prios = new Set<number>([...byPrio.keys(), ...wanted.tables.keys()]);
  for (const prio of [...prios].sort((a, b) => a - b)) {
    if (prio === MATCH_ALL_PRIO) continue;
    const table = wanted.tables.get(prio);
    const present = byPrio.get(prio) ?? [];
    if (table === undefined) {
      ops.filterDel.push(deletePrio(ctx, prio, `no entry left at prio ${prio}`));
      continue;
    }
    const desiredEntries = wanted.entries.get(prio) ?? [];
    if (present.length > 0 && !structureOk(table, present)) {
      ops.filterDel.push(deletePrio(ctx, prio, `prio ${prio} is not the engine's table ${hex(table.htid)}: rebuild it`));
    }
    if (present.length === 0 || !structureOk(table, present)) {
      ops.structure.push(...tableOps(ctx, table));
      for (const { entry, note } of desiredEntries) ops.entryAdd.push(entryOp(ctx, entry, nodes.allocate(entry), note));
      continue;
    }
    // Keep entries that already match (same bucket, prefix, class, node in band); delete the rest.
    const family = table.protocol === 'ip' ? 4 : 6;
    const key = ctx.key === 'all' ? 'dst' : ctx.key;
    const want = new Map<string, { entry: EntrySpec; note: string }>();
    for (const item of desiredEntries) want.set(`${item.entry.bucket}|${item.entry.prefixText}`, item);
    const kept = new Set<string>();
    for (const filter of present) {
      if (filter.flowidMinor === undefined || filter.handle === undefined) continue; // header, table, link
      const prefix = filter.htid === table.htid ? prefixFromKeys(filter.keys, family, key) : null;
      const id = `${filter.bucket ?? -1}|${prefix ?? '?'}`;
      const item = want.get(id);
      const node = filter.node ?? 0;
      if (item && !kept.has(id) && item.entry.minor === filter.flowidMinor && node >= item.entry.band[0] && node <= item.entry.band[1]) {
        kept.add(id);
        nodes.reserve(table.htid, item.entry.bucket, node);
        continue;
      }
      ops.filterDel.push(
        op(
          'tc',
          ['filter', 'del', 'dev', ctx.device, 'parent', '1:', 'prio', String(prio), 'protocol', table.protocol, 'handle', filter.handle, 'u32'],
          ctx.netns,
          `stray filter ${filter.handle}${prefix ? ` (${prefix} → 1:${hex(filter.flowidMinor)})` : ''}`,
        ),
      );
    }
    for (const [id, item] of want) {
      if (!kept.has(id)) ops.entryAdd.push(entryOp(ctx, item.entry, nodes.allocate(item.entry), item.note));
    }
  }
}

/** The priority holds the engine's table (right id, divisor, protocol) and a link into it with the right hash. */
function structureOk(table: TableSpec, present: readonly TcFilter[]): boolean {
  if (present.some((f) => f.protocol !== table.protocol || f.kind !== 'u32')) return false;
  const hasTable = present.some((f) => f.divisor === table.divisor && f.htid === table.htid && f.bucket === 0 && f.node === 0);
  const links = present.filter((f) => f.link !== undefined);
  const linkOk =
    links.length === 1 &&
    links[0]?.link === table.htid &&
    (table.hashOffset === null ? links[0]?.hashOffset === undefined : links[0]?.hashOffset === table.hashOffset);
  return hasTable && linkOk;
}
