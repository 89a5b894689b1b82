import type { Knex } from 'knex';
import { MAX_CLASS_MINOR, nextClassMinor } from '../shaping/class-ids.js';
import { inAllocationTurn, type AllocationKey } from './class-allocation.js';
import { toLimitRow, type InterfaceRef, type LimitRow } from './limits.js';

/** A network's caps (kbit/s; 0 = none) as `bw_network_caps` holds them. */
export interface NetworkCaps {
  networkId: string;
  /** Where the network's interface is. */
  node: string;
  interface: string;
  netns: string | null;
  /** All traffic of the interface stays under these. */
  totalUpKbps: number;
  totalDownKbps: number;
  /** The cap of each peer of the network that has none of its own. */
  defaultUpKbps: number;
  defaultDownKbps: number;
  updatedAt: Date;
}

/** The four caps of a network; a field left out keeps its stored value (0 for a network without a row). */
export type NetworkCapsInput = Partial<Pick<NetworkCaps, 'totalUpKbps' | 'totalDownKbps' | 'defaultUpKbps' | 'defaultDownKbps'>>;

/** True when the network caps its interface as a whole on either side: every subject then has a class. */
export const hasNetworkCap = (caps: Pick<NetworkCaps, 'totalUpKbps' | 'totalDownKbps'> | null | undefined): boolean =>
  caps !== null && caps !== undefined && (caps.totalUpKbps > 0 || caps.totalDownKbps > 0);

/** A network without caps (what a network without a row has). */
export const NO_NETWORK_CAPS = { totalUpKbps: 0, totalDownKbps: 0, defaultUpKbps: 0, defaultDownKbps: 0 } as const;

function toNetworkCaps(row: Record<string, unknown>): NetworkCaps {
  return {
    networkId: String(row.network_id),
    node: String(row.node),
    interface: String(row.interface),
    netns: row.netns ? String(row.netns) : null,
    totalUpKbps: Number(row.total_up_kbps),
    totalDownKbps: Number(row.total_down_kbps),
    defaultUpKbps: Number(row.default_up_kbps),
    defaultDownKbps: Number(row.default_down_kbps),
    updatedAt: new Date(Number(row.updated_at)),
  };
}

export async function getNetworkCaps(db: Knex, networkId: string): Promise<NetworkCaps | undefined> {
  const row = (await db('bw_network_caps').where({ network_id: networkId }).first()) as Record<string, unknown> | undefined;
  return row ? toNetworkCaps(row) : undefined;
}

/** The caps of these networks, by network id (networks without a row are left out). */
export async function getNetworkCapsMany(db: Knex, networkIds: string[]): Promise<Map<string, NetworkCaps>> {
  const found = new Map<string, NetworkCaps>();
  for (let i = 0; i < networkIds.length; i += 500) {
    const rows = (await db('bw_network_caps').whereIn('network_id', networkIds.slice(i, i + 500))) as Record<string, unknown>[];
    for (const row of rows) found.set(String(row.network_id), toNetworkCaps(row));
  }
  return found;
}

/** Every network with caps (for the overview), ordered by network id. */
export async function listNetworkCaps(db: Knex): Promise<NetworkCaps[]> {
  return ((await db('bw_network_caps').orderBy('network_id')) as Record<string, unknown>[]).map(toNetworkCaps);
}

/**
 * The network caps an interface is shaped with: those of the network its rows belong to (a
 * WireGuard interface carries one network), else those stored for the interface itself.
 */
export async function networkCapsOfInterface(db: Knex, ref: InterfaceRef, rows: Pick<LimitRow, 'networkId'>[]): Promise<NetworkCaps | undefined> {
  const networkId = rows.find((row) => row.networkId !== null)?.networkId;
  if (networkId) return getNetworkCaps(db, networkId);
  const query = db('bw_network_caps').where({ node: ref.node, interface: ref.interface });
  if (ref.netns === null) query.whereNull('netns');
  else query.where({ netns: ref.netns });
  const row = (await query.first()) as Record<string, unknown> | undefined;
  return row ? toNetworkCaps(row) : undefined;
}

