import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry } from '../../src/nodes/protocol.js';
import { HERMETIC_PLUGIN_OPTIONS, seedHost, startPanel, type Agent, type PanelOptions } from '../support/panel.js';
import { until } from '../support/poll.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** The plugin's clock: 10 February 2026, 12:00 UTC, inside the calendar month's cycle [1 Feb, 1 Mar). */
const T0 = Date.UTC(2026, 1, 10, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();
const BASE = '/api/bandwidth/quotas';
const MB = 1_000_000;
/** What the API answers for a quota body that gives only the allowance. */
const DEFAULTS = { counted: 'total', cycle_day: 1, time_zone: 'UTC', warn_percents: [80, 90, 100], action: 'throttle', throttle_up_kbps: 1000, throttle_down_kbps: 1000 };
const DRY_RUN = /^dry run: the `executor` option is `recording` \(dry run\)$/;

type Body = Record<string, unknown>;
type Subject = { type: 'peer' | 'vm'; id: number };

/**
 * A panel on the plugin's injected clock with the seeded host (network `office` with peer
 * `laptop`, VM `web-01`), and `use()`, which puts bytes in through the panel's ledger ingestion.
 */
async function quotaPanel(t: TestContext, options: PanelOptions = {}) {
  const clock = { now: T0 };
  const host = await startPanel(t, { now: () => clock.now, ...options });
  const seeded = await seedHost(host.api);
  let seq = 0;
  return {
    ...host,
    ...seeded,
    clock,
    peer: { type: 'peer', id: seeded.peerId } as Subject,
    vm: { type: 'vm', id: seeded.vmId } as Subject,
    /** Bytes a subject moved in the minute before the clock: one entry of the `local` node's ledger, written as a pull writes it. */
    async use(subject: Subject, up: number | bigint, down: number | bigint): Promise<void> {
      seq += 1;
      const entry: LedgerEntry = {
        seq, subjectType: subject.type, subjectId: String(subject.id), source: subject.type === 'peer' ? 'wireguard' : 'sysfs',
        interface: subject.type === 'peer' ? 'wg0' : 'tap-web01', periodStart: clock.now - MINUTE, periodEnd: clock.now, upBytes: String(up), downBytes: String(down),
      };
      const written = await ingestPage(host.db, 'local', { node: 'local', ledgerId: 'quota-api-test', head: seq, oldest: 1, entries: [entry] }, { now: clock.now });
      assert.equal(written.written, 1, 'arranged: the entry was ingested');
    },
  };
}

async function ok(request: PromiseLike<{ status: number; text: string; body: unknown }>, status = 200): Promise<Body> {
  const response = await request;
  assert.equal(response.status, status, response.text);
  return response.body as Body;
}

const quotaOf = (api: Agent, subject: Subject) => ok(api.get(`${BASE}/${subject.type}/${subject.id}`));

/** The fields of a subject's quota answer that tell its state. */
const stateOf = (body: Body) => ({
  source: body.source, state: body.state, used_bytes: body.used_bytes, limit_bytes: body.limit_bytes, remaining_bytes: body.remaining_bytes,
  extra_bytes: body.extra_bytes, throttled: body.throttled,
});

/** Every row of the quota tables, the limits and the audit log, to prove a refused request wrote nothing. */
async function quotaRows(db: Knex) {
  return {
    bw_quotas: await db('bw_quotas').orderBy('id'),
    bw_quota_cycles: await db('bw_quota_cycles').orderBy('id'),
    bw_limits: await db('bw_limits').orderBy('id'),
    bw_events: await db('bw_events').orderBy('id'),
  };
}

/** The audit log, oldest first, as [action, subject, new value]. */
async function events(api: Agent, filter: (event: Body) => boolean = () => true) {
  const body = await ok(api.get('/api/bandwidth/events?per_page=500'));
  return (body.events as Body[]).reverse().filter(filter).map((e) => [e.action, e.subject_type ? `${String(e.subject_type)}:${String(e.subject_id)}` : null, e.new]);
}

const quotaEvents = (event: Body) => String(event.action).startsWith('quota.');

async function peerRecord(p: { api: Agent; networkId: number; peerId: number }) {
  return (await ok(p.api.get(`/api/networks/${p.networkId}/peers/${p.peerId}`))).peer as Body;
}

const capsOf = (record: Body) => [record.bandwidth_up_kbps, record.bandwidth_down_kbps, record.bandwidth_status];

/** The tc lines a reconcile plans for one interface (the recording executor's dry run, planned from an empty kernel). */
async function plannedFor(api: Agent, iface: string): Promise<string[]> {
  const body = await ok(api.post('/api/bandwidth/reconcile'));
  const found = (body.interfaces as Body[]).find((outcome) => outcome.interface === iface);
  return (found?.operations as string[] | undefined) ?? [];
}

describe('quota settings and inheritance', () => {
  test('a peer inherits the default, then its network\'s quota, then its own; deleting each hands it back; a VM inherits only the default', async (t) => {
    const p = await quotaPanel(t);
    const none = await quotaOf(p.api, p.peer);
    assert.deepEqual(
      { source: none.source, quota: none.quota, own: none.own, state: none.state, used_bytes: none.used_bytes, cycle_start: none.cycle_start, throttled: none.throttled },
      { source: null, quota: null, own: null, state: null, used_bytes: null, cycle_start: null, throttled: false },
      'no quota anywhere',
    );

    const fallback = await ok(p.api.put(`${BASE}/default`).send({ allowance_bytes: 100_000 * MB }));
    assert.deepEqual(fallback, { target: 'default', quota: { allowance_bytes: 100_000 * MB, ...DEFAULTS } });
    for (const subject of [p.peer, p.vm]) {
      const inherited = await quotaOf(p.api, subject);
      assert.deepEqual(
        [inherited.source, inherited.quota, inherited.own, inherited.state, inherited.used_bytes, inherited.limit_bytes, inherited.remaining_bytes, inherited.cycle_start, inherited.cycle_end],
        ['default', fallback.quota, null, 'ok', 0, 100_000 * MB, 100_000 * MB, '2026-02-01T00:00:00.000Z', '2026-03-01T00:00:00.000Z'],
        `${subject.type} inherits the default`,
      );
    }

    const network = await ok(p.api.put(`${BASE}/network/${p.networkId}`).send({ allowance_bytes: 50_000 * MB, counted: 'down', cycle_day: 15 }));
    assert.deepEqual(network, { target: 'network', network_id: String(p.networkId), quota: { ...DEFAULTS, allowance_bytes: 50_000 * MB, counted: 'down', cycle_day: 15 } });
    assert.deepEqual(await ok(p.api.get(`${BASE}/network/${p.networkId}`)), network);
    const fromNetwork = await quotaOf(p.api, p.peer);
    assert.deepEqual([fromNetwork.source, fromNetwork.quota, fromNetwork.own, fromNetwork.cycle_start, fromNetwork.cycle_end],
      ['network', network.quota, null, '2026-01-15T00:00:00.000Z', '2026-02-15T00:00:00.000Z'], 'the network\'s cycle day applies');
    assert.equal((await quotaOf(p.api, p.vm)).source, 'default', 'a VM belongs to no network: the default still applies');

    const own = await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: 10_000 * MB, warn_percents: [50, 100] }));
    assert.deepEqual([own.source, own.own, own.quota], ['subject', { ...DEFAULTS, allowance_bytes: 10_000 * MB, warn_percents: [50, 100] }, own.own]);
    assert.deepEqual(await quotaOf(p.api, p.peer), own, 'GET answers what PUT answered');
    assert.equal((await quotaOf(p.api, p.vm)).source, 'default');

    await ok(p.api.delete(`${BASE}/peer/${p.peerId}`), 204);
    assert.deepEqual([(await quotaOf(p.api, p.peer)).source, (await quotaOf(p.api, p.peer)).own], ['network', null]);
    await ok(p.api.delete(`${BASE}/network/${p.networkId}`), 204);
    assert.deepEqual(await ok(p.api.get(`${BASE}/network/${p.networkId}`)), { target: 'network', network_id: String(p.networkId), quota: null });
    assert.equal((await quotaOf(p.api, p.peer)).source, 'default');
    await ok(p.api.delete(`${BASE}/default`), 204);
    assert.deepEqual(await ok(p.api.get(`${BASE}/default`)), { target: 'default', quota: null });
    for (const subject of [p.peer, p.vm]) {
      const gone = await quotaOf(p.api, subject);
      assert.deepEqual([gone.source, gone.quota, gone.state, gone.cycle_start], [null, null, null, null], `${subject.type}: no quota applies any more`);
    }
    await ok(p.api.delete(`${BASE}/default`), 204);

    assert.deepEqual(
      (await events(p.api, quotaEvents)).map(([action, subject, value]) => [action, subject, (value as Body | null)?.allowance_bytes ?? null]),
      [
        ['quota.set', null, String(100_000 * MB)],
        ['quota.set', null, String(50_000 * MB)],
        ['quota.set', `peer:${p.peerId}`, String(10_000 * MB)],
        ['quota.removed', `peer:${p.peerId}`, null],
        ['quota.removed', null, null],
        ['quota.removed', null, null],
      ],
      'every change is audited once (deleting what is not there is not); byte counts as decimal strings',
    );
  });

  test('a body with every field is stored as sent, and the peers API shows the subject\'s own quota', async (t) => {
    const p = await quotaPanel(t);
    const body = {
      allowance_bytes: '250000000000', counted: 'up', cycle_day: 28, time_zone: 'Asia/Kathmandu', warn_percents: [95, 50, 95],
      action: 'notify', throttle_up_kbps: 0, throttle_down_kbps: 0,
    };
    const answer = await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send(body));
    const stored = { ...body, allowance_bytes: 250_000_000_000, warn_percents: [50, 95] };
    assert.deepEqual([answer.own, answer.quota, answer.source], [stored, stored, 'subject']);
    // 28 January 00:00 in Kathmandu (+05:45) is 27 January 18:15 UTC.
    assert.deepEqual([answer.cycle_start, answer.cycle_end], ['2026-01-27T18:15:00.000Z', '2026-02-27T18:15:00.000Z']);
    const peer = await peerRecord(p);
    assert.deepEqual(
      [peer.quota_allowance_bytes, peer.quota_counted, peer.quota_cycle_day, peer.quota_time_zone, peer.quota_warn_percents, peer.quota_action, peer.quota_source, peer.quota_state],
      ['250000000000', 'up', 28, 'Asia/Kathmandu', [50, 95], 'notify', 'subject', 'ok'],
    );
    // A second PUT replaces every field: what it leaves out is the default again, not what was stored.
    const replaced = await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: 1 }));
    assert.deepEqual(replaced.own, { allowance_bytes: 1, ...DEFAULTS });
  });

  test('allowances and traffic blocks above 2^53 round-trip exactly, as integer literals', async (t) => {
    const p = await quotaPanel(t);
    const big = 2n ** 53n + 1n; // 9007199254740993: a double would print ...992
    const max = 2n ** 63n - 1n;

    const put = await p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: big.toString() });
    assert.equal(put.status, 200, put.text);
    assert.ok(put.text.includes(`"allowance_bytes":${big},`), put.text);
    assert.ok(put.text.includes(`"limit_bytes":${big},`) && put.text.includes(`"remaining_bytes":${big},`), put.text);
    const got = await p.api.get(`${BASE}/peer/${p.peerId}`);
    assert.equal(got.text, put.text, 'GET answers the same bytes');

    const extra = await p.api.post(`${BASE}/peer/${p.peerId}/extra`).set('content-type', 'application/json').send(`{"bytes":"${big}"}`);
    assert.equal(extra.status, 200, extra.text);
    assert.ok(extra.text.includes(`"extra_bytes":${big},`) && extra.text.includes(`"limit_bytes":${2n * big},`), extra.text);

    const network = await p.api.put(`${BASE}/network/${p.networkId}`).send({ allowance_bytes: max.toString() });
    assert.ok(network.text.includes(`"allowance_bytes":${max},`), network.text);
    const fallback = await p.api.put(`${BASE}/default`).send({ allowance_bytes: (max - 1n).toString() });
    assert.ok(fallback.text.includes(`"allowance_bytes":${max - 1n},`), fallback.text);
    assert.ok((await p.api.get(`${BASE}/default`)).text.includes(`"allowance_bytes":${max - 1n},`));
    const vm = await p.api.get(`${BASE}/vm/${p.vmId}`);
    assert.ok(vm.text.includes(`"limit_bytes":${max - 1n},`), vm.text);
    // Read as text: the SQLite driver hands a BIGINT over as a double.
    const [stored] = await p.db('bw_quotas').where({ subject_type: 'network' }).select(p.db.raw('CAST(allowance_bytes AS TEXT) AS bytes'));
    assert.equal(stored.bytes, max.toString(), 'stored exactly');
  });

  test('a cycle on day 31 in Europe/Berlin: in February it ends on the 28th, and the next one runs to 31 March across the change to summer time', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = Date.UTC(2026, 1, 15, 12, 0);
    const feb = await ok(p.api.put(`${BASE}/vm/${p.vmId}`).send({ allowance_bytes: 1_000 * MB, cycle_day: 31, time_zone: 'Europe/Berlin' }));
    // 31 January 00:00 CET (UTC+1) to 28 February 00:00 CET: February has no 31st.
    assert.deepEqual([feb.cycle_start, feb.cycle_end, feb.counted_from], ['2026-01-30T23:00:00.000Z', '2026-02-27T23:00:00.000Z', '2026-01-30T23:00:00.000Z']);

    // 28 February 10:00 UTC is in the next cycle; it ends at 31 March 00:00 CEST (UTC+2, from 29 March).
    p.clock.now = Date.UTC(2026, 1, 28, 10, 0);
    const march = await ok(p.api.put(`${BASE}/vm/${p.vmId}`).send({ allowance_bytes: 1_000 * MB, cycle_day: 31, time_zone: 'Europe/Berlin' }));
    assert.deepEqual([march.cycle_start, march.cycle_end, march.state, march.used_bytes], ['2026-02-27T23:00:00.000Z', '2026-03-30T22:00:00.000Z', 'ok', 0]);
  });

  test('right after a cycle ends, GET answers the next cycle without waiting for the reconcile loop', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = Date.UTC(2026, 1, 15, 12, 0);
    await ok(p.api.put(`${BASE}/vm/${p.vmId}`).send({ allowance_bytes: 1_000 * MB, cycle_day: 31, time_zone: 'Europe/Berlin' }));

    p.clock.now = Date.UTC(2026, 1, 28, 10, 0);
    const march = await quotaOf(p.api, p.vm);

    assert.deepEqual([march.source, march.cycle_start, march.cycle_end, march.state, march.used_bytes], ['subject', '2026-02-27T23:00:00.000Z', '2026-03-30T22:00:00.000Z', 'ok', 0]);
  });
});

