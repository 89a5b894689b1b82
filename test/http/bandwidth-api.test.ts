import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { writeTick } from '../../src/accounting/store.js';
import type { Sample } from '../../src/accounting/sample.js';
import { counterSample } from '../support/samples.js';
import { KernelError } from '../../src/shaping/errors.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import {
  bandwidthRows, created, hostRows, seedHost, startPanel, watchExecutor, wgKey,
  type Agent,
} from '../support/panel.js';

const UP = 'bandwidth_up_kbps';
const DOWN = 'bandwidth_down_kbps';
const DRY_RUN = /^dry run: the `executor` option is `recording` \(dry run\)$/;
const HOUR = 3_600_000;
/** The plugin's clock in tests that count bytes of the last 24 hours: just after midnight, so the day crosses a date. */
const NOW = Date.UTC(2026, 2, 1, 0, 20);

/** The bandwidth fields the plugin adds to a peer or VM in the host's API. */
function bandwidthOf(record: Record<string, unknown>) {
  const { bandwidth_up_kbps, bandwidth_down_kbps, bandwidth_status, bandwidth_error } = record;
  return { bandwidth_up_kbps, bandwidth_down_kbps, bandwidth_status, bandwidth_error };
}

const unlimited = { bandwidth_up_kbps: 0, bandwidth_down_kbps: 0, bandwidth_status: 'unlimited', bandwidth_error: null };

async function limitRow(db: Knex, type: 'peer' | 'vm', id: number) {
  return db('bw_limits').where({ subject_type: type, subject_id: String(id) }).first();
}

async function events(api: Agent, query = '') {
  const response = await api.get(`/api/bandwidth/events${query}`);
  assert.equal(response.status, 200, response.text);
  return response.body as { events: Record<string, unknown>[]; total: number; page: number; per_page: number };
}

/** Two readings of one counter series an hour apart, written as two collector ticks. */
async function usage(db: Knex, subject: { type: 'peer' | 'vm'; id: number; iface: string; key: string }, from: number, up: bigint, down: bigint) {
  const sample = (at: number, rx: bigint, tx: bigint): Sample => counterSample(subject, at, rx, tx);

  await writeTick(db, [sample(from, 1_000n, 2_000n)]);
  // The host receives what the subject sends: rx is the subject's up, tx its down.
  const result = await writeTick(db, [sample(from + HOUR, 1_000n + up, 2_000n + down)]);
  assert.equal(result.usageRows, 1, 'arranged: one usage row');
}

