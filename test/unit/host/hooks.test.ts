import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HookRegistry } from '../../../examples/host-panel/src/hooks.js';
import { createLogger } from '../../../examples/host-panel/src/logger.js';
import type { NetworkRecord, PeerRecord } from '../../../src/plugin-api.js';

const network: NetworkRecord = { id: 1, name: 'n', interface: 'wg0', netns: null };
const peer: PeerRecord = { id: 3, network_id: 1, name: 'p', public_key: 'k', allowed_ips: ['10.0.0.2/32'] };

test('a plugin can subscribe only to the hooks its manifest declares', () => {
  const registry = new HookRegistry(createLogger('test', 'silent'));
  const bus = registry.forPlugin('bandwidth', ['peer.created']);
  assert.doesNotThrow(() => bus.on('peer.created', () => {}));
  assert.throws(() => bus.on('peer.deleted', () => {}), /subscribes to `peer\.deleted`, which its plugin\.json "hooks" does not declare/);
});

test('validate collects issues, emit survives a failing handler, serialize merges fields', async () => {
  const registry = new HookRegistry(createLogger('test', 'silent'));
  const bus = registry.forPlugin('p', ['peer.validate', 'peer.created', 'peer.serialize']);
  bus.on('peer.validate', ({ input }) => (input.bad ? [{ field: 'bad', message: 'is bad' }] : undefined));
  const seen: string[] = [];
  bus.on('peer.created', () => {
    throw new Error('kernel on fire');
  });
  bus.on('peer.created', ({ peer: created }) => void seen.push(created.name));
  bus.on('peer.serialize', ({ peers }) => Object.fromEntries(peers.map((p) => [p.id, { extra: p.id * 2 }])));

  assert.deepEqual(await registry.validate('peer.validate', { input: { bad: 1 }, existing: null, network }), [{ field: 'bad', message: 'is bad' }]);
  assert.deepEqual(await registry.validate('peer.validate', { input: {}, existing: null, network }), []);
  await registry.emit('peer.created', { peer, network, input: {}, actor: { kind: 'api', name: 'api' } });
  assert.deepEqual(seen, ['p'], 'the second handler ran although the first threw');
  assert.deepEqual([...(await registry.serialize('peer.serialize', { peers: [peer] }))], [[3, { extra: 6 }]]);
});

test('removeAll unsubscribes every handler of one plugin only', async () => {
  const registry = new HookRegistry(createLogger('test', 'silent'));
  const calls: string[] = [];
  const a = registry.forPlugin('a', ['network.created']);
  const b = registry.forPlugin('b', ['network.created']);
  a.on('network.created', () => void calls.push('a'));
  b.on('network.created', () => void calls.push('b'));
  a.removeAll();
  await registry.emit('network.created', { network, actor: { kind: 'api', name: 'api' } });
  assert.deepEqual(calls, ['b']);
});