describe('quota states with real usage', () => {
  test('the running panel warns at 80 %, and at 100 % throttles the peer after ingesting its bytes; the peer\'s own caps stay as typed', async (t) => {
    // The reconcile loop, at its shortest interval, is what evaluates quotas after the bytes come in here.
    const p = await quotaPanel(t, { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, reconcile_interval_s: 5 } } });
    await ok(p.api.put(`/api/bandwidth/limits/peer/${p.peerId}`).send({ bandwidth_up_kbps: 10_000, bandwidth_down_kbps: 50_000 }));
    await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: 1 * MB }));

    p.clock.now = T0 + HOUR;
    await p.use(p.peer, 300_000, 500_000);
    const warned = await until('the 80 % warning in the audit log', () => events(p.api, quotaEvents), (list) => list.some(([action]) => action === 'quota.warning'));
    assert.deepEqual(stateOf(await quotaOf(p.api, p.peer)), { source: 'subject', state: 'warning', used_bytes: 800_000, limit_bytes: MB, remaining_bytes: 200_000, extra_bytes: 0, throttled: false });
    assert.equal((warned.find(([action]) => action === 'quota.warning')![2] as Body).percent, 80);

    p.clock.now = T0 + 2 * HOUR;
    await p.use(p.peer, 0, 200_000);
    const exceeded = await until('the throttle', () => quotaOf(p.api, p.peer), (body) => body.throttled === true);
    // The throttle is stored, then applied: wait for the (dry-run) apply that follows.
    await until('the throttle applied', () => peerRecord(p), (peer) => peer.bandwidth_reason === 'dry_run');
    assert.deepEqual(stateOf(exceeded), { source: 'subject', state: 'exceeded', used_bytes: MB, limit_bytes: MB, remaining_bytes: 0, extra_bytes: 0, throttled: true });

    const peer = await peerRecord(p);
    assert.deepEqual(capsOf(peer).slice(0, 2), [10_000, 50_000], 'the configured caps are unchanged');
    // The recording executor applies nothing: a throttled subject stays `pending` (dry run), like any cap.
    assert.deepEqual([peer.bandwidth_status, peer.bandwidth_reason], ['pending', 'dry_run']);
    assert.match(String(peer.bandwidth_error), DRY_RUN);
    assert.deepEqual([peer.quota_state, peer.quota_used_bytes], ['exceeded', String(MB)]);
    const limits = (await ok(p.api.get('/api/bandwidth/limits?subject_type=peer'))).limits as Body[];
    assert.deepEqual(capsOf(limits[0]!).slice(0, 2), [10_000, 50_000]);
    assert.deepEqual(
      (await events(p.api, quotaEvents)).filter(([action]) => action !== 'quota.set').map(([action, subject, value]) => [action, subject, (value as Body | null)?.percent ?? value]),
      [
        ['quota.warning', `peer:${p.peerId}`, 80],
        ['quota.warning', `peer:${p.peerId}`, 90],
        ['quota.exceeded', `peer:${p.peerId}`, 100],
        ['quota.throttled', `peer:${p.peerId}`, { up_kbps: 1000, down_kbps: 1000 }],
      ],
      'each threshold once, then the throttle',
    );
    const planned = (await plannedFor(p.api, 'wg0')).join('\n');
    assert.match(planned, /rate 1000kbit/, planned);
    assert.doesNotMatch(planned, /rate 10000kbit|rate 50000kbit/, 'min(own cap, throttle) in both directions');
  });

  test('a quota set below what the cycle already used throttles an unlimited peer at once; its caps still read 0/0', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = T0 - 2 * HOUR;
    await p.use(p.peer, 1 * MB, 1 * MB);
    p.clock.now = T0;

    const answer = await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB, throttle_up_kbps: 256, throttle_down_kbps: 512 }));

    assert.deepEqual(stateOf(answer), { source: 'subject', state: 'exceeded', used_bytes: 2 * MB, limit_bytes: MB, remaining_bytes: 0, extra_bytes: 0, throttled: true });
    const peer = await peerRecord(p);
    assert.deepEqual(capsOf(peer), [0, 0, 'pending'], 'unlimited by its own caps, shaped by the throttle');
    const planned = (await plannedFor(p.api, 'wg0')).join('\n');
    assert.match(planned, /rate 256kbit/, planned);
    assert.match(planned, /rate 512kbit/, planned);
    assert.deepEqual(
      (await events(p.api, quotaEvents)).slice(1).map(([action, , value]) => [action, (value as Body).percent ?? value]),
      [['quota.warning', 80], ['quota.warning', 90], ['quota.exceeded', 100], ['quota.throttled', { up_kbps: 256, down_kbps: 512 }]],
    );
  });

  test('a manual reset: the state is ok, the throttle lifted, the cycle counts from now, and the reset is audited', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = T0 - HOUR;
    await p.use(p.peer, 600_000, 600_000);
    p.clock.now = T0;
    await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB }));

    p.clock.now = T0 + MINUTE;
    const reset = await ok(p.api.post(`${BASE}/peer/${p.peerId}/reset`));

    assert.deepEqual(stateOf(reset), { source: 'subject', state: 'ok', used_bytes: 0, limit_bytes: MB, remaining_bytes: MB, extra_bytes: 0, throttled: false });
    assert.deepEqual([reset.cycle_start, reset.counted_from], ['2026-02-01T00:00:00.000Z', iso(T0 + MINUTE)]);
    assert.deepEqual(capsOf(await peerRecord(p)), [0, 0, 'unlimited']);
    const log = await events(p.api, quotaEvents);
    // One audit row for the reset (the service's, with what it cleared); hooks and the webhook get the notice.
    assert.deepEqual(log.slice(-2).map(([action, subject, value]) => [action, subject, value]), [
      ['quota.manual_reset', `peer:${p.peerId}`, { used_bytes: '0', state: 'ok' }],
      ['quota.restored', `peer:${p.peerId}`, null],
    ], 'the reset and the throttle lifted');
    assert.equal(log.filter(([action]) => action === 'quota.reset').length, 0, 'not audited twice');
    const manual = ((await ok(p.api.get(`/api/bandwidth/events?subject_type=peer&subject_id=${p.peerId}&per_page=500`))).events as Body[])
      .find((event) => event.action === 'quota.manual_reset');
    assert.deepEqual([manual?.actor, manual?.old], ['api', { used_bytes: '1200000', state: 'exceeded' }], 'who reset it, and what the cycle had used');

    // Bytes after the reset count again; bytes from before it do not come back.
    p.clock.now = T0 + 2 * MINUTE;
    await p.use(p.peer, 1_000, 2_000);
    assert.deepEqual(stateOf(await quotaOf(p.api, p.peer)).used_bytes, 3_000);
  });

  test('a traffic block that lifts the limit above the usage lifts the throttle, and is audited', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = T0 - HOUR;
    await p.use(p.vm, 1 * MB, 1 * MB);
    p.clock.now = T0;
    await ok(p.api.put(`${BASE}/default`).send({ allowance_bytes: MB }));
    const before = await quotaOf(p.api, p.vm);
    assert.deepEqual([before.source, before.state, before.throttled], ['default', 'exceeded', true], 'arranged: the VM is throttled by the default');

    const block = await ok(p.api.post(`${BASE}/vm/${p.vmId}/extra`).send({ bytes: 1_500_000 }));

    assert.deepEqual(stateOf(block), { source: 'default', state: 'warning', used_bytes: 2 * MB, limit_bytes: 2_500_000, remaining_bytes: 500_000, extra_bytes: 1_500_000, throttled: false });
    const vm = (await ok(p.api.get(`/api/vms/${p.vmId}`))).vm as Body;
    assert.deepEqual(capsOf(vm), [0, 0, 'unlimited']);
    assert.deepEqual((await events(p.api, quotaEvents)).slice(-2), [
      ['quota.extra', `vm:${p.vmId}`, { extra_bytes: '1500000', added_bytes: '1500000' }],
      ['quota.restored', `vm:${p.vmId}`, null],
    ]);

    const second = await ok(p.api.post(`${BASE}/vm/${p.vmId}/extra`).send({ bytes: '500000' }));
    assert.deepEqual([second.extra_bytes, second.limit_bytes, second.state], [2 * MB, 3 * MB, 'ok'], 'blocks add up');
    // The peer, under the same default, is not touched by the VM's blocks.
    assert.deepEqual([(await quotaOf(p.api, p.peer)).extra_bytes, (await quotaOf(p.api, p.peer)).limit_bytes], [0, MB]);
  });

  test('the throttle follows the quota: a higher allowance, the notify action, or no quota at all lift it', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = T0 - HOUR;
    await p.use(p.peer, MB, MB);
    p.clock.now = T0;
    const throttledBy = async (body: object, path = `${BASE}/network/${p.networkId}`) => (await ok(p.api.put(path).send(body)), (await quotaOf(p.api, p.peer)).throttled);

    assert.equal(await throttledBy({ allowance_bytes: MB }), true, 'arranged: throttled by its network\'s quota');
    assert.equal(await throttledBy({ allowance_bytes: 4 * MB }), false, 'a higher allowance');
    assert.equal(await throttledBy({ allowance_bytes: MB }), true);
    assert.equal(await throttledBy({ allowance_bytes: MB, action: 'notify' }), false, 'the notify action');
    assert.equal(await throttledBy({ allowance_bytes: MB }), true);
    await ok(p.api.delete(`${BASE}/network/${p.networkId}`), 204);
    const free = await quotaOf(p.api, p.peer);
    assert.deepEqual([free.source, free.throttled], [null, false], 'no quota');
    const row = await p.db('bw_limits').where({ subject_type: 'peer', subject_id: String(p.peerId) }).first();
    assert.deepEqual([row.throttle_up_kbps, row.throttle_down_kbps], [null, null]);
    assert.deepEqual(capsOf(await peerRecord(p)), [0, 0, 'unlimited']);
    assert.deepEqual(
      (await events(p.api, (event) => event.action === 'quota.throttled' || event.action === 'quota.restored')).map(([action]) => action),
      ['quota.throttled', 'quota.restored', 'quota.throttled', 'quota.restored', 'quota.throttled', 'quota.restored'],
    );
  });

  test('a peer created in a network with a quota inherits it at once, with the bytes its cycle already holds', async (t) => {
    const p = await quotaPanel(t);
    await ok(p.api.put(`${BASE}/network/${p.networkId}`).send({ allowance_bytes: 10 * MB }));
    const created = await p.api.post(`/api/networks/${p.networkId}/peers`).send({ name: 'phone', public_key: Buffer.alloc(32, 9).toString('base64'), allowed_ips: ['10.8.0.9/32'] });
    assert.equal(created.status, 201, created.text);
    const phone: Subject = { type: 'peer', id: created.body.peer.id };

    p.clock.now = T0 + HOUR;
    await p.use(phone, 1_000, 2_000);
    assert.deepEqual(stateOf(await quotaOf(p.api, phone)), { source: 'network', state: 'ok', used_bytes: 3_000, limit_bytes: 10 * MB, remaining_bytes: 10 * MB - 3_000, extra_bytes: 0, throttled: false });
    assert.deepEqual([created.body.peer.quota_source, created.body.peer.quota_state], ['network', 'ok'], 'the host\'s answer carries it too');
  });

  test('moving the cycle mid-way (another time zone) keeps the cycle\'s traffic blocks and its manual reset', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = T0 - HOUR;
    await p.use(p.peer, 2 * MB, 0);
    p.clock.now = T0;
    await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB }));
    p.clock.now = T0 + MINUTE;
    await ok(p.api.post(`${BASE}/peer/${p.peerId}/reset`));
    await ok(p.api.post(`${BASE}/peer/${p.peerId}/extra`).send({ bytes: 5 * MB }));
    const notices = (await events(p.api, quotaEvents)).length;

    const moved = await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB, time_zone: 'Europe/Berlin' }));

    assert.deepEqual([moved.cycle_start, moved.counted_from], ['2026-01-31T23:00:00.000Z', iso(T0 + MINUTE)], 'still counted from the reset');
    assert.deepEqual(stateOf(moved), { source: 'subject', state: 'ok', used_bytes: 0, limit_bytes: 6 * MB, remaining_bytes: 6 * MB, extra_bytes: 5 * MB, throttled: false });
    assert.deepEqual((await events(p.api, quotaEvents)).slice(notices).map(([action]) => action), ['quota.set'], 'no threshold notified again, no throttle');
  });

  test('the notify action never throttles, also past 100 %', async (t) => {
    const p = await quotaPanel(t);
    p.clock.now = T0 - HOUR;
    await p.use(p.peer, 3 * MB, 0);
    p.clock.now = T0;

    const answer = await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB, action: 'notify' }));

    assert.deepEqual(stateOf(answer), { source: 'subject', state: 'exceeded', used_bytes: 3 * MB, limit_bytes: MB, remaining_bytes: 0, extra_bytes: 0, throttled: false });
    assert.deepEqual(capsOf(await peerRecord(p)), [0, 0, 'unlimited']);
    const row = await p.db('bw_limits').where({ subject_type: 'peer', subject_id: String(p.peerId) }).first();
    assert.deepEqual([row.throttle_up_kbps, row.throttle_down_kbps], [null, null]);
    const actions = (await events(p.api, quotaEvents)).map(([action]) => action);
    assert.deepEqual(actions, ['quota.set', 'quota.warning', 'quota.warning', 'quota.exceeded'], 'notified, not throttled');
  });
});

