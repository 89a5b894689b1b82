import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Knex } from 'knex';

import { getLimit, saveLimit, type SubjectLimit } from '../../src/db/limits.js';
import { listEvents } from '../../src/db/events.js';
import { LimitApplier } from '../../src/limits/applier.js';
import { LimitsService } from '../../src/limits/service.js';
import { KernelError } from '../../src/shaping/errors.js';
import type { Executor, RunResult } from '../../src/shaping/executor.js';
import type { Operation } from '../../src/shaping/operations.js';
import { ENGINES, openMigrated } from '../support/databases.js';

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** A kernel with empty interfaces: `missing` ones do not exist; a batch fails with `refuse` when set. */
class FakeKernel implements Executor {
  batches = 0;
  constructor(private readonly options: { missing?: string[]; refuse?: string } = {}) {}

  async run(argv: readonly string[]): Promise<RunResult> {
    const device = argv[argv.indexOf('dev') + 1] ?? '';
    if (this.options.missing?.includes(device)) {
      throw new KernelError({ argv, stderr: `Cannot find device "${device}"`, exitCode: 1, timedOut: false });
    }
    return { stdout: argv.includes('-j') ? '[]' : '', stderr: '' };
  }

  async batch(operations: readonly Operation[]): Promise<void> {
    this.batches++;
    if (this.options.refuse) {
      throw new KernelError({ argv: ['tc', '-batch', '-'], stderr: this.options.refuse, exitCode: 1, timedOut: false, operation: operations[0] });
    }
  }
}

const peer = (id: number, address: string, iface = 'wg0'): SubjectLimit => ({
  subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, networkId: '1', interface: iface, netns: null,
  interfaceKind: 'wireguard', addresses: [address], upKbps: 1_000, downKbps: 5_000,
});

function serviceWith(knex: Knex, executor: Executor, mode: 'local' | 'recording' = 'local') {
  const applier = new LimitApplier({ db: knex, executor, mode, reason: 'the test asked for one', capabilities: async () => ({ leaf: 'fq_codel' }), logger: quiet });
  return new LimitsService(knex, applier, quiet);
}

async function stored(knex: Knex, id: number) {
  const row = (await getLimit(knex, 'peer', String(id)))!;
  return { status: row.status, reason: row.reason, error: row.lastError };
}

for (const engine of ENGINES) {
  describe(`outcome reasons where the applier decides them, on ${engine.id}`, () => {
    test('a kernel that takes the plan: applied, no reason', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { outcome } = await serviceWith(knex, new FakeKernel()).set(peer(1, '10.8.0.2/32'), 'admin');
      assert.deepEqual([outcome?.status, outcome?.reason], ['applied', null]);
      assert.deepEqual(await stored(knex, 1), { status: 'applied', reason: null, error: null });
    });

    test('a dry run: pending with dry_run, and reconcile logs nothing for it', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const service = serviceWith(knex, new FakeKernel(), 'recording');
      await service.set(peer(1, '10.8.0.2/32'), 'admin');
      assert.deepEqual(await stored(knex, 1), { status: 'pending', reason: 'dry_run', error: 'dry run: the test asked for one' });
      const before = (await listEvents(knex, { offset: 0, limit: 10 })).total;
      const [outcome] = await service.reconcileAll('reconcile');
      assert.deepEqual([outcome?.status, outcome?.reason], ['pending', 'dry_run']);
      assert.ok((outcome?.operations.length ?? 0) > 0, 'arranged: the dry run planned something');
      assert.equal((await listEvents(knex, { offset: 0, limit: 10 })).total, before, 'a dry run reconcile is not an event');
    });

    test('a missing interface: pending with interface_missing, whatever its message says', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const kernel = new FakeKernel({ missing: ['wg9'] });
      await serviceWith(knex, kernel).set(peer(1, '10.8.0.2/32', 'wg9'), 'admin');
      const row = await stored(knex, 1);
      assert.deepEqual([row.status, row.reason], ['pending', 'interface_missing']);
      assert.equal(kernel.batches, 0, 'nothing was sent to a device that is not there');
    });

    test('a refusal from tc: failed with kernel_refused, in the row and in the audit log', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await serviceWith(knex, new FakeKernel({ refuse: 'Error: Exclusivity flag on, cannot modify.' })).set(peer(1, '10.8.0.2/32'), 'admin');
      const row = await stored(knex, 1);
      assert.deepEqual([row.status, row.reason], ['failed', 'kernel_refused']);
      assert.match(row.error ?? '', /Exclusivity flag on/);
      const [event] = (await listEvents(knex, { offset: 0, limit: 1 })).events;
      assert.deepEqual([event?.action, event?.result, event?.reason], ['limit.set', 'failed', 'kernel_refused']);
    });

    test('a desired state that cannot be shaped: failed with plan_invalid, and the kernel never asked', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const kernel = new FakeKernel();
      // Two peers claiming one address get past the store (the API's check runs before it); the plan refuses them.
      await saveLimit(knex, peer(1, '10.8.0.2/32'));
      await saveLimit(knex, peer(2, '10.8.0.2/32'));
      const [outcome] = await serviceWith(knex, kernel).reconcileAll('reconcile');
      assert.deepEqual([outcome?.status, outcome?.reason], ['failed', 'plan_invalid']);
      assert.deepEqual([(await stored(knex, 1)).reason, (await stored(knex, 2)).reason], ['plan_invalid', 'plan_invalid']);
      assert.equal(kernel.batches, 0);
      const [event] = (await listEvents(knex, { offset: 0, limit: 1 })).events;
      assert.deepEqual([event?.action, event?.reason], ['reconcile', 'plan_invalid']);
    });

    test('once the cause is gone the reason goes with it', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await serviceWith(knex, new FakeKernel({ missing: ['wg0'] })).set(peer(1, '10.8.0.2/32'), 'admin');
      assert.equal((await stored(knex, 1)).reason, 'interface_missing');
      await serviceWith(knex, new FakeKernel()).reconcileAll('reconcile');
      assert.deepEqual(await stored(knex, 1), { status: 'applied', reason: null, error: null });
    });

    test('a stored subject the planner cannot place (a full u32 bucket) fails alone with plan_invalid; the others apply', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const kernel = new FakeKernel();
      const service = serviceWith(knex, kernel);
      // Stored before validation refused such states: 4095 /32s ending in .7 fill bucket 7 of the /32 table.
      const filler = { ...peer(1, '10.0.0.7/32'), addresses: Array.from({ length: 4095 }, (_, i) => `10.${i >> 8}.${i & 0xff}.7/32`) };
      await service.set(filler, 'admin');
      await service.set(peer(2, '10.200.0.7/32'), 'admin');
      await service.set(peer(3, '10.9.9.9/32'), 'admin');
      await service.reconcileAll('reconcile');
      assert.deepEqual((await stored(knex, 1)).status, 'applied');
      assert.deepEqual((await stored(knex, 3)).status, 'applied');
      const refused = await stored(knex, 2);
      assert.deepEqual([refused.status, refused.reason], ['failed', 'plan_invalid']);
      assert.match(refused.error ?? '', /10\.200\.0\.7\/32: bucket 320:7: of the IPv4 \/32 table already holds 4095 prefixes/);
    });
  });
}
