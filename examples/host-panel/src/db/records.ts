import type { Knex } from 'knex';
import type { NetworkRecord, PeerRecord, VmRecord } from '../../../../src/plugin-api.js';

/** Epoch-millisecond columns as ISO strings, as the API shows them. */
function timestamps(row: Record<string, unknown>): { created_at: string; updated_at: string } {
  return { created_at: new Date(Number(row.created_at)).toISOString(), updated_at: new Date(Number(row.updated_at)).toISOString() };
}

/**
 * A network or a VM row: both own a kernel interface on a node ('' netns is the root namespace:
 * null; '' node is the panel's own machine: null).
 */
function interfaceOwner(row: Record<string, unknown>) {
  return {
    id: Number(row.id),
    name: String(row.name),
    interface: String(row.interface),
    netns: row.netns ? String(row.netns) : null,
    node: row.node ? String(row.node) : null,
    ...timestamps(row),
  };
}

/** Database rows → the records of the host contract. */
export function toNetwork(row: Record<string, unknown>): NetworkRecord & { created_at: string; updated_at: string } {
  return interfaceOwner(row);
}

export function toPeer(row: Record<string, unknown>): PeerRecord {
  return {
    id: Number(row.id),
    network_id: Number(row.network_id),
    name: String(row.name),
    public_key: String(row.public_key),
    allowed_ips: JSON.parse(String(row.allowed_ips)) as string[],
    ...timestamps(row),
  };
}

export function toVm(row: Record<string, unknown>): VmRecord {
  return interfaceOwner(row);
}

/** Parses a route id; anything but a positive integer finds nothing. */
export function parseId(text: string | undefined): number | undefined {
  if (!text || !/^[1-9]\d{0,9}$/.test(text)) return undefined;
  const id = Number(text);
  return id <= 2_147_483_647 ? id : undefined;
}

export async function findNetwork(db: Knex, id: number): Promise<ReturnType<typeof toNetwork> | undefined> {
  const row = await db('networks').where({ id }).first();
  return row ? toNetwork(row) : undefined;
}

/** Whether a kernel interface name is taken in a namespace of a node by a network or a VM (other than `except`). */
export async function interfaceTaken(
  db: Knex,
  iface: string,
  netns: string | null,
  node: string | null,
  except?: { table: 'networks' | 'vms'; id: number },
): Promise<boolean> {
  for (const table of ['networks', 'vms'] as const) {
    const query = db(table).where({ interface: iface, netns: netns ?? '', node: node ?? '' });
    if (except?.table === table) query.whereNot({ id: except.id });
    if (await query.first()) return true;
  }
  return false;
}
