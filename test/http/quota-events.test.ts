import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { HookRegistry } from '../../examples/host-panel/src/hooks.js';
import { ingestPage, readCursor } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry } from '../../src/nodes/protocol.js';
import type { Logger, PluginEventName, QuotaEventPayload } from '../../src/plugin-api.js';
import { seedHost, startPanel, type SeededHost, type TestPanel } from '../support/panel.js';

const GB = 1_000_000_000;
/** The plugin's clock: 06:00 UTC on 2 December 2026, in the cycle from 1 December to 1 January (UTC). */
const T0 = Date.UTC(2026, 11, 2, 6, 0, 0);
const MINUTE = 60_000;
const CYCLE = { cycle_start: '2026-12-01T00:00:00.000Z', cycle_end: '2027-01-01T00:00:00.000Z' };
const QUOTA_EVENTS: PluginEventName[] = ['bandwidth.quota.warning', 'bandwidth.quota.exceeded', 'bandwidth.quota.reset'];

interface Heard {
  name: PluginEventName;
  payload: QuotaEventPayload;
  pluginId: string;
}

/**
 * A panel on the plugin's fake clock with peer `laptop` and VM `web-01`, and a host listener of
 * every quota event (what it heard is in `heard`, in order).
 */
async function listeningHost(t: TestContext, options: { logLevel?: string } = {}) {
  const clock = { now: T0 };
  const host = await startPanel(t, { now: () => clock.now, ...options });
  const ids = await seedHost(host.api);
  const heard: Heard[] = [];
  for (const name of QUOTA_EVENTS) {
    host.panel.hooks.onPluginEvent(name, (payload, { pluginId }) => void heard.push({ name, payload, pluginId }));
  }
  return { host, ids, clock, heard };
}

const LEDGER = 'quota-events';
/** Traffic of a peer through the real ingestion path: one ledger page of the `local` node with one delta. */
async function peerTraffic(host: TestPanel, ids: SeededHost, at: number, bytes: { up: number; down: number }): Promise<void> {
  const seq = (await readCursor(host.db, 'local', LEDGER)) + 1;
  const entry: LedgerEntry = {
    seq, subjectType: 'peer', subjectId: String(ids.peerId), source: 'wireguard', interface: 'wg0',
    periodStart: at - MINUTE, periodEnd: at, upBytes: String(bytes.up), downBytes: String(bytes.down),
  };
  const result = await ingestPage(host.db, 'local', { node: 'local', ledgerId: LEDGER, head: seq, oldest: 1, entries: [entry] }, { now: at });
  assert.equal(result.written, 1, 'the delta was ingested');
  assert.equal(result.cycles, 1, 'and counted into the peer\'s quota cycle');
}

/** Sets the peer's own quota through the plugin's API (which evaluates it at once). */
async function putPeerQuota(host: TestPanel, ids: SeededHost, body: Record<string, unknown>) {
  const response = await host.api.put(`/api/bandwidth/quotas/peer/${ids.peerId}`).send(body);
  assert.equal(response.status, 200, response.text);
  return response.body as Record<string, unknown>;
}

/** The payload every event about the laptop carries, over which each test states what differs. */
function laptopPayload(ids: SeededHost, fields: Partial<QuotaEventPayload>): QuotaEventPayload {
  return {
    subject_type: 'peer', subject_id: String(ids.peerId), subject_name: 'laptop', source: 'subject', percent: null,
    used_bytes: '0', limit_bytes: String(10 * GB), allowance_bytes: String(10 * GB), counted: 'total', ...CYCLE,
    action: 'throttle', throttled: false, reason: null, actor: 'api', ...fields,
  };
}

const QUOTA = { allowance_bytes: 10 * GB, warn_percents: [80, 100], throttle_up_kbps: 500, throttle_down_kbps: 2000 };

