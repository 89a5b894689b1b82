/**
 * Two requests that set different directions of one subject at the same time must both land: each
 * reads the stored caps, merges its direction and writes both (found by the kernel model-based test).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { seedHost, startPanel } from '../support/panel.js';

test('concurrent PUT {up} and PUT {down} of one peer (limits API and host API) lose neither direction', async (t) => {
  const { api } = await startPanel(t);
  const { networkId, peerId, vmId } = await seedHost(api);
  for (let round = 1; round <= 20; round += 1) {
    const up = 1000 + round;
    const down = 5000 + round;
    const [a, b] = await Promise.all([
      api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ bandwidth_up_kbps: up }),
      round % 2 === 0
        ? api.put(`/api/networks/${networkId}/peers/${peerId}`).send({ bandwidth_down_kbps: down })
        : api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ bandwidth_down_kbps: down }),
    ]);
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    const stored = await api.get(`/api/networks/${networkId}/peers/${peerId}`).expect(200);
    assert.deepEqual([stored.body.peer.bandwidth_up_kbps, stored.body.peer.bandwidth_down_kbps], [up, down], `round ${round}`);
  }
  // The same for a VM through its host update and the limits API.
  const [a, b] = await Promise.all([
    api.put(`/api/vms/${vmId}`).send({ bandwidth_up_kbps: 700 }),
    api.put(`/api/bandwidth/limits/vm/${vmId}`).send({ bandwidth_down_kbps: 900 }),
  ]);
  assert.equal(a.status, 200, a.text);
  assert.equal(b.status, 200, b.text);
  const vm = await api.get(`/api/vms/${vmId}`).expect(200);
  assert.deepEqual([vm.body.vm.bandwidth_up_kbps, vm.body.vm.bandwidth_down_kbps], [700, 900]);
});
