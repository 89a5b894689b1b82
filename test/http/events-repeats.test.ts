import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { recordEvent } from '../../src/db/events.js';
import { HERMETIC_PLUGIN_OPTIONS, startPanel } from '../support/panel.js';
import { waitFor } from '../support/lab.js';

// Relative to now (within every retention, also with the clock layer's ±400 days), on a whole minute.
const T0 = Math.floor(Date.now() / 60_000) * 60_000 - 3_600_000;
const shown = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
const MINUTE = 60_000;
const CLSACT = 'RTNETLINK answers: File exists (tap-web01 already has a clsact qdisc)';

/** Five reconciles of tap-web01 failing the same way, a minute apart, as the reconcile loop records them. */
async function repeatedFailure(db: Parameters<typeof recordEvent>[0]): Promise<void> {
  for (let pass = 0; pass < 5; pass++) {
    await recordEvent(db, {
      actor: 'reconcile', action: 'reconcile', newValue: { interface: 'tap-web01', netns: null, operations: 3 },
      result: 'failed', message: CLSACT, reason: 'kernel_refused', repeatKey: JSON.stringify(['reconcile', 'local', null, 'tap-web01']),
    }, T0 + pass * MINUTE);
  }
}

describe('a failure that repeats in the audit log', () => {
  test('GET /api/bandwidth/events lists it once with its count and last-seen time', async (t) => {
    const host = await startPanel(t);
    await repeatedFailure(host.db);

    const response = await host.api.get('/api/bandwidth/events').expect(200);

    const body = response.body as { total: number; events: Record<string, unknown>[] };
    assert.equal(body.total, 1);
    assert.deepEqual(
      [body.events[0]!.at, body.events[0]!.last_seen_at, body.events[0]!.repeat_count, body.events[0]!.result, body.events[0]!.reason],
      [new Date(T0).toISOString(), new Date(T0 + 4 * MINUTE).toISOString(), 5, 'failed', 'kernel_refused'],
    );
  });

  test('the overview page shows it once, with ×5 and when it was last seen', async (t) => {
    const host = await startPanel(t);
    await repeatedFailure(host.db);
    const admin = await host.login();

    const page = await admin.agent.get('/admin/bandwidth').expect(200);

    assert.equal(page.text.split(CLSACT).length - 1, 2, 'one row: the message in its badge title and its text');
    const last = T0 + 4 * MINUTE;
    assert.ok(page.text.includes(`data-repeat-count="5">×5, last <time datetime="${new Date(last).toISOString()}">${shown(last)}</time>`), 'count and last-seen time');
  });

  test('an event seen once shows no count', async (t) => {
    const host = await startPanel(t);
    await recordEvent(host.db, { actor: 'admin', action: 'reconcile', newValue: { interface: 'wg0', netns: null, operations: 1 }, result: 'applied' }, T0);
    const admin = await host.login();

    const page = await admin.agent.get('/admin/bandwidth').expect(200);
    const api = (await host.api.get('/api/bandwidth/events').expect(200)).body as { events: Record<string, unknown>[] };

    assert.doesNotMatch(page.text, /data-repeat-count/);
    assert.deepEqual([api.events[0]!.repeat_count, api.events[0]!.last_seen_at], [1, new Date(T0).toISOString()]);
  });
});

describe('events retention', () => {
  test('the reconcile loop deletes events last seen longer ago than retention_events_days, and keeps the rest', async (t) => {
    const options = { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, retention_events_days: 30 } } };
    const host = await startPanel(t, options);
    const day = 86_400_000;
    const event = { actor: 'admin', action: 'limit.set', result: 'ok' as const };
    await recordEvent(host.db, { ...event, message: 'last seen 40 days ago' }, Date.now() - 40 * day);
    await recordEvent(host.db, { ...event, message: 'first seen 40 days ago, still repeating', repeatKey: 'k' }, Date.now() - 40 * day);
    await recordEvent(host.db, { ...event, message: 'first seen 40 days ago, still repeating', repeatKey: 'k' }, Date.now() - day);

    // The reconcile loop runs once at start, then every reconcile_interval_s.
    const restarted = await host.restart(options);

    const left = await waitFor('the old event to go', async () => {
      const rows = (await restarted.db('bw_events').orderBy('id').select('message')) as { message: string }[];
      return rows.length === 1 ? rows : undefined;
    }, 10_000);
    assert.deepEqual(left.map((row) => row.message), ['first seen 40 days ago, still repeating']);
  });
});
