import type { Knex } from 'knex';
import type { SubjectType } from '../plugin-api.js';
import { LOCAL_NODE } from '../nodes/node-name.js';
import { allocateClassMinor, inAllocationTurn } from './class-allocation.js';
import { toOutcomeReason, type OutcomeReason } from '../limits/outcome-reason.js';
import { effectiveCaps, isThrottled, type CapInputs } from '../limits/effective.js';

/** `throttled`: applied, with a quota's throttle in force (see src/limits/effective.ts). */
export type LimitStatus = KernelStatus | 'throttled';
/** What a node reports for a subject. */
export type KernelStatus = 'pending' | 'applied' | 'failed';

/** A subject's desired caps as stored in `bw_limits` (kbps, 0 = unlimited). */
export interface LimitRow {
  id: number;
  subjectType: SubjectType;
  subjectId: string;
  name: string;
  node: string;
  networkId: string | null;
  interface: string;
  netns: string | null;
  interfaceKind: 'wireguard' | 'vm';
  addresses: string[];
  /** A peer's WireGuard public key (accounting matches `wg show dump` lines by it). */
  publicKey: string | null;
  upKbps: number;
  downKbps: number;
  /** Guaranteed rate (kbit/s, each direction) under a network cap; 0 = an equal share. */
  minKbps: number;
  /** Burst rate (kbit/s) and size (bytes) above the cap after an idle period; 0 = none. */
  burstKbps: number;
  burstBytes: number;
  /** The network's default caps, materialized on the row (0: none); they apply where the own cap is 0. */
  defaultUpKbps: number;
  defaultDownKbps: number;
  /** A quota's throttle in force (null: none), kept beside the configured caps, never over them. */
  throttleUpKbps: number | null;
  throttleDownKbps: number | null;
  classMinor: number | null;
  status: LimitStatus;
  lastError: string | null;
  /** Why the status is what it is (null when applied, or not known yet). */
  reason: OutcomeReason | null;
  appliedAt: Date | null;
  updatedAt: Date;
}

/** What a hook knows about a subject and the caps wanted for it. */
export interface SubjectLimit {
  subjectType: SubjectType;
  subjectId: string;
  name: string;
  node?: string;
  networkId: string | null;
  interface: string;
  netns: string | null;
  interfaceKind: 'wireguard' | 'vm';
  addresses: string[];
  publicKey?: string | null;
  upKbps: number;
  downKbps: number;
  /** Absent: keep what is stored (0 for a new subject). */
  minKbps?: number;
  burstKbps?: number;
  burstBytes?: number;
}

export function toLimitRow(row: Record<string, unknown>): LimitRow {
  return {
    id: Number(row.id),
    subjectType: row.subject_type as SubjectType,
    subjectId: String(row.subject_id),
    name: String(row.name),
    node: String(row.node),
    networkId: row.network_id === null || row.network_id === undefined ? null : String(row.network_id),
    interface: String(row.interface),
    netns: row.netns ? String(row.netns) : null,
    interfaceKind: row.interface_kind === 'vm' ? 'vm' : 'wireguard',
    addresses: JSON.parse(String(row.addresses)) as string[],
    publicKey: row.public_key ? String(row.public_key) : null,
    upKbps: Number(row.up_kbps),
    downKbps: Number(row.down_kbps),
    minKbps: Number(row.min_kbps ?? 0),
    burstKbps: Number(row.burst_kbps ?? 0),
    // BIGINT: a string on MariaDB and PostgreSQL; at most 4 GiB, exact as a number.
    burstBytes: Number(row.burst_bytes ?? 0),
    defaultUpKbps: Number(row.default_up_kbps ?? 0),
    defaultDownKbps: Number(row.default_down_kbps ?? 0),
    throttleUpKbps: row.throttle_up_kbps === null || row.throttle_up_kbps === undefined ? null : Number(row.throttle_up_kbps),
    throttleDownKbps: row.throttle_down_kbps === null || row.throttle_down_kbps === undefined ? null : Number(row.throttle_down_kbps),
    classMinor: row.class_minor === null || row.class_minor === undefined ? null : Number(row.class_minor),
    status: row.status as LimitStatus,
    lastError: row.last_error ? String(row.last_error) : null,
    reason: toOutcomeReason(row.reason),
    appliedAt: row.applied_at === null || row.applied_at === undefined ? null : new Date(Number(row.applied_at)),
    updatedAt: new Date(Number(row.updated_at)),
  };
}

