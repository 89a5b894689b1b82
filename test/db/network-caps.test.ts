/**
 * Issue 14, db layer: a network's caps are stored with its peers in one allocation turn — its
 * defaults copied onto every peer row, a class minor for every peer under a network cap — and the
 * rows, filters and counts then treat a default-capped peer as limited. Each engine runs on a
 * database of its own (`pbw_netcaps_<pid>_<engine>`).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Knex } from 'knex';

import { countLimits, countLimitsByStatus, getLimit, isLimited, listLimits, saveLimit, setThrottle, toLimitRow, type LimitRow, type SubjectLimit } from '../../src/db/limits.js';
import { deleteNetworkCaps, getNetworkCaps, getNetworkCapsMany, networkCapsOfInterface, setNetworkCaps } from '../../src/db/network-caps.js';
import { refreshLimits } from '../../src/db/resync-limits.js';
import { listEvents } from '../../src/db/events.js';
import { LimitApplier } from '../../src/limits/applier.js';
import { LimitsService } from '../../src/limits/service.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import { ENGINES } from '../support/databases.js';
import { openOwnMigrated } from '../support/own-database.js';

const POOLS = 3;
const NOW = Date.UTC(2026, 10, 21, 12, 0, 0);
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const NET = { networkId: '7', node: 'local', interface: 'wg0', netns: null };

function peer(id: number, caps: { up: number; down: number } = { up: 0, down: 0 }, networkId = '7', iface = 'wg0'): SubjectLimit {
  return {
    subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, networkId, interface: iface, netns: null,
    interfaceKind: 'wireguard', addresses: [`10.8.${id >> 8}.${id & 255}/32`], publicKey: null, upKbps: caps.up, downKbps: caps.down,
  };
}

async function allRows(db: Knex): Promise<LimitRow[]> {
  return ((await db('bw_limits').orderBy('id')) as Record<string, unknown>[]).map(toLimitRow);
}

const view = (row: LimitRow) => [row.subjectId, row.upKbps, row.downKbps, row.defaultUpKbps, row.defaultDownKbps, row.classMinor, row.status];

for (const engine of ENGINES) {
  describe(`network caps on ${engine.id}`, () => {
    test('defaults are copied onto every peer of the network; a network cap gives every peer a class; rows whose kernel state moves go pending', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      await saveLimit(db, peer(1, { up: 2000, down: 0 }));
      await saveLimit(db, peer(2));
      await saveLimit(db, peer(3, { up: 0, down: 0 }, '8'));
      await db('bw_limits').update({ status: 'applied' });

      const first = await setNetworkCaps(db, NET, { defaultUpKbps: 1000, defaultDownKbps: 4000 }, NOW);
      assert.equal(first.previous, undefined);
      assert.deepEqual(first.current, { ...NET, totalUpKbps: 0, totalDownKbps: 0, defaultUpKbps: 1000, defaultDownKbps: 4000, updatedAt: new Date(NOW) });
      assert.deepEqual((await allRows(db)).map(view), [
        ['1', 2000, 0, 1000, 4000, 2, 'pending'], // its own upload cap stays; the default download applies
        ['2', 0, 0, 1000, 4000, 3, 'pending'], // unlimited until now: a default cap gives it a class
        ['3', 0, 0, 0, 0, null, 'applied'], // another network
      ]);
      assert.deepEqual(first.changes.map(({ before, after }) => [before.subjectId, before.classMinor, after.classMinor]), [['1', 2, 2], ['2', null, 3]]);
      assert.ok(isLimited((await getLimit(db, 'peer', '2'))!), 'a default-capped peer is limited');

      await db('bw_limits').update({ status: 'applied' });
      // Only the upload default moves: peer 1 has its own upload cap, so its kernel state stays.
      const second = await setNetworkCaps(db, NET, { defaultUpKbps: 1500 }, NOW + 1);
      assert.deepEqual([second.current.defaultUpKbps, second.current.defaultDownKbps], [1500, 4000], 'fields left out keep their values');
      assert.deepEqual((await allRows(db)).map(view), [
        ['1', 2000, 0, 1500, 4000, 2, 'applied'],
        ['2', 0, 0, 1500, 4000, 3, 'pending'],
        ['3', 0, 0, 0, 0, null, 'applied'],
      ]);

      // A network cap: every peer of the network gets a class, the unlimited ones too.
      await setNetworkCaps(db, NET, { defaultUpKbps: 0, defaultDownKbps: 0 }, NOW + 2);
      await saveLimit(db, peer(4));
      assert.equal((await getLimit(db, 'peer', '4'))!.classMinor, null, 'no network cap, no default: no class');
      await setNetworkCaps(db, NET, { totalUpKbps: 30_000, totalDownKbps: 30_000 }, NOW + 3);
      const capped = (await allRows(db)).filter((row) => row.networkId === '7');
      assert.deepEqual(capped.map((row) => [row.subjectId, row.classMinor]), [['1', 2], ['2', 3], ['4', 4]]);
      assert.equal(isLimited(capped[2]!), false, 'a class under a network cap is not a cap of its own');
      assert.deepEqual(await networkCapsOfInterface(db, { node: 'local', interface: 'wg0', netns: null }, capped), await getNetworkCaps(db, '7'));
      assert.deepEqual([...(await getNetworkCapsMany(db, ['7', '8'])).keys()], ['7']);
    });

    test('a new peer on a network with defaults or a network cap gets the defaults and a class when it is saved', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      await setNetworkCaps(db, NET, { totalDownKbps: 50_000, defaultUpKbps: 800 }, NOW);
      const { current } = await saveLimit(db, peer(1));
      assert.deepEqual(view(current), ['1', 0, 0, 800, 0, 2, 'pending']);
      const { current: elsewhere } = await saveLimit(db, peer(2, { up: 0, down: 0 }, null as unknown as string, 'wg1'));
      assert.deepEqual(view(elsewhere), ['2', 0, 0, 0, 0, null, 'pending'], 'a subject of no network has no defaults');
      // Share and burst are kept when a later save leaves them out.
      await saveLimit(db, { ...peer(1, { up: 1000, down: 0 }), minKbps: 5000, burstKbps: 4000, burstBytes: 4 * 1024 ** 3 });
      const { current: again } = await saveLimit(db, peer(1, { up: 1200, down: 0 }));
      assert.deepEqual([again.upKbps, again.minKbps, again.burstKbps, again.burstBytes], [1200, 5000, 4000, 4 * 1024 ** 3], 'a 4 GiB burst comes back exactly');
    });

    test('the unlimited filter and the counts treat a default-capped peer as limited, and a throttled one too', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      await saveLimit(db, peer(1, { up: 1000, down: 0 }));
      await saveLimit(db, peer(2));
      await saveLimit(db, peer(3, { up: 0, down: 0 }, '8'));
      await saveLimit(db, peer(4, { up: 0, down: 0 }, '8'));
      await setThrottle(db, 'peer', '4', { upKbps: 64, downKbps: 0 });
      const names = async (filter: Parameters<typeof listLimits>[1]) => (await listLimits(db, filter, { offset: 0, limit: 10 })).map((row) => row.subjectId);
      assert.deepEqual(await names({ status: 'unlimited' }), ['2', '3']);
      await setNetworkCaps(db, NET, { defaultDownKbps: 2000 }, NOW);
      assert.deepEqual(await names({ status: 'unlimited' }), ['3']);
      assert.deepEqual(await names({ limitedOnly: true }), ['1', '2', '4']);
      assert.equal(await countLimits(db, { status: 'unlimited' }), 1);
      const counts = await countLimitsByStatus(db);
      assert.deepEqual([counts.total, counts.subjects], [3, 4]);
      // Dropping the network's caps clears the defaults it gave.
      await deleteNetworkCaps(db, '7', NOW + 1);
      assert.equal(await getNetworkCaps(db, '7'), undefined);
      assert.deepEqual(await names({ status: 'unlimited' }), ['2', '3']);
    });

    test('a peer moved to another network by a resync takes that network\u2019s defaults and a class under its network cap', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      await setNetworkCaps(db, { ...NET, networkId: '8', interface: 'wg1' }, { totalUpKbps: 10_000, defaultDownKbps: 3000 }, NOW);
      const { current } = await saveLimit(db, peer(1));
      assert.equal(current.classMinor, null);
      const moved = peer(1, { up: 0, down: 0 }, '8', 'wg1');
      await refreshLimits(db, [{ row: current, subject: moved }], NOW + 1);
      const row = (await getLimit(db, 'peer', '1'))!;
      assert.deepEqual([row.networkId, row.interface, row.defaultUpKbps, row.defaultDownKbps, row.classMinor], ['8', 'wg1', 0, 3000, 2]);
    });

    test(`network caps set while ${POOLS} pools save new peers on the interface: every peer ends with the defaults and a minor of its own`, async (t) => {
      const pools = await openOwnMigrated(t, engine, 'netcaps', POOLS);
      if (!pools) return;
      for (let id = 1; id <= 20; id++) await saveLimit(pools[0]!, peer(id));
      const writes: Promise<unknown>[] = [];
      for (let id = 21; id <= 80; id++) {
        writes.push(saveLimit(pools[id % POOLS]!, peer(id)));
        if (id % 20 === 0) writes.push(setNetworkCaps(pools[(id + 1) % POOLS]!, NET, { totalUpKbps: 100_000, defaultDownKbps: 1000 + id }, NOW + id));
      }
      const results = await Promise.allSettled(writes);
      assert.deepEqual(results.filter((result) => result.status === 'rejected').map((result) => String((result as PromiseRejectedResult).reason)), []);
      const rows = await allRows(pools[0]!);
      assert.equal(rows.length, 80);
      assert.deepEqual(rows.filter((row) => row.classMinor === null).map((row) => row.subjectId), [], 'every peer under the network cap has a class');
      assert.equal(new Set(rows.map((row) => row.classMinor)).size, 80, 'no minor given twice');
      const stored = (await getNetworkCaps(pools[0]!, '7'))!;
      assert.deepEqual(new Set(rows.map((row) => row.defaultDownKbps)), new Set([stored.defaultDownKbps]), 'every row carries the default that was stored last');
    });

    test('LimitsService.changeNetworkCaps checks, stores, applies the interface and audits network.caps', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      const executor = new RecordingExecutor();
      const applier = new LimitApplier({ db, executor, mode: 'recording', reason: 'the test', capabilities: async () => ({ leaf: 'fq_codel' }), logger: quiet });
      const service = new LimitsService(db, applier, quiet);
      await saveLimit(db, peer(1));
      await saveLimit(db, peer(2, { up: 0, down: 9000 }));

      const refused = await service.changeNetworkCaps(NET, { totalDownKbps: 10_000, defaultDownKbps: 20_000 }, 'admin');
      assert.deepEqual(refused.issue, { field: 'bandwidth_default_down_kbps', message: "`bandwidth_default_down_kbps` (20000 kbit/s) is above the network's download cap of 10000 kbit/s" });
      assert.equal(await getNetworkCaps(db, '7'), undefined, 'nothing stored');

      const changed = await service.changeNetworkCaps(NET, { totalDownKbps: 10_000, defaultDownKbps: 2000 }, 'admin');
      assert.deepEqual([changed.caps?.totalDownKbps, changed.caps?.defaultDownKbps, changed.outcome?.reason], [10_000, 2000, 'dry_run']);
      assert.ok(executor.calls.length > 0, 'the interface was planned');
      const [event] = (await listEvents(db, { offset: 0, limit: 1 })).events;
      assert.deepEqual([event?.action, event?.oldValue, event?.newValue], [
        'network.caps',
        { network_id: '7', total_up_kbps: 0, total_down_kbps: 0, default_up_kbps: 0, default_down_kbps: 0 },
        { network_id: '7', total_up_kbps: 0, total_down_kbps: 10_000, default_up_kbps: 0, default_down_kbps: 2000 },
      ]);
      const again = await service.changeNetworkCaps(NET, { totalDownKbps: 10_000 }, 'admin');
      assert.equal(again.outcome, null, 'the same caps again change nothing');
      assert.equal((await listEvents(db, { offset: 0, limit: 10 })).total, 1);
      assert.deepEqual((await service.validate({ ...peer(1), minKbps: 12_000 })).map((issue) => issue.field), ['bandwidth_min_kbps']);
    });

    test('a change of the defaults alone reaches the kernel as class changes of the subjects it moves, without a read', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      const executor = new RecordingExecutor();
      const applier = new LimitApplier({ db, executor, mode: 'local', reason: 'the test', capabilities: async () => ({ leaf: 'fq_codel' }), logger: quiet });
      const service = new LimitsService(db, applier, quiet);
      await saveLimit(db, peer(1, { up: 0, down: 5000 }));
      await saveLimit(db, peer(2));
      await setNetworkCaps(db, NET, { defaultDownKbps: 2000 }, NOW);
      // As after an apply the kernel took.
      await db('bw_limits').update({ status: 'applied' });

      const { outcome } = await service.changeNetworkCaps(NET, { defaultDownKbps: 3000 }, 'admin');
      assert.equal(outcome?.status, 'applied');
      assert.deepEqual(executor.calls.filter((call) => call.kind === 'run').map((call) => call.argv.join(' ')), [], 'nothing read');
      const commands = executor.operations.map((operation) => operation.argv.join(' '));
      assert.ok(commands.length > 0 && commands.every((command) => /^class change /.test(command)), commands.join('\n'));
      assert.ok(commands.every((command) => / classid 1:3 /.test(command)), 'only the class of the peer the default applies to');
      assert.deepEqual([(await getLimit(db, 'peer', '1'))!.status, (await getLimit(db, 'peer', '2'))!.status], ['applied', 'applied']);
    });

    test('regression (kernel model seed 303, issue 14): a burst the network default overtook later blocks no other edit of its peer', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      const executor = new RecordingExecutor();
      const applier = new LimitApplier({ db, executor, mode: 'recording', reason: 'the test', capabilities: async () => ({ leaf: 'pfifo' }), logger: quiet });
      const service = new LimitsService(db, applier, quiet);
      await service.changeNetworkCaps(NET, { defaultDownKbps: 5000 }, 'admin');
      const burst = { burstKbps: 20_000, burstBytes: 1_000_000 };
      assert.ok((await service.change(peer(1), burst, 'admin')).limit, 'a burst above the default of 5000');
      await service.changeNetworkCaps(NET, { defaultDownKbps: 30_000 }, 'admin');

      // The stored burst is now below the default: an edit of its addresses is not the place to refuse it.
      assert.deepEqual(await service.validate({ ...peer(1), addresses: ['10.9.0.1/32'] }), []);
      // An edit that sets the burst again is checked against the caps around it.
      assert.deepEqual((await service.validate({ ...peer(1), burstKbps: 25_000 })).map((issue) => issue.field), ['bandwidth_burst_kbps']);
      // A new subject with that burst is refused too.
      assert.deepEqual((await service.validate({ ...peer(2), ...burst })).map((issue) => issue.field), ['bandwidth_burst_kbps']);
    });

    test('regression (kernel model, issue 14): deleting a peer whose class comes only from the network cap applies its interface', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'netcaps')) ?? [];
      if (!db) return;
      const executor = new RecordingExecutor();
      const applier = new LimitApplier({ db, executor, mode: 'local', reason: 'the test', capabilities: async () => ({ leaf: 'pfifo' }), logger: quiet });
      const service = new LimitsService(db, applier, quiet);
      await saveLimit(db, peer(1));
      await saveLimit(db, peer(2));
      await service.changeNetworkCaps(NET, { totalDownKbps: 1000 }, 'admin');
      const gone = await getLimit(db, 'peer', '2');
      assert.equal(isLimited(gone!), false, 'no cap of its own: only the network cap gives it a class');
      const before = executor.calls.length;

      await service.remove('peer', '2', 'admin');
      // Before the fix the interface was applied only for a limited subject: its class, leaf and
      // filter entry stayed in the kernel, holding the other peer's guarantee at half the network.
      // (wg0 does not exist here: the reconcile reads the kernel and finds nothing to plan.)
      assert.ok(executor.calls.length > before, 'the interface was reconciled again');
    });
  });
}