describe('peers and VMs carry their caps through the host API', () => {
  test('a peer created with caps answers them, pending with the dry-run reason, and the audit log says who', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId } = await seedHost(api);

    const response = await api.post(`/api/networks/${networkId}/peers`).send({
      name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], [UP]: 10_000, [DOWN]: '50000',
    });

    assert.equal(response.status, 201, response.text);
    const peer = response.body.peer;
    assert.deepEqual(bandwidthOf(peer), { bandwidth_up_kbps: 10_000, bandwidth_down_kbps: 50_000, bandwidth_status: 'pending', bandwidth_error: peer.bandwidth_error });
    assert.match(peer.bandwidth_error, DRY_RUN);
    assert.deepEqual((await api.get(`/api/networks/${networkId}/peers/${peer.id}`)).body, { peer });
    assert.deepEqual((await api.get(`/api/networks/${networkId}/peers`)).body.peers[1], peer);
    const row = await limitRow(db, 'peer', peer.id);
    assert.deepEqual([row.up_kbps, row.down_kbps, row.status, row.interface], [10_000, 50_000, 'pending', 'wg0']);
    const [event] = (await events(api)).events;
    assert.deepEqual(
      { actor: event?.actor, action: event?.action, subject: `${event?.subject_type}:${event?.subject_id}`, old: event?.old, new: event?.new, result: event?.result },
      { actor: 'api', action: 'limit.set', subject: `peer:${peer.id}`, old: null, new: { up_kbps: 10_000, down_kbps: 50_000 }, result: 'pending' },
    );
  });

  test('a peer or VM created without caps is unlimited and logs nothing', async (t) => {
    const { api } = await startPanel(t);
    const { networkId, peerId, vmId } = await seedHost(api);

    assert.deepEqual(bandwidthOf((await api.get(`/api/networks/${networkId}/peers/${peerId}`)).body.peer), unlimited);
    assert.deepEqual(bandwidthOf((await api.get(`/api/vms/${vmId}`)).body.vm), unlimited);
    assert.deepEqual(bandwidthOf((await api.get('/api/vms')).body.vms[0]), unlimited);
    assert.equal((await events(api)).total, 0);
  });

  test('PUT changes a peer\'s caps, keeps the ones it leaves out, and 0 makes a direction unlimited', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId } = await seedHost(api);
    const path = `/api/networks/${networkId}/peers/${peerId}`;

    const capped = await api.put(path).send({ [UP]: 10_000, [DOWN]: 50_000 });
    assert.equal(capped.status, 200, capped.text);
    assert.deepEqual([capped.body.peer[UP], capped.body.peer[DOWN], capped.body.peer.bandwidth_status], [10_000, 50_000, 'pending']);

    const renamed = await api.put(path).send({ name: 'work laptop', allowed_ips: ['10.8.0.0/30'] });
    assert.deepEqual([renamed.body.peer.name, renamed.body.peer[UP], renamed.body.peer[DOWN]], ['work laptop', 10_000, 50_000]);
    assert.deepEqual(JSON.parse((await limitRow(db, 'peer', peerId)).addresses), ['10.8.0.0/30'], 'the limit follows the new allowed IPs');

    const upOnly = await api.put(path).send({ [UP]: 0 });
    assert.deepEqual([upOnly.body.peer[UP], upOnly.body.peer[DOWN], upOnly.body.peer.bandwidth_status], [0, 50_000, 'pending']);

    const cleared = await api.put(path).send({ [DOWN]: 0 });
    assert.deepEqual(bandwidthOf(cleared.body.peer), unlimited);
    assert.deepEqual(
      (await events(api)).events.map((e) => [e.action, e.old, e.new]),
      [
        ['limit.cleared', { up_kbps: 0, down_kbps: 50_000 }, { up_kbps: 0, down_kbps: 0 }],
        ['limit.set', { up_kbps: 10_000, down_kbps: 50_000 }, { up_kbps: 0, down_kbps: 50_000 }],
        ['limit.set', { up_kbps: 0, down_kbps: 0 }, { up_kbps: 10_000, down_kbps: 50_000 }],
      ],
      'renaming wrote no event',
    );
  });

  test('a VM is created with caps, changed by PUT, and keeps them when it moves to another interface', async (t) => {
    const { api, db } = await startPanel(t);

    const vm = await created(api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01', [UP]: '2000', [DOWN]: 8_000 }), 'vm');
    assert.deepEqual([vm[UP], vm[DOWN], vm.bandwidth_status], [2_000, 8_000, 'pending']);
    assert.match(String(vm.bandwidth_error), DRY_RUN);

    const raised = await api.put(`/api/vms/${vm.id}`).send({ [DOWN]: 16_000 });
    assert.equal(raised.status, 200);
    assert.deepEqual([raised.body.vm[UP], raised.body.vm[DOWN]], [2_000, 16_000]);

    const moved = await api.put(`/api/vms/${vm.id}`).send({ interface: 'tap-db02', netns: 'tenant-7' });
    assert.equal(moved.status, 200);
    assert.deepEqual([moved.body.vm[UP], moved.body.vm[DOWN], moved.body.vm.bandwidth_status], [2_000, 16_000, 'pending']);
    const row = await limitRow(db, 'vm', vm.id);
    assert.deepEqual([row.interface, row.netns, row.up_kbps, row.down_kbps], ['tap-db02', 'tenant-7', 2_000, 16_000]);
    assert.deepEqual((await api.get(`/api/vms/${vm.id}`)).body.vm, moved.body.vm);
  });

  test('the same caps sent twice write one audit event and keep the same row', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId, vmId } = await seedHost(api);
    const requests: [string, string, Record<string, unknown>][] = [
      ['peer', `/api/networks/${networkId}/peers/${peerId}`, { [UP]: 10_000, [DOWN]: 50_000 }],
      ['vm', `/api/vms/${vmId}`, { [UP]: 1_000, [DOWN]: '1000' }],
      ['peer', `/api/bandwidth/limits/peer/${peerId}`, { [UP]: 10_000, [DOWN]: '50000' }],
      ['vm', `/api/bandwidth/limits/vm/${vmId}`, { [DOWN]: 1_000 }],
    ];

    const rowsAfter: Record<string, unknown>[] = [];
    for (const [type, path, body] of requests) {
      for (let round = 0; round < 2; round++) {
        const response = await api.put(path).send(body);
        assert.equal(response.status, 200, `${path}: ${response.text}`);
      }
      rowsAfter.push(await limitRow(db, type as 'peer' | 'vm', type === 'peer' ? peerId : vmId));
    }

    const log = await events(api);
    assert.equal(log.total, 2, JSON.stringify(log.events));
    assert.deepEqual(log.events.map((e) => `${e.subject_type}:${e.subject_id}`).sort(), [`peer:${peerId}`, `vm:${vmId}`]);
    const [peerFirst, vmFirst, peerAgain, vmAgain] = rowsAfter as Record<string, unknown>[];
    const identity = (row?: Record<string, unknown>) => [row?.id, row?.class_minor, row?.created_at, row?.up_kbps, row?.down_kbps];
    assert.deepEqual(identity(peerAgain), identity(peerFirst));
    assert.deepEqual(identity(vmAgain), identity(vmFirst));
    assert.equal((await db('bw_limits').count({ n: '*' }))[0]?.n, 2);
  });

  test('deleting a peer, a VM or a network removes their limit rows and logs what was dropped', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId, vmId } = await seedHost(api);
    const phone = await created(api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], [UP]: 500 }), 'peer');
    await api.put(`/api/networks/${networkId}/peers/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);
    await api.put(`/api/vms/${vmId}`).send({ [DOWN]: 1_000 }).expect(200);

    assert.equal((await api.delete(`/api/networks/${networkId}/peers/${peerId}`)).status, 204);
    assert.equal(await limitRow(db, 'peer', peerId), undefined);
    assert.equal((await api.delete(`/api/vms/${vmId}`)).status, 204);
    assert.equal(await limitRow(db, 'vm', vmId), undefined);
    assert.equal((await api.delete(`/api/networks/${networkId}`)).status, 204);
    assert.equal(await limitRow(db, 'peer', phone.id), undefined);
    assert.deepEqual(await db('bw_limits'), []);

    const dropped = (await events(api)).events.filter((e) => e.action === 'subject.deleted');
    assert.deepEqual(dropped.map((e) => [`${e.subject_type}:${e.subject_id}`, e.old, e.new]), [
      [`peer:${phone.id}`, { up_kbps: 500, down_kbps: 0 }, null],
      [`vm:${vmId}`, { up_kbps: 0, down_kbps: 1_000 }, null],
      [`peer:${peerId}`, { up_kbps: 10_000, down_kbps: 50_000 }, null],
    ]);
  });

  test(
    'a peer whose allowed IPs the host accepts padded or repeated can be given a cap',
    async (t) => {
      const { api } = await startPanel(t);
      const { networkId } = await seedHost(api);
      for (const [seed, allowed] of [[2, [' 10.8.0.3/32 ']], [3, ['10.8.0.4', '10.8.0.4/32']]] as const) {
        const response = await api.post(`/api/networks/${networkId}/peers`).send({ name: `peer-${seed}`, public_key: wgKey(seed), allowed_ips: allowed, [UP]: 1_000 });
        assert.equal(response.status, 201, `${JSON.stringify(allowed)}: ${response.text}`);
      }
    },
  );
});

describe('GET /api/networks/:id/bandwidth and /api/vms/:id/bandwidth', () => {
  test('a network lists each peer with caps, current rates, 24-hour bytes, status and error', async (t) => {
    const { api, db } = await startPanel(t, { now: () => NOW });
    const { networkId, peerId, vmId } = await seedHost(api);
    const phone = await created(api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }), 'peer');
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);
    const now = NOW;
    // 45 MB up and 450 MB down in one hour, two hours ago: 100 and 1000 kbit/s.
    await usage(db, { type: 'peer', id: peerId, iface: 'wg0', key: wgKey(1) }, now - 3 * HOUR, 45_000_000n, 450_000_000n);
    // Older than 24 hours: not in the totals.
    await db('bw_usage_hourly').insert({ subject_type: 'peer', subject_id: String(peerId), hour_start: Math.floor(now / HOUR) * HOUR - 72 * HOUR, up_bytes: 7, down_bytes: 7 });
    // The VM with the same id is another subject.
    await usage(db, { type: 'vm', id: vmId, iface: 'tap-web01', key: 'tap-web01' }, now - 3 * HOUR, 1_000n, 1_000n);

    const response = await api.get(`/api/networks/${networkId}/bandwidth`);

    assert.equal(response.status, 200);
    const [laptop] = response.body.peers;
    assert.match(laptop.error, DRY_RUN);
    assert.deepEqual(response.body, {
      network_id: networkId,
      peers: [
        {
          peer_id: peerId, name: 'laptop', bandwidth_up_kbps: 10_000, bandwidth_down_kbps: 50_000,
          bandwidth_min_kbps: 0, bandwidth_burst_kbps: 0, bandwidth_burst_bytes: 0, effective_up_kbps: 10_000, effective_down_kbps: 50_000, effective_source: { up: 'own', down: 'own' },
          current_up_kbps: 100, current_down_kbps: 1_000, up_bytes_24h: 45_000_000, down_bytes_24h: 450_000_000,
          // Its cap is not in the kernel (dry run): no class counted, so utilisation is of its WireGuard bytes.
          class_up_kbps: null, class_down_kbps: null, utilisation_percent: 2, utilisation_basis: 'counted',
          status: 'pending', error: laptop.error, reason: 'dry_run',
        },
        {
          peer_id: phone.id, name: 'phone', bandwidth_up_kbps: 0, bandwidth_down_kbps: 0,
          bandwidth_min_kbps: 0, bandwidth_burst_kbps: 0, bandwidth_burst_bytes: 0, effective_up_kbps: 0, effective_down_kbps: 0, effective_source: { up: 'none', down: 'none' },
          current_up_kbps: 0, current_down_kbps: 0, up_bytes_24h: 0, down_bytes_24h: 0, status: 'unlimited', error: null, reason: null,
          class_up_kbps: null, class_down_kbps: null, utilisation_percent: null, utilisation_basis: null,
        },
      ],
    });
  });

  test('a VM answers its caps, rates and 24-hour bytes; unknown ids answer 404', async (t) => {
    const { api, db } = await startPanel(t, { now: () => NOW });
    const { networkId, vmId } = await seedHost(api);
    await api.put(`/api/vms/${vmId}`).send({ [UP]: 0, [DOWN]: 20_000 }).expect(200);
    await usage(db, { type: 'vm', id: vmId, iface: 'tap-web01', key: 'tap-web01' }, NOW - 5 * HOUR, 900_000n, 9_000_000n);

    const response = await api.get(`/api/vms/${vmId}/bandwidth`);

    assert.equal(response.status, 200);
    assert.deepEqual(response.body, {
      vm_id: vmId, name: 'web-01', interface: 'tap-web01', bandwidth_up_kbps: 0, bandwidth_down_kbps: 20_000,
      bandwidth_min_kbps: 0, bandwidth_burst_kbps: 0, bandwidth_burst_bytes: 0, effective_up_kbps: 0, effective_down_kbps: 20_000, effective_source: { up: 'none', down: 'own' },
      current_up_kbps: 2, current_down_kbps: 20, up_bytes_24h: 900_000, down_bytes_24h: 9_000_000,
      class_up_kbps: null, class_down_kbps: null, utilisation_percent: 0, utilisation_basis: 'counted',
      status: 'pending', error: response.body.error, reason: 'dry_run',
    });
    assert.match(response.body.error, DRY_RUN);

    for (const [path, what] of [
      ['/api/vms/999/bandwidth', 'VM'], ['/api/vms/abc/bandwidth', 'VM'],
      ['/api/networks/999/bandwidth', 'network'], [`/api/networks/${networkId}x/bandwidth`, 'network'],
    ] as const) {
      const missing = await api.get(path);
      assert.equal(missing.status, 404, path);
      assert.deepEqual(Object.keys(missing.body.error), ['code', 'message']);
      assert.equal(missing.body.error.code, 'not_found');
      assert.match(missing.body.error.message, new RegExp(`^No ${what} with id `), path);
    }
  });
});

describe('GET /api/bandwidth/limits', () => {
  /** office (wg0): laptop capped, phone unlimited; lab (wg1): tablet capped and failed; VMs web-01 capped, db-01 unlimited. */
  async function fleet(t: Parameters<typeof startPanel>[0]) {
    const host = await startPanel(t);
    const { networkId: office, peerId: laptop, vmId: web } = await seedHost(host.api);
    const { api, db } = host;
    await api.post(`/api/networks/${office}/peers`).send({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }).expect(201);
    const lab = await created(api.post('/api/networks').send({ name: 'lab', interface: 'wg1' }), 'network');
    const tablet = await created(api.post(`/api/networks/${lab.id}/peers`).send({ name: 'tablet', public_key: wgKey(3), allowed_ips: ['10.9.0.2/32'], [DOWN]: 3_000 }), 'peer');
    await api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01' }).expect(201);
    await api.put(`/api/bandwidth/limits/peer/${laptop}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);
    await api.put(`/api/bandwidth/limits/vm/${web}`).send({ [UP]: 1_000 }).expect(200);
    await db('bw_limits').where({ subject_type: 'peer', subject_id: String(tablet.id) }).update({ status: 'failed', last_error: 'RTNETLINK answers: No such device' });
    return { ...host, office, lab: lab.id as number, laptop };
  }

  const names = (body: { limits: { name: string }[] }) => body.limits.map((limit) => limit.name);

  test('lists every subject by type and name, with filters and pages', async (t) => {
    const { api, office, lab, laptop } = await fleet(t);

    const all = await api.get('/api/bandwidth/limits');
    assert.equal(all.status, 200);
    assert.deepEqual(names(all.body), ['laptop', 'phone', 'tablet', 'db-01', 'web-01']);
    assert.deepEqual([all.body.total, all.body.page, all.body.per_page], [5, 1, 50]);
    const { bandwidth_error, class_id, applied_at, updated_at, ...stable } = all.body.limits[0];
    // Ids compared as text: this endpoint answers them as strings, the host's API as numbers.
    assert.deepEqual({ ...stable, subject_id: String(stable.subject_id), network_id: String(stable.network_id) }, {
      subject_type: 'peer', subject_id: String(laptop), name: 'laptop', network_id: String(office), node: 'local', interface: 'wg0', netns: null,
      addresses: ['10.8.0.2/32'], bandwidth_up_kbps: 10_000, bandwidth_down_kbps: 50_000, bandwidth_status: 'pending',
      bandwidth_reason: 'dry_run', bandwidth_min_kbps: 0, bandwidth_burst_kbps: 0, bandwidth_burst_bytes: 0, default_up_kbps: 0, default_down_kbps: 0, burst_active: false,
      // No quota throttles it: the kernel's caps are its own.
      effective_up_kbps: 10_000, effective_down_kbps: 50_000, effective_source: { up: 'own', down: 'own' }, throttle_up_kbps: null, throttle_down_kbps: null,
    });
    assert.match(bandwidth_error, DRY_RUN);
    assert.match(class_id, /^1:[0-9a-f]+$/);
    assert.equal(typeof applied_at === 'string' || applied_at === null, true);
    assert.match(updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    const cases: [string, string[]][] = [
      ['subject_type=vm', ['db-01', 'web-01']],
      ['subject_type=peer', ['laptop', 'phone', 'tablet']],
      [`network_id=${office}`, ['laptop', 'phone']],
      [`network_id=${lab}`, ['tablet']],
      ['network_id=999', []],
      ['status=unlimited', ['phone', 'db-01']],
      ['status=pending', ['laptop', 'web-01']],
      ['status=failed', ['tablet']],
      ['status=applied', []],
      ['subject_type=vm&status=unlimited', ['db-01']],
      [`subject_type=peer&network_id=${office}&status=pending`, ['laptop']],
      ['per_page=2', ['laptop', 'phone']],
      ['per_page=2&page=2', ['tablet', 'db-01']],
      ['per_page=2&page=3', ['web-01']],
      ['page=2', []],
    ];
    for (const [query, expected] of cases) {
      const response = await api.get(`/api/bandwidth/limits?${query}`);
      assert.equal(response.status, 200, query);
      assert.deepEqual(names(response.body), expected, query);
    }
    const paged = (await api.get('/api/bandwidth/limits?per_page=2&page=3')).body;
    assert.deepEqual([paged.total, paged.page, paged.per_page], [5, 3, 2]);
    assert.equal((await api.get('/api/bandwidth/limits?status=unlimited')).body.total, 2);
  });

  test('a bad filter or page answers 400 naming the parameter', async (t) => {
    const { api } = await startPanel(t);
    await seedHost(api);
    const cases: [string, string][] = [
      ['subject_type=router', 'subject_type'],
      ['subject_type=PEER', 'subject_type'],
      ['subject_type=', 'subject_type'],
      ['subject_type=peer&subject_type=vm', 'subject_type'],
      ['status=done', 'status'],
      ['status=Pending', 'status'],
      ['status=pending&status=failed', 'status'],
      ['status=', 'status'],
      ['network_id=abc', 'network_id'],
      ['network_id=0', 'network_id'],
      ['network_id=-1', 'network_id'],
      ['network_id=1.5', 'network_id'],
      ['network_id=2147483648', 'network_id'],
      ["network_id=1%20OR%201%3D1", 'network_id'],
      ['page=0', 'page'],
      ['page=abc', 'page'],
      ['page=-1', 'page'],
      ['per_page=0', 'per_page'],
      ['per_page=501', 'per_page'],
      ['per_page=1e2', 'per_page'],
    ];
    for (const [query, field] of cases) {
      const response = await api.get(`/api/bandwidth/limits?${query}`);
      assert.equal(response.status, 400, `${query}: ${response.text}`);
      assert.equal(response.body.error.code, 'invalid_input', query);
      assert.equal(response.body.error.field, field, query);
      assert.match(response.body.error.message, new RegExp(`^\`${field}\` must be `), query);
    }
  });
});

