import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { limitsOnInterface } from '../../src/db/limits.js';
import { desiredInterface } from '../../src/limits/desired.js';
import { created, seedHost, startPanel, wgKey, type Agent } from '../support/panel.js';

const UP = 'bandwidth_up_kbps';
const DOWN = 'bandwidth_down_kbps';

/** What the plugin would plan for an interface: the desired state the applier builds from `bw_limits`. */
async function desiredOn(db: Knex, iface: string) {
  return desiredInterface({ node: 'local', interface: iface, netns: null }, await limitsOnInterface(db, 'local', iface, null)).subjects.map(
    (subject) => ({ id: `${subject.type}:${subject.id}`, addresses: subject.addresses, up: subject.upKbps, down: subject.downKbps }),
  );
}

async function limitRows(db: Knex) {
  return (await db('bw_limits').orderBy('id')).map((row) => ({ subject: `${row.subject_type}:${row.subject_id}`, addresses: JSON.parse(row.addresses) as string[] }));
}

async function events(api: Agent): Promise<Record<string, unknown>[]> {
  const response = await api.get('/api/bandwidth/events?per_page=100');
  assert.equal(response.status, 200, response.text);
  return response.body.events as Record<string, unknown>[];
}

async function toggle(api: Agent, action: 'enable' | 'disable'): Promise<void> {
  const response = await api.post(`/api/plugins/bandwidth/${action}`);
  assert.equal(response.status, 200, `${action}: ${response.text}`);
  assert.equal(response.body.plugin.running, action === 'enable');
}

