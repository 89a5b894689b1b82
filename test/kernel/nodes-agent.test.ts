/**
 * Issue 10, kernel layer, without a panel: each node's agent as a real process in its own
 * namespace, spoken to over its veth link the way a panel or a VM-side master would.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readActual, readTree } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { iperf, labRequirements, waitFor } from '../support/lab.js';
import { assertHoldsCap } from '../support/lab-shaping.js';
import { createNodeLab, type LabNode } from '../support/node-lab.js';

const { available, reason } = labRequirements();

/** HTB rate (bit/s) of class 1:<minor> on a device of a node, undefined when there is none. */
async function rateOf(node: LabNode, device: string, minor: number): Promise<number | undefined> {
  const tree = await readTree(node.lab.executor, device, node.ns);
  return tree?.classes.find((c) => c.kind === 'htb' && c.major === 1 && c.minor === minor)?.rateBits;
}

/** What the kernel holds of the plugin on an interface, compared before and after refused requests. */
async function kernelOf(node: LabNode, ifname: string): Promise<string> {
  const actual = await readActual(node.lab.executor, ifname, node.ns);
  const describe = (tree: typeof actual.egress) => ({
    qdiscs: tree?.qdiscs.map((q) => `${q.kind} ${q.handle ?? ''} ${q.parent ?? 'root'}`).sort() ?? [],
    classes: tree?.classes.map((c) => `${c.classid} ${c.rateBits ?? ''}`).sort() ?? [],
    filters: tree?.filters.length ?? 0,
  });
  return JSON.stringify({ egress: describe(actual.egress), ifb: actual.ifb.exists ? describe(actual.ifb.tree) : null });
}