describe('PUT and DELETE /api/bandwidth/limits/:type/:id', () => {
  test('PUT sets caps on a peer or a VM and answers the stored limit', async (t) => {
    const { api } = await startPanel(t);
    const { networkId, peerId, vmId } = await seedHost(api);

    const peer = await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 });
    assert.equal(peer.status, 200, peer.text);
    assert.deepEqual(
      [peer.body.limit.subject_type, peer.body.limit.name, peer.body.limit.interface, peer.body.limit[UP], peer.body.limit[DOWN], peer.body.limit.bandwidth_status],
      ['peer', 'laptop', 'wg0', 10_000, 50_000, 'pending'],
    );
    const vm = await api.put(`/api/bandwidth/limits/vm/${vmId}`).send({ [DOWN]: '4000' });
    assert.deepEqual([vm.body.limit.name, vm.body.limit[UP], vm.body.limit[DOWN]], ['web-01', 0, 4_000]);

    assert.deepEqual(bandwidthOf((await api.get(`/api/networks/${networkId}/peers/${peerId}`)).body.peer), {
      bandwidth_up_kbps: 10_000, bandwidth_down_kbps: 50_000, bandwidth_status: 'pending', bandwidth_error: peer.body.limit.bandwidth_error,
    });
    assert.deepEqual((await events(api)).events.map((e) => [e.actor, e.action, e.subject_type, e.new]), [
      ['api', 'limit.set', 'vm', { up_kbps: 0, down_kbps: 4_000 }],
      ['api', 'limit.set', 'peer', { up_kbps: 10_000, down_kbps: 50_000 }],
    ]);
  });

  test('PUT refuses unknown fields, an empty body, a bad type and an unknown subject, and writes nothing', async (t) => {
    const { api, db } = await startPanel(t);
    const { peerId } = await seedHost(api);
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 10_000 }).expect(200);
    const kernel = watchExecutor(t);
    const before = { host: await hostRows(db), plugin: await bandwidthRows(db) };

    const cases: [string, unknown, number, string | undefined, RegExp][] = [
      [`peer/${peerId}`, { [UP]: 1_000, upload_kbps: 5 }, 400, 'upload_kbps', /^Unknown field `upload_kbps`: send any of bandwidth_up_kbps, bandwidth_down_kbps, bandwidth_min_kbps, bandwidth_burst_kbps, bandwidth_burst_bytes$/],
      [`peer/${peerId}`, { name: 'x' }, 400, 'name', /^Unknown field `name`/],
      [`peer/${peerId}`, { bandwidth_up_unlimited: true }, 400, 'bandwidth_up_unlimited', /^Unknown field `bandwidth_up_unlimited`/],
      [`peer/${peerId}`, { ['__proto__']: 1 }, 400, '__proto__', /^Unknown field `__proto__`/],
      [`peer/${peerId}`, {}, 400, 'body', /^Send any of bandwidth_up_kbps, bandwidth_down_kbps, bandwidth_min_kbps, bandwidth_burst_kbps, bandwidth_burst_bytes$/],
      [`peer/${peerId}`, [{ [UP]: 1 }], 400, 'body', /^The request body must be a JSON object$/],
      [`network/${peerId}`, { [UP]: 1_000 }, 400, 'type', /^`type` must be `peer` or `vm`, got `network`$/],
      [`Peer/${peerId}`, { [UP]: 1_000 }, 400, 'type', /^`type` must be `peer` or `vm`/],
      ['peer/999', { [UP]: 1_000 }, 404, undefined, /^No peer with id `999`$/],
      ['vm/999', { [UP]: 1_000 }, 404, undefined, /^No VM with id `999`$/],
      ['vm/abc', { [UP]: 1_000 }, 404, undefined, /^No VM with id `abc`$/],
    ];
    for (const [subject, body, status, field, message] of cases) {
      const response = await api.put(`/api/bandwidth/limits/${subject}`).set('Content-Type', 'application/json').send(JSON.stringify(body));
      const label = `${subject} ${JSON.stringify(body)}`;
      assert.equal(response.status, status, `${label}: ${response.text}`);
      assert.equal(response.body.error.field, field, label);
      assert.match(response.body.error.message, message, label);
    }
    assert.deepEqual({ host: await hostRows(db), plugin: await bandwidthRows(db) }, before);
    assert.equal(kernel.calls(), 0);
  });

  test('DELETE makes a subject unlimited, logs it once, and answers 404 or 400 for unknown subjects', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId, vmId } = await seedHost(api);
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);

    const cleared = await api.delete(`/api/bandwidth/limits/peer/${peerId}`);
    assert.equal(cleared.status, 200, cleared.text);
    assert.deepEqual(
      [cleared.body.limit[UP], cleared.body.limit[DOWN], cleared.body.limit.bandwidth_status, cleared.body.limit.bandwidth_error],
      [0, 0, 'unlimited', null],
    );
    assert.deepEqual(bandwidthOf((await api.get(`/api/networks/${networkId}/peers/${peerId}`)).body.peer), unlimited);
    assert.equal((await api.delete(`/api/bandwidth/limits/peer/${peerId}`)).status, 200, 'clearing twice is harmless');
    assert.equal((await api.delete(`/api/bandwidth/limits/vm/${vmId}`)).status, 200, 'clearing an unlimited VM is harmless');
    assert.deepEqual((await events(api)).events.map((e) => [e.actor, e.action, e.old, e.new]), [
      ['api', 'limit.cleared', { up_kbps: 10_000, down_kbps: 50_000 }, { up_kbps: 0, down_kbps: 0 }],
      ['api', 'limit.set', { up_kbps: 0, down_kbps: 0 }, { up_kbps: 10_000, down_kbps: 50_000 }],
    ]);

    const before = await bandwidthRows(db);
    for (const [subject, status] of [['peer/999', 404], ['vm/0', 404], ['router/1', 400]] as const) {
      const response = await api.delete(`/api/bandwidth/limits/${subject}`);
      assert.equal(response.status, status, subject);
    }
    assert.deepEqual(await bandwidthRows(db), before);
  });
});

