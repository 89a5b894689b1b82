import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { ENGINES, openMigrated } from '../support/databases.js';
import * as m0014 from '../../migrations/0014_add_bw_counters_last_delta.js';
import { writeTick } from '../../src/accounting/store.js';
import { lastRates } from '../../src/accounting/rates.js';
import { totalsBySubject } from '../../src/accounting/queries.js';
import { classSeriesKey } from '../../src/accounting/tc-classes.js';
import { fromBigInt, toBigInt } from '../../src/db/bigint.js';
import type { Sample, SourceName } from '../../src/accounting/sample.js';
import type { CountOptions } from '../../src/accounting/billing.js';

const T0 = Date.UTC(2026, 10, 20, 10, 0, 0);
const MINUTE = 60_000;
const BOOT = 'b00710d0-0000-4000-8000-000000000002';
const U64_MAX = 2n ** 64n - 1n;
const WIRE: CountOptions = { billing: 'wire', billedSources: ['wireguard', 'sysfs'] };
const INNER: CountOptions = { billing: 'inner', billedSources: ['wireguard', 'sysfs'] };

function reading(source: SourceName, seriesKey: string, rx: bigint, tx: bigint, at: number, id = '1'): Sample {
  return {
    identity: { node: 'local', source, interface: 'wg0', seriesKey, ifindex: 7, bootId: BOOT },
    subjectType: 'peer', subjectId: id, rxBytes: rx, txBytes: tx, rxPackets: null, txPackets: null, at,
  };
}

/**
 * One collector tick of peer 1, capped both ways in class 1:2: its class counters are read a few
 * milliseconds before the wg dump, and WireGuard counts 4% more than the class (its per-packet overhead).
 */
const tick = (minute: number, classUp: bigint, classDown: bigint): Sample[] => [
  reading('tc', classSeriesKey(2, 'up'), classUp, 0n, T0 + minute * MINUTE - 4),
  reading('tc', classSeriesKey(2, 'down'), 0n, classDown, T0 + minute * MINUTE - 4),
  reading('wireguard', 'key-1', (classUp * 104n) / 100n, (classDown * 104n) / 100n, T0 + minute * MINUTE),
];

async function usageSources(knex: Knex): Promise<string[]> {
  return ((await knex('bw_usage').select('source').orderBy('id')) as { source: string }[]).map((r) => r.source);
}

