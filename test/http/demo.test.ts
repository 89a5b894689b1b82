import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Agent } from '../support/panel.js';
import { rowCounts, startPanel } from '../support/panel.js';

async function demoContents(api: Agent) {
  const networks = (await api.get('/api/networks').expect(200)).body.networks as { id: number; name: string; interface: string }[];
  const peers = networks.length === 1 ? (await api.get(`/api/networks/${networks[0]!.id}/peers`).expect(200)).body.peers : [];
  const vms = (await api.get('/api/vms').expect(200)).body.vms as { name: string; interface: string }[];
  return {
    networks: networks.map((n) => [n.name, n.interface]),
    peers: (peers as { name: string; allowed_ips: string[] }[]).map((p) => [p.name, p.allowed_ips]),
    vms: vms.map((vm) => [vm.name, vm.interface]),
  };
}

const DEMO = {
  networks: [['Office VPN', 'wg-demo0']],
  peers: [
    ['alice-laptop', ['10.66.0.2/32', 'fd00:66::2/128']],
    ['bob-phone', ['10.66.0.3/32']],
    ['branch-router', ['10.66.0.4/32', '192.168.50.0/24']],
    ['ci-runner', ['10.66.0.5/32']],
  ],
  vms: [['web-01', 'tap-web01'], ['db-01', 'tap-db01'], ['build-01', 'tap-build01']],
};

test('a demo panel starts with one network of 4 peers and 3 VMs', async (t) => {
  const host = await startPanel(t, { demo: true });

  assert.equal(host.panel.demoSeeded, true);
  assert.deepEqual(await demoContents(host.api), DEMO);
});

test('the demo shows monthly allowances: two peers and a VM have quotas of their own', async (t) => {
  const host = await startPanel(t, { demo: true });
  const rows = (await host.db('bw_quotas').orderBy('id').select('subject_type', 'allowance_bytes', 'cycle_day', 'time_zone', 'action')) as Record<string, unknown>[];
  assert.deepEqual(rows.map((row) => [row.subject_type, String(row.allowance_bytes), row.cycle_day, row.time_zone, row.action]), [
    ['peer', '12000000000', 1, 'UTC', 'throttle'],
    ['peer', '2000000000000', 15, 'Europe/Berlin', 'throttle'],
    ['vm', '500000000000', 1, 'UTC', 'notify'],
  ]);
  const network = (await host.api.get('/api/networks').expect(200)).body.networks[0] as { id: number };
  const alice = ((await host.api.get(`/api/networks/${network.id}/peers`).expect(200)).body.peers as Record<string, unknown>[]).find((peer) => peer.name === 'alice-laptop');
  assert.deepEqual([alice?.quota_source, alice?.quota_state, alice?.quota_used_bytes], ['subject', 'ok', '0']);
});

test('a second start of a demo panel on the same database does not seed again', async (t) => {
  const first = await startPanel(t, { demo: true });
  const keys = (await first.db('peers').orderBy('id').pluck('public_key')) as string[];

  const second = await first.restart({ demo: true });

  assert.equal(second.panel.demoSeeded, false);
  assert.deepEqual(await rowCounts(second.db), { networks: 1, peers: 4, vms: 3 });
  assert.deepEqual(await second.db('peers').orderBy('id').pluck('public_key'), keys, 'the same peers, not new ones');
});

test('demo data an operator deleted stays deleted after a restart', async (t) => {
  const first = await startPanel(t, { demo: true });
  for (const network of (await first.api.get('/api/networks')).body.networks) await first.api.delete(`/api/networks/${network.id}`).expect(204);
  for (const vm of (await first.api.get('/api/vms')).body.vms) await first.api.delete(`/api/vms/${vm.id}`).expect(204);

  const second = await first.restart({ demo: true });

  assert.equal(second.panel.demoSeeded, false);
  assert.deepEqual(await rowCounts(second.db), { networks: 0, peers: 0, vms: 0 });
});

test('a panel without demo starts empty', async (t) => {
  const host = await startPanel(t);
  assert.equal(host.panel.demoSeeded, false);
  assert.deepEqual(await rowCounts(host.db), { networks: 0, peers: 0, vms: 0 });
});