describe('POST /api/bandwidth/reconcile', () => {
  test('with nothing stored it changes nothing', async (t) => {
    const { api } = await startPanel(t);
    const response = await api.post('/api/bandwidth/reconcile');
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { changed: 0, dry_run: true, interfaces: [] });
  });

  test('a dry run plans every interface, reports the plan, and leaves the limits pending without logging', async (t) => {
    const { api, db } = await startPanel(t);
    const { peerId } = await seedHost(api);
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);
    const kernel = watchExecutor(t);
    // What a user sees of a limit; `applied_at` of an unlimited subject is refreshed by every apply.
    const limits = async () =>
      (await db('bw_limits').orderBy('id')).map((row) => [row.subject_type, row.subject_id, row.up_kbps, row.down_kbps, row.class_minor, row.status, row.last_error, row.reason, row.updated_at]);
    const before = { limits: await limits(), events: await db('bw_events').orderBy('id') };

    const response = await api.post('/api/bandwidth/reconcile');

    assert.equal(response.status, 200);
    assert.equal(response.body.changed, 1);
    assert.equal(response.body.dry_run, true);
    interface Outcome { node: string; interface: string; netns: string | null; status: string; operations: string[]; error: string | null; reason: string | null }
    const byName = Object.fromEntries((response.body.interfaces as Outcome[]).map((i) => [i.interface, i]));
    assert.deepEqual(Object.keys(byName).sort(), ['tap-web01', 'wg0']);
    assert.deepEqual(byName['tap-web01'], { node: 'local', interface: 'tap-web01', netns: null, status: 'applied', operations: [], error: null, reason: null });
    const wg0 = byName.wg0!;
    assert.deepEqual([wg0.netns, wg0.status, wg0.reason], [null, 'pending', 'dry_run']);
    assert.match(String(wg0.error), DRY_RUN);
    assert.ok(wg0.operations.some((line) => /^tc class add dev wg0 parent 1:1 classid 1:[0-9a-f]+ htb rate 50000kbit ceil 50000kbit /.test(line)), wg0.operations.join('\n'));
    assert.ok(wg0.operations.some((line) => /^tc class add dev ifb-\S+ parent 1:1 classid 1:[0-9a-f]+ htb rate 10000kbit ceil 10000kbit /.test(line)), 'upload is shaped on the IFB');
    assert.ok(kernel.batches() > 0, 'the plan went to the (recording) executor');
    assert.deepEqual({ limits: await limits(), events: await db('bw_events').orderBy('id') }, before, 'status, error and audit log as they were');

    const again = await api.post('/api/bandwidth/reconcile');
    assert.equal(again.body.changed, 1, 'a dry run changes no kernel, so the plan stands');
  });
});