/** What {@link setNetworkCaps} changed. */
export interface NetworkCapsChange {
  previous: NetworkCaps | undefined;
  current: NetworkCaps;
  /** Peer rows whose default or class changed: as they were, and after the write (`pending` where the kernel has to follow). */
  changes: { before: LimitRow; after: LimitRow }[];
}

/**
 * Stores a network's caps and follows them on its peers in ONE transaction that holds the
 * allocation turn of every interface its peers are on: the defaults are copied onto every peer row
 * of the network (`default_up/down_kbps`), every peer without a class gets a minor when a network
 * cap is set (fair sharing gives each subject its own class), and the rows that changed go
 * `pending` for the applier. Fields `caps` leaves out keep their stored values.
 * @param ref - the network and where its interface is now (kept in step on the row).
 */
export async function setNetworkCaps(db: Knex, ref: { networkId: string } & InterfaceRef, caps: NetworkCapsInput, now = Date.now()): Promise<NetworkCapsChange> {
  // Read outside the turn only to know which turns to take; inside, everything is read again.
  const interfaces = (await db('bw_limits').where({ network_id: ref.networkId }).distinct('node', 'interface')) as { node: string; interface: string }[];
  const keys: AllocationKey[] = [{ node: ref.node, interface: ref.interface }, ...interfaces.map((row) => ({ node: String(row.node), interface: String(row.interface) }))];
  return inAllocationTurn(db, keys, async (trx) => {
    const stored = (await trx('bw_network_caps').where({ network_id: ref.networkId }).first()) as Record<string, unknown> | undefined;
    const previous = stored ? toNetworkCaps(stored) : undefined;
    const base = previous ?? NO_NETWORK_CAPS;
    const values = {
      node: ref.node,
      interface: ref.interface,
      netns: ref.netns,
      total_up_kbps: caps.totalUpKbps ?? base.totalUpKbps,
      total_down_kbps: caps.totalDownKbps ?? base.totalDownKbps,
      default_up_kbps: caps.defaultUpKbps ?? base.defaultUpKbps,
      default_down_kbps: caps.defaultDownKbps ?? base.defaultDownKbps,
      updated_at: now,
    };
    if (stored) await trx('bw_network_caps').where({ network_id: ref.networkId }).update(values);
    else await trx('bw_network_caps').insert({ ...values, network_id: ref.networkId });
    const current = toNetworkCaps((await trx('bw_network_caps').where({ network_id: ref.networkId }).first()) as Record<string, unknown>);

    const rows = ((await trx('bw_limits').where({ network_id: ref.networkId }).orderBy('id')) as Record<string, unknown>[]).map(toLimitRow);
    const capped = hasNetworkCap(current);
    // Minors in use per interface, read once, handed out from a cursor: a network of thousands of
    // peers is one read per interface, not one scan of every minor per peer.
    const pools = new Map<string, { taken: Set<number>; cursor: number }>();
    const allocate = async (row: LimitRow): Promise<number> => {
      const key = JSON.stringify([row.node, row.interface]);
      let pool = pools.get(key);
      if (!pool) {
        const used = ((await trx('bw_limits').where({ node: row.node, interface: row.interface }).whereNotNull('class_minor').pluck('class_minor')) as unknown[]).map(Number);
        pool = { taken: new Set(used), cursor: 2 };
        pools.set(key, pool);
      }
      while (pool.cursor <= MAX_CLASS_MINOR && pool.taken.has(pool.cursor)) pool.cursor += 1;
      // Past the last minor: nextClassMinor throws the error that says so.
      const minor = pool.cursor <= MAX_CLASS_MINOR ? pool.cursor : nextClassMinor(pool.taken);
      pool.taken.add(minor);
      return minor;
    };
    // Set-wise, not a statement per peer: a network of 10,000 peers is a few statements per 500 rows.
    const changedRows = new Map<number, LimitRow>();
    const minors = new Map<number, number>();
    const pending: number[] = [];
    let latest = now - 1;
    for (const row of rows) {
      const defaultMoved = row.defaultUpKbps !== current.defaultUpKbps || row.defaultDownKbps !== current.defaultDownKbps;
      const wantsClass = capped || (row.upKbps === 0 && current.defaultUpKbps > 0) || (row.downKbps === 0 && current.defaultDownKbps > 0);
      if (row.classMinor === null && wantsClass) minors.set(row.id, await allocate(row));
      if (!defaultMoved && !minors.has(row.id)) continue;
      changedRows.set(row.id, row);
      if (minors.has(row.id) || effectiveDefaultMoved(row, current)) {
        pending.push(row.id);
        latest = Math.max(latest, row.updatedAt.getTime());
      }
    }
    if (rows.some((row) => row.defaultUpKbps !== current.defaultUpKbps || row.defaultDownKbps !== current.defaultDownKbps)) {
      await trx('bw_limits').where({ network_id: ref.networkId }).update({ default_up_kbps: current.defaultUpKbps, default_down_kbps: current.defaultDownKbps });
    }
    const withMinor = [...minors];
    for (let i = 0; i < withMinor.length; i += 500) {
      const chunk = withMinor.slice(i, i + 500);
      // Integers this function computed (ids read back, minors from nextClassMinor), inlined: a bound
      // parameter in a CASE has no type PostgreSQL can infer.
      const cases = chunk.map(([id, minor]) => `when ${Math.trunc(id)} then ${Math.trunc(minor)}`).join(' ');
      await trx('bw_limits').whereIn('id', chunk.map(([id]) => id)).update({ class_minor: trx.raw(`case id ${cases} end`) });
    }
    // One stamp newer than every row's last write: an applier that read a row before this one cannot record over it.
    const stamp = Math.max(now, latest + 1);
    for (let i = 0; i < pending.length; i += 500) {
      await trx('bw_limits').whereIn('id', pending.slice(i, i + 500)).update({ status: 'pending', last_error: null, reason: null, updated_at: stamp });
    }
    const ids = [...changedRows.keys()];
    const changes: NetworkCapsChange['changes'] = [];
    for (let i = 0; i < ids.length; i += 500) {
      const after = ((await trx('bw_limits').whereIn('id', ids.slice(i, i + 500)).orderBy('id')) as Record<string, unknown>[]).map(toLimitRow);
      for (const row of after) changes.push({ before: changedRows.get(row.id) as LimitRow, after: row });
    }
    return { previous, current, changes };
  });
}

