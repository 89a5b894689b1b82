/**
 * Issue 12, item 2: a typed cap is never silently "unlimited". When the plugin cannot store a peer's
 * caps (another session holds bw_limits locked and the wait ends in an error), the reference host
 * undoes the peer and answers 503; once stored, caps that cannot be applied stay `pending` for the
 * reconcile loop. Real lock waits on MariaDB (the waiting statement is killed, as a lock wait
 * timeout ends it) and PostgreSQL (`lock_timeout`); on SQLite, where the host's own write waits for
 * the same database lock, the plugin's failure is simulated.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { Knex } from 'knex';

import { connect } from '../../src/db/connect.js';
import { LimitsService } from '../../src/limits/service.js';
import { NodeApplier } from '../../src/nodes/panel/applier.js';
import { ENGINES, type Engine } from '../support/databases.js';
import { ownDatabase } from '../support/own-database.js';
import { seedHost, startPanel, wgKey, type Agent, type TestPanel } from '../support/panel.js';

const CAPS = { bandwidth_up_kbps: 5000, bandwidth_down_kbps: 20_000 };

/** Polls `check` every 20 ms until it returns a value, or fails after `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The peers of a network, as `name → caps and status`. */
async function peersOf(api: Agent, networkId: number): Promise<Map<string, [number, number, string]>> {
  const listed = await api.get(`/api/networks/${networkId}/peers`).expect(200);
  return new Map((listed.body.peers as { name: string; bandwidth_up_kbps: number; bandwidth_down_kbps: number; bandwidth_status: string }[]).map((p) => [
    p.name,
    [p.bandwidth_up_kbps, p.bandwidth_down_kbps, p.bandwidth_status],
  ]));
}

/**
 * Holds bw_limits locked for writes in another session of the engine, as the issue's
 * `SELECT … FOR UPDATE` did; `release()` ends the transaction.
 */
async function holdLimits(panel: LockPanel, engine: Engine['id']): Promise<{ holder: Knex; release: () => Promise<void> }> {
  const { url } = panel;
  const holder = connect(url);
  const trx = await holder.transaction();
  if (engine === 'postgres') await trx.raw('LOCK TABLE bw_limits IN EXCLUSIVE MODE'); // FOR UPDATE would not stop an INSERT
  else await trx('bw_limits').select('id').forUpdate();
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await trx.commit();
  };
  // Released before the panel closes and the database is dropped, also when the test failed.
  panel.closeFirst(async () => {
    await release();
    await holder.destroy();
  });
  return { holder, release };
}

/**
 * Waits until the panel's statement starting with `statement` has waited a second on MariaDB, and
 * ends it as a lock wait timeout would (innodb_trx does not always list the waiter; the
 * processlist does).
 */
async function endLockWait(holder: Knex, database: string, statement: string): Promise<void> {
  const id = await until(`the panel's \`${statement}…\` waiting for a lock`, async () => {
    const rows = (await holder.raw(
      'SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID() AND time >= 1 AND info LIKE ?',
      [database, `${statement}%`],
    )) as [{ id: number }[]];
    return rows[0][0]?.id;
  });
  await holder.raw('KILL QUERY ?', [id]);
}

interface LockPanel {
  host: TestPanel;
  url: string;
  database: string;
  closeFirst: (close: () => Promise<unknown>) => void;
}

async function realLockPanel(t: TestContext, engine: Engine): Promise<LockPanel | undefined> {
  const own = await ownDatabase(t, engine, 'hookfail');
  if (!own) return undefined;
  // PostgreSQL ends a lock wait after lock_timeout; the panel's sessions get 1.5 s (MariaDB's default is 50 s).
  const url = engine.id === 'postgres' ? `${own.url}?options=${encodeURIComponent('-c lock_timeout=1500')}` : own.url;
  const host = await startPanel(t, { databaseUrl: url });
  own.closeFirst(() => host.close());
  return { host, url: own.url, database: new URL(own.url).pathname.slice(1), closeFirst: own.closeFirst };
}

