/**
 * A threshold's notice is stored (audit row, queued webhook) in the transaction that records the
 * evaluation: when storing it fails, the evaluation is not recorded either, nothing is told, and
 * the next pass notifies it once. On every engine, each test on a database of its own.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { saveLimit } from '../../src/db/limits.js';
import { putQuota } from '../../src/db/quotas.js';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import { QuotaEnforcer, type QuotaNotice } from '../../src/quotas/enforcer.js';
import { quotaNotifier } from '../../src/quotas/notify.js';
import { QUOTA_DEFAULTS } from '../../src/quotas/rules.js';
import type { HookBus } from '../../src/plugin-api.js';
import { ENGINES } from '../support/databases.js';
import { openOwnMigrated } from '../support/own-database.js';

const T0 = Date.UTC(2026, 10, 20, 12);
const silent = { debug() {}, info() {}, warn() {}, error() {} };

for (const engine of ENGINES) {
  describe(`quota notices on ${engine.id}`, () => {
    test('a notice that cannot be stored leaves the evaluation unrecorded and untold; the next pass stores and tells it once', async (t) => {
      const [db] = (await openOwnMigrated(t, engine, 'qnotice')) ?? [];
      if (!db) return;
      const clock = { now: T0 };
      const now = () => clock.now;
      await saveLimit(db, { subjectType: 'peer', subjectId: '1', name: 'alice', networkId: '1', interface: 'wg0', netns: null, interfaceKind: 'wireguard', addresses: ['10.8.0.2/32'], upKbps: 0, downKbps: 0 }, T0);
      await putQuota(db, { type: 'peer', id: '1' }, { ...QUOTA_DEFAULTS, allowanceBytes: 1_000_000n, warnPercents: [] }, T0);
      const emitted: string[] = [];
      const hooks: HookBus = { on: () => () => {}, emit: (name) => void emitted.push(name) };
      const notifier = quotaNotifier({ db, hooks, logger: silent, now, webhook: { url: 'http://127.0.0.1:9/hook' }, deliverer: null });
      let failing = true;
      const told: QuotaNotice[] = [];
      const enforcer = new QuotaEnforcer({
        db, logger: silent, now, applyInterface: async () => {},
        record: async (trx, notice) => {
          if (failing) throw new Error('the audit table is locked');
          await notifier.record(trx, notice);
        },
        notify: async (notice) => {
          told.push(notice);
          await notifier.announce(notice);
        },
      });
      await enforcer.sync();
      clock.now = T0 + 60_000;
      await ingestPage(db, 'local', {
        node: 'local', ledgerId: 'l1', head: 1, oldest: 1,
        entries: [{ seq: 1, subjectType: 'peer', subjectId: '1', source: 'wireguard', interface: 'wg0', periodStart: T0, periodEnd: clock.now, upBytes: '600000', downBytes: '600000' }],
      }, { now: clock.now });

      await enforcer.afterIngest();
      const cycle = await db('bw_quota_cycles').where({ subject_type: 'peer', subject_id: '1' }).first();
      assert.deepEqual([cycle.state, cycle.fired, Boolean(cycle.dirty)], ['ok', '[]', true], 'not recorded: the row waits for the next pass');
      assert.deepEqual([told.length, emitted.length], [0, 0], 'nothing told');
      assert.equal((await db('bw_events').where({ action: 'quota.exceeded' })).length, 0);
      assert.equal((await db('bw_webhook_deliveries')).length, 0);

      failing = false;
      await enforcer.afterIngest();
      await enforcer.afterIngest();
      const after = await db('bw_quota_cycles').where({ subject_type: 'peer', subject_id: '1' }).first();
      assert.deepEqual([after.state, after.fired, Boolean(after.dirty)], ['exceeded', '[100]', false]);
      assert.deepEqual(told.map((notice) => notice.name), ['bandwidth.quota.exceeded'], 'told once');
      assert.deepEqual(emitted, ['bandwidth.quota.exceeded']);
      assert.equal((await db('bw_events').where({ action: 'quota.exceeded' })).length, 1, 'audited once');
      assert.deepEqual((await db('bw_webhook_deliveries')).map((row: Record<string, unknown>) => row.event), ['bandwidth.quota.exceeded'], 'queued once');
    });
  });
}