/** True when the new defaults move a direction the row has no cap of its own in (its effective cap changes). */
const effectiveDefaultMoved = (row: LimitRow, caps: NetworkCaps): boolean =>
  (row.upKbps === 0 && row.defaultUpKbps !== caps.defaultUpKbps) || (row.downKbps === 0 && row.defaultDownKbps !== caps.defaultDownKbps);

/** Keeps a network's row in step with where its interface is now (the host renamed or moved it). */
export async function moveNetworkCaps(db: Knex, networkId: string, ref: InterfaceRef, now = Date.now()): Promise<void> {
  await db('bw_network_caps').where({ network_id: networkId }).update({ node: ref.node, interface: ref.interface, netns: ref.netns, updated_at: now });
}

/** Forgets a network's caps (the host no longer has the network); its peers' materialized defaults are cleared with it. */
export async function deleteNetworkCaps(db: Knex, networkId: string, now = Date.now()): Promise<NetworkCaps | undefined> {
  return db.transaction(async (trx) => {
    // A write first: on SQLite a transaction that reads before it writes fails with SQLITE_BUSY when another connection wrote meanwhile.
    await trx('bw_limits').where({ network_id: networkId }).andWhere((q) => q.where('default_up_kbps', '>', 0).orWhere('default_down_kbps', '>', 0))
      .update({ default_up_kbps: 0, default_down_kbps: 0, status: 'pending', updated_at: now });
    const stored = (await trx('bw_network_caps').where({ network_id: networkId }).first()) as Record<string, unknown> | undefined;
    if (!stored) return undefined;
    await trx('bw_network_caps').where({ network_id: networkId }).delete();
    return toNetworkCaps(stored);
  });
}
