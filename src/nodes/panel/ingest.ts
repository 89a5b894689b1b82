/**
 * Exactly-once ingestion of a node's ledger into the panel's usage tables.
 *
 * Each node has one cursor row (`bw_node_cursors`): the agent's ledger id and the last sequence
 * number written. A page is written in one transaction that first locks the cursor row, re-reads
 * it, keeps only the entries after it and moves it to the last one written. A replayed page, a
 * retry after a lost answer, or a second panel process pulling the same node at the same time
 * (high availability on one MariaDB/PostgreSQL database) therefore adds nothing twice: the second
 * writer waits for the lock, then finds the cursor past its entries.
 */
import type { Knex } from 'knex';

import { dialectOf } from '../../db/dialect.js';
import { addToRollups, increment, writeRollups, writeTotals, type Rollups } from '../../accounting/store.js';
import type { Logger } from '../../plugin-api.js';
import { countIntoCycles, type CountedDelta } from '../../db/quota-cycles.js';
import type { NodeLink } from '../link.js';
import type { LedgerEntry, LedgerPage } from '../protocol.js';

/** What ingesting one page did. */
export interface PageResult {
  /** Entries written by this call (0 when another writer had them already). */
  written: number;
  /** The cursor after the call. */
  cursor: number;
  /** True when the agent no longer holds entries the cursor had not reached (its retention ran out). */
  gap: boolean;
  /** Quota cycles the page added bytes to (the enforcer evaluates them next). */
  cycles: number;
}

/** The last sequence number written of one node's ledger (0: none yet). */
export async function readCursor(db: Knex, node: string, ledgerId: string): Promise<number> {
  const row = (await db('bw_node_cursors').where({ node, ledger_id: ledgerId }).first()) as Record<string, unknown> | undefined;
  return row ? Number(row.seq) : 0;
}

/** Locks one cursor row for the transaction (SQLite: the first write takes the database lock). */
async function lockCursor(trx: Knex.Transaction, node: string, ledgerId: string): Promise<number> {
  const where = { node, ledger_id: ledgerId };
  if (dialectOf(trx) === 'sqlite') await trx('bw_node_cursors').where(where).update({ node });
  const row = (await (dialectOf(trx) === 'sqlite' ? trx('bw_node_cursors').where(where).first() : trx('bw_node_cursors').where(where).forUpdate().first())) as Record<string, unknown>;
  return Number(row.seq);
}

/**
 * Writes one ledger page of `node` (see the module comment). Each ledger (each agent state file)
 * has its own cursor, so a replaced state file starts from 0 and nothing of the old one repeats.
 */
export async function ingestPage(db: Knex, node: string, page: LedgerPage, options: { now?: number; logger?: Logger } = {}): Promise<PageResult> {
  await db('bw_node_cursors').insert({ node, ledger_id: page.ledgerId, seq: 0, updated_at: options.now ?? Date.now() }).onConflict(['node', 'ledger_id']).ignore();
  return db.transaction(async (trx) => {
    const after = await lockCursor(trx, node, page.ledgerId);
    const gap = page.oldest !== null && page.oldest > after + 1 && after > 0;
    if (gap) options.logger?.warn('the node no longer holds ledger entries the panel had not read (its retention ran out)', { node, cursor: after, oldest: page.oldest });
    // Only the run that continues the cursor is written: a page asked from further on (a cursor that
    // was ahead, a stray replay) would leave a hole behind the cursor forever. Below the agent's
    // oldest entry there is nothing left to wait for (its retention ran out).
    const fresh: LedgerEntry[] = [];
    let next = Math.max(after + 1, page.oldest ?? 0);
    for (const entry of page.entries) {
      if (entry.seq <= after) continue;
      if (entry.seq !== next) break;
      fresh.push(entry);
      next++;
    }
    const rollups = { hourly: new Map() as Rollups, daily: new Map() as Rollups };
    const counted: CountedDelta[] = [];
    // Two deltas of one series ending in the same millisecond are distinct bytes: they add up in one
    // row, never fail the page. Within a page they are summed here (PostgreSQL refuses an upsert that
    // meets one row twice); across pages and ledgers (two panel machines' own nodes) the upsert adds.
    const byKey = new Map<string, { row: Record<string, unknown>; up: bigint; down: bigint }>();
    for (const entry of fresh) {
      const up = BigInt(entry.upBytes);
      const down = BigInt(entry.downBytes);
      if (up === 0n && down === 0n) continue;
      addToRollups(rollups, entry.subjectType, entry.subjectId, entry.periodEnd, up, down);
      counted.push({ subjectType: entry.subjectType, subjectId: entry.subjectId, periodEnd: entry.periodEnd, up, down });
      const key = JSON.stringify([entry.subjectType, entry.subjectId, entry.source, entry.interface, entry.periodEnd]);
      const seen = byKey.get(key);
      if (seen) {
        seen.up += up;
        seen.down += down;
        continue;
      }
      byKey.set(key, {
        row: { subject_type: entry.subjectType, subject_id: entry.subjectId, node, source: entry.source, interface: entry.interface, period_start: entry.periodStart, period_end: entry.periodEnd },
        up,
        down,
      });
    }
    const rows = [...byKey.values()].map(({ row, up, down }) => ({ ...row, up_bytes: up.toString(), down_bytes: down.toString() }));
    for (let i = 0; i < rows.length; i += 500) {
      await trx('bw_usage')
        .insert(rows.slice(i, i + 500))
        .onConflict(['subject_type', 'subject_id', 'node', 'source', 'interface', 'period_end'])
        .merge({ up_bytes: increment(trx, 'bw_usage', 'up_bytes'), down_bytes: increment(trx, 'bw_usage', 'down_bytes') });
    }
    await writeRollups(trx, 'bw_usage_hourly', 'hour_start', rollups.hourly);
    await writeRollups(trx, 'bw_usage_daily', 'day_start', rollups.daily);
    await writeTotals(trx, rollups.daily);
    // Quota cycles count the page in the same transaction: exactly once, like the roll-ups.
    const cycles = await countIntoCycles(trx, counted, options.now ?? Date.now());
    const last = fresh.length > 0 ? fresh[fresh.length - 1]!.seq : after;
    await trx('bw_node_cursors').where({ node, ledger_id: page.ledgerId }).update({ seq: last, updated_at: options.now ?? Date.now() });
    return { written: fresh.length, cursor: last, gap, cycles };
  });
}

