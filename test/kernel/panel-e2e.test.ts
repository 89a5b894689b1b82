import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readActual, readTree } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperf, Lab, labRequirements, waitFor, type WireGuardLab } from '../support/lab.js';
import { startPanelProcess, type ApiResponse, type PanelProcess } from '../support/lab-panel.js';
import { assertHoldsCap, leftoversOf } from '../support/lab-shaping.js';

const { available, reason } = labRequirements();

function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

/** HTB rate (bit/s) of class `1:<minor>` on a device, or undefined when there is no such class. */
async function rateOf(lab: Lab, ns: string, device: string, minor: number): Promise<number | undefined> {
  const tree = await readTree(lab.executor, device, ns);
  return tree?.classes.find((c) => c.kind === 'htb' && c.major === 1 && c.minor === minor)?.rateBits;
}

/** Byte counter of class `1:<minor>` on a device (`tc -s`). */
async function bytesOf(lab: Lab, ns: string, device: string, minor: number): Promise<bigint> {
  const tree = await readTree(lab.executor, device, ns);
  return tree?.classes.find((c) => c.major === 1 && c.minor === minor)?.counters?.bytes ?? -1n;
}

/** The stored limit of one peer, as `GET /api/bandwidth/limits` lists it. */
async function limitOf(panel: PanelProcess, networkId: number, peerId: number): Promise<Record<string, unknown>> {
  const response = await panel.get(`/api/bandwidth/limits?subject_type=peer&network_id=${networkId}&per_page=100`);
  expectStatus(response, 200, 'GET /api/bandwidth/limits');
  const found = (response.body.limits as Record<string, unknown>[]).find((l) => l.subject_id === String(peerId));
  assert.ok(found, `peer ${peerId} is listed in bw_limits`);
  return found;
}

const minorOf = (classId: unknown): number => {
  assert.match(String(classId), /^1:[0-9a-f]+$/);
  return parseInt(String(classId).slice(2), 16);
};

