import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ENGINES, openMigrated } from '../support/databases.js';
import { connect } from '../../src/db/connect.js';
import { enforceRetention, writeTick } from '../../src/accounting/store.js';
import { totalsBySubject, usageSeries } from '../../src/accounting/queries.js';
import { sumBigint, toBigInt } from '../../src/db/bigint.js';
import { DAY_MS, HOUR_MS } from '../../src/accounting/buckets.js';
import type { Sample } from '../../src/accounting/sample.js';

const T0 = Date.UTC(2026, 10, 20, 0, 0, 0);
const BOOT = 'b00710d0-0000-4000-8000-000000000001';

function peerSample(id: number, rx: bigint, tx: bigint, at: number, ifindex = 7): Sample {
  return {
    identity: { node: 'local', source: 'wireguard', interface: 'wg0', seriesKey: `key-${id}`, ifindex, bootId: BOOT },
    subjectType: 'peer', subjectId: String(id), rxBytes: rx, txBytes: tx, rxPackets: null, txPackets: null, at,
  };
}

async function sums(knex: import('knex').Knex, table: string) {
  const [row] = await knex(table).select(sumBigint(knex, 'up_bytes', 'up'), sumBigint(knex, 'down_bytes', 'down'));
  return [toBigInt(row.up), toBigInt(row.down)];
}

for (const engine of ENGINES) {
  describe(`accounting store on ${engine.id}`, () => {
    test('a tick replayed or retried adds nothing', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await writeTick(knex, [peerSample(1, 0n, 0n, T0)]);
      const tick = [peerSample(1, 1000n, 4000n, T0 + 60_000)];
      const first = await writeTick(knex, tick);
      assert.equal(first.usageRows, 1);
      const replay = await writeTick(knex, tick);
      assert.equal(replay.usageRows, 0);
      assert.deepEqual(await sums(knex, 'bw_usage'), [1000n, 4000n]);
      assert.deepEqual(await sums(knex, 'bw_usage_hourly'), [1000n, 4000n]);
      assert.deepEqual(await sums(knex, 'bw_usage_daily'), [1000n, 4000n]);
    });

    test('two collectors writing the same readings at once add each delta once', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const url = engine.id === 'sqlite' ? `sqlite:${(knex.client.config.connection as { filename: string }).filename}` : engine.url();
      const second = connect(url);
      t.after(() => second.destroy());
      const subjects = Array.from({ length: 50 }, (_, i) => i + 1);
      await writeTick(knex, subjects.map((id) => peerSample(id, 0n, 0n, T0)));
      for (let round = 1; round <= 3; round++) {
        const tick = subjects.map((id) => peerSample(id, BigInt(round * id * 1000), BigInt(round * id * 10), T0 + round * 60_000));
        await Promise.all([writeTick(knex, tick), writeTick(second, tick)]);
      }
      const expectedUp = subjects.reduce((sum, id) => sum + BigInt(3 * id * 1000), 0n);
      const expectedDown = subjects.reduce((sum, id) => sum + BigInt(3 * id * 10), 0n);
      assert.deepEqual(await sums(knex, 'bw_usage'), [expectedUp, expectedDown]);
      assert.deepEqual(await sums(knex, 'bw_usage_hourly'), [expectedUp, expectedDown]);
      assert.equal(Number((await knex('bw_usage').count({ n: '*' }))[0]?.n), 150);
    });

    test('roll-ups equal the raw rows, each delta in the hour and day holding its end', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const times = [T0 + DAY_MS - 90 * 60_000, T0 + DAY_MS - 20 * 60_000, T0 + DAY_MS + 40 * 60_000, T0 + DAY_MS + 3 * HOUR_MS];
      let rx = 2n ** 53n;
      await writeTick(knex, [peerSample(1, rx, 0n, times[0]!)]);
      for (const [i, at] of times.slice(1).entries()) {
        rx += BigInt(1_000_003 * (i + 1));
        await writeTick(knex, [peerSample(1, rx, BigInt(i * 777), at)]);
      }
      const raw = await sums(knex, 'bw_usage');
      assert.deepEqual(raw, [1_000_003n * 6n, 777n * 2n]);
      assert.deepEqual(await sums(knex, 'bw_usage_hourly'), raw);
      assert.deepEqual(await sums(knex, 'bw_usage_daily'), raw);
      const days = await usageSeries(knex, 'peer', '1', T0, T0 + 2 * DAY_MS, 'day');
      assert.equal(days.length, 2);
      assert.ok(days[0]!.upBytes > 0n && days[1]!.upBytes > 0n, 'ticks before and after midnight land on their own days');
      assert.equal(days[0]!.upBytes + days[1]!.upBytes, raw[0]);
      const total = (await totalsBySubject(knex, T0, T0 + 2 * DAY_MS)).get('peer:1');
      assert.deepEqual([total?.upBytes, total?.downBytes], raw);
      // A range whose hourly part ends right after a delta that crossed the hour boundary.
      const crossing = (await totalsBySubject(knex, times[1]! - 60_000, T0 + DAY_MS + HOUR_MS)).get('peer:1');
      assert.deepEqual([crossing?.upBytes, crossing?.downBytes], [1_000_003n * 3n, 777n]);
    });

    test('a re-created interface between two ticks counts the new counter from zero, not a spike', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await writeTick(knex, [peerSample(1, 10_000_000n, 50_000_000n, T0)]);
      await writeTick(knex, [peerSample(1, 10_500_000n, 51_000_000n, T0 + 60_000)]);
      const reset = await writeTick(knex, [peerSample(1, 2_000n, 3_000n, T0 + 120_000, 12)]);
      assert.equal(reset.resets, 1);
      assert.deepEqual(await sums(knex, 'bw_usage'), [502_000n, 1_003_000n]);
    });

    test('retention deletes only what is older than each table keeps', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const now = T0 + 800 * DAY_MS;
      const base = { subject_type: 'peer', subject_id: '1', up_bytes: '1', down_bytes: '1' };
      await knex('bw_usage').insert([
        { ...base, source: 'wireguard', interface: 'wg0', period_start: now - 8 * DAY_MS - 60_000, period_end: now - 8 * DAY_MS },
        { ...base, source: 'wireguard', interface: 'wg0', period_start: now - 6 * DAY_MS - 60_000, period_end: now - 6 * DAY_MS },
      ]);
      await knex('bw_usage_hourly').insert([{ ...base, hour_start: now - 91 * DAY_MS }, { ...base, hour_start: now - 89 * DAY_MS }]);
      await knex('bw_usage_daily').insert([{ ...base, day_start: now - 731 * DAY_MS }, { ...base, day_start: now - 729 * DAY_MS }]);
      assert.deepEqual(await enforceRetention(knex, now), { raw: 1, hourly: 1, daily: 1 });
      for (const table of ['bw_usage', 'bw_usage_hourly', 'bw_usage_daily']) {
        assert.equal(Number((await knex(table).count({ n: '*' }))[0]?.n), 1, `${table} keeps the recent row`);
      }
    });
  });
}
