/**
 * Issue 14 through the host contract 1.4.0: a network's caps come in through `network.validate`,
 * `network.created` and `network.updated`, go out through `network.serialize`, and peers are
 * checked against them (`peer.validate`) and show where their effective caps come from
 * (`peer.serialize`). The host's bus is the reference host's; the kernel is a dry run.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Knex } from 'knex';

import { HookRegistry } from '../../examples/host-panel/src/hooks.js';
import { createLogger } from '../../examples/host-panel/src/logger.js';
import { getLimit } from '../../src/db/limits.js';
import { getNetworkCaps } from '../../src/db/network-caps.js';
import { registerHooks } from '../../src/hooks/register-hooks.js';
import { LimitApplier } from '../../src/limits/applier.js';
import { LimitsService } from '../../src/limits/service.js';
import { loadManifest } from '../../src/manifest/load.js';
import type { Host, NetworkRecord, PeerRecord } from '../../src/plugin-api.js';
import type { QuotaService } from '../../src/quotas/service.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import { ENGINES, openMigrated } from '../support/databases.js';

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const actor = { kind: 'user' as const, name: 'admin' };

/** The plugin's hooks on the reference host's bus over `db`; `networks` is what the host holds. */
function plugin(db: Knex, networks: Map<number, NetworkRecord>) {
  const registry = new HookRegistry(createLogger('test', 'silent'));
  const bus = registry.forPlugin('bandwidth', loadManifest().hooks);
  const applier = new LimitApplier({ db, executor: new RecordingExecutor(), mode: 'recording', reason: 'the test', capabilities: async () => ({ leaf: 'fq_codel' }), logger: quiet });
  const service = new LimitsService(db, applier, quiet);
  // Network hooks and a peer without a quota of its own never reach the quota service beyond these.
  const quotas = { own: async () => undefined, followSubject: async () => {}, statuses: async () => new Map(), ownOf: async () => new Map() } as unknown as QuotaService;
  const host = { db, hooks: bus, records: { network: async (id: number) => networks.get(id) } } as unknown as Host;
  registerHooks(host, service, quotas);
  return registry;
}

const wg0: NetworkRecord = { id: 7, name: 'office', interface: 'wg0', netns: null };
const peer = (id: number): PeerRecord => ({ id, network_id: 7, name: `peer-${id}`, public_key: '', allowed_ips: [`10.8.0.${id}/32`] });

for (const engine of ENGINES) {
  describe(`network caps through the host's hooks on ${engine.id}`, () => {
    test('a network body is checked, stored, shown, and followed by its peers', async (t) => {
      const db = await openMigrated(t, engine);
      if (!db) return;
      const networks = new Map([[7, wg0]]);
      const host = plugin(db, networks);

      assert.deepEqual(await host.validate('network.validate', { input: { bandwidth_total_down_kbps: 'fast' }, existing: null }), [
        { field: 'bandwidth_total_down_kbps', message: '`bandwidth_total_down_kbps` must be a whole number of kbps from 0 (unlimited) to 100000000, got `fast`' },
      ]);
      assert.deepEqual((await host.validate('network.validate', { input: { bandwidth_total_down_kbps: '30000', bandwidth_default_down_kbps: '40000' }, existing: null })).map((i) => i.field), ['bandwidth_default_down_kbps']);

      await host.follow('network.created', { network: wg0, actor, input: { name: 'office', bandwidth_total_down_kbps: '30000', bandwidth_default_up_kbps: '2000' } });
      assert.deepEqual([...(await host.serialize('network.serialize', { networks: [wg0] }))], [[7, {
        bandwidth_total_up_kbps: 0, bandwidth_total_down_kbps: 30_000, bandwidth_default_up_kbps: 2000, bandwidth_default_down_kbps: 0,
      }]]);
      // The stored default is checked too: a lower network cap alone must still hold it.
      assert.deepEqual((await host.validate('network.validate', { input: { bandwidth_total_up_kbps: '1000' }, existing: wg0 })).map((i) => i.field), ['bandwidth_default_up_kbps']);

      assert.deepEqual((await host.validate('peer.validate', { input: { bandwidth_min_kbps: '40000' }, existing: null, network: wg0 })).map((i) => i.field), ['bandwidth_min_kbps']);
      assert.deepEqual((await host.validate('peer.validate', { input: { bandwidth_burst_kbps: '1500', bandwidth_burst_bytes: '1000000' }, existing: null, network: wg0 })).map((i) => i.field), ['bandwidth_burst_kbps'], 'a burst at or below the default upload cap');
      assert.deepEqual(await host.validate('peer.validate', { input: { bandwidth_min_kbps: '10000', bandwidth_burst_kbps: '8000', bandwidth_burst_bytes: '1000000' }, existing: null, network: wg0 }), []);

      await host.follow('peer.created', { peer: peer(1), network: wg0, actor, input: { bandwidth_min_kbps: '10000', bandwidth_burst_kbps: '8000', bandwidth_burst_bytes: '1000000' } });
      await host.follow('peer.created', { peer: peer(2), network: wg0, actor, input: { bandwidth_up_kbps: '500' } });
      const fields = await host.serialize('peer.serialize', { peers: [peer(1), peer(2)] });
      const shown = (id: number) => {
        const f = fields.get(id)!;
        return [f.bandwidth_min_kbps, f.bandwidth_burst_kbps, f.bandwidth_burst_bytes, f.bandwidth_effective_up_kbps, f.bandwidth_cap_source_up, f.bandwidth_cap_source_down];
      };
      assert.deepEqual(shown(1), [10_000, 8000, 1_000_000, 2000, 'default', 'none']);
      assert.deepEqual(shown(2), [0, 0, 0, 500, 'own', 'none']);

      await host.follow('network.updated', { network: wg0, previous: wg0, actor, input: { bandwidth_default_up_kbps: '3000' } });
      assert.deepEqual([(await getLimit(db, 'peer', '1'))?.defaultUpKbps, (await getLimit(db, 'peer', '2'))?.classMinor !== null], [3000, true]);
      await host.follow('network.updated', { network: wg0, previous: wg0, actor, input: { name: 'renamed' } });
      assert.equal((await getNetworkCaps(db, '7'))?.defaultUpKbps, 3000, 'a body without caps keeps them');
      // A peer update that leaves the burst out keeps it.
      await host.follow('peer.updated', { peer: peer(1), previous: peer(1), network: wg0, actor, input: { bandwidth_down_kbps: '9000' } });
      assert.deepEqual([(await getLimit(db, 'peer', '1'))?.downKbps, (await getLimit(db, 'peer', '1'))?.burstKbps], [9000, 8000]);

      // Moved: deleted + created for the interface, the caps stay with the network; deleted for good: they go.
      const moved = { ...wg0, interface: 'wg1' };
      networks.set(7, moved);
      await host.emit('network.deleted', { network: wg0, actor });
      await host.emit('network.created', { network: moved, actor, input: {} });
      assert.deepEqual([(await getNetworkCaps(db, '7'))?.interface, (await getLimit(db, 'peer', '1'))?.interface], ['wg1', 'wg1']);
      networks.delete(7);
      await host.emit('network.deleted', { network: moved, actor });
      assert.equal(await getNetworkCaps(db, '7'), undefined);
    });
  });
}
