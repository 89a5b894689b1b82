import type { Knex } from 'knex';
import { nextClassMinor } from '../shaping/class-ids.js';

/** An interface whose class minors are handed out together (minors are unique per node and interface). */
export interface AllocationKey {
  node: string;
  interface: string;
}

/** Thrown inside a transaction when an interface has no allocation row yet; the row is created outside and the transaction runs again. */
class NoAllocationRow extends Error {
  override name = 'NoAllocationRow';
  constructor(readonly key: AllocationKey) {
    super(`No bw_class_allocators row for ${key.node}/${key.interface}`);
  }
}

/** How often a transaction runs again after a deadlock or a lost insert race before its error is thrown. */
const RETRIES = 5;

/**
 * A deadlock (MySQL/MariaDB `ER_LOCK_DEADLOCK`, PostgreSQL `40P01`/`40001`) or the race of two
 * first writes of one subject from two panel processes (the second run updates): the transaction
 * was rolled back as a whole and running it again is safe. A duplicate class minor is not retried:
 * with the turns it cannot happen, so it is a bug to see, not to hide.
 */
function isRetryable(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (e.code === 'ER_LOCK_DEADLOCK' || e.code === '40P01' || e.code === '40001') return true;
  const unique = e.code === 'ER_DUP_ENTRY' || e.code === '23505' || /UNIQUE constraint failed/.test(e.message ?? '');
  return unique && !/bw_limits_class_uq|class_minor/.test(e.message ?? '');
}

const keyOf = (key: AllocationKey) => JSON.stringify([key.node, key.interface]);

/**
 * Takes one interface's allocation turn in `trx`: an UPDATE of its `bw_class_allocators` row holds
 * the row lock until `trx` ends (SQLite: the database's write lock), so writers of one interface
 * take turns and each reads the minors every earlier writer committed.
 * @returns false when the interface has no row yet.
 */
async function takeTurn(trx: Knex.Transaction, key: AllocationKey): Promise<boolean> {
  const updated = await trx('bw_class_allocators').where({ node: key.node, interface: key.interface }).increment('turns', 1);
  return Number(updated) > 0;
}

/**
 * Runs `work` in one transaction that first takes the allocation turn of every interface in `keys`
 * (in a fixed order, so two writers never wait for each other crosswise). Inside, {@link allocateClassMinor}
 * hands out minors no concurrent writer can take too. The turns come before any other statement:
 * a MySQL/MariaDB REPEATABLE READ transaction reads from a snapshot taken at its first plain read,
 * which must not be older than the turn. Deadlocks and lost insert races run `work` again (up to 5 times).
 * @example await inAllocationTurn(db, [{ node: 'local', interface: 'wg0' }], (trx) => allocateClassMinor(trx, 'local', 'wg0'));
 */
export async function inAllocationTurn<T>(db: Knex, keys: AllocationKey[], work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const ordered = [...new Map(keys.map((key) => [keyOf(key), key])).entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, key]) => key);
  let created = 0;
  for (let attempt = 0; ; ) {
    try {
      return await db.transaction(async (trx) => {
        for (const key of ordered) if (!(await takeTurn(trx, key))) throw new NoAllocationRow(key);
        return work(trx);
      });
    } catch (error) {
      if (error instanceof NoAllocationRow && created < ordered.length) {
        // Outside the transaction: a MySQL UPDATE that finds no row takes a gap lock, and two
        // transactions inserting into each other's gap deadlock.
        await db('bw_class_allocators').insert({ node: error.key.node, interface: error.key.interface, turns: 0 }).onConflict(['node', 'interface']).ignore();
        created += 1;
        continue;
      }
      if (!isRetryable(error) || attempt >= RETRIES) throw error;
      attempt += 1;
    }
  }
}

/**
 * The lowest free class minor of an interface, read in a transaction of {@link inAllocationTurn}
 * that holds this interface's turn (the caller stores it before the transaction ends).
 * @param reserved - minors this transaction already gave out but has not stored yet.
 */
export async function allocateClassMinor(trx: Knex.Transaction, node: string, iface: string, reserved: Iterable<number> = []): Promise<number> {
  const used = await trx('bw_limits').where({ node, interface: iface }).whereNotNull('class_minor').pluck('class_minor');
  return nextClassMinor(used.map(Number), reserved);
}
