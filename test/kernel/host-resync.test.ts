import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readTree } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperf, Lab, labRequirements, waitFor } from '../support/lab.js';
import { startPanelProcess, type ApiResponse } from '../support/lab-panel.js';
import { assertHoldsCap } from '../support/lab-shaping.js';
import { ROOT_CLASS_MINOR } from '../../src/shaping/tree-shape.js';

const { available, reason } = labRequirements();

function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

test('issue 9 (b) in the kernel: a capped peer deleted while the plugin was disabled no longer throttles the next customer on its IP once the plugin is enabled', { timeout: 150_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  const [wg, panel] = await Promise.all([
    createWireGuardLab(lab, [{ addresses: ['10.66.0.2'] }]),
    // A long reconcile interval: only the resync at enable (and the reconcile it triggers) can fix the kernel.
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 3600, collect_interval_s: 3600 } }),
  ]);
  const customer = wg.peers[0]!;
  const ifb = ifbNameFor(wg.ifname, wg.ns);
  const down = () => iperf(lab, { serverNs: customer.ns, clientNs: wg.ns, target: '10.66.0.2', seconds: 3 });
  const htbRates = async (device: string) => ((await readTree(lab.executor, device, wg.ns))?.classes ?? [])
    .filter((c) => c.kind === 'htb' && c.major === 1 && c.minor !== 0xffff && c.minor !== ROOT_CLASS_MINOR)
    .map((c) => c.rateBits);

  const network = await panel.post('/api/networks', { name: 'tunnel', interface: wg.ifname, netns: wg.ns });
  expectStatus(network, 201, 'POST /api/networks');
  const networkId = network.body.network.id as number;
  const old = await panel.post(`/api/networks/${networkId}/peers`, {
    name: 'old customer', public_key: customer.publicKey, allowed_ips: ['10.66.0.2/32'], bandwidth_up_kbps: 1000, bandwidth_down_kbps: 1000,
  });
  expectStatus(old, 201, 'POST old customer');
  assert.equal(old.body.peer.bandwidth_status, 'applied');

  expectStatus(await panel.post('/api/plugins/bandwidth/disable'), 200, 'disable');
  expectStatus(await panel.delete(`/api/networks/${networkId}/peers/${old.body.peer.id}`), 204, 'DELETE old customer');
  const next = await panel.post(`/api/networks/${networkId}/peers`, {
    name: 'new customer', public_key: randomBytes(32).toString('base64'), allowed_ips: ['10.66.0.2/32'],
  });
  expectStatus(next, 201, 'POST new customer');
  assert.ok((await htbRates(wg.ifname)).includes(1_000_000), 'arranged: the old 1 Mbit/s class is still in the kernel');
  t.diagnostic(assertHoldsCap(await down(), 1000, 'arranged: the new customer is throttled at the old customer\'s cap'));

  expectStatus(await panel.post('/api/plugins/bandwidth/enable'), 200, 'enable');

  await waitFor('the stale class to leave the kernel', async () => (await htbRates(wg.ifname)).length === 0, 10_000);
  assert.deepEqual(await htbRates(ifb).catch(() => []), [], 'nor is anything left on the IFB');
  const shown = await panel.get(`/api/networks/${networkId}/peers/${next.body.peer.id}`);
  assert.equal(shown.body.peer.bandwidth_status, 'unlimited');
  const free = await down();
  assert.ok(free.bitsPerSecond > 5_000_000, `the new customer is no longer held at 1 Mbit/s: ${(free.bitsPerSecond / 1e6).toFixed(2)} Mbit/s`);
  t.diagnostic(`unlimited after enable: ${(free.bitsPerSecond / 1e6).toFixed(1)} Mbit/s`);

  const capped = await panel.put(`/api/bandwidth/limits/peer/${next.body.peer.id}`, { bandwidth_up_kbps: 2000, bandwidth_down_kbps: 4000 });
  expectStatus(capped, 200, 'capping the new customer');
  assert.equal(capped.body.limit.bandwidth_status, 'applied');
  assert.deepEqual(await htbRates(wg.ifname), [4_000_000]);
  t.diagnostic(assertHoldsCap(await down(), 4000, 'the new customer at their own cap'));
  const stale = await panel.delete(`/api/bandwidth/limits/peer/${old.body.peer.id}`);
  expectStatus(stale, 404, 'the old customer\'s limit is already gone');
});