/** What catching up with one node did. */
export interface IngestResult {
  node: string;
  /** Entries written. */
  written: number;
  pages: number;
  cursor: number;
  head: number;
  /** Quota cycles added to (see {@link PageResult.cycles}). */
  cycles: number;
}

/**
 * Pulls `node`'s ledger from the panel's cursor until it has caught up with the head it reported,
 * page by page (each page one transaction, so an interruption loses nothing and repeats nothing).
 */
export async function ingestNode(
  db: Knex,
  link: NodeLink,
  options: { pageSize?: number; batchEntries?: number; logger?: Logger; now?: () => number } = {},
): Promise<IngestResult> {
  const pageSize = options.pageSize ?? 5000;
  const batchEntries = Math.max(pageSize, options.batchEntries ?? 25_000);
  const result: IngestResult = { node: link.node, written: 0, pages: 0, cursor: 0, head: 0, cycles: 0 };
  // The ledger's identity comes with its first page: the first request of an unknown ledger asks from 0.
  let ledgerId = knownLedgers.get(link);
  let after = ledgerId === undefined ? 0 : await readCursor(db, link.node, ledgerId);
  for (;;) {
    let page = await link.ledger(after, pageSize);
    if (page.ledgerId !== ledgerId) {
      ledgerId = page.ledgerId;
      knownLedgers.set(link, ledgerId);
      const cursor = await readCursor(db, link.node, ledgerId);
      if (cursor !== after) page = await link.ledger((after = cursor), pageSize);
    }
    // A backlog is written several pages to a transaction: a subject's hourly, daily and total rows
    // are then one upsert for all of its entries in them, not one per page.
    const pages = [page];
    let entries = page.entries.length;
    let last = page;
    while (last.entries.length === pageSize && entries < batchEntries) {
      const more = await link.ledger(last.entries[last.entries.length - 1]!.seq, pageSize);
      if (more.ledgerId !== page.ledgerId) break;
      pages.push(more);
      entries += more.entries.length;
      last = more;
    }
    const batch: LedgerPage = pages.length === 1 ? page : { ...page, head: last.head, entries: pages.flatMap((one) => one.entries) };
    const written = await ingestPage(db, link.node, batch, { ...(options.logger ? { logger: options.logger } : {}), now: (options.now ?? Date.now)() });
    result.pages += pages.length;
    result.written += written.written;
    result.cycles += written.cycles;
    result.head = last.head;
    result.cursor = written.cursor;
    after = written.cursor;
    if (last.entries.length < pageSize || written.cursor >= last.head) return result;
  }
}

/** The ledger id each link answered last (saves the first request of every pull). */
const knownLedgers = new WeakMap<NodeLink, string>();
