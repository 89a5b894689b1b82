import type { Knex } from 'knex';
import { nextClassMinor } from '../shaping/class-ids.js';
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
 * moves to another interface gets a free class minor there, as `saveLimit` gives it.
 * @returns the rows refreshed (a row written since it was read is left as it is).
 */
export async function refreshLimits<T extends { row: LimitRow; subject: SubjectLimit }>(db: Knex, stale: T[], now = Date.now()): Promise<T[]> {
  const refreshed: T[] = [];
  for (let i = 0; i < stale.length; i += CHUNK) {
    await db.transaction(async (trx) => {
      for (const entry of stale.slice(i, i + CHUNK)) {
        const { row, subject } = entry;
        const values: Record<string, unknown> = {
          name: subject.name,
          network_id: subject.networkId,
          node: subject.node ?? 'local',
          interface: subject.interface,
          netns: subject.netns,
          addresses: JSON.stringify(subject.addresses),
          public_key: subject.publicKey ?? null,
          updated_at: now,
        };
        const node = subject.node ?? 'local';
        if ((subject.interface !== row.interface || node !== row.node) && isLimited(row)) {
          const used = await trx('bw_limits').where({ node, interface: subject.interface }).whereNotNull('class_minor').pluck('class_minor');
          values.class_minor = nextClassMinor(used.map(Number));
        }
        const updated = await trx('bw_limits').where({ id: row.id, updated_at: row.updatedAt.getTime() }).update(values);
        if (Number(updated) > 0) refreshed.push(entry);
      }
    });
  }
  return refreshed;
}