/**
 * Whether the kernel caps anything for this subject: its effective caps (its network's default and
 * a quota's throttle included, when the row carries them) are not both 0 (0/0 is unlimited: no
 * class of its own, unless its network has a network cap).
 */
export const isLimited = (limit: CapInputs): boolean => {
  const caps = effectiveCaps(limit);
  return caps.upKbps > 0 || caps.downKbps > 0;
};

export async function getLimit(db: Knex, subjectType: SubjectType, subjectId: string): Promise<LimitRow | undefined> {
  const row = await db('bw_limits').where({ subject_type: subjectType, subject_id: subjectId }).first();
  return row ? toLimitRow(row) : undefined;
}

export async function getLimits(db: Knex, subjectType: SubjectType, subjectIds: string[]): Promise<Map<string, LimitRow>> {
  const found = new Map<string, LimitRow>();
  for (let i = 0; i < subjectIds.length; i += 500) {
    const rows = await db('bw_limits').where({ subject_type: subjectType }).whereIn('subject_id', subjectIds.slice(i, i + 500));
    for (const row of rows) found.set(String(row.subject_id), toLimitRow(row));
  }
  return found;
}

/**
 * Stores a subject's desired caps (status `pending`) before anything touches the kernel.
 * A limited subject, and every peer of a network with a network cap, gets a class minor once and
 * keeps it while it stays on its interface; writers of one interface take turns
 * ({@link inAllocationTurn}), so two never pick the same minor (the unique index on (node,
 * interface, class_minor) stays as the last guard). The network's default caps are copied onto the
 * row in the same turn (see src/db/network-caps.ts). Share and burst fields the subject leaves out
 * keep their stored values.
 * @returns the row before (undefined for a new subject) and after.
 */
export async function saveLimit(db: Knex, subject: SubjectLimit, now = Date.now()): Promise<{ previous: LimitRow | undefined; current: LimitRow }> {
  const node = subject.node ?? LOCAL_NODE;
  // Unlimited subjects take the turn too: on SQLite it makes the transaction's first statement a
  // write, and a deferred transaction that reads before it writes fails at once with SQLITE_BUSY
  // when another connection writes meanwhile (the busy timeout does not apply to that upgrade).
  return inAllocationTurn(db, [{ node, interface: subject.interface }], async (trx) => {
    const previousRow = await trx('bw_limits').where({ subject_type: subject.subjectType, subject_id: subject.subjectId }).first();
    const previous = previousRow ? toLimitRow(previousRow) : undefined;
    const sameInterface = previous && previous.node === node && previous.interface === subject.interface;
    let classMinor = sameInterface ? previous.classMinor : null;
    const network = subject.networkId === null ? undefined : await trx('bw_network_caps').where({ network_id: subject.networkId }).first();
    const defaults = { defaultUpKbps: Number(network?.default_up_kbps ?? 0), defaultDownKbps: Number(network?.default_down_kbps ?? 0) };
    const networkCapped = Number(network?.total_up_kbps ?? 0) > 0 || Number(network?.total_down_kbps ?? 0) > 0;
    // A throttled subject keeps a class while its throttle is in force, whatever its own caps.
    const needsClass = networkCapped || isLimited({ ...subject, ...defaults }) || (previous !== undefined && isThrottled(previous));
    if (classMinor === null && needsClass) classMinor = await allocateClassMinor(trx, node, subject.interface);
    const values = {
      name: subject.name,
      node,
      network_id: subject.networkId,
      interface: subject.interface,
      netns: subject.netns,
      interface_kind: subject.interfaceKind,
      addresses: JSON.stringify(subject.addresses),
      public_key: subject.publicKey ?? null,
      up_kbps: subject.upKbps,
      down_kbps: subject.downKbps,
      min_kbps: subject.minKbps ?? previous?.minKbps ?? 0,
      burst_kbps: subject.burstKbps ?? previous?.burstKbps ?? 0,
      burst_bytes: subject.burstBytes ?? previous?.burstBytes ?? 0,
      default_up_kbps: defaults.defaultUpKbps,
      default_down_kbps: defaults.defaultDownKbps,
      class_minor: classMinor,
      status: 'pending',
      last_error: null,
      reason: null,
      updated_at: now,
    };
    if (previous) await trx('bw_limits').where({ id: previous.id }).update(values);
    else await trx('bw_limits').insert({ ...values, subject_type: subject.subjectType, subject_id: subject.subjectId, created_at: now });
    const current = toLimitRow(await trx('bw_limits').where({ subject_type: subject.subjectType, subject_id: subject.subjectId }).first());
    return { previous, current };
  });
}

