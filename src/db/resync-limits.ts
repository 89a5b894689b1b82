import type { Knex } from 'knex';
import { LOCAL_NODE } from '../nodes/node-name.js';
import { allocateClassMinor, inAllocationTurn } from './class-allocation.js';
import { isLimited, type LimitRow, type SubjectLimit } from './limits.js';

/*
 * Writes of a resync with the host. Every write is guarded by the row's `updated_at` as it was
 * read: a hook that stored newer caps or addresses meanwhile wins, and the next resync looks again.
 */

const CHUNK = 200;

/**
 * Deletes rows whose subject the host no longer has.
 * @returns the rows deleted (a row written since it was read is kept).
 */
export async function dropLimits(db: Knex, rows: LimitRow[]): Promise<LimitRow[]> {
  const dropped: LimitRow[] = [];
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = rows.slice(i, i + CHUNK);
    await db('bw_limits').whereIn(['id', 'updated_at'], chunk.map((row) => [row.id, row.updatedAt.getTime()])).delete();
    const kept = new Set((await db('bw_limits').whereIn('id', chunk.map((row) => row.id)).pluck('id')).map(Number));
    dropped.push(...chunk.filter((row) => !kept.has(row.id)));
  }
  return dropped;
}

/**
 * Copies the host's name, network, interface, namespace, addresses and key into rows. A row that
 * moves to another interface gets a free class minor there (in that interface's allocation turn, as
 * `saveLimit` gets it) when it is limited or its new network has a network cap; an unlimited one
 * gives its minor up. A row that moves to another network takes that network's default caps.
 * @returns the rows refreshed (a row written since it was read is left as it is).
 */
export async function refreshLimits<T extends { row: LimitRow; subject: SubjectLimit }>(db: Knex, stale: T[], now = Date.now()): Promise<T[]> {
  const refreshed: T[] = [];
  const moves = (entry: T) => entry.subject.interface !== entry.row.interface || (entry.subject.node ?? LOCAL_NODE) !== entry.row.node;
  for (let i = 0; i < stale.length; i += CHUNK) {
    const chunk = stale.slice(i, i + CHUNK);
    // Rows that move take a minor on their new interface, so the chunk holds those interfaces' turns.
    const turns = chunk.filter((entry) => moves(entry)).map(({ subject }) => ({ node: subject.node ?? LOCAL_NODE, interface: subject.interface }));
    const done = await inAllocationTurn(db, turns, async (trx) => {
      const written: T[] = [];
      for (const entry of chunk) {
        const { row, subject } = entry;
        const node = subject.node ?? LOCAL_NODE;
        const values: Record<string, unknown> = {
          name: subject.name,
          network_id: subject.networkId,
          node,
          interface: subject.interface,
          netns: subject.netns,
          addresses: JSON.stringify(subject.addresses),
          public_key: subject.publicKey ?? null,
          updated_at: now,
        };
        let needsClass = isLimited(row);
        if (subject.networkId !== row.networkId) {
          const network = subject.networkId === null ? undefined : await trx('bw_network_caps').where({ network_id: subject.networkId }).first();
          const defaults = { defaultUpKbps: Number(network?.default_up_kbps ?? 0), defaultDownKbps: Number(network?.default_down_kbps ?? 0) };
          values.default_up_kbps = defaults.defaultUpKbps;
          values.default_down_kbps = defaults.defaultDownKbps;
          needsClass = isLimited({ ...row, ...defaults }) || Number(network?.total_up_kbps ?? 0) > 0 || Number(network?.total_down_kbps ?? 0) > 0;
        }
        // An unlimited row gives its minor up when it moves: it could be taken on the new interface.
        if (moves(entry)) values.class_minor = needsClass ? await allocateClassMinor(trx, node, subject.interface) : null;
        const updated = await trx('bw_limits').where({ id: row.id, updated_at: row.updatedAt.getTime() }).update(values);
        if (Number(updated) > 0) written.push(entry);
      }
      return written;
    });
    refreshed.push(...done);
  }
  return refreshed;
}