describe('GET /api/bandwidth/events', () => {
  test('the audit log is newest first, paginated, and names the API or the admin who changed what', async (t) => {
    const host = await startPanel(t);
    const { api } = host;
    const { networkId, peerId, vmId } = await seedHost(api);
    await api.put(`/api/networks/${networkId}/peers/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);
    await api.put(`/api/vms/${vmId}`).send({ [DOWN]: 1_000 }).expect(200);
    const admin = await host.login();
    const form = await admin.form(`/admin/networks/${networkId}/peers/${peerId}`, {
      name: 'laptop', public_key: wgKey(1), allowed_ips: '10.8.0.2/32', [UP]: '20000', [DOWN]: '50000',
    });
    assert.equal(form.status, 303, form.text);

    const log = await events(api);

    assert.equal(log.total, 3);
    assert.deepEqual(log.events.map((e) => [e.actor, e.action, `${e.subject_type}:${e.subject_id}`, e.old, e.new, e.result]), [
      ['admin', 'limit.set', `peer:${peerId}`, { up_kbps: 10_000, down_kbps: 50_000 }, { up_kbps: 20_000, down_kbps: 50_000 }, 'pending'],
      ['api', 'limit.set', `vm:${vmId}`, { up_kbps: 0, down_kbps: 0 }, { up_kbps: 0, down_kbps: 1_000 }, 'pending'],
      ['api', 'limit.set', `peer:${peerId}`, { up_kbps: 0, down_kbps: 0 }, { up_kbps: 10_000, down_kbps: 50_000 }, 'pending'],
    ]);
    const times = log.events.map((e) => Date.parse(String(e.at)));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), 'newest first');
    assert.match(String(log.events[0]?.message), DRY_RUN);
    assert.deepEqual(log.events.map((e) => e.reason), ['dry_run', 'dry_run', 'dry_run'], 'the reason is typed beside the message');

    const second = await events(api, '?per_page=1&page=2');
    assert.deepEqual([second.total, second.page, second.per_page, second.events.length], [3, 2, 1, 1]);
    assert.deepEqual(second.events[0], log.events[1]);
    assert.deepEqual((await events(api, '?per_page=2&page=3')).events, []);
    assert.deepEqual((await events(api, '?subject_type=vm')).events, [log.events[1]]);
    assert.deepEqual((await events(api, `?subject_type=peer&subject_id=${peerId}`)).events, [log.events[0], log.events[2]]);

    for (const [query, field] of [['page=0', 'page'], ['per_page=501', 'per_page'], ['subject_type=network', 'subject_type']]) {
      const response = await api.get(`/api/bandwidth/events?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal(response.body.error.field, field, query);
    }
    assert.equal((await host.visitor().get('/api/bandwidth/events')).status, 401, 'behind the bearer token');
  });
});

