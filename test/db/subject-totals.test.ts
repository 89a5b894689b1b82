/**
 * bw_usage_totals: each subject's all-time bytes, written in the transaction of the roll-ups by both
 * writers (a collector tick, a node's ledger page), so /metrics reads one row per subject instead of
 * summing two years of daily rows; and the generated /metrics token kept in bw_credentials.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Knex } from 'knex';

import { writeTick } from '../../src/accounting/store.js';
import { bigintColumn, sumBigint, toBigInt } from '../../src/db/bigint.js';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry, LedgerPage } from '../../src/nodes/protocol.js';
import { metricsAccess } from '../../src/routes/metrics.js';
import * as createTotals from '../../migrations/0018_create_bw_usage_totals.js';
import type { Logger } from '../../src/plugin-api.js';
import { ENGINES, openMigrated } from '../support/databases.js';
import { counterSample } from '../support/samples.js';

const T0 = Date.UTC(2026, 4, 10, 23, 30, 0);
const MINUTE = 60_000;
const ABOVE_2_53 = 2n ** 53n + 1n;

/** Totals per subject as `type/id` → [up, down], from bw_usage_totals. */
async function storedTotals(db: Knex): Promise<Map<string, [bigint, bigint]>> {
  const rows = (await db('bw_usage_totals').select('subject_type', 'subject_id', bigintColumn(db, 'up_bytes'), bigintColumn(db, 'down_bytes'))) as Record<string, unknown>[];
  return new Map(rows.map((row) => [`${String(row.subject_type)}/${String(row.subject_id)}`, [toBigInt(row.up_bytes)!, toBigInt(row.down_bytes)!]]));
}

/** The same per subject, summed from the daily roll-ups (what a scrape used to compute). */
async function dailySums(db: Knex): Promise<Map<string, [bigint, bigint]>> {
  const rows = (await db('bw_usage_daily')
    .select('subject_type', 'subject_id', sumBigint(db, 'up_bytes', 'up'), sumBigint(db, 'down_bytes', 'down'))
    .groupBy('subject_type', 'subject_id')) as Record<string, unknown>[];
  return new Map(rows.map((row) => [`${String(row.subject_type)}/${String(row.subject_id)}`, [toBigInt(row.up)!, toBigInt(row.down)!]]));
}

/** Entries over two subjects, an hour and a day boundary apart, the first past 2^53 bytes. */
function ledger(count: number): LedgerEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    seq: i + 1,
    subjectType: i % 2 === 0 ? 'peer' : 'vm',
    subjectId: i % 2 === 0 ? '42' : '7',
    source: i % 2 === 0 ? 'wireguard' : 'sysfs',
    interface: i % 2 === 0 ? 'wg0' : 'tap7',
    periodStart: T0 + i * 20 * MINUTE - MINUTE,
    periodEnd: T0 + i * 20 * MINUTE,
    upBytes: String(i === 0 ? ABOVE_2_53 : BigInt(1000 * (i + 1))),
    downBytes: String(7 * (i + 1)),
  }));
}

const page = (entries: LedgerEntry[], ledgerId = 'ledger-a'): LedgerPage => ({ node: 'hv1', ledgerId, head: entries.at(-1)?.seq ?? 0, oldest: 1, entries });

/** A logger that keeps what was logged. */
function recordingLogger(): Logger & { lines: { level: string; message: string }[] } {
  const lines: { level: string; message: string }[] = [];
  const log = (level: string) => (message: string) => void lines.push({ level, message });
  const logger = { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: () => logger };
  return logger as unknown as Logger & { lines: typeof lines };
}