test('caps set through the host panel\'s HTTP API hold on a real WireGuard tunnel, survive a crash of the panel and leave nothing behind', { timeout: 150_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  let wg!: WireGuardLab;
  let panel!: PanelProcess;
  await Promise.all([
    createWireGuardLab(lab, [{ addresses: ['10.66.0.11'] }]).then((built) => (wg = built)),
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 5, collect_interval_s: 5 } }).then((started) => (panel = started)),
  ]);
  const peerLab = wg.peers[0]!;
  const ifb = ifbNameFor(wg.ifname, wg.ns);
  const down = (seconds = 3) => iperf(lab, { serverNs: peerLab.ns, clientNs: wg.ns, target: '10.66.0.11', seconds });
  const up = (seconds = 3) => iperf(lab, { serverNs: peerLab.ns, clientNs: wg.ns, target: '10.66.0.11', seconds, reverse: true });

  const network = await panel.post('/api/networks', { name: 'tunnel', interface: wg.ifname, netns: wg.ns });
  expectStatus(network, 201, 'POST /api/networks');
  const networkId = network.body.network.id as number;
  let peerId = 0;
  let minor = 0;

  await t.test('a peer created with caps through POST /api/networks/:id/peers is applied at once and holds them, down on the tunnel and up through the IFB', async (t) => {
    const created = await panel.post(`/api/networks/${networkId}/peers`, {
      name: 'alice', public_key: peerLab.publicKey, allowed_ips: ['10.66.0.11/32'], bandwidth_up_kbps: 4000, bandwidth_down_kbps: 8000,
    });
    expectStatus(created, 201, 'POST peer');
    peerId = created.body.peer.id as number;
    assert.deepEqual(
      {
        status: created.body.peer.bandwidth_status, up: created.body.peer.bandwidth_up_kbps,
        down: created.body.peer.bandwidth_down_kbps, error: created.body.peer.bandwidth_error,
      },
      { status: 'applied', up: 4000, down: 8000, error: null },
    );
    minor = minorOf((await limitOf(panel, networkId, peerId)).class_id);
    assert.equal(await rateOf(lab, wg.ns, wg.ifname, minor), 8_000_000, 'down class on the wg interface');
    assert.equal(await rateOf(lab, wg.ns, ifb, minor), 4_000_000, 'up class on the IFB');

    t.diagnostic(assertHoldsCap(await down(), 8000, 'down'));
    t.diagnostic(assertHoldsCap(await up(), 4000, 'up'));
  });

  await t.test('a cap changed with PUT /api/networks/:id/peers/:pid is in the kernel and holds within 2 s', async (t) => {
    const started = Date.now();
    const updated = await panel.put(`/api/networks/${networkId}/peers/${peerId}`, { bandwidth_down_kbps: 16000 });
    expectStatus(updated, 200, 'PUT peer');
    assert.equal(updated.body.peer.bandwidth_status, 'applied');
    assert.equal(updated.body.peer.bandwidth_down_kbps, 16000);
    assert.equal(updated.body.peer.bandwidth_up_kbps, 4000, 'the direction the PUT did not name is kept');
    await waitFor('16 Mbit/s on the peer\'s class', async () => (await rateOf(lab, wg.ns, wg.ifname, minor)) === 16_000_000, 2000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 2000, `the new rate was in the kernel after ${elapsed} ms`);
    assert.equal(await rateOf(lab, wg.ns, ifb, minor), 4_000_000, 'the up class is untouched');
    t.diagnostic(`rate changed ${elapsed} ms after the PUT was sent`);
    t.diagnostic(assertHoldsCap(await down(2), 16000, 'down right after the change'));
  });

  await t.test('after SIGKILL and a restart on the same database the caps are still in force, untouched, and reported applied', async (t) => {
    const bytesBefore = await bytesOf(lab, wg.ns, wg.ifname, minor);
    assert.ok(bytesBefore > 1_000_000n, 'the class has carried traffic');
    const killed = await panel.kill();
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal(await rateOf(lab, wg.ns, wg.ifname, minor), 16_000_000, 'the crash left the down class in place');

    await panel.restart();
    const peer = await panel.get(`/api/networks/${networkId}/peers/${peerId}`);
    expectStatus(peer, 200, 'GET peer after the restart');
    assert.deepEqual(
      { status: peer.body.peer.bandwidth_status, up: peer.body.peer.bandwidth_up_kbps, down: peer.body.peer.bandwidth_down_kbps },
      { status: 'applied', up: 4000, down: 16000 },
    );
    // The restarted panel's reconcile finds the kernel in step: nothing to change for this interface.
    const reconcile = await panel.post('/api/bandwidth/reconcile');
    expectStatus(reconcile, 200, 'POST /api/bandwidth/reconcile');
    const outcome = (reconcile.body.interfaces as Record<string, unknown>[]).find((o) => o.interface === wg.ifname);
    assert.deepEqual({ status: outcome?.status, operations: outcome?.operations }, { status: 'applied', operations: [] });
    assert.equal(await rateOf(lab, wg.ns, wg.ifname, minor), 16_000_000);
    assert.equal(await rateOf(lab, wg.ns, ifb, minor), 4_000_000);
    assert.ok((await bytesOf(lab, wg.ns, wg.ifname, minor)) >= bytesBefore, 'the class was not rebuilt (its byte counter kept counting)');

    const bandwidth = await panel.get(`/api/networks/${networkId}/bandwidth`);
    expectStatus(bandwidth, 200, 'GET /api/networks/:id/bandwidth');
    const listed = (bandwidth.body.peers as Record<string, unknown>[]).find((p) => p.peer_id === peerId);
    assert.deepEqual(
      { name: listed?.name, up: listed?.bandwidth_up_kbps, down: listed?.bandwidth_down_kbps, status: listed?.status, error: listed?.error },
      { name: 'alice', up: 4000, down: 16000, status: 'applied', error: null },
    );
    t.diagnostic(assertHoldsCap(await down(2), 16000, 'down after the restart'));
  });

  await t.test('a peer on a network whose interface does not exist yet is pending with the reason, and applied by POST /api/bandwidth/reconcile once it exists', async () => {
    const missing = `pm${lab.id}x`;
    const later = await panel.post('/api/networks', { name: 'later', interface: missing, netns: wg.ns });
    expectStatus(later, 201, 'POST /api/networks (interface not there yet)');
    const laterId = later.body.network.id as number;
    const created = await panel.post(`/api/networks/${laterId}/peers`, {
      name: 'bob', public_key: randomBytes(32).toString('base64'), allowed_ips: ['10.68.0.2/32'], bandwidth_up_kbps: 2000, bandwidth_down_kbps: 3000,
    });
    expectStatus(created, 201, 'POST peer on the missing interface');
    const bobId = created.body.peer.id as number;
    assert.equal(created.body.peer.bandwidth_status, 'pending');
    assert.equal(created.body.peer.bandwidth_reason, 'interface_missing');
    assert.match(String(created.body.peer.bandwidth_error), new RegExp(`interface ${missing}\\b.*does not exist`));

    await lab.ip(wg.ns, ['link', 'add', missing, 'type', 'veth', 'peer', 'name', `pm${lab.id}y`]);
    await lab.ip(wg.ns, ['link', 'set', missing, 'up']);
    const reconcile = await panel.post('/api/bandwidth/reconcile');
    expectStatus(reconcile, 200, 'POST /api/bandwidth/reconcile');
    const peer = await panel.get(`/api/networks/${laterId}/peers/${bobId}`);
    assert.deepEqual(
      { status: peer.body.peer.bandwidth_status, error: peer.body.peer.bandwidth_error, reason: peer.body.peer.bandwidth_reason },
      { status: 'applied', error: null, reason: null },
    );
    const bobMinor = minorOf((await limitOf(panel, laterId, bobId)).class_id);
    assert.equal(await rateOf(lab, wg.ns, missing, bobMinor), 3_000_000, 'down class on the new interface');
    assert.equal(await rateOf(lab, wg.ns, ifbNameFor(missing, wg.ns), bobMinor), 2_000_000, 'up class on its IFB');
  });

  await t.test('DELETE of the peer leaves no class, leaf, filter or IFB of it, and no plugin qdisc on the interface', async () => {
    const deleted = await panel.delete(`/api/networks/${networkId}/peers/${peerId}`);
    expectStatus(deleted, 204, 'DELETE peer');
    assert.deepEqual(await leftoversOf(lab.executor, wg.ifname, wg.ns, minor), []);
    const actual = await readActual(lab.executor, wg.ifname, wg.ns);
    assert.deepEqual(actual.egress?.qdiscs.filter((q) => q.kind === 'htb' || q.kind === 'ingress' || !q.root).map((q) => q.kind), []);
    assert.equal(actual.ifb.exists, false, 'no IFB');
    await assert.rejects(lab.ip(wg.ns, ['link', 'show', 'dev', ifb]));
    const limits = await panel.get(`/api/bandwidth/limits?subject_type=peer&network_id=${networkId}`);
    assert.deepEqual(limits.body.limits, [], 'and no limit row');
    assert.ok((await down(1)).bitsPerSecond > 20e6, 'the tunnel still carries traffic, unshaped');
  });
});
