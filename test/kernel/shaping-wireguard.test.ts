import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import type { DesiredInterface, DesiredSubject } from '../../src/shaping/model.js';
import { probeCapabilities, type Capabilities } from '../../src/shaping/probe.js';
import { readActual, readTree } from '../../src/shaping/read.js';
import { planFromKernel, reconcileInterface } from '../../src/shaping/reconcile.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperf, Lab, labRequirements, waitFor, type WireGuardLab } from '../support/lab.js';
import { assertHoldsCap, leftoversOf } from '../support/lab-shaping.js';

const { available, reason } = labRequirements();

describe('WireGuard peers shaped through wireguard-go', { concurrency: false }, () => {
  const lab = new Lab();
  let wg: WireGuardLab;
  let caps: Capabilities;
  let desired: DesiredInterface;
  const subject = (id: string): DesiredSubject => {
    const found = desired.subjects.find((s) => s.id === id);
    assert.ok(found, id);
    return found;
  };
  const reconcile = () => reconcileInterface(desired, lab.executor, caps);
  const peerNs = (address: string): string => {
    const peer = wg.peers.find((p) => p.addresses.includes(address));
    assert.ok(peer, address);
    return peer.ns;
  };
  const down = (address: string, seconds = 3) => iperf(lab, { serverNs: peerNs(address), clientNs: wg.ns, target: address, seconds });
  const up = (address: string, seconds = 3) => iperf(lab, { serverNs: peerNs(address), clientNs: wg.ns, target: address, seconds, reverse: true });

  before(async () => {
    if (!available) return;
    caps = await probeCapabilities(lab.executor);
    wg = await createWireGuardLab(lab, [
      { addresses: ['10.66.0.11'] },
      { addresses: ['10.66.0.12'] },
      { addresses: ['10.66.0.13'] },
      { addresses: ['10.66.0.14'] },
      { addresses: ['fd00:66::15'] },
      { addresses: ['10.66.0.16', '10.67.0.16'] },
    ]);
    const peer = (id: string, classMinor: number, addresses: string[], downKbps: number, upKbps: number): DesiredSubject => ({ type: 'peer', id, classMinor, addresses, downKbps, upKbps });
    desired = {
      name: wg.ifname,
      netns: wg.ns,
      kind: 'wireguard',
      subjects: [
        peer('p1', 2, ['10.66.0.11/32'], 4000, 0),
        peer('p2', 3, ['10.66.0.12/32'], 8000, 4000),
        peer('p3', 4, ['10.66.0.13/32'], 12000, 0),
        peer('p4-unlimited', 5, ['10.66.0.14/32'], 0, 0),
        peer('p5-ipv6', 6, ['fd00:66::15/128'], 6000, 0),
        peer('p6-two-ips', 7, ['10.66.0.16/32', '10.67.0.16/32'], 5000, 0),
      ],
    };
    const result = await reconcile();
    assert.equal(result.changed, true);
  });
  after(() => lab.close());

  test('three peers capped at 4, 8 and 12 Mbit/s hold their caps at once; an unlimited peer is not held back', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    assert.equal(caps.leaf, caps.leafQdiscs.fq_codel ? 'fq_codel' : caps.leafQdiscs.sfq ? 'sfq' : 'pfifo');
    const [p1, p2, p3, free] = await Promise.all([down('10.66.0.11'), down('10.66.0.12'), down('10.66.0.13'), down('10.66.0.14')]);
    t.diagnostic(assertHoldsCap(p1, 4000, 'p1 down'));
    t.diagnostic(assertHoldsCap(p2, 8000, 'p2 down'));
    t.diagnostic(assertHoldsCap(p3, 12000, 'p3 down'));
    assert.ok(free.bitsPerSecond > 5 * 12e6, `unlimited peer got ${(free.bitsPerSecond / 1e6).toFixed(1)} Mbit/s, expected well above 12`);
  });

  test('an upload cap holds through the IFB, classified by source address', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const [p2, free] = await Promise.all([up('10.66.0.12'), up('10.66.0.14')]);
    t.diagnostic(assertHoldsCap(p2, 4000, 'p2 up'));
    assert.ok(free.bitsPerSecond > 5 * 4e6, `unlimited upload got ${(free.bitsPerSecond / 1e6).toFixed(1)} Mbit/s`);
  });

  test('an IPv6 peer and a peer with two allowed IPs are shaped (both IPs in one class)', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const bytesOf7 = async (): Promise<bigint> =>
      (await readTree(lab.executor, wg.ifname, wg.ns))?.classes.find((c) => c.minor === 7)?.counters?.bytes ?? 0n;
    const before = await bytesOf7();
    const [v6, first] = await Promise.all([down('fd00:66::15'), down('10.66.0.16')]);
    const second = await down('10.67.0.16');
    t.diagnostic(assertHoldsCap(v6, 6000, 'IPv6 peer down'));
    t.diagnostic(assertHoldsCap(first, 5000, 'first allowed IP'));
    t.diagnostic(assertHoldsCap(second, 5000, 'second allowed IP'));
    // Both transfers went through the peer's one class (its counter grew by at least what was received).
    assert.ok((await bytesOf7()) - before >= BigInt(first.bytes + second.bytes), 'both allowed IPs are counted in class 1:7');
  });

  test('a changed cap takes effect within 2 s; the other classes keep their byte counters', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const countersOf = async (): Promise<Map<number, bigint>> =>
      new Map((await readTree(lab.executor, wg.ifname, wg.ns))?.classes.map((c) => [c.minor, c.counters?.bytes ?? -1n]) ?? []);
    const before = await countersOf();
    assert.ok((before.get(3) ?? 0n) > 1_000_000n, 'p2 has carried traffic');

    subject('p1').downKbps = 16000;
    const started = Date.now();
    const result = await reconcile();
    assert.deepEqual(result.operations.map((o) => o.argv.slice(0, 2).join(' ')), ['class change'], 'one class change');
    await waitFor('the kernel to show 16Mbit on 1:2', async () => (await lab.tc(wg.ns, ['class', 'show', 'dev', wg.ifname, 'classid', '1:2'])).includes('rate 16Mbit'), 2000);
    assert.ok(Date.now() - started < 2000);
    t.diagnostic(assertHoldsCap(await down('10.66.0.11', 2), 16000, 'p1 down after the change'));

    const afterChange = await countersOf();
    for (const minor of [3, 4, 6, 7, 0xffff]) {
      assert.ok((afterChange.get(minor) ?? -1n) >= (before.get(minor) ?? 0n), `class 1:${minor.toString(16)} kept its counters`);
    }
  });

  test('flushing the qdiscs by hand, then reconcile, restores every cap', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await lab.tc(wg.ns, ['qdisc', 'del', 'dev', wg.ifname, 'root']);
    await lab.tc(wg.ns, ['qdisc', 'del', 'dev', wg.ifname, 'ingress']);
    assert.ok((await planFromKernel(desired, lab.executor, caps)).length > 10, 'drift is seen');
    await reconcile();
    assert.deepEqual(await planFromKernel(desired, lab.executor, caps), [], 'nothing left to do');
    const [p3, p2up] = await Promise.all([down('10.66.0.13'), up('10.66.0.12')]);
    t.diagnostic(assertHoldsCap(p3, 12000, 'p3 down after the flush'));
    t.diagnostic(assertHoldsCap(p2up, 4000, 'p2 up after the flush'));
  });

  test('a cap set to 0, a removed cap and a deleted subject leave no class, leaf or filter behind', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    subject('p1').downKbps = 0; // cap to 0
    subject('p2').upKbps = 0; // the only up cap: the IFB goes too
    desired.subjects = desired.subjects.filter((s) => s.id !== 'p3'); // deleted subject
    await reconcile();
    assert.deepEqual(await leftoversOf(lab.executor, wg.ifname, wg.ns, 2), []);
    assert.deepEqual(await leftoversOf(lab.executor, wg.ifname, wg.ns, 4), []);
    const actual = await readActual(lab.executor, wg.ifname, wg.ns);
    assert.equal(actual.ifb.exists, false, 'no up cap left: no IFB');
    assert.ok(!actual.egress?.qdiscs.some((q) => q.kind === 'ingress'), 'and no ingress qdisc');
    assert.ok(actual.egress?.classes.some((c) => c.minor === 3), 'p2 keeps its down class');
  });

  test('removing the last limited subject removes the engine\'s qdiscs and IFB', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    for (const s of desired.subjects) {
      s.downKbps = 0;
      s.upKbps = 0;
    }
    await reconcile();
    const actual = await readActual(lab.executor, wg.ifname, wg.ns);
    // Back to the device's default root (pfifo_fast on a tun), no HTB, no ingress.
    assert.deepEqual(actual.egress?.qdiscs.filter((q) => q.kind === 'htb' || q.kind === 'ingress' || !q.root), []);
    assert.equal(actual.ifb.exists, false);
    await assert.rejects(lab.ip(wg.ns, ['link', 'show', 'dev', ifbNameFor(wg.ifname, wg.ns)]));
    // Traffic still flows, unshaped.
    assert.ok((await down('10.66.0.11', 1)).bitsPerSecond > 20e6);
  });
});
