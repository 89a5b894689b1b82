import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENGINES, openMigrated } from '../support/databases.js';
import { Collector } from '../../src/accounting/collector.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import { saveLimit } from '../../src/db/limits.js';
import { sumBigint, toBigInt } from '../../src/db/bigint.js';

const captured = readFileSync(join('test', 'fixtures', 'accounting', 'vnstat-2.10.json'), 'utf8');
const silent = { debug() {}, info() {}, warn() {}, error() {} };
/** vnStat's two saves (epoch seconds, 2026-11-21), and the collector's clock just after the second. */
const FIRST_SAVE = 1_795_300_000;
const SECOND_SAVE = FIRST_SAVE + 300;
const NOW = (SECOND_SAVE + 30) * 1000;

/** The captured vnStat 2.10 output with eth0's totals and update time replaced. */
function vnstatOutput(rx: number, tx: number, updatedSeconds: number): string {
  const json = JSON.parse(captured) as { interfaces: { name: string; updated: { timestamp: number }; traffic: { total: { rx: number; tx: number } } }[] };
  const eth0 = json.interfaces.find((i) => i.name === 'eth0')!;
  eth0.traffic.total = { rx, tx };
  eth0.updated.timestamp = updatedSeconds;
  return JSON.stringify(json);
}

for (const engine of ENGINES) {
  describe(`VM counters from vnStat on ${engine.id}`, () => {
    test('vnStat totals are billed to the VM on that interface, and only when vnStat has new data', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await saveLimit(knex, {
        subjectType: 'vm', subjectId: '7', name: 'web', networkId: null, interface: 'eth0', netns: null, interfaceKind: 'vm', addresses: [], upKbps: 0, downKbps: 0,
      });
      let output = vnstatOutput(1000, 5000, FIRST_SAVE);
      // Mock: vnstatd is not running here; the recording executor answers `vnstat --json` with captured output.
      const executor = new RecordingExecutor({ respond: (argv) => (argv[0] === 'vnstat' ? { stdout: output, stderr: '' } : undefined) });
      // The clock is the fixture's: retention measured on the real clock would delete these rows once they are a week old.
      const collector = new Collector({ db: knex, executor, logger: silent, vmSource: 'vnstat', bootId: async () => 'boot', now: () => NOW });

      await collector.tick();
      output = vnstatOutput(1500, 9000, SECOND_SAVE);
      const counted = await collector.tick();
      assert.equal(counted.usageRows, 1);
      const again = await collector.tick();
      assert.equal(again.usageRows, 0, 'no new vnStat data, nothing counted');

      const rows = (await knex('bw_usage').select('source', 'subject_id', 'period_start', 'period_end')) as Record<string, unknown>[];
      assert.deepEqual(rows.map((r) => [r.source, r.subject_id, Number(r.period_end) - Number(r.period_start)]), [['vnstat', '7', 300_000]]);
      const [sum] = await knex('bw_usage_daily').select(sumBigint(knex, 'up_bytes', 'up'), sumBigint(knex, 'down_bytes', 'down'));
      assert.deepEqual([toBigInt(sum.up), toBigInt(sum.down)], [500n, 4000n], 'host rx is the VM’s up');
      const sources = (await knex('bw_counters').distinct('source').pluck('source')) as string[];
      assert.deepEqual(sources, ['vnstat'], 'the VM was not also read from sysfs');
      assert.ok(executor.calls.some((call) => call.argv.join(' ') === 'vnstat --json'));
      assert.equal(collector.lastTick?.at, NOW, 'the tick is dated by the injected clock');
    });
  });
}