for (const engine of ENGINES) {
  describe(`subject totals on ${engine.id}`, () => {
    test('a node\'s ledger pages add to the totals exactly what they add to the daily roll-ups, a replay nothing', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const entries = ledger(8);

      await ingestPage(db, 'hv1', page(entries.slice(0, 5)), { now: T0 });
      await ingestPage(db, 'hv1', page(entries), { now: T0 });
      await ingestPage(db, 'hv1', page(entries), { now: T0 }); // replayed: the cursor is past it

      const totals = await storedTotals(db);
      assert.deepEqual(totals, await dailySums(db));
      const peer = entries.filter((e) => e.subjectType === 'peer');
      assert.deepEqual(totals.get('peer/42'), [peer.reduce((sum, e) => sum + BigInt(e.upBytes), 0n), peer.reduce((sum, e) => sum + BigInt(e.downBytes), 0n)]);
      assert.ok(totals.get('peer/42')![0] > ABOVE_2_53, 'exact past 2^53');
    });

    test('a collector tick adds its bytes to the totals in its own transaction', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const peer = { type: 'peer' as const, id: 3, iface: 'wg0', key: 'k'.repeat(44) };

      await writeTick(db, [counterSample(peer, T0, 1_000n, 2_000n)]);
      await writeTick(db, [counterSample(peer, T0 + MINUTE, 1_500n, 2_250n)]);
      await writeTick(db, [counterSample(peer, T0 + 2 * MINUTE, 4_500n, 2_300n)]);

      // A peer's rx is what it sent (up).
      assert.deepEqual(await storedTotals(db), new Map([['peer/3', [3_500n, 300n]]]));
      assert.deepEqual(await storedTotals(db), await dailySums(db));
    });

    test('retention deletes daily rows, never totals: the counter does not go down', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      await ingestPage(db, 'hv1', page(ledger(6)), { now: T0 });
      const before = await storedTotals(db);

      await db('bw_usage_daily').delete();

      assert.deepEqual(await storedTotals(db), before);
    });

    test('0018 carries over what the daily roll-ups hold, down and up again', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      await createTotals.down(db);
      await db('bw_usage_daily').insert([
        { subject_type: 'peer', subject_id: '1', day_start: T0, up_bytes: String(ABOVE_2_53), down_bytes: '5' },
        { subject_type: 'peer', subject_id: '1', day_start: T0 + 86_400_000, up_bytes: '2', down_bytes: '6' },
        { subject_type: 'vm', subject_id: '1', day_start: T0, up_bytes: '3', down_bytes: '0' },
      ]);

      await createTotals.up(db);
      await createTotals.up(db); // a second up is a no-op

      assert.deepEqual(await storedTotals(db), new Map([['peer/1', [ABOVE_2_53 + 2n, 11n]], ['vm/1', [3n, 0n]]]));
    });

    test('the /metrics token is generated once, logged once, and the same for every process on the database', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const first = recordingLogger();
      const second = recordingLogger();

      const [a, b] = await Promise.all([
        metricsAccess(db, { metrics_token: '', metrics_open: false }, first, T0),
        metricsAccess(db, { metrics_token: '', metrics_open: false }, second, T0),
      ]);
      const again = recordingLogger();
      const c = await metricsAccess(db, { metrics_token: '', metrics_open: false }, again, T0);

      assert.ok(!a.open && !b.open && !c.open);
      assert.deepEqual([a.tokenSha256, b.tokenSha256], [c.tokenSha256, c.tokenSha256], 'one token for all');
      const printed = [...first.lines, ...second.lines].filter((line) => /\/metrics token `[^`]+`/.test(line.message));
      assert.equal(printed.length, 1, 'exactly one process prints it');
      assert.deepEqual(again.lines, [], 'a later start prints nothing');
      const token = /`([^`]+)`/.exec(printed[0]!.message)![1]!;
      assert.ok(token.length >= 32, 'at least 24 random bytes');
      const rows = (await db('bw_credentials').select('name', 'sha256')) as { name: string; sha256: string }[];
      assert.deepEqual(rows.map((row) => row.name), ['metrics_token']);
      assert.equal(rows[0]!.sha256, c.tokenSha256.toString('hex'));
      assert.ok(!rows[0]!.sha256.includes(token), 'only the hash is stored');
    });
  });
}