describe('refused requests', () => {
  /** A request the API must refuse, and the field it must name. */
  type Refusal = [what: string, method: 'put' | 'post', path: (p: Awaited<ReturnType<typeof quotaPanel>>) => string, body: unknown, field: string];
  const subject = (p: { peerId: number }) => `${BASE}/peer/${p.peerId}`;
  const extra = (p: { peerId: number }) => `${BASE}/peer/${p.peerId}/extra`;
  const network = (p: { networkId: number }) => `${BASE}/network/${p.networkId}`;
  const fallback = () => `${BASE}/default`;
  const refusals: Refusal[] = [
    ['no allowance', 'put', subject, { counted: 'down' }, 'allowance_bytes'],
    ['an empty object', 'put', subject, {}, 'allowance_bytes'],
    ['an allowance of 0', 'put', subject, { allowance_bytes: 0 }, 'allowance_bytes'],
    ['a negative allowance', 'put', subject, { allowance_bytes: -1 }, 'allowance_bytes'],
    ['a fractional allowance', 'put', subject, { allowance_bytes: 1.5 }, 'allowance_bytes'],
    ['an allowance with a unit', 'put', subject, { allowance_bytes: '12 GB' }, 'allowance_bytes'],
    ['an allowance past 2^63-1', 'put', subject, { allowance_bytes: '9223372036854775808' }, 'allowance_bytes'],
    ['an allowance as an unsafe JSON number', 'put', subject, '{"allowance_bytes":9007199254740993}', 'allowance_bytes'],
    ['an allowance in exponent notation', 'put', subject, { allowance_bytes: 1e21 }, 'allowance_bytes'],
    ['an allowance as a boolean', 'put', subject, { allowance_bytes: true }, 'allowance_bytes'],
    ['an unknown field', 'put', subject, { allowance_bytes: MB, colour: 'red' }, 'colour'],
    ['a misspelt field', 'put', subject, { allowance_bytes: MB, cycleDay: 5 }, 'cycleDay'],
    ['counted sideways', 'put', subject, { allowance_bytes: MB, counted: 'both' }, 'counted'],
    ['cycle day 0', 'put', subject, { allowance_bytes: MB, cycle_day: 0 }, 'cycle_day'],
    ['cycle day 32', 'put', subject, { allowance_bytes: MB, cycle_day: 32 }, 'cycle_day'],
    ['cycle day "x"', 'put', subject, { allowance_bytes: MB, cycle_day: 'x' }, 'cycle_day'],
    ['cycle day 1.5', 'put', subject, { allowance_bytes: MB, cycle_day: 1.5 }, 'cycle_day'],
    ['a zone that does not exist', 'put', subject, { allowance_bytes: MB, time_zone: 'Mars/Olympus_Mons' }, 'time_zone'],
    ['an offset instead of a zone', 'put', subject, { allowance_bytes: MB, time_zone: '+02:00' }, 'time_zone'],
    ['an empty zone', 'put', subject, { allowance_bytes: MB, time_zone: '' }, 'time_zone'],
    ['a warning at 0 %', 'put', subject, { allowance_bytes: MB, warn_percents: [0, 100] }, 'warn_percents'],
    ['a warning past 100 %', 'put', subject, { allowance_bytes: MB, warn_percents: [80, 101] }, 'warn_percents'],
    ['warnings as a word', 'put', subject, { allowance_bytes: MB, warn_percents: 'eighty' }, 'warn_percents'],
    ['eleven warnings', 'put', subject, { allowance_bytes: MB, warn_percents: [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100] }, 'warn_percents'],
    ['an unknown action', 'put', subject, { allowance_bytes: MB, action: 'block' }, 'action'],
    ['a negative throttle', 'put', subject, { allowance_bytes: MB, throttle_up_kbps: -1 }, 'throttle_up_kbps'],
    ['a huge throttle', 'put', subject, { allowance_bytes: MB, throttle_down_kbps: 1e12 }, 'throttle_down_kbps'],
    ['a throttle of 0/0 with the throttle action', 'put', subject, { allowance_bytes: MB, throttle_up_kbps: 0, throttle_down_kbps: 0 }, 'throttle_down_kbps'],
    ['an array body', 'put', subject, '[{"allowance_bytes":1000000}]', 'body'],
    ['a string body', 'put', subject, '"1000000"', 'body'],
    ['a null body', 'put', subject, 'null', 'body'],
    ['a network quota of 0', 'put', network, { allowance_bytes: 0 }, 'allowance_bytes'],
    ['a network quota with an unknown field', 'put', network, { allowance_bytes: MB, network: 1 }, 'network'],
    ['a default with a bad zone', 'put', fallback, { allowance_bytes: MB, time_zone: 'Europe/Atlantis' }, 'time_zone'],
    ['a default as an array', 'put', fallback, '[]', 'body'],
    ['a traffic block of 0', 'post', extra, { bytes: 0 }, 'bytes'],
    ['a negative traffic block', 'post', extra, { bytes: -5 }, 'bytes'],
    ['a traffic block without bytes', 'post', extra, {}, 'bytes'],
    ['a traffic block with an unknown field', 'post', extra, { bytes: MB, note: 'x' }, 'note'],
    ['a traffic block in gigabytes', 'post', extra, { bytes: '5 GB' }, 'bytes'],
    ['a traffic block past 2^63-1', 'post', extra, { bytes: '9223372036854775808' }, 'bytes'],
    ['a traffic block as an array', 'post', extra, '[1000000]', 'body'],
  ];

  test(`${refusals.length} malformed bodies answer 400 invalid_input naming the field, and write nothing`, async (t) => {
    const p = await quotaPanel(t);
    await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: 5 * MB, counted: 'up', cycle_day: 3 }));
    await ok(p.api.put(`${BASE}/network/${p.networkId}`).send({ allowance_bytes: 7 * MB }));
    await ok(p.api.put(`${BASE}/default`).send({ allowance_bytes: 9 * MB }));
    const rows = await quotaRows(p.db);
    const answers = async () => [await quotaOf(p.api, p.peer), await ok(p.api.get(network(p))), await ok(p.api.get(fallback()))];
    const before = await answers();

    for (const [what, method, path, body, field] of refusals) {
      const request = p.api[method](path(p));
      const response = await (typeof body === 'string' ? request.set('content-type', 'application/json').send(body) : request.send(body as object));
      assert.equal(response.status, 400, `${what}: ${response.text}`);
      assert.equal(response.body.error?.code, 'invalid_input', what);
      assert.equal(response.body.error?.field, field, `${what}: ${response.text}`);
      assert.ok(String(response.body.error?.message).length > 0, what);
    }

    assert.deepEqual(await quotaRows(p.db), rows, 'nothing was written');
    assert.deepEqual(await answers(), before, 'every GET answers as before');
  });

  test('unknown subjects and networks answer 404, a type other than peer or vm 400, a malformed id 404, no token 401', async (t) => {
    const p = await quotaPanel(t);
    await ok(p.api.put(`${BASE}/default`).send({ allowance_bytes: MB }));
    const rows = await quotaRows(p.db);
    const body = { allowance_bytes: MB };
    const cases: [string, 'get' | 'put' | 'delete' | 'post', string, number, string | undefined][] = [
      ['an unknown peer', 'get', `${BASE}/peer/999`, 404, undefined],
      ['an unknown peer', 'put', `${BASE}/peer/999`, 404, undefined],
      ['an unknown VM', 'delete', `${BASE}/vm/999`, 404, undefined],
      ['an unknown VM', 'post', `${BASE}/vm/999/reset`, 404, undefined],
      ['an unknown VM', 'post', `${BASE}/vm/999/extra`, 404, undefined],
      ['an unknown network', 'get', `${BASE}/network/999`, 404, undefined],
      ['an unknown network', 'put', `${BASE}/network/999`, 404, undefined],
      ['an unknown network', 'delete', `${BASE}/network/999`, 404, undefined],
      ['a network id that is not an integer', 'put', `${BASE}/network/abc`, 404, undefined],
      ['a type that is not peer or vm', 'get', `${BASE}/node/${p.peerId}`, 400, 'type'],
      ['a type that is not peer or vm', 'put', `${BASE}/Peer/${p.peerId}`, 400, 'type'],
      ['a type that is not peer or vm', 'post', `${BASE}/network/${p.networkId}/reset`, 400, 'type'],
      ['an id that is not an integer', 'get', `${BASE}/peer/1.5`, 404, undefined],
      ['an id that is not an integer', 'put', `${BASE}/vm/-1`, 404, undefined],
      ['an id that is not an integer', 'post', `${BASE}/peer/01/reset`, 404, undefined],
      ['an id past 32 bits', 'get', `${BASE}/vm/99999999999`, 404, undefined],
      ['a status filter that is not one', 'get', `${BASE}/deliveries?status=lost`, 400, 'status'],
      ['a status filter given twice', 'get', `${BASE}/deliveries?status=failed&status=pending`, 400, 'status'],
    ];
    for (const [what, method, path, status, field] of cases) {
      const response = await p.api[method](path).send(method === 'post' && path.endsWith('/extra') ? { bytes: MB } : body);
      assert.equal(response.status, status, `${what} (${method} ${path}): ${response.text}`);
      assert.equal(response.body.error?.code, status === 404 ? 'not_found' : 'invalid_input', what);
      assert.equal(response.body.error?.field, field, what);
    }
    for (const [method, path] of [['get', `${BASE}/peer/${p.peerId}`], ['put', `${BASE}/default`], ['delete', `${BASE}/default`], ['post', `${BASE}/peer/${p.peerId}/reset`], ['get', `${BASE}/deliveries`]] as const) {
      const response = await p.visitor()[method](path).send(body);
      assert.equal(response.status, 401, `${method} ${path} without a token`);
    }
    assert.deepEqual(await quotaRows(p.db), rows, 'nothing was written');
  });

  test('a reset or a traffic block for a subject no quota applies to answers 404 and writes nothing', async (t) => {
    const p = await quotaPanel(t);
    const rows = await quotaRows(p.db);
    for (const path of [`${BASE}/peer/${p.peerId}/reset`, `${BASE}/vm/${p.vmId}/extra`]) {
      const response = await p.api.post(path).send(path.endsWith('extra') ? { bytes: MB } : {});
      assert.equal(response.status, 404, `${path}: ${response.text}`);
      assert.match(response.body.error.message, /has no quota/);
    }
    assert.deepEqual(await quotaRows(p.db), rows);
  });

  test('traffic blocks that would add up past 2^63-1 are refused, and the stored blocks stay exact', async (t) => {
    const p = await quotaPanel(t);
    await ok(p.api.put(`${BASE}/peer/${p.peerId}`).send({ allowance_bytes: MB }));
    const max = 2n ** 63n - 1n;
    const first = await p.api.post(`${BASE}/peer/${p.peerId}/extra`).send({ bytes: (max - 10n).toString() });
    assert.equal(first.status, 200, first.text);
    const rows = await quotaRows(p.db);

    const second = await p.api.post(`${BASE}/peer/${p.peerId}/extra`).send({ bytes: 11 });

    assert.equal(second.status, 400, second.text);
    assert.deepEqual([second.body.error.code, second.body.error.field], ['invalid_input', 'bytes']);
    assert.deepEqual(await quotaRows(p.db), rows, 'nothing was written');
    assert.ok((await p.api.get(`${BASE}/peer/${p.peerId}`)).text.includes(`"extra_bytes":${max - 10n},`));
  });
});
