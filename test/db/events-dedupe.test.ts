/**
 * The audit log under a failure that repeats every reconcile (a VM whose tap already has a foreign
 * clsact qdisc): one row with a count and a last-seen time, not a row per interval; and events
 * kept for `retention_events_days` after they were last seen.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Knex } from 'knex';

import { enforceEventRetention, listEvents, recordEvent } from '../../src/db/events.js';
import { LimitsService, type Applier } from '../../src/limits/service.js';
import type { InterfaceOutcome } from '../../src/limits/applier.js';
import type { Logger } from '../../src/plugin-api.js';
import * as addRepeats from '../../migrations/0019_add_bw_events_repeats.js';
import { ENGINES, openMigrated } from '../support/databases.js';

const T0 = Date.UTC(2026, 4, 10, 12, 0, 0);
const MINUTE = 60_000;
const DAY = 86_400_000;
const CLSACT = 'Error: Exclusivity flag on, cannot modify.\nRTNETLINK answers: File exists (tap-web01 already has a clsact qdisc)';

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** An applier whose every reconcile answers the outcomes `next()` gives, on a clock the test moves. */
function scriptedApplier(next: () => InterfaceOutcome[]): Applier {
  const never = () => Promise.reject(new Error('not used by reconcileAll'));
  return { mode: 'local', applyInterface: never, removeInterface: never, reconcileAll: () => Promise.resolve(next()) };
}

const failed = (iface: string, node?: string): InterfaceOutcome => ({
  ...(node ? { node } : {}), interface: iface, netns: null, status: 'failed', operations: ['qdisc add dev ' + iface + ' clsact'], error: CLSACT, reason: 'kernel_refused',
});

async function rows(db: Knex) {
  return (await db('bw_events').orderBy('id')) as Record<string, unknown>[];
}

for (const engine of ENGINES) {
  describe(`audit events on ${engine.id}`, () => {
    test('a reconcile failing the same way every interval is one row: first at, last seen, count', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      let now = T0;
      t.mock.method(Date, 'now', () => now);
      const service = new LimitsService(db, scriptedApplier(() => [failed('tap-web01')]), silent);

      for (let pass = 0; pass < 5; pass++, now += MINUTE) await service.reconcileAll('reconcile', { resync: false });

      const stored = await rows(db);
      assert.equal(stored.length, 1, 'one row for five identical failures');
      assert.deepEqual([Number(stored[0]!.at), Number(stored[0]!.repeat_count), Number(stored[0]!.last_seen_at)], [T0, 5, T0 + 4 * MINUTE]);
      const { events, total } = await listEvents(db, { offset: 0, limit: 10 });
      assert.equal(total, 1);
      assert.deepEqual([events[0]!.repeatCount, events[0]!.lastSeenAt.getTime(), events[0]!.at.getTime()], [5, T0 + 4 * MINUTE, T0]);
      assert.deepEqual([events[0]!.result, events[0]!.reason, events[0]!.message], ['failed', 'kernel_refused', CLSACT]);
    });

    test('a different outcome in between starts a new row; each interface and node counts its own', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      let now = T0;
      t.mock.method(Date, 'now', () => now);
      const script: InterfaceOutcome[][] = [
        [failed('tap-a'), failed('tap-b')],
        [failed('tap-a'), failed('tap-b'), failed('tap-a', 'hv-02')],
        // tap-a repaired (a plan ran and succeeded), then failing again.
        [{ interface: 'tap-a', netns: null, status: 'applied', operations: ['qdisc del dev tap-a clsact'], error: null, reason: null }, failed('tap-b')],
        [failed('tap-a'), failed('tap-b'), failed('tap-a', 'hv-02')],
      ];
      let pass = 0;
      const service = new LimitsService(db, scriptedApplier(() => script[pass]!), silent);

      for (; pass < script.length; pass++, now += MINUTE) await service.reconcileAll('reconcile', { resync: false });

      const summary = (await rows(db)).map((row) => {
        const value = JSON.parse(String(row.new_value)) as { interface: string };
        return [value.interface, String(row.result), Number(row.repeat_count)];
      });
      assert.deepEqual(summary, [
        ['tap-a', 'failed', 2],
        ['tap-b', 'failed', 4],
        ['tap-a', 'failed', 2], // on hv-02
        ['tap-a', 'applied', 1],
        ['tap-a', 'failed', 1],
      ]);
      const newest = (await listEvents(db, { offset: 0, limit: 10 })).events.map((e) => [(e.newValue as { interface: string }).interface, e.repeatCount]);
      assert.deepEqual(newest.slice(0, 3).sort(), [['tap-a', 1], ['tap-a', 2], ['tap-b', 4]], 'what repeats until now is listed first');
    });

    test('events without a repeat key, or that differ in any field, are never merged', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const base = { actor: 'admin', subjectType: 'peer' as const, subjectId: '42', action: 'limit.set', newValue: { up_kbps: 1, down_kbps: 2 }, result: 'failed' as const, message: 'm' };

      await recordEvent(db, base, T0);
      await recordEvent(db, base, T0 + 1);
      await recordEvent(db, { ...base, repeatKey: 'k' }, T0 + 2);
      await recordEvent(db, { ...base, repeatKey: 'k', message: 'other' }, T0 + 3);
      await recordEvent(db, { ...base, repeatKey: 'k', actor: 'api' }, T0 + 4);
      await recordEvent(db, { ...base, repeatKey: 'k', actor: 'api' }, T0 + 5);

      assert.deepEqual((await rows(db)).map((row) => Number(row.repeat_count)), [1, 1, 1, 1, 2]);
    });

    test('retention deletes events last seen before the cutoff, and keeps an old one that still repeats', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const event = { actor: 'reconcile', action: 'reconcile', result: 'failed' as const, message: CLSACT, repeatKey: 'tap' };
      await recordEvent(db, { ...event, repeatKey: null, message: 'old, once' }, T0 - 400 * DAY);
      await recordEvent(db, event, T0 - 400 * DAY);
      await recordEvent(db, event, T0 - DAY); // the same failure, still going
      await recordEvent(db, { ...event, repeatKey: null, message: 'recent' }, T0 - 10 * DAY);
      // A row as a plugin version before 0019 writes it (no last-seen time).
      await db('bw_events').insert({ at: T0 - 400 * DAY, actor: 'old', action: 'limit.set', result: 'ok' });

      const deleted = await enforceEventRetention(db, T0, 365);

      assert.equal(deleted, 2);
      assert.deepEqual((await rows(db)).map((row) => [row.message, Number(row.repeat_count)]), [[CLSACT, 2], ['recent', 1]]);
    });

    test('0019 gives existing rows a count of 1 and their own time as last seen, down and up again', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      await addRepeats.down(db);
      assert.equal(await db.schema.hasColumn('bw_events', 'repeat_count'), false);
      await db('bw_events').insert([
        { at: T0, actor: 'admin', action: 'limit.set', result: 'ok', message: 'ünïcode' },
        { at: T0 + MINUTE, actor: 'reconcile', action: 'reconcile', result: 'failed' },
      ]);

      await addRepeats.up(db);
      await addRepeats.up(db); // a second up is a no-op

      assert.deepEqual((await rows(db)).map((row) => [Number(row.repeat_count), Number(row.last_seen_at), row.repeat_key]), [[1, T0, null], [1, T0 + MINUTE, null]]);
      const { events } = await listEvents(db, { offset: 0, limit: 10 });
      assert.deepEqual(events.map((e) => e.actor), ['reconcile', 'admin'], 'newest first');
    });
  });
}