for (const engine of ENGINES.filter((e) => e.id !== 'sqlite')) {
  describe(`a lock wait on bw_limits on ${engine.id}`, () => {
    test('a peer created with caps while bw_limits is locked is refused with 503, never stored uncapped; the retry stores its caps', { timeout: 120_000 }, async (t) => {
      const panel = await realLockPanel(t, engine);
      if (!panel) return;
      const { api } = panel.host;
      const { networkId } = await seedHost(api);
      const { holder, release } = await holdLimits(panel, engine.id);

      const sent = api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(9), allowed_ips: ['10.8.0.9/32'], ...CAPS }).then((r) => r);
      if (engine.id === 'mysql') await endLockWait(holder, panel.database, 'insert into `bw_limits`');
      const answer = await sent;
      assert.equal(answer.status, 503, answer.text);
      assert.match(answer.body.error.message, /^The peer was not created: plugin `bandwidth` could not store its settings \(.+\)\. Nothing was saved; try again\.$/);
      await release();
      assert.equal((await peersOf(api, networkId)).has('phone'), false, 'no peer without its caps');
      assert.equal(await panel.host.db('bw_limits').where({ name: 'phone' }).first(), undefined);

      const retried = await api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(9), allowed_ips: ['10.8.0.9/32'], ...CAPS });
      assert.equal(retried.status, 201, retried.text);
      assert.deepEqual((await peersOf(api, networkId)).get('phone')?.slice(0, 2), [5000, 20_000]);
    });

    test('new caps for a peer while bw_limits is locked are refused with 503: the peer and its old caps stay as they were', { timeout: 120_000 }, async (t) => {
      const panel = await realLockPanel(t, engine);
      if (!panel) return;
      const { api } = panel.host;
      const { networkId, peerId } = await seedHost(api);
      await api.put(`/api/networks/${networkId}/peers/${peerId}`).send({ bandwidth_up_kbps: 1000, bandwidth_down_kbps: 2000 }).expect(200);
      const { holder, release } = await holdLimits(panel, engine.id);

      const sent = api.put(`/api/networks/${networkId}/peers/${peerId}`).send({ name: 'laptop-2', ...CAPS }).then((r) => r);
      if (engine.id === 'mysql') await endLockWait(holder, panel.database, 'update `bw_limits` set `name`');
      const answer = await sent;
      assert.equal(answer.status, 503, answer.text);
      assert.match(answer.body.error.message, /^The peer was not changed: plugin `bandwidth`/);
      await release();
      const peers = await peersOf(api, networkId);
      assert.deepEqual(peers.get('laptop')?.slice(0, 2), [1000, 2000], 'the old name and caps stay');
      assert.equal(peers.has('laptop-2'), false);
    });
  });
}

describe('a failing hook on sqlite (the plugin failure simulated)', () => {
  test('a created hook that cannot store: 503 and no peer; a VM likewise', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const busy = () => Promise.reject(Object.assign(new Error('insert into `bw_limits` … - SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' }));
    const set = t.mock.method(LimitsService.prototype, 'set', busy);

    const peer = await host.api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(9), allowed_ips: ['10.8.0.9/32'], ...CAPS });
    assert.equal(peer.status, 503, peer.text);
    assert.equal(peer.body.error.message, 'The peer was not created: plugin `bandwidth` could not store its settings (SQLITE_BUSY: database is locked). Nothing was saved; try again.');
    assert.equal((await peersOf(host.api, networkId)).has('phone'), false);
    const vm = await host.api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01', ...CAPS });
    assert.equal(vm.status, 503, vm.text);
    assert.equal((await host.db('vms').where({ name: 'db-01' })).length, 0);

    set.mock.restore();
    await host.api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(9), allowed_ips: ['10.8.0.9/32'], ...CAPS }).expect(201);
    assert.deepEqual((await peersOf(host.api, networkId)).get('phone')?.slice(0, 2), [5000, 20_000]);
  });

  test('an updated hook that cannot store: 503, the VM keeps its name, interface and caps', async (t) => {
    const host = await startPanel(t);
    const { vmId } = await seedHost(host.api);
    await host.api.put(`/api/vms/${vmId}`).send({ bandwidth_up_kbps: 700, bandwidth_down_kbps: 900 }).expect(200);
    t.mock.method(LimitsService.prototype, 'merge', () => Promise.reject(new Error('SQLITE_BUSY: database is locked')));
    const answer = await host.api.put(`/api/vms/${vmId}`).send({ name: 'web-02', interface: 'tap-web02', ...CAPS });
    assert.equal(answer.status, 503, answer.text);
    assert.match(answer.body.error.message, /^The VM was not changed: plugin `bandwidth`/);
    const vm = (await host.api.get(`/api/vms/${vmId}`).expect(200)).body.vm;
    assert.deepEqual([vm.name, vm.interface, vm.bandwidth_up_kbps, vm.bandwidth_down_kbps], ['web-01', 'tap-web01', 700, 900]);
  });

  test('caps stored but not applied (the apply failed) answer 201 and stay pending for the reconcile loop, never unlimited', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    t.mock.method(NodeApplier.prototype, 'applyInterface', () => Promise.reject(new Error('Lock wait timeout exceeded; try restarting transaction')));
    const answer = await host.api.post(`/api/networks/${networkId}/peers`).send({ name: 'phone', public_key: wgKey(9), allowed_ips: ['10.8.0.9/32'], ...CAPS });
    assert.equal(answer.status, 201, answer.text);
    assert.deepEqual([answer.body.peer.bandwidth_up_kbps, answer.body.peer.bandwidth_down_kbps, answer.body.peer.bandwidth_status], [5000, 20_000, 'pending']);
    const row = await host.db('bw_limits').where({ name: 'phone' }).first();
    assert.deepEqual([row.up_kbps, row.down_kbps, row.status], [5000, 20_000, 'pending'], 'the desired caps are stored first');
  });
});