describe('host listeners hear the plugin\'s quota events', () => {
  test('a peer past 80% and then past its allowance: the listener hears warning, then exceeded, with the documented payload', async (t) => {
    const { host, ids, clock, heard } = await listeningHost(t);
    await putPeerQuota(host, ids, QUOTA);
    assert.deepEqual(heard, [], 'nothing used yet, nothing to tell');

    clock.now = T0 + 10 * MINUTE;
    await peerTraffic(host, ids, clock.now, { up: 3 * GB, down: 6 * GB });
    await putPeerQuota(host, ids, QUOTA);

    assert.deepEqual(heard, [{
      name: 'bandwidth.quota.warning', pluginId: 'bandwidth',
      payload: laptopPayload(ids, { percent: 80, used_bytes: String(9 * GB) }),
    }]);

    clock.now = T0 + 20 * MINUTE;
    const status = await putPeerQuota(host, ids, { ...QUOTA, allowance_bytes: 8 * GB });

    assert.equal(heard.length, 2);
    assert.deepEqual(heard[1], {
      name: 'bandwidth.quota.exceeded', pluginId: 'bandwidth',
      payload: laptopPayload(ids, { percent: 100, used_bytes: String(9 * GB), limit_bytes: String(8 * GB), allowance_bytes: String(8 * GB), throttled: true }),
    });
    assert.deepEqual([status.state, status.throttled], ['exceeded', true], 'the plugin went on to throttle the peer');
  });

  test('a manual reset and a new cycle: the listener hears reset, with reason manual (and who) and then cycle', async (t) => {
    const { host, ids, clock, heard } = await listeningHost(t);
    await putPeerQuota(host, ids, QUOTA);
    clock.now = T0 + 10 * MINUTE;
    await peerTraffic(host, ids, clock.now, { up: 0, down: 11 * GB });
    await putPeerQuota(host, ids, QUOTA);
    assert.deepEqual(heard.map((h) => [h.name, h.payload.percent]), [['bandwidth.quota.warning', 80], ['bandwidth.quota.exceeded', 100]]);

    const reset = await host.api.post(`/api/bandwidth/quotas/peer/${ids.peerId}/reset`);

    assert.equal(reset.status, 200, reset.text);
    assert.deepEqual(heard[2], { name: 'bandwidth.quota.reset', pluginId: 'bandwidth', payload: laptopPayload(ids, { reason: 'manual' }) });

    // Used up again, then the month ends: the next cycle restores the peer.
    clock.now = T0 + 30 * MINUTE;
    await peerTraffic(host, ids, clock.now, { up: 0, down: 12 * GB });
    await putPeerQuota(host, ids, QUOTA);
    assert.equal(heard.at(-1)?.name, 'bandwidth.quota.exceeded');
    clock.now = Date.UTC(2027, 0, 1, 0, 5);
    await putPeerQuota(host, ids, QUOTA);

    assert.deepEqual(heard.at(-1), {
      name: 'bandwidth.quota.reset', pluginId: 'bandwidth',
      payload: laptopPayload(ids, { reason: 'cycle', cycle_start: '2027-01-01T00:00:00.000Z', cycle_end: '2027-02-01T00:00:00.000Z' }),
    });
  });

  test('a listener that throws or rejects is logged, and neither the plugin nor the other listeners notice', async (t) => {
    const { host, ids, clock, heard } = await listeningHost(t);
    const calls: string[] = [];
    host.panel.hooks.onPluginEvent('bandwidth.quota.exceeded', () => {
      calls.push('throws');
      throw new Error('listener bug');
    });
    host.panel.hooks.onPluginEvent('bandwidth.quota.exceeded', async () => {
      calls.push('rejects');
      await Promise.reject(new Error('listener down'));
    });
    host.panel.hooks.onPluginEvent('bandwidth.quota.exceeded', () => void calls.push('after them'));
    await putPeerQuota(host, ids, QUOTA);
    clock.now = T0 + 10 * MINUTE;
    await peerTraffic(host, ids, clock.now, { up: 10 * GB, down: 1 });

    const status = await putPeerQuota(host, ids, QUOTA);

    assert.deepEqual(calls, ['throws', 'rejects', 'after them']);
    assert.deepEqual(heard.map((h) => h.name), ['bandwidth.quota.warning', 'bandwidth.quota.exceeded']);
    assert.deepEqual([status.state, status.throttled], ['exceeded', true]);
    const events = (await host.api.get('/api/bandwidth/events').expect(200)).body.events as { action: string }[];
    assert.ok(events.some((event) => event.action === 'quota.exceeded'), 'the plugin audited the notice as usual');
  });

  test('the reference host logs each quota event for operators (info)', async (t) => {
    const lines: string[] = [];
    t.mock.method(process.stderr, 'write', (chunk: unknown) => {
      lines.push(String(chunk));
      return true;
    });
    const { host, ids, clock } = await listeningHost(t, { logLevel: 'info' });
    await putPeerQuota(host, ids, QUOTA);
    clock.now = T0 + 10 * MINUTE;
    await peerTraffic(host, ids, clock.now, { up: 2 * GB, down: 8.5 * GB });
    await putPeerQuota(host, ids, QUOTA);
    await host.api.post(`/api/bandwidth/quotas/peer/${ids.peerId}/reset`).expect(200);

    const logged = lines.filter((line) => line.includes(' [panel:events] ')).map((line) => line.replace(/^\S+ /, '').replace(/ \{.*\n$/, ''));
    assert.deepEqual(logged, [
      `INFO [panel:events] quota warning for peer laptop (${ids.peerId}): 10.5 GB of 10 GB used (80%), throttled`,
      `INFO [panel:events] quota exceeded for peer laptop (${ids.peerId}): 10.5 GB of 10 GB used (100%), throttled`,
      `INFO [panel:events] quota reset for peer laptop (${ids.peerId}): reset by api`,
    ]);
    const fields = JSON.parse(/ (\{.*)\n$/.exec(lines.find((line) => line.includes('quota exceeded for'))!)![1]!) as Record<string, unknown>;
    assert.deepEqual([fields.plugin, fields.event, fields.used_bytes, fields.limit_bytes], ['bandwidth', 'bandwidth.quota.exceeded', '10500000000', '10000000000']);
  });
});

/** A logger that keeps its lines. */
function keptLogger(): Logger & { lines: { level: string; message: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) => void lines.push({ level, message, ...(fields ? { fields } : {}) });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

const PAYLOAD: QuotaEventPayload = {
  subject_type: 'vm', subject_id: '7', subject_name: 'web-01', source: 'default', percent: 90, used_bytes: '900', limit_bytes: '1000', allowance_bytes: '1000',
  counted: 'down', ...CYCLE, action: 'notify', throttled: false, reason: null, actor: 'quota',
};

describe('the host bus of plugin events (contract 1.3.0)', () => {
  test('a plugin may emit only the events its manifest declares: another is a TypeError naming it, and no listener hears it', () => {
    const registry = new HookRegistry(keptLogger());
    const heard: string[] = [];
    registry.onPluginEvent('bandwidth.quota.exceeded', () => void heard.push('exceeded'));
    const bus = registry.forPlugin('bandwidth', [], ['bandwidth.quota.warning']);
    const undeclared = registry.forPlugin('older', ['peer.created']);

    assert.throws(() => bus.emit!('bandwidth.quota.exceeded', PAYLOAD), {
      name: 'TypeError', message: 'Plugin `bandwidth` emits `bandwidth.quota.exceeded`, which its plugin.json "events" does not declare',
    });
    assert.throws(() => undeclared.emit!('bandwidth.quota.exceeded', PAYLOAD), { name: 'TypeError', message: /Plugin `older` emits `bandwidth\.quota\.exceeded`/ });
    assert.throws(() => bus.emit!('bandwidth.quota.surprise' as PluginEventName, PAYLOAD), { name: 'TypeError', message: /`bandwidth\.quota\.surprise`/ });
    assert.deepEqual(heard, []);
  });

  test('a declared event reaches its listeners with the emitting plugin, until they unsubscribe; a failing one is logged as an error', async () => {
    const logger = keptLogger();
    const registry = new HookRegistry(logger);
    const heard: [string, QuotaEventPayload, string][] = [];
    const stop = registry.onPluginEvent('bandwidth.quota.warning', (payload, { pluginId }) => void heard.push(['first', payload, pluginId]));
    registry.onPluginEvent('bandwidth.quota.warning', () => {
      throw new Error('listener bug');
    });
    registry.onPluginEvent('bandwidth.quota.warning', (payload, { pluginId }) => void heard.push(['third', payload, pluginId]));
    registry.onPluginEvent('bandwidth.quota.reset', () => void heard.push(['reset', PAYLOAD, '']));
    const bus = registry.forPlugin('bandwidth', [], ['bandwidth.quota.warning']);

    await bus.emit!('bandwidth.quota.warning', PAYLOAD);
    stop();
    await bus.emit!('bandwidth.quota.warning', PAYLOAD);

    assert.deepEqual(heard, [['first', PAYLOAD, 'bandwidth'], ['third', PAYLOAD, 'bandwidth'], ['third', PAYLOAD, 'bandwidth']]);
    assert.deepEqual(logger.lines.filter((line) => line.level === 'error'), [
      { level: 'error', message: 'a listener of bandwidth.quota.warning from plugin bandwidth failed', fields: { error: 'listener bug' } },
      { level: 'error', message: 'a listener of bandwidth.quota.warning from plugin bandwidth failed', fields: { error: 'listener bug' } },
    ]);
  });
});
