import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Knex } from 'knex';
import { ENGINES, dropPluginTables, openEngine, type Engine } from '../support/databases.js';
import { seedSubjects } from '../support/seed.js';
import { migrateHost } from '../../examples/host-panel/src/db/migrate.js';
import { createRecords } from '../../examples/host-panel/src/records.js';
import { migrateLatest } from '../../src/db/migrate.js';
import { getLimit, toLimitRow } from '../../src/db/limits.js';
import { dropLimits, refreshLimits } from '../../src/db/resync-limits.js';
import { resyncWithHost } from '../../src/limits/resync.js';
import { planResync } from '../../src/limits/resync-plan.js';
import { readHostSubjects } from '../../src/limits/host-subjects.js';
import type { Logger } from '../../src/plugin-api.js';

const HOST_TABLES = ['panel_plugins', 'vms', 'peers', 'networks', 'panel_sessions', 'panel_settings', 'panel_users', 'panel_knex_migrations', 'panel_knex_migrations_lock'];

async function dropEverything(knex: Knex): Promise<void> {
  await dropPluginTables(knex);
  for (const table of HOST_TABLES) await knex.schema.dropTableIfExists(table);
}

/** The reference host's tables and the plugin's, freshly migrated on the engine. */
async function openHost(t: TestContext, engine: Engine): Promise<Knex | undefined> {
  const knex = await openEngine(t, engine, { cleanup: dropEverything });
  if (!knex) return undefined;
  await dropEverything(knex);
  await migrateHost(knex);
  await migrateLatest(knex);
  return knex;
}

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

async function rows(knex: Knex) {
  return ((await knex('bw_limits').orderBy('id')) as Record<string, unknown>[]).map(toLimitRow);
}

