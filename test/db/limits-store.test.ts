import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ENGINES, openMigrated } from '../support/databases.js';
import { countLimitsByStatus, deleteLimit, getLimit, isLimited, listLimits, saveLimit, setStatus, setThrottle, type SubjectLimit } from '../../src/db/limits.js';
import { listEvents, recordEvent } from '../../src/db/events.js';

const peer = (id: number, caps: { upKbps: number; downKbps: number }, iface = 'wg0'): SubjectLimit => ({
  subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, networkId: '1', interface: iface, netns: null,
  interfaceKind: 'wireguard', addresses: [`10.1.${Math.floor(id / 250)}.${(id % 250) + 2}/32`], ...caps,
});

for (const engine of ENGINES) {
  describe(`the limits store on ${engine.id}`, () => {
    test('a limited subject gets a class once and keeps it through cap changes and a pause at 0/0', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const first = await saveLimit(knex, peer(1, { upKbps: 1000, downKbps: 5000 }));
      assert.equal(first.previous, undefined);
      assert.equal(first.current.classMinor, 2);
      assert.equal(first.current.status, 'pending');
      const second = await saveLimit(knex, peer(2, { upKbps: 0, downKbps: 0 }));
      assert.equal(second.current.classMinor, null, 'unlimited subjects hold no class');
      await saveLimit(knex, peer(1, { upKbps: 0, downKbps: 0 }));
      const back = await saveLimit(knex, peer(1, { upKbps: 3000, downKbps: 0 }));
      assert.equal(back.current.classMinor, 2, 'the class id is stable');
      assert.deepEqual([back.previous?.upKbps, back.current.upKbps], [0, 3000]);
      const moved = await saveLimit(knex, peer(1, { upKbps: 3000, downKbps: 0 }, 'wg1'));
      assert.equal(moved.current.interface, 'wg1');
      assert.equal(moved.current.classMinor, 2, 'a fresh interface allocates from the bottom again');
    });

    test('twenty subjects saved at once on one interface get twenty different classes', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const saved = await Promise.all(Array.from({ length: 20 }, (_, i) => saveLimit(knex, peer(i + 1, { upKbps: 100 * (i + 1), downKbps: 0 }))));
      const minors = saved.map((s) => s.current.classMinor);
      assert.equal(new Set(minors).size, 20);
      assert.ok(minors.every((m) => m !== null && m >= 2 && m <= 21));
    });

    test('a status answer for an older write does not overwrite a newer one', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { current: older } = await saveLimit(knex, peer(1, { upKbps: 1000, downKbps: 0 }), 1_000);
      await saveLimit(knex, peer(1, { upKbps: 2000, downKbps: 0 }), 2_000);
      await setStatus(knex, [older], 'applied', null, null);
      assert.equal((await getLimit(knex, 'peer', '1'))?.status, 'pending');
      const latest = (await getLimit(knex, 'peer', '1'))!;
      await setStatus(knex, [latest], 'failed', 'RTNETLINK answers: Operation not permitted', 'kernel_refused');
      const failed = await getLimit(knex, 'peer', '1');
      assert.equal(failed?.status, 'failed');
      assert.equal(failed?.lastError, 'RTNETLINK answers: Operation not permitted');
      assert.equal(failed?.reason, 'kernel_refused');
    });

    test('the reason is stored beside the message, cleared by a new write, and a changed reason alone is written', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { current } = await saveLimit(knex, peer(1, { upKbps: 1000, downKbps: 0 }), 1_000);
      assert.equal(current.reason, null, 'a fresh write has no reason yet');
      await setStatus(knex, [current], 'pending', 'waiting', 'interface_missing');
      const waiting = (await getLimit(knex, 'peer', '1'))!;
      assert.deepEqual([waiting.status, waiting.lastError, waiting.reason], ['pending', 'waiting', 'interface_missing']);
      // Same status and message, another reason (a row written before reasons existed, say): still written.
      await setStatus(knex, [waiting], 'pending', 'waiting', 'dry_run');
      assert.equal((await getLimit(knex, 'peer', '1'))?.reason, 'dry_run');
      await knex('bw_limits').where({ subject_id: '1' }).update({ reason: 'a_word_from_the_future' });
      assert.equal((await getLimit(knex, 'peer', '1'))?.reason, null, 'an unknown stored word reads as no reason');
      const again = await saveLimit(knex, peer(1, { upKbps: 2000, downKbps: 0 }), 2_000);
      assert.deepEqual([again.current.status, again.current.reason], ['pending', null], 'a new desired state forgets the old reason');
    });

    test('lists filter by type, network and status; counts cover limited subjects only', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await saveLimit(knex, peer(1, { upKbps: 1000, downKbps: 0 }));
      await saveLimit(knex, peer(2, { upKbps: 0, downKbps: 0 }));
      await saveLimit(knex, {
        subjectType: 'vm', subjectId: '9', name: 'web', networkId: null, interface: 'tap9', netns: 'hv', interfaceKind: 'vm', addresses: [], upKbps: 0, downKbps: 700,
      });
      const vm = (await getLimit(knex, 'vm', '9'))!;
      await setStatus(knex, [vm], 'applied', null, null);
      assert.deepEqual((await listLimits(knex, { subjectType: 'peer' }, { offset: 0, limit: 10 })).map((l) => l.subjectId), ['1', '2']);
      assert.deepEqual((await listLimits(knex, { status: 'unlimited' }, { offset: 0, limit: 10 })).map((l) => l.subjectId), ['2']);
      assert.deepEqual((await listLimits(knex, { status: 'applied' }, { offset: 0, limit: 10 })).map((l) => l.subjectId), ['9']);
      assert.deepEqual((await listLimits(knex, { limitedOnly: true }, { offset: 0, limit: 10 })).map((l) => l.subjectId), ['1', '9']);
      assert.equal(vm.netns, 'hv');
      assert.deepEqual(await countLimitsByStatus(knex), { pending: 1, applied: 1, failed: 0, throttled: 0, total: 2, subjects: 3 });
      assert.equal((await deleteLimit(knex, 'peer', '1'))?.upKbps, 1000);
      assert.equal(await getLimit(knex, 'peer', '1'), undefined);
    });

    test('a quota throttle is kept beside the configured caps: an unlimited subject gets a class, counts as limited, and lifting it restores the caps', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await saveLimit(knex, peer(1, { upKbps: 500, downKbps: 0 }));
      await saveLimit(knex, peer(2, { upKbps: 0, downKbps: 0 }));
      const throttled = (await setThrottle(knex, 'peer', '2', { upKbps: 1000, downKbps: 1000 }, 5_000))!;
      assert.deepEqual([throttled.upKbps, throttled.downKbps, throttled.throttleUpKbps, throttled.throttleDownKbps], [0, 0, 1000, 1000], 'the configured caps stay');
      assert.equal(throttled.status, 'pending');
      assert.ok(throttled.classMinor !== null && throttled.classMinor !== (await getLimit(knex, 'peer', '1'))!.classMinor, 'a class of its own');
      assert.ok(isLimited(throttled));
      assert.equal(await setThrottle(knex, 'peer', '2', { upKbps: 1000, downKbps: 1000 }, 6_000), undefined, 'the same throttle again writes nothing');
      assert.deepEqual((await listLimits(knex, { status: 'unlimited' }, { offset: 0, limit: 10 })).map((l) => l.subjectId), [], 'a throttled subject is not unlimited');
      await setStatus(knex, [throttled], 'throttled', null, null);
      assert.equal((await countLimitsByStatus(knex)).throttled, 1);
      assert.deepEqual((await listLimits(knex, { status: 'throttled' }, { offset: 0, limit: 10 })).map((l) => l.subjectId), ['2']);
      // A user edit while throttled keeps the throttle and the class.
      const edited = await saveLimit(knex, peer(2, { upKbps: 0, downKbps: 0 }), 7_000);
      assert.deepEqual([edited.current.throttleUpKbps, edited.current.classMinor], [1000, throttled.classMinor]);
      const lifted = (await setThrottle(knex, 'peer', '2', null, 8_000))!;
      assert.deepEqual([lifted.upKbps, lifted.downKbps, lifted.throttleUpKbps, lifted.throttleDownKbps], [0, 0, null, null]);
      assert.equal(isLimited(lifted), false);
      assert.deepEqual((await listLimits(knex, { status: 'unlimited' }, { offset: 0, limit: 10 })).map((l) => l.subjectId), ['2']);
    });

    test('audit events come back newest first, paginated, per subject', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      for (let i = 0; i < 5; i++) {
        await recordEvent(knex, { actor: 'admin', subjectType: 'peer', subjectId: String(i % 2), action: 'limit.set', oldValue: null, newValue: { up_kbps: i, down_kbps: 0 }, result: 'applied' }, 1000 + i);
      }
      await recordEvent(knex, { actor: 'cli', action: 'reconcile', result: 'failed', message: 'tc: RTNETLINK answers', reason: 'kernel_refused' }, 999);
      const page = await listEvents(knex, { offset: 0, limit: 2 });
      assert.equal(page.total, 6);
      assert.deepEqual(page.events.map((e) => (e.newValue as { up_kbps: number }).up_kbps), [4, 3]);
      assert.deepEqual(page.events.map((e) => e.reason), [null, null], 'an event without a reason has none');
      const [oldest] = (await listEvents(knex, { offset: 5, limit: 1 })).events;
      assert.deepEqual([oldest?.result, oldest?.reason], ['failed', 'kernel_refused']);
      const forOne = await listEvents(knex, { offset: 0, limit: 10, subjectType: 'peer', subjectId: '1' });
      assert.deepEqual(forOne.events.map((e) => (e.newValue as { up_kbps: number }).up_kbps), [3, 1]);
      assert.equal(forOne.events[0]?.at.getTime(), 1003);
    });
  });
}