test('a node\'s agent process refuses what it must, answers malformed input with the field, and runs the VM-side design\'s jobs on real taps', { timeout: 180_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const nodes = await createNodeLab({ peersPerGateway: 1, vms: 1 });
  t.after(() => nodes.close());
  const { gwA, hv } = nodes;
  const wg = gwA.wg!;
  const peer = wg.peers[0]!;
  const ifb = ifbNameFor(wg.ifname);
  const capped = (version: number, upKbps: number, downKbps: number) => ({
    version, kind: 'wireguard', netns: null,
    subjects: [{ type: 'peer', id: '41', name: 'alice', classMinor: 2, addresses: [`${peer.addresses[0]}/32`], publicKey: peer.publicKey, upKbps, downKbps }],
  });

  await t.test('GET /v1/health needs no token and shows no subject; without the right token every other route is 401 and the kernel is left as it was', async () => {
    const health = await gwA.agent.request('GET', '/v1/health', { token: null });
    assert.equal(health.status, 200);
    assert.equal(health.body.node, 'gw-a');
    assert.doesNotMatch(health.text, /alice|10\.66\./, 'health names no subject');

    const untouched = await kernelOf(gwA, wg.ifname);
    const wrong = `${gwA.agent.token.slice(0, -1)}${gwA.agent.token.endsWith('0') ? '1' : '0'}`;
    const refusals: [string, string, { token: string | null; body?: unknown; headers?: Record<string, string> }][] = [
      ['PUT', `/v1/interfaces/${wg.ifname}`, { token: null, body: capped(1, 4000, 8000) }],
      ['PUT', `/v1/interfaces/${wg.ifname}`, { token: wrong, body: capped(1, 4000, 8000) }],
      ['PUT', `/v1/interfaces/${wg.ifname}`, { token: null, headers: { authorization: `Basic ${Buffer.from(`x:${gwA.agent.token}`).toString('base64')}` }, body: capped(1, 4000, 8000) }],
      ['PUT', `/v1/interfaces/${wg.ifname}`, { token: `${gwA.agent.token}x`, body: capped(1, 4000, 8000) }],
      ['DELETE', `/v1/interfaces/${wg.ifname}`, { token: wrong }],
      ['GET', '/v1/ledger', { token: null }],
      ['GET', '/v1/interfaces', { token: wrong }],
      ['GET', '/metrics', { token: null }],
      ['POST', '/v1/jobs', { token: wrong, body: { type: 'NET_EGRESS_CAP_SET', name: 'vm-x', mbps: 5, if: wg.ifname } }],
    ];
    for (const [method, path, options] of refusals) {
      const answer = await gwA.agent.request(method, path, options);
      assert.equal(answer.status, 401, `${method} ${path} with ${options.token === null ? 'no token' : 'a wrong token'}: ${answer.text.slice(0, 200)}`);
    }
    assert.equal(await kernelOf(gwA, wg.ifname), untouched, 'no qdisc, class or filter appeared');
    await assert.rejects(gwA.lab.ip(gwA.ns, ['link', 'show', 'dev', ifb]), 'and no IFB');
    assert.deepEqual((await gwA.agent.request('GET', '/v1/interfaces')).body, { interfaces: [] }, 'the agent holds no state');

    // With a state in force, refused changes leave it in force.
    const put = await gwA.agent.request('PUT', `/v1/interfaces/${wg.ifname}`, { body: capped(5, 4000, 8000) });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.body.status, 'applied', put.text);
    assert.equal(await rateOf(gwA, wg.ifname, 2), 8_000_000);
    const applied = await kernelOf(gwA, wg.ifname);
    assert.equal((await gwA.agent.request('PUT', `/v1/interfaces/${wg.ifname}`, { token: wrong, body: capped(6, 1000, 1000) })).status, 401);
    assert.equal((await gwA.agent.request('DELETE', `/v1/interfaces/${wg.ifname}`, { token: null })).status, 401);
    assert.equal(await kernelOf(gwA, wg.ifname), applied, 'the caps in force are untouched');
    assert.equal((await gwA.agent.request('GET', `/v1/interfaces/${wg.ifname}`)).body.version, 5);
  });

  await t.test('25 malformed requests to the agent are each 400 naming the field at fault, and change nothing', async () => {
    const path = `/v1/interfaces/${wg.ifname}`;
    const good = capped(7, 4000, 8000);
    const subject = good.subjects[0]!;
    const withSubject = (change: Record<string, unknown>) => ({ ...good, subjects: [{ ...subject, ...change }] });
    const cases: { method: string; path: string; body?: unknown; contentType?: string; field: string }[] = [
      { method: 'PUT', path, body: '{"version": 7,', field: 'body' },
      { method: 'PUT', path, body: JSON.stringify(good), contentType: 'text/plain', field: 'body' },
      { method: 'PUT', path, body: [], field: 'body' },
      { method: 'PUT', path, body: { ...good, version: -1 }, field: 'version' },
      { method: 'PUT', path, body: { ...good, version: '7' }, field: 'version' },
      { method: 'PUT', path, body: { ...good, kind: 'tap' }, field: 'kind' },
      { method: 'PUT', path, body: { ...good, netns: 'no/such ns' }, field: 'netns' },
      { method: 'PUT', path, body: { ...good, subjects: 'alice' }, field: 'subjects' },
      { method: 'PUT', path, body: { ...good, surplus: true }, field: 'surplus' },
      { method: 'PUT', path, body: withSubject({ type: 'router' }), field: 'subjects.0.type' },
      { method: 'PUT', path, body: withSubject({ upKbps: -5 }), field: 'subjects.0.upKbps' },
      { method: 'PUT', path, body: withSubject({ downKbps: 1.5 }), field: 'subjects.0.downKbps' },
      { method: 'PUT', path, body: withSubject({ classMinor: 1 }), field: 'subjects.0.classMinor' },
      { method: 'PUT', path, body: withSubject({ classMinor: null }), field: 'subjects.0.classMinor' },
      { method: 'PUT', path, body: withSubject({ rate: 5 }), field: 'subjects.0.rate' },
      { method: 'PUT', path, body: withSubject({ type: 'vm' }), field: 'subjects.0.type' },
      { method: 'PUT', path, body: { ...good, subjects: [subject, { ...subject, classMinor: 3 }] }, field: 'subjects.1.id' },
      { method: 'PUT', path, body: { ...good, subjects: [subject, { ...subject, id: '42' }] }, field: 'subjects.1.classMinor' },
      { method: 'PUT', path: '/v1/interfaces/an-interface-name-too-long', body: good, field: 'name' },
      { method: 'DELETE', path: `${path}?netns=no%2Fsuch`, field: 'netns' },
      { method: 'GET', path: '/v1/ledger?after=-1', field: 'after' },
      { method: 'GET', path: '/v1/ledger?limit=0', field: 'limit' },
      { method: 'GET', path: '/v1/ledger?after=1&after=2', field: 'after' },
      { method: 'GET', path: '/v1/ledger?since=1', field: 'since' },
      { method: 'GET', path: '/v1/events?rates=yes', field: 'rates' },
      { method: 'POST', path: '/v1/jobs', body: { type: 'REBOOT' }, field: 'type' },
      { method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_SET', name: 'vm-1', mbps: 0 }, field: 'mbps' },
      { method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_SET', mbps: 5 }, field: 'name' },
      { method: 'POST', path: '/v1/jobs', body: { type: 'NET_EGRESS_CAP_CLEAR', name: '' }, field: 'name' },
      { method: 'POST', path: '/v1/jobs', body: { type: 'BANDWIDTH_COLLECT', vm: 'vm-1' }, field: 'vm' },
    ];
    assert.ok(cases.length >= 20);
    const before = { kernel: await kernelOf(gwA, wg.ifname), state: (await gwA.agent.request('GET', path)).text, interfaces: (await gwA.agent.request('GET', '/v1/interfaces')).text };
    const wrongAnswers: string[] = [];
    for (const c of cases) {
      const answer = await gwA.agent.request(c.method, c.path, { ...(c.body === undefined ? {} : { body: c.body }), ...(c.contentType ? { contentType: c.contentType } : {}) });
      const ok = answer.status === 400 && answer.body?.field === c.field && String(answer.body?.error).includes(c.field);
      if (!ok) wrongAnswers.push(`${c.method} ${c.path} ${JSON.stringify(c.body)?.slice(0, 80)}: expected 400 naming \`${c.field}\`, got ${answer.status} ${answer.text.slice(0, 200)}`);
    }
    assert.deepEqual(wrongAnswers, []);
    assert.deepEqual(
      { kernel: await kernelOf(gwA, wg.ifname), state: (await gwA.agent.request('GET', path)).text, interfaces: (await gwA.agent.request('GET', '/v1/interfaces')).text },
      before,
      'neither the kernel nor the agent\'s state changed',
    );
  });

  await t.test('the VM-side jobs: NET_EGRESS_CAP_SET caps the VM\'s download on its tap, BANDWIDTH_COLLECT reads the tap\'s bytes, NET_EGRESS_CAP_CLEAR lifts the cap', async (t) => {
    const vm = hv.vms[0]!;
    const download = (seconds = 3) => iperf(hv.lab, { serverNs: vm.ns, clientNs: hv.ns, target: vm.guestAddress, seconds }); // host → VM: egress of the tap
    const sysfs = async () => {
      const [rx, tx] = (await hv.lab.executor.run(['cat', `/sys/class/net/${vm.tap}/statistics/rx_bytes`, `/sys/class/net/${vm.tap}/statistics/tx_bytes`], { netns: hv.ns })).stdout.trim().split('\n');
      return { rx: BigInt(rx!), tx: BigInt(tx!) };
    };
    const collect = async () => {
      const answer = await hv.agent.request('POST', '/v1/jobs', { body: { type: 'BANDWIDTH_COLLECT' } });
      assert.equal(answer.status, 200, answer.text);
      // Exact integers: read them from the text, not through a double.
      const rx = /"rx_bytes":(\d+)/.exec(answer.text)?.[1];
      const tx = /"tx_bytes":(\d+)/.exec(answer.text)?.[1];
      assert.ok(rx && tx, `counters in ${answer.text}`);
      return { vms: answer.body.vms as Record<string, unknown>[], rx: BigInt(rx), tx: BigInt(tx) };
    };

    const set = await hv.agent.request('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_SET', name: vm.name, mbps: 8, if: vm.tap } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual({ if: set.body.if, down: set.body.down_kbps, up: set.body.up_kbps, status: set.body.report.status }, { if: vm.tap, down: 8000, up: 0, status: 'applied' });
    assert.equal(await rateOf(hv, vm.tap, 2), 8_000_000, 'an HTB class of 8 Mbit/s on the tap\'s egress');
    assert.equal(await rateOf(hv, ifbNameFor(vm.tap), 2), undefined, 'and nothing on its ingress: the VM\'s upload stays unlimited');

    const first = await sysfs();
    const collected = await collect();
    const second = await sysfs();
    assert.deepEqual(collected.vms.map((v) => ({ name: v.name, if: v.if, netns: v.netns })), [{ name: vm.name, if: vm.tap, netns: null }]);
    assert.ok(first.rx <= collected.rx && collected.rx <= second.rx && first.tx <= collected.tx && collected.tx <= second.tx, 'the tap\'s own counters, read between two reads of sysfs');

    const shaped = await download();
    t.diagnostic(assertHoldsCap(shaped, 8000, 'VM download after NET_EGRESS_CAP_SET 8 Mbit/s'));
    const afterTraffic = await collect();
    t.diagnostic(`tap tx moved by ${afterTraffic.tx - collected.tx} B, iperf received ${shaped.bytes} B`);
    assert.ok(afterTraffic.tx - collected.tx >= BigInt(shaped.bytes), 'tx_bytes (to the VM) moved by at least what the VM received');
    assert.ok(afterTraffic.rx - collected.rx < (afterTraffic.tx - collected.tx) / 10n, 'rx_bytes (from the VM) moved by its ACKs only');

    const clear = await hv.agent.request('POST', '/v1/jobs', { body: { type: 'NET_EGRESS_CAP_CLEAR', name: vm.name } });
    assert.equal(clear.status, 200, clear.text);
    assert.equal(clear.body.down_kbps, 0);
    await waitFor('no plugin qdisc on the tap', async () => (await readTree(hv.lab.executor, vm.tap, hv.ns))?.qdiscs.every((q) => q.kind !== 'htb'));
    const free = await download(2);
    t.diagnostic(`after NET_EGRESS_CAP_CLEAR: ${(free.bitsPerSecond / 1e6).toFixed(1)} Mbit/s`);
    assert.ok(free.bitsPerSecond > 3 * 8e6, 'the download is no longer held at 8 Mbit/s');
  });
});