for (const engine of ENGINES) {
  describe(`resync with the host's records on ${engine.id}`, () => {
    test('drops rows of deleted peers and VMs, refreshes changed copies, and moves a VM to a free class on its new tap', async (t) => {
      const knex = await openHost(t, engine);
      if (!knex) return;
      // Subjects 1-4 are peers on wg0, 5 and 10 VMs on their own taps; every 7th is unlimited.
      const seeded = await seedSubjects(knex, { count: 10, vmEvery: 5, caps: () => ({ upKbps: 1000, downKbps: 2000 }), status: () => 'applied' });
      const [p1, p2, p3] = seeded.subjects.filter((s) => s.type === 'peer');
      const [vm5, vm10] = seeded.subjects.filter((s) => s.type === 'vm');
      await knex('peers').where({ id: Number(p1!.id) }).delete();
      await knex('peers').where({ id: Number(p2!.id) }).update({ allowed_ips: JSON.stringify(['10.0.9.9/32']), name: 'moved' });
      await knex('vms').where({ id: Number(vm5!.id) }).delete();
      await knex('vms').where({ id: Number(vm10!.id) }).update({ interface: 'tap-new', netns: 'guests' });
      // A tap of the same name in another namespace already holds the VM's class minor (class ids
      // are unique per node and interface name).
      const minorBefore = (await getLimit(knex, 'vm', vm10!.id))!.classMinor;
      await knex('vms').insert({ id: 999, name: 'neighbour', interface: 'tap-new', netns: 'other', created_at: 1, updated_at: 1 });
      await knex('bw_limits').insert({
        subject_type: 'vm', subject_id: '999', name: 'neighbour', node: 'local', interface: 'tap-new', netns: 'other', interface_kind: 'vm',
        addresses: '[]', up_kbps: 1, down_kbps: 1, class_minor: minorBefore, status: 'applied', created_at: 1, updated_at: 1,
      });

      const before = await rows(knex);
      const result = await resyncWithHost(knex, createRecords(knex), 'test', quiet);

      assert.deepEqual(result.dropped.map((row) => `${row.subjectType}:${row.subjectId}`).sort(), [`peer:${p1!.id}`, `vm:${vm5!.id}`].sort());
      const after = await rows(knex);
      assert.equal(after.find((row) => row.subjectId === p1!.id && row.subjectType === 'peer'), undefined);
      const moved = after.find((row) => row.subjectType === 'peer' && row.subjectId === p2!.id)!;
      assert.deepEqual([moved.name, moved.addresses, moved.upKbps, moved.downKbps], ['moved', ['10.0.9.9/32'], 1000, 2000]);
      const tap = after.find((row) => row.subjectType === 'vm' && row.subjectId === vm10!.id)!;
      assert.deepEqual([tap.interface, tap.netns], ['tap-new', 'guests']);
      assert.notEqual(tap.classMinor, minorBefore, 'a free class on the new tap, not the neighbour\'s');
      const untouched = after.find((row) => row.subjectType === 'peer' && row.subjectId === p3!.id)!;
      assert.equal(untouched.updatedAt.getTime(), before.find((row) => row.id === untouched.id)!.updatedAt.getTime(), 'a row in step is not written');
      const refs = result.interfaces.map((ref) => `${ref.interface}@${ref.netns ?? ''}`).sort();
      assert.deepEqual(refs, [`tap-new@guests`, `tap-v${vm10!.id}@`, `tap-v${vm5!.id}@`, 'wg0@'].sort());
      const events = await knex('bw_events').orderBy('id');
      assert.deepEqual(events.map((e) => [e.action, `${e.subject_type}:${e.subject_id}`]).sort(), [
        ['subject.gone', `peer:${p1!.id}`], ['subject.gone', `vm:${vm5!.id}`],
        ['subject.refreshed', `peer:${p2!.id}`], ['subject.refreshed', `vm:${vm10!.id}`],
      ].sort(), 'the neighbour, in step with its VM, is not touched');
    });

    test('a row a hook rewrote after it was read is neither dropped nor refreshed', async (t) => {
      const knex = await openHost(t, engine);
      if (!knex) return;
      const seeded = await seedSubjects(knex, { count: 3, vmEvery: 100, caps: () => ({ upKbps: 1000, downKbps: 1000 }), status: () => 'applied' });
      const [first, second] = seeded.subjects;
      await knex('peers').where({ id: Number(first!.id) }).delete();
      await knex('peers').where({ id: Number(second!.id) }).update({ allowed_ips: JSON.stringify(['10.0.7.7/32']) });
      const plan = planResync(await rows(knex), await readHostSubjects(createRecords(knex)));
      assert.equal(plan.gone.length + plan.stale.length, 2, 'arranged');
      // The hooks write meanwhile (a newer updated_at).
      await knex('bw_limits').whereIn('subject_id', [first!.id, second!.id]).update({ updated_at: Date.now() + 60_000, up_kbps: 5000 });

      assert.deepEqual(await dropLimits(knex, plan.gone), []);
      assert.deepEqual(await refreshLimits(knex, plan.stale), []);
      const kept = (await rows(knex)).filter((row) => [first!.id, second!.id].includes(row.subjectId));
      assert.deepEqual(kept.map((row) => [row.upKbps, row.addresses]), [[5000, [first!.address]], [5000, [second!.address]]]);
    });

    test('network caps follow the host: a deleted network loses them and its peers their defaults, a moved one has them where it is now', async (t) => {
      const knex = await openHost(t, engine);
      if (!knex) return;
      const seeded = await seedSubjects(knex, { count: 4, vmEvery: 0, caps: () => ({ upKbps: 0, downKbps: 0 }), status: () => 'applied' });
      const [kept, gone] = [seeded.networkIds[0]!, '9999'];
      const where = (await knex('networks').where({ id: Number(kept) }).first()) as { interface: string };
      await knex('bw_network_caps').insert([
        { network_id: kept, node: 'local', interface: 'wg-old', netns: null, total_up_kbps: 0, total_down_kbps: 30_000, default_up_kbps: 0, default_down_kbps: 0, updated_at: 1 },
        { network_id: gone, node: 'local', interface: 'wg-gone', netns: null, total_up_kbps: 0, total_down_kbps: 0, default_up_kbps: 500, default_down_kbps: 0, updated_at: 1 },
      ]);
      await knex('bw_limits').insert({
        subject_type: 'peer', subject_id: '777', name: 'orphan', node: 'local', network_id: gone, interface: 'wg-gone', netns: null, interface_kind: 'wireguard',
        addresses: '[]', up_kbps: 0, down_kbps: 0, default_up_kbps: 500, class_minor: 2, status: 'applied', created_at: 1, updated_at: 1,
      });
      const result = await resyncWithHost(knex, createRecords(knex), 'test', quiet);
      assert.deepEqual(((await knex('bw_network_caps').select('network_id', 'interface')) as Record<string, unknown>[]).map((row) => [String(row.network_id), row.interface]), [[kept, where.interface]]);
      assert.ok(result.interfaces.some((ref) => ref.interface === 'wg-gone'), 'the interface that lost its network cap is reconciled');
      assert.equal(((await knex('bw_events').where({ action: 'network.caps' }).first()) as { message: string }).message, `The host no longer has network ${gone}: its caps were dropped`);
    });

    test('with 10,000 subjects in step, a resync reads each table once and writes nothing', { timeout: 120_000 }, async (t) => {
      const knex = await openHost(t, engine);
      if (!knex) return;
      // WireGuard keys are case-sensitive base64; MariaDB's default collation is not, and some of
      // the 10,000 seeded keys differ only in case (a limit of the reference host's schema there).
      if (engine.id === 'mysql') await knex.raw('alter table peers modify public_key varchar(44) collate utf8mb4_bin not null');
      await seedSubjects(knex, { count: 10_000 });
      const queries: string[] = [];
      const listen = (query: { sql: string }) => queries.push(query.sql);
      knex.on('query', listen);
      t.after(() => knex.off('query', listen));

      const started = performance.now();
      const result = await resyncWithHost(knex, createRecords(knex), 'test', quiet);
      const elapsed = performance.now() - started;

      assert.deepEqual([result.dropped.length, result.refreshed.length, result.interfaces.length], [0, 0, 0]);
      assert.equal(queries.length, 5, `bw_limits, networks, peers (9,000: one page), vms (1,000), bw_network_caps:\n${queries.join('\n')}`);
      assert.ok(queries.every((sql) => /^select /i.test(sql)), 'reads only');
      t.diagnostic(`resync of 10,000 subjects in step on ${engine.id}: ${elapsed.toFixed(0)} ms`);
    });
  });
}
