import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { DesiredInterface } from '../../src/shaping/model.js';
import { probeCapabilities, type Capabilities } from '../../src/shaping/probe.js';
import { readActual } from '../../src/shaping/read.js';
import { reconcileInterface, removeInterface } from '../../src/shaping/reconcile.js';
import { requireOrSkip } from '../support/layer.js';
import { iperf, Lab, labRequirements } from '../support/lab.js';
import { assertHoldsCap } from '../support/lab-shaping.js';

const { available, reason } = labRequirements();

describe('a VM on a veth pair (the VM side in its own namespace)', { concurrency: false }, () => {
  const lab = new Lab();
  let hostNs: string;
  let vmNs: string;
  let caps: Capabilities;
  let desired: DesiredInterface;

  before(async () => {
    if (!available) return;
    caps = await probeCapabilities(lab.executor);
    hostNs = await lab.namespace('hv');
    vmNs = await lab.namespace('vm');
    const hostSide = `pv${lab.id}h`;
    await lab.veth({ ns: hostNs, name: hostSide, addresses: ['10.77.0.1/24'] }, { ns: vmNs, name: `pv${lab.id}g`, addresses: ['10.77.0.2/24'] });
    desired = {
      name: hostSide,
      netns: hostNs,
      kind: 'vm',
      subjects: [{ type: 'vm', id: 'vm-101', classMinor: 2, addresses: [], downKbps: 6000, upKbps: 3000 }],
    };
  });
  after(() => lab.close());

  test('both directions are capped and named from the VM\'s side', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await reconcileInterface(desired, lab.executor, caps);
    const actual = await readActual(lab.executor, desired.name, hostNs);
    // The VM's down is the host's egress on the host-side veth; its up is the ingress, on the IFB.
    assert.equal(actual.egress?.classes.find((c) => c.minor === 2)?.rateBits, 6_000_000);
    assert.equal(actual.ifb.tree?.classes.find((c) => c.minor === 2)?.rateBits, 3_000_000);

    const vmDown = await iperf(lab, { serverNs: vmNs, clientNs: hostNs, target: '10.77.0.2' }); // host → VM
    const vmUp = await iperf(lab, { serverNs: vmNs, clientNs: hostNs, target: '10.77.0.2', reverse: true }); // VM → host
    t.diagnostic(assertHoldsCap(vmDown, 6000, 'VM down (host egress)'));
    t.diagnostic(assertHoldsCap(vmUp, 3000, 'VM up (host ingress → IFB)'));
  });

  test('removing the interface\'s shaping leaves the veth as it was', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const result = await removeInterface(desired.name, hostNs, lab.executor);
    assert.equal(result.changed, true);
    const actual = await readActual(lab.executor, desired.name, hostNs);
    assert.deepEqual(actual.egress?.qdiscs.map((q) => q.kind), ['noqueue']);
    assert.equal(actual.ifb.exists, false);
    assert.equal((await removeInterface(desired.name, hostNs, lab.executor)).changed, false, 'idempotent');
  });
});

describe('the capability probe', () => {
  test('tries for real in a throwaway namespace and deletes it', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const lab = new Lab();
    try {
      const before = (await lab.executor.run(['ip', 'netns', 'list'])).stdout;
      const caps = await probeCapabilities(lab.executor, { refresh: true });
      assert.equal(caps.probed, true);
      assert.equal(caps.canShape, true);
      assert.equal(caps.qdiscs.htb && caps.classifiers.u32 && caps.actions.mirred && caps.ifb, true);
      assert.equal(caps.leaf, caps.leafQdiscs.fq_codel ? 'fq_codel' : caps.leafQdiscs.sfq ? 'sfq' : 'pfifo');
      assert.match(caps.iproute2Version ?? '', /^\d+\.\d+/);
      const afterProbe = (await lab.executor.run(['ip', 'netns', 'list'])).stdout;
      assert.equal(afterProbe.includes('pbw-probe-'), before.includes('pbw-probe-'), 'probe namespace removed');
      assert.equal(await probeCapabilities(lab.executor), await probeCapabilities(lab.executor), 'cached');
    } finally {
      await lab.close();
    }
  });
});