for (const engine of ENGINES) {
  describe(`counter deltas and billed bytes on ${engine.id}`, () => {
    test('migration 0014 adds the delta columns and removes them again, keeping every stored counter', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const row = {
        source: 'wireguard', interface: 'wg0', series_key: 'k'.repeat(44), subject_type: 'peer', subject_id: '42', ifindex: 7, boot_id: BOOT,
        rx_bytes: fromBigInt(U64_MAX), tx_bytes: '5', rx_packets: null, tx_packets: null, sampled_at: T0,
        delta_kind: 'delta', delta_rx_bytes: fromBigInt(U64_MAX), delta_tx_bytes: '0', delta_ms: 86_400_000,
      };
      await knex('bw_counters').insert(row);
      const [stored] = await knex('bw_counters').select('delta_rx_bytes', 'delta_ms');
      assert.deepEqual([toBigInt(stored.delta_rx_bytes), Number(stored.delta_ms)], [U64_MAX, 86_400_000], 'a u64 delta fits');

      await m0014.down(knex);
      assert.equal(await knex.schema.hasColumn('bw_counters', 'delta_kind'), false);
      const [after] = await knex('bw_counters').select('rx_bytes', 'series_key', 'sampled_at');
      assert.deepEqual([toBigInt(after.rx_bytes), after.series_key, Number(after.sampled_at)], [U64_MAX, row.series_key, T0], 'the reading itself is kept');

      await m0014.up(knex);
      await m0014.up(knex); // idempotent: checks before it changes
      const [again] = await knex('bw_counters').select('rx_bytes', 'delta_kind', 'delta_rx_bytes');
      assert.deepEqual([toBigInt(again.rx_bytes), again.delta_kind, again.delta_rx_bytes], [U64_MAX, null, null], 'no delta until the next tick');
    });

    test('billing inner bills a capped peer its class bytes; billing wire its WireGuard bytes — from the same readings', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      for (const [minute, up, down] of [[0, 1_000n, 50_000n], [1, 501_000n, 60_050_000n], [2, 1_001_000n, 120_050_000n]] as const) {
        await writeTick(knex, tick(minute, up, down), { billing: 'inner' });
      }
      const inner = (await totalsBySubject(knex, T0, T0 + 3 * MINUTE)).get('peer:1');
      assert.deepEqual(inner, { upBytes: 1_000_000n, downBytes: 120_000_000n }, 'exactly the class counters\' growth');
      assert.deepEqual(await usageSources(knex), ['tc', 'tc'], 'one usage row per tick, from the class');
      const hourly = (await knex('bw_usage_hourly').select('up_bytes', 'down_bytes')) as Record<string, unknown>[];
      assert.deepEqual(hourly.map((r) => [toBigInt(r.up_bytes), toBigInt(r.down_bytes)]), [[1_000_000n, 120_000_000n]]);

      // The same readings again, on fresh tables, billed by wire bytes.
      for (const table of ['bw_usage', 'bw_usage_hourly', 'bw_usage_daily', 'bw_counters']) await knex(table).delete();
      for (const [minute, up, down] of [[0, 1_000n, 50_000n], [1, 501_000n, 60_050_000n], [2, 1_001_000n, 120_050_000n]] as const) {
        await writeTick(knex, tick(minute, up, down), { billing: 'wire' });
      }
      const wire = (await totalsBySubject(knex, T0, T0 + 3 * MINUTE)).get('peer:1');
      assert.deepEqual(wire, { upBytes: 1_040_000n, downBytes: 124_800_000n }, 'WireGuard\'s counters, 4% more');
      assert.deepEqual(await usageSources(knex), ['wireguard', 'wireguard']);
    });

    test('a page without a collector reads each subject\'s last tick back: billed rate, class rate, and no stale series', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      // An old class series of peer 1 (a former cap) keeps its last delta in its row.
      await writeTick(knex, [reading('tc', classSeriesKey(9, 'down'), 0n, 0n, T0 - 20 * MINUTE)]);
      await writeTick(knex, [reading('tc', classSeriesKey(9, 'down'), 0n, 600_000_000n, T0 - 10 * MINUTE)]);
      await writeTick(knex, tick(0, 1_000n, 50_000n));
      // 500 kB up, 60 MB down through the class in a minute: 66.7 and 8,000 kbit/s; WireGuard 4% more.
      await writeTick(knex, [...tick(1, 501_000n, 60_050_000n), reading('wireguard', 'key-2', 0n, 0n, T0 + MINUTE, '2')]);

      const keys = [{ subjectType: 'peer', subjectId: '1' }, { subjectType: 'peer', subjectId: '2' }, { subjectType: 'vm', subjectId: '1' }];
      const wire = await lastRates(knex, keys, WIRE);
      assert.deepEqual(wire.get('peer:1'), { upKbps: 69, downKbps: 8_320, classUpKbps: 66, classDownKbps: 8_000, at: T0 + MINUTE });
      assert.equal(wire.has('peer:2'), false, 'a series\' first reading sets a baseline, no rate');
      assert.equal(wire.has('vm:1'), false, 'the VM with the same id is another subject');
      const inner = await lastRates(knex, keys, INNER);
      assert.deepEqual(inner.get('peer:1'), { upKbps: 66, downKbps: 8_000, classUpKbps: 66, classDownKbps: 8_000, at: T0 + MINUTE });
    });
  });
}