describe('issue 9: stale copies of host data', () => {
  test('issue 9 (a): a peer re-addressed while the plugin was disabled is shaped at its new address after enable, not its old one', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId } = await seedHost(api);
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 1000, [DOWN]: 1000 }).expect(200);

    await toggle(api, 'disable');
    const moved = await api.put(`/api/networks/${networkId}/peers/${peerId}`).send({ allowed_ips: ['10.8.0.9/32'] });
    assert.equal(moved.status, 200, moved.text);
    assert.deepEqual(await desiredOn(db, 'wg0'), [{ id: `peer:${peerId}`, addresses: ['10.8.0.2/32'], up: 1000, down: 1000 }], 'arranged: the hook was missed');
    await toggle(api, 'enable');

    assert.deepEqual(await desiredOn(db, 'wg0'), [{ id: `peer:${peerId}`, addresses: ['10.8.0.9/32'], up: 1000, down: 1000 }]);
    const reconciled = await api.post('/api/bandwidth/reconcile');
    assert.equal(reconciled.status, 200, reconciled.text);
    const wg0 = (reconciled.body.interfaces as { interface: string; operations: string[] }[]).find((i) => i.interface === 'wg0');
    const plan = wg0?.operations.join('\n') ?? '';
    assert.match(plan, /10\.8\.0\.9/, 'the new address is classified');
    assert.doesNotMatch(plan, /10\.8\.0\.2\b/, 'the old address is not');
    const [refreshed] = (await events(api)).filter((e) => e.action === 'subject.refreshed');
    assert.deepEqual(
      refreshed && [refreshed.actor, refreshed.subject_id, refreshed.old, refreshed.new],
      ['register', String(peerId), { addresses: ['10.8.0.2/32'] }, { addresses: ['10.8.0.9/32'] }],
    );
  });

  test('issue 9 (b): a capped peer deleted while the plugin was disabled stops throttling the next customer on its IP, who can then be capped', async (t) => {
    const { api, db } = await startPanel(t);
    const network = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
    const old = await created(
      api.post(`/api/networks/${network.id}/peers`).send({ name: 'old customer', public_key: wgKey(1), allowed_ips: ['10.77.0.2/32'], [UP]: 1000, [DOWN]: 1000 }),
      'peer',
    );

    await toggle(api, 'disable');
    await api.delete(`/api/networks/${network.id}/peers/${old.id}`).expect(204);
    const next = await created(
      api.post(`/api/networks/${network.id}/peers`).send({ name: 'new customer', public_key: wgKey(2), allowed_ips: ['10.77.0.2/32'] }),
      'peer',
    );
    assert.deepEqual(await desiredOn(db, 'wg0'), [{ id: `peer:${old.id}`, addresses: ['10.77.0.2/32'], up: 1000, down: 1000 }], 'arranged: the stale cap');
    await toggle(api, 'enable');

    assert.deepEqual(await desiredOn(db, 'wg0'), [], 'nothing is planned for 10.77.0.2 any more: a reconcile removes the class');
    assert.deepEqual(await limitRows(db), [], 'the stale row is gone');
    const shown = await api.get(`/api/networks/${network.id}/peers/${next.id}`);
    assert.equal(shown.body.peer.bandwidth_status, 'unlimited');
    const gone = (await events(api)).filter((e) => e.action === 'subject.gone');
    assert.deepEqual(gone.map((e) => [e.actor, e.subject_id, (e.old as Record<string, unknown>).addresses]), [['register', String(old.id), ['10.77.0.2/32']]]);

    const capped = await api.put(`/api/bandwidth/limits/peer/${next.id}`).send({ [UP]: 2000, [DOWN]: 4000 });
    assert.equal(capped.status, 200, `capping the new customer: ${capped.text}`);
    assert.deepEqual(await desiredOn(db, 'wg0'), [{ id: `peer:${next.id}`, addresses: ['10.77.0.2/32'], up: 2000, down: 4000 }]);
  });

  test('issue 9 (b): DELETE removes a limit whose peer the host no longer has instead of answering 404', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId } = await seedHost(api);
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 1000, [DOWN]: 1000 }).expect(200);
    // A host that writes around its hooks (or a peer deleted while the plugin was off, before any resync).
    await db('peers').where({ id: peerId }).delete();
    assert.equal((await api.get(`/api/networks/${networkId}/peers/${peerId}`)).status, 404, 'arranged: the host has no such peer');

    const removed = await api.delete(`/api/bandwidth/limits/peer/${peerId}`);

    assert.equal(removed.status, 200, removed.text);
    assert.equal(removed.body.limit, null);
    assert.deepEqual(
      [removed.body.removed.subject_id, removed.body.removed.addresses, removed.body.removed[UP], removed.body.removed[DOWN]],
      [String(peerId), ['10.8.0.2/32'], 1000, 1000],
    );
    assert.deepEqual((await limitRows(db)).filter((row) => row.subject.startsWith('peer:')), [], 'no peer row is left');
    assert.deepEqual(await desiredOn(db, 'wg0'), []);
    const [deleted] = (await events(api)).filter((e) => e.action === 'subject.deleted');
    assert.deepEqual(deleted && [deleted.actor, deleted.subject_id, deleted.old], ['api', String(peerId), { up_kbps: 1000, down_kbps: 1000 }]);
    assert.equal((await api.delete(`/api/bandwidth/limits/peer/${peerId}`)).status, 404, 'once removed, it names nothing');
  });

  test('a reconcile resyncs too: records changed around the hooks are dropped or refreshed, and an interface left without subjects is still reconciled', async (t) => {
    const { api, db } = await startPanel(t);
    const { networkId, peerId, vmId } = await seedHost(api);
    const other = await created(
      api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], [DOWN]: 5000 }),
      'peer',
    );
    await api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [UP]: 1000, [DOWN]: 1000 }).expect(200);
    await api.put(`/api/bandwidth/limits/vm/${vmId}`).send({ [DOWN]: 3000 }).expect(200);
    const before = (await events(api)).length;
    // Writes around the hooks while the plugin runs: a script renames and re-addresses a peer, deletes a VM.
    await db('peers').where({ id: other.id }).update({ name: 'tablet', allowed_ips: JSON.stringify(['10.8.0.4/32']) });
    await db('vms').where({ id: vmId }).delete();

    const response = await api.post('/api/bandwidth/reconcile');

    assert.equal(response.status, 200, response.text);
    const byName = new Map((response.body.interfaces as { interface: string; operations: string[] }[]).map((i) => [i.interface, i]));
    assert.ok(byName.has('tap-web01'), 'the VM\'s tap is reconciled although no row is left on it');
    assert.match(byName.get('wg0')?.operations.join('\n') ?? '', /10\.8\.0\.4/);
    assert.deepEqual(await limitRows(db), [
      { subject: `peer:${peerId}`, addresses: ['10.8.0.2/32'] },
      { subject: `peer:${other.id}`, addresses: ['10.8.0.4/32'] },
    ]);
    const all = await events(api);
    const log = all.slice(0, all.length - before);
    const changes = log.filter((e) => String(e.action).startsWith('subject.')).map((e) => [e.actor, e.action, `${e.subject_type}:${e.subject_id}`, e.old, e.new]);
    assert.deepEqual(changes.sort(), [
      ['api', 'subject.gone', `vm:${vmId}`, { name: 'web-01', interface: 'tap-web01', netns: null, addresses: [], up_kbps: 0, down_kbps: 3000 }, null],
      ['api', 'subject.refreshed', `peer:${other.id}`, { name: 'phone', addresses: ['10.8.0.3/32'] }, { name: 'tablet', addresses: ['10.8.0.4/32'] }],
    ]);

    const rows = await db('bw_limits').orderBy('id');
    const logged = (await events(api)).length;
    await api.post('/api/bandwidth/reconcile').expect(200);
    assert.deepEqual(await db('bw_limits').orderBy('id').select('id', 'name', 'addresses', 'updated_at'), rows.map(({ id, name, addresses, updated_at }) => ({ id, name, addresses, updated_at })), 'a resync that finds nothing writes nothing');
    assert.equal((await events(api)).length, logged, 'and logs nothing');
  });
});