/** A quota throttle per direction (kbps, 0 = that direction is not throttled), or null to lift it. */
export type Throttle = { upKbps: number; downKbps: number } | null;

/** True when `throttle` is the one in force on the row (null: none is). */
export const throttleEquals = (row: Pick<LimitRow, 'throttleUpKbps' | 'throttleDownKbps'>, throttle: Throttle): boolean =>
  throttle === null ? row.throttleUpKbps === null && row.throttleDownKbps === null : row.throttleUpKbps === throttle.upKbps && row.throttleDownKbps === throttle.downKbps;

/**
 * Puts a quota's throttle in force on a subject (or lifts it with null), beside its configured caps.
 * A subject without a class (unlimited) gets one in its interface's allocation turn. The row goes
 * `pending` for the applier; nothing is written when the throttle is already the one in force.
 * @returns the row after, or undefined when the subject has no row or nothing changed.
 */
export async function setThrottle(db: Knex, subjectType: SubjectType, subjectId: string, throttle: Throttle, now = Date.now()): Promise<LimitRow | undefined> {
  const stored = await getLimit(db, subjectType, subjectId);
  if (!stored) return undefined;
  const same = (row: LimitRow) => throttleEquals(row, throttle);
  if (same(stored)) return undefined;
  return inAllocationTurn(db, [{ node: stored.node, interface: stored.interface }], async (trx) => {
    const row = await trx('bw_limits').where({ subject_type: subjectType, subject_id: subjectId }).first();
    if (!row) return undefined;
    const current = toLimitRow(row);
    if (same(current)) return undefined;
    const classMinor = current.classMinor ?? (throttle !== null ? await allocateClassMinor(trx, current.node, current.interface) : null);
    await trx('bw_limits').where({ id: current.id }).update({
      throttle_up_kbps: throttle?.upKbps ?? null,
      throttle_down_kbps: throttle?.downKbps ?? null,
      class_minor: classMinor,
      status: 'pending',
      last_error: null,
      reason: null,
      updated_at: Math.max(now, current.updatedAt.getTime() + 1),
    });
    return toLimitRow(await trx('bw_limits').where({ id: current.id }).first());
  });
}

/** Removes a subject's row; returns what it held. */
export async function deleteLimit(db: Knex, subjectType: SubjectType, subjectId: string): Promise<LimitRow | undefined> {
  const previous = await getLimit(db, subjectType, subjectId);
  if (previous) await db('bw_limits').where({ id: previous.id }).delete();
  return previous;
}

/**
 * Records what the kernel answered for these rows (status, message and typed reason), unless a
 * newer write (updated_at) superseded them.
 */
export async function setStatus(
  db: Knex,
  rows: { id: number; updatedAt: Date; status?: LimitStatus; lastError?: string | null; reason?: OutcomeReason | null }[],
  status: LimitStatus,
  error: string | null,
  reason: OutcomeReason | null,
  now = Date.now(),
): Promise<void> {
  // A reconcile that changes nothing writes nothing (applied_at keeps the time of the first apply).
  const changed = rows.filter((row) => row.status !== status || row.lastError !== error || row.reason !== reason);
  for (let i = 0; i < changed.length; i += 200) {
    await db('bw_limits')
      .whereIn(['id', 'updated_at'], changed.slice(i, i + 200).map((row) => [row.id, row.updatedAt.getTime()]))
      .update({ status, last_error: error, reason, ...(status === 'applied' ? { applied_at: now } : {}) });
  }
}

