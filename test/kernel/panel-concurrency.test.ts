import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readActual, readTree } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { Lab, labRequirements } from '../support/lab.js';
import { startPanelProcess, type ApiResponse } from '../support/lab-panel.js';
import { seededRandom } from '../support/seeded-random.js';
import { ROOT_CLASS_MINOR } from '../../src/shaping/tree-shape.js';

const { available, reason } = labRequirements();

const PEERS = 10;
const UPDATES = 50;


function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

test('50 parallel cap updates over 10 peers leave the kernel exactly as the database says: one class per capped direction at the stored rate, nothing else', { timeout: 120_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  const seed = Number(process.env.PBW_SEED ?? Date.now() % 1_000_000);
  t.diagnostic(`seed ${seed} (PBW_SEED=${seed} replays this run)`);
  const next = seededRandom(seed);
  // Mostly caps from 1 to 50 Mbit/s, sometimes 0 (that direction unlimited: its class must go).
  const kbps = () => (next() < 0.15 ? 0 : 1000 + Math.floor(next() * 49_000));

  const [ns, panel] = await Promise.all([
    (async () => {
      const hostNs = await lab.namespace('cc');
      const otherNs = await lab.namespace('co');
      await lab.veth({ ns: hostNs, name: `pc${lab.id}h`, addresses: ['10.70.0.1/24'] }, { ns: otherNs, name: `pc${lab.id}o`, addresses: ['10.70.0.2/24'] });
      return hostNs;
    })(),
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 5, collect_interval_s: 5 } }),
  ]);
  const ifname = `pc${lab.id}h`;
  const ifb = ifbNameFor(ifname, ns);

  const network = await panel.post('/api/networks', { name: 'busy', interface: ifname, netns: ns });
  expectStatus(network, 201, 'POST /api/networks');
  const networkId = network.body.network.id as number;
  const peerIds: number[] = [];
  for (let i = 0; i < PEERS; i++) {
    const created = await panel.post(`/api/networks/${networkId}/peers`, {
      name: `peer-${i}`, public_key: randomBytes(32).toString('base64'), allowed_ips: [`10.70.1.${10 + i}/32`],
      bandwidth_up_kbps: kbps(), bandwidth_down_kbps: kbps(),
    });
    expectStatus(created, 201, `POST peer ${i}`);
    peerIds.push(created.body.peer.id as number);
  }

  // Every update names both directions, so the stored pair must be one that some request sent.
  const sent = new Map<string, Set<string>>(peerIds.map((id) => [String(id), new Set<string>()]));
  const updates = Array.from({ length: UPDATES }, (_, i) => {
    const id = peerIds[i % PEERS]!;
    const caps = { bandwidth_up_kbps: kbps(), bandwidth_down_kbps: kbps() };
    sent.get(String(id))!.add(`${caps.bandwidth_up_kbps}/${caps.bandwidth_down_kbps}`);
    return { id, caps };
  });
  const started = Date.now();
  const answers = await Promise.all(updates.map(({ id, caps }) => panel.put(`/api/bandwidth/limits/peer/${id}`, caps)));
  t.diagnostic(`${UPDATES} parallel PUTs answered in ${Date.now() - started} ms`);
  answers.forEach((answer, i) => expectStatus(answer, 200, `PUT #${i} (peer ${updates[i]!.id})`));

  const listed = await panel.get(`/api/bandwidth/limits?subject_type=peer&network_id=${networkId}&per_page=100`);
  expectStatus(listed, 200, 'GET /api/bandwidth/limits');
  const limits = listed.body.limits as { subject_id: string; class_id: string | null; bandwidth_up_kbps: number; bandwidth_down_kbps: number; bandwidth_status: string }[];
  assert.deepEqual(limits.map((l) => l.subject_id).sort(), peerIds.map(String).sort(), 'one limit per peer');
  for (const limit of limits) {
    assert.ok(
      sent.get(limit.subject_id)!.has(`${limit.bandwidth_up_kbps}/${limit.bandwidth_down_kbps}`),
      `peer ${limit.subject_id} stores ${limit.bandwidth_up_kbps}/${limit.bandwidth_down_kbps}, a pair one PUT sent`,
    );
  }
  const wrongStatus = limits.filter((l) => l.bandwidth_status !== (l.bandwidth_up_kbps + l.bandwidth_down_kbps > 0 ? 'applied' : 'unlimited'));
  assert.deepEqual(wrongStatus.map((l) => `${l.subject_id}: ${l.bandwidth_status}`), [], 'every limit is applied (or unlimited)');
  // A peer that was never capped has no class id; every other one keeps its own.
  const minors = limits.map((l) => {
    if (l.class_id === null && l.bandwidth_up_kbps + l.bandwidth_down_kbps === 0) return null;
    assert.match(String(l.class_id), /^1:[0-9a-f]+$/);
    return parseInt(String(l.class_id).slice(2), 16);
  });
  const allocated = minors.filter((m) => m !== null);
  assert.equal(new Set(allocated).size, allocated.length, 'distinct class ids');

  const htbRates = async (device: string) =>
    new Map(
      ((await readTree(lab.executor, device, ns))?.classes ?? [])
        .filter((c) => c.kind === 'htb' && c.major === 1 && c.minor !== 0xffff && c.minor !== ROOT_CLASS_MINOR)
        .map((c) => [c.minor, { rate: c.rateBits, ceil: c.ceilBits }]),
    );
  const capped = (direction: 'bandwidth_down_kbps' | 'bandwidth_up_kbps') =>
    limits.flatMap((l, i) => (l[direction] > 0 ? [{ minor: minors[i]!, kbps: l[direction] }] : []));
  const expected = (direction: 'bandwidth_down_kbps' | 'bandwidth_up_kbps') =>
    new Map(capped(direction).map(({ minor, kbps: cap }) => [minor, { rate: cap * 1000, ceil: cap * 1000 }]));
  t.diagnostic(`capped: ${capped('bandwidth_down_kbps').length} down, ${capped('bandwidth_up_kbps').length} up`);
  assert.deepEqual(await htbRates(ifname), expected('bandwidth_down_kbps'), 'egress classes = the stored down caps, no other class');
  assert.deepEqual(await htbRates(ifb), expected('bandwidth_up_kbps'), 'IFB classes = the stored up caps, no other class');

  // Each peer's address is classified into its own class on both sides, and no filter points elsewhere.
  const actual = await readActual(lab.executor, ifname, ns);
  for (const [tree, direction] of [[actual.egress, 'bandwidth_down_kbps'], [actual.ifb.tree, 'bandwidth_up_kbps']] as const) {
    const targets = new Set(tree?.filters.flatMap((f) => (f.flowidMinor === undefined ? [] : [f.flowidMinor])));
    const wanted = capped(direction).map((c) => c.minor);
    assert.deepEqual([...targets].sort((a, b) => a - b), wanted.sort((a, b) => a - b), `filters on ${tree?.device ?? direction}`);
  }

  // And the plugin itself sees nothing left to do.
  const reconcile = await panel.post('/api/bandwidth/reconcile');
  expectStatus(reconcile, 200, 'POST /api/bandwidth/reconcile');
  const outcome = (reconcile.body.interfaces as { interface: string; status: string; operations: string[] }[]).find((o) => o.interface === ifname);
  assert.deepEqual({ status: outcome?.status, operations: outcome?.operations }, { status: 'applied', operations: [] });
});