describe('typed reasons beside the status and the error', () => {
  /** The kernel refuses every batch (tc's own words), from now until the test ends. */
  function refuseBatches(t: Parameters<typeof startPanel>[0], stderr: string) {
    t.mock.method(RecordingExecutor.prototype, 'batch', async () => {
      throw new KernelError({ argv: ['tc', '-batch', '-'], stderr, exitCode: 2, timedOut: false });
    });
  }

  test('a refused plan answers failed with kernel_refused in every API that shows the limit, and in the audit log', async (t) => {
    const { api } = await startPanel(t);
    const { networkId, peerId } = await seedHost(api);
    refuseBatches(t, 'Error: Exclusivity flag on, cannot modify.\nWe have an error talking to the kernel');

    const put = await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 });

    assert.equal(put.status, 200, put.text);
    assert.equal(put.body.limit.bandwidth_status, 'failed');
    assert.equal(put.body.limit.bandwidth_reason, 'kernel_refused');
    assert.match(put.body.limit.bandwidth_error, /Exclusivity flag on/);
    const peer = (await api.get(`/api/networks/${networkId}/peers/${peerId}`)).body.peer;
    assert.deepEqual([peer.bandwidth_status, peer.bandwidth_reason], ['failed', 'kernel_refused'], 'the host API carries the reason');
    const [row] = (await api.get(`/api/networks/${networkId}/bandwidth`)).body.peers;
    assert.deepEqual([row.status, row.reason, row.error], ['failed', 'kernel_refused', put.body.limit.bandwidth_error]);
    const listed = (await api.get('/api/bandwidth/limits?status=failed')).body.limits;
    assert.deepEqual(listed.map((l: Record<string, unknown>) => [l.name, l.bandwidth_reason]), [['laptop', 'kernel_refused']]);
    const [event] = (await events(api, '?per_page=1')).events;
    assert.deepEqual([event?.action, event?.result, event?.reason], ['limit.set', 'failed', 'kernel_refused']);
  });

  test('a missing interface answers pending with interface_missing, not dry_run, and reconcile reports it', async (t) => {
    const { api } = await startPanel(t);
    const { vmId } = await seedHost(api);
    const run = RecordingExecutor.prototype.run;
    t.mock.method(RecordingExecutor.prototype, 'run', function (this: RecordingExecutor, argv: readonly string[], options?: { netns?: string }) {
      if (argv.includes('tap-web01')) throw new KernelError({ argv, stderr: 'Cannot find device "tap-web01"', exitCode: 1, timedOut: false });
      return run.call(this, argv, options);
    });

    await api.put(`/api/bandwidth/limits/vm/${vmId}`).send({ [DOWN]: 20_000 }).expect(200);

    const vm = (await api.get(`/api/vms/${vmId}/bandwidth`)).body;
    assert.deepEqual([vm.status, vm.reason], ['pending', 'interface_missing']);
    assert.match(vm.error, /tap-web01/);
    const reconciled = (await api.post('/api/bandwidth/reconcile')).body.interfaces as { interface: string; status: string; reason: string | null }[];
    assert.deepEqual(reconciled.map((i) => [i.interface, i.status, i.reason]).sort(), [['tap-web01', 'pending', 'interface_missing'], ['wg0', 'applied', null]]);
  });

  test('unlimited and applied subjects carry no reason', async (t) => {
    const { api } = await startPanel(t);
    const { networkId, peerId } = await seedHost(api);

    const [row] = (await api.get(`/api/networks/${networkId}/bandwidth`)).body.peers;
    assert.deepEqual([row.peer_id, row.status, row.error, row.reason], [peerId, 'unlimited', null, null]);
    const limits = (await api.get('/api/bandwidth/limits')).body.limits as Record<string, unknown>[];
    assert.ok(limits.length > 0 && limits.every((l) => l.bandwidth_reason === null), JSON.stringify(limits));
  });
});