/** Every row on one interface. */
export async function limitsOnInterface(db: Knex, node: string, iface: string, netns: string | null): Promise<LimitRow[]> {
  const query = db('bw_limits').where({ node, interface: iface }).orderBy('id');
  if (netns === null) query.whereNull('netns');
  else query.where({ netns });
  return (await query).map(toLimitRow);
}

export interface InterfaceRef {
  node: string;
  interface: string;
  netns: string | null;
}

/** Every interface that holds at least one subject. */
export async function interfacesWithLimits(db: Knex): Promise<InterfaceRef[]> {
  const rows = await db('bw_limits').distinct('node', 'interface', 'netns').orderBy(['node', 'interface']);
  return rows.map((row) => ({ node: String(row.node), interface: String(row.interface), netns: row.netns ? String(row.netns) : null }));
}

export interface LimitFilter {
  subjectType?: SubjectType;
  networkId?: string;
  status?: LimitStatus | 'unlimited';
  limitedOnly?: boolean;
}

/** Rows the kernel caps: configured caps, a network default, or a quota's throttle in force (as {@link isLimited}). */
const shapedRows = (q: Knex.QueryBuilder) =>
  q.where('up_kbps', '>', 0).orWhere('down_kbps', '>', 0).orWhere('default_up_kbps', '>', 0).orWhere('default_down_kbps', '>', 0)
    .orWhere('throttle_up_kbps', '>', 0).orWhere('throttle_down_kbps', '>', 0);

/** Narrows a `bw_limits` query by type, network, status (`unlimited` = 0/0, no default, not throttled) and limited-ness. */
export function applyFilter(query: Knex.QueryBuilder, filter: LimitFilter): Knex.QueryBuilder {
  if (filter.subjectType) query.where({ subject_type: filter.subjectType });
  if (filter.networkId) query.where({ network_id: filter.networkId });
  // Spelled out rather than NOT(shaped): the throttle columns are NULL, and NOT(NULL OR …) is not true.
  if (filter.status === 'unlimited') {
    query.where({ up_kbps: 0, down_kbps: 0, default_up_kbps: 0, default_down_kbps: 0 })
      .andWhere((q) => q.whereNull('throttle_up_kbps').orWhere('throttle_up_kbps', '<=', 0))
      .andWhere((q) => q.whereNull('throttle_down_kbps').orWhere('throttle_down_kbps', '<=', 0));
  }
  else if (filter.status) query.where({ status: filter.status }).andWhere(shapedRows);
  if (filter.limitedOnly) query.andWhere(shapedRows);
  return query;
}

/** One page of limits, ordered by subject type and name. */
export async function listLimits(db: Knex, filter: LimitFilter, page: { offset: number; limit: number }): Promise<LimitRow[]> {
  const query = applyFilter(db('bw_limits'), filter)
    .orderBy([{ column: 'subject_type' }, { column: 'name' }, { column: 'id' }])
    .offset(page.offset)
    .limit(page.limit);
  return (await query).map(toLimitRow);
}

export async function countLimits(db: Knex, filter: LimitFilter): Promise<number> {
  const [row] = await applyFilter(db('bw_limits'), filter).count({ n: '*' });
  return Number(row?.n ?? 0);
}

/** How many limited subjects are in each status. */
export async function countLimitsByStatus(db: Knex): Promise<Record<LimitStatus, number> & { total: number; subjects: number }> {
  const rows = (await applyFilter(db('bw_limits'), { limitedOnly: true }).select('status').count({ n: '*' }).groupBy('status')) as {
    status: string;
    n: number | string;
  }[];
  const counts = { pending: 0, applied: 0, failed: 0, throttled: 0, total: 0, subjects: 0 };
  for (const row of rows) {
    if (row.status in counts) counts[row.status as LimitStatus] = Number(row.n);
    counts.total += Number(row.n);
  }
  counts.subjects = await countLimits(db, {});
  return counts;
}
