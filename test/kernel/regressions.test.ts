/**
 * Kernel-layer reproductions of reported planner bugs, each through the reference panel's HTTP API
 * on one wireguard-go interface in a namespace, exactly as reported. After every step: the answer
 * says `applied`, the database holds what was sent, and the kernel matches it (kernel-model-check).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';

import { requireOrSkip } from '../support/layer.js';
import { labRequirements } from '../support/lab.js';
import { leftoversOf } from '../support/lab-shaping.js';
import type { ApiResponse } from '../support/lab-panel.js';
import { describeWorld, minorOf, verify, type ExpectedSubject, type VerifyContext } from '../support/kernel-model-check.js';
import { seededRandom } from '../support/kernel-model-addresses.js';
import { createModelLab, expectStatus, type ModelLab } from '../support/kernel-model-lab.js';

const { available, reason } = labRequirements();

/** Any 44-character key will do: the lab has no tunnel traffic. */
const key = (n: number): string => Buffer.alloc(32, n).toString('base64');

/** One network on the lab's wireguard-go interface, and the expectations the steps keep up to date. */
async function oneInterface(t: TestContext): Promise<{ world: ModelLab; networkId: number; peers: Map<number, ExpectedSubject>; ifname: string }> {
  const world = await createModelLab(t, { wireguard: 1 });
  const ifname = world.wireguard[0]!;
  const network = await world.panel.post('/api/networks', { name: 'regression', interface: ifname, netns: world.ns });
  expectStatus(network, 201, 'POST /api/networks');
  return { world, networkId: network.body.network.id as number, peers: new Map(), ifname };
}

/** Asserts the step was applied and the database and the kernel agree with what was sent. */
async function assertInStep(world: ModelLab, ifname: string, peers: Map<number, ExpectedSubject>, step: string, responses: ApiResponse[]): Promise<void> {
  for (const response of responses) {
    const peer = response.body?.peer ?? response.body?.limit;
    const status = peer?.bandwidth_status as string | undefined;
    const error = peer?.bandwidth_error as string | null | undefined;
    assert.ok(status === 'applied' || status === 'unlimited', `${step}: the answer says ${String(status)}: ${String(error)}`);
  }
  const ctx: VerifyContext = {
    panel: world.panel, executor: world.lab.executor, netns: world.ns,
    interfaces: [{ name: ifname, kind: 'wireguard' }], expected: [...peers.values()], next: seededRandom(7),
  };
  const { problems, limits } = await verify(ctx);
  if (problems.length > 0) assert.fail(`${step}:\n  ${problems.join('\n  ')}\n${await describeWorld(ctx, limits, [ifname])}`);
}

test('Reproduction of "HTB class in use": mixed IPv4/IPv6 peers whose caps go to and from 0 stay applied, and the kernel matches after every step', { timeout: 120_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const { world, networkId, peers, ifname } = await oneInterface(t);
  const { panel } = world;
  const create = async (name: string, allowed: string[], up: number, down: number, n: number): Promise<{ id: number; response: ApiResponse }> => {
    const response = await panel.post(`/api/networks/${networkId}/peers`, { name, public_key: key(n), allowed_ips: allowed, bandwidth_up_kbps: up, bandwidth_down_kbps: down });
    expectStatus(response, 201, `POST peer ${name}`);
    const id = response.body.peer.id as number;
    peers.set(id, { type: 'peer', id, interface: ifname, addresses: allowed, up, down });
    return { id, response };
  };
  const setCaps = async (path: string, id: number, body: { bandwidth_up_kbps?: number; bandwidth_down_kbps?: number }): Promise<ApiResponse> => {
    const response = await panel.put(path, body);
    expectStatus(response, 200, `PUT ${path}`);
    const peer = peers.get(id)!;
    peers.set(id, { ...peer, up: body.bandwidth_up_kbps ?? peer.up, down: body.bandwidth_down_kbps ?? peer.down });
    return response;
  };

  // 1. c1 (IPv6), then its caps through the limits API.
  const c1 = await create('c1', ['fd77::d0/128'], 8000, 1234, 1);
  await assertInStep(world, ifname, peers, 'step 1: c1 created', [c1.response]);
  await assertInStep(world, ifname, peers, 'step 1: c1 capped 100000/1000', [
    await setCaps(`/api/bandwidth/limits/peer/${c1.id}`, c1.id, { bandwidth_down_kbps: 1000, bandwidth_up_kbps: 100000 }),
  ]);
  // 2. c2 (IPv4) and c3 (IPv6).
  const c2 = await create('c2', ['10.77.1.113/32'], 20000, 8000, 2);
  await assertInStep(world, ifname, peers, 'step 2: c2 created', [c2.response]);
  const c3 = await create('c3', ['fd77::12f/128'], 1000, 5000, 3);
  await assertInStep(world, ifname, peers, 'step 2: c3 created', [c3.response]);
  // 3. c2's down changed; c3's up to 0 and back.
  await assertInStep(world, ifname, peers, 'step 3: c2 down 1234', [
    await setCaps(`/api/bandwidth/limits/peer/${c2.id}`, c2.id, { bandwidth_down_kbps: 1234 }),
  ]);
  await assertInStep(world, ifname, peers, 'step 3: c3 down 2000 up 0', [
    await setCaps(`/api/networks/${networkId}/peers/${c3.id}`, c3.id, { bandwidth_down_kbps: 2000, bandwidth_up_kbps: 0 }),
  ]);
  await assertInStep(world, ifname, peers, 'step 3: c3 1234/1234', [
    await setCaps(`/api/networks/${networkId}/peers/${c3.id}`, c3.id, { bandwidth_down_kbps: 1234, bandwidth_up_kbps: 1234 }),
  ]);
  // 4. c2's up to 0: reported as `tc class del … Error: HTB class in use.`, and every change after it failed.
  await assertInStep(world, ifname, peers, 'step 4: c2 up 0', [
    await setCaps(`/api/networks/${networkId}/peers/${c2.id}`, c2.id, { bandwidth_up_kbps: 0 }),
  ]);

  // "From then on every change on that interface and every reconcile fails."
  await assertInStep(world, ifname, peers, 'after: c1 down 3000', [
    await setCaps(`/api/networks/${networkId}/peers/${c1.id}`, c1.id, { bandwidth_down_kbps: 3000 }),
  ]);
  const reconcile = await panel.post('/api/bandwidth/reconcile');
  expectStatus(reconcile, 200, 'POST /api/bandwidth/reconcile');
  const outcome = (reconcile.body.interfaces as { interface: string; status: string; error: string | null; operations: string[] }[]).find((o) => o.interface === ifname);
  assert.deepEqual({ status: outcome?.status, error: outcome?.error, operations: outcome?.operations }, { status: 'applied', error: null, operations: [] });
  await assertInStep(world, ifname, peers, 'after: reconcile', []);
});

test('Reproduction of "a deleted peer\'s class stays": after a peer with a routed /24 is set to 0/0, deleting another capped peer removes its class and filters at once', { timeout: 120_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const { world, networkId, peers, ifname } = await oneInterface(t);
  const { panel } = world;
  const created: { id: number; minor: number }[] = [];
  const plan = [
    { name: 'routed', allowed: ['10.77.2.1/32', '10.77.50.0/24'], up: 3000, down: 4000 },
    { name: 'doomed', allowed: ['10.77.2.2/32'], up: 5000, down: 6000 },
    { name: 'bystander', allowed: ['10.77.2.3/32', 'fd77::3/128'], up: 7000, down: 8000 },
  ];
  for (const [i, p] of plan.entries()) {
    const response = await panel.post(`/api/networks/${networkId}/peers`, {
      name: p.name, public_key: key(10 + i), allowed_ips: p.allowed, bandwidth_up_kbps: p.up, bandwidth_down_kbps: p.down,
    });
    expectStatus(response, 201, `POST peer ${p.name}`);
    const id = response.body.peer.id as number;
    peers.set(id, { type: 'peer', id, interface: ifname, addresses: p.allowed, up: p.up, down: p.down });
    const limit = await panel.get(`/api/bandwidth/limits?subject_type=peer&network_id=${networkId}&per_page=100`);
    const minor = minorOf((limit.body.limits as { subject_id: string; class_id: string | null }[]).find((l) => l.subject_id === String(id))?.class_id ?? null);
    assert.ok(minor !== null, `${p.name} has a class id`);
    created.push({ id, minor });
    await assertInStep(world, ifname, peers, `${p.name} created`, [response]);
  }
  const [routed, doomed] = created as [{ id: number; minor: number }, { id: number; minor: number }];

  const cleared = await panel.put(`/api/bandwidth/limits/peer/${routed.id}`, { bandwidth_up_kbps: 0, bandwidth_down_kbps: 0 });
  expectStatus(cleared, 200, 'PUT routed peer 0/0');
  peers.set(routed.id, { ...peers.get(routed.id)!, up: 0, down: 0 });
  await assertInStep(world, ifname, peers, 'the routed /24 peer set to 0/0', [cleared]);

  const deleted = await panel.delete(`/api/networks/${networkId}/peers/${doomed.id}`);
  expectStatus(deleted, 204, 'DELETE the other capped peer');
  peers.delete(doomed.id);
  assert.deepEqual(await leftoversOf(world.lab.executor, ifname, world.ns, doomed.minor), [], 'nothing of the deleted peer is left, without a reconcile');
  await assertInStep(world, ifname, peers, 'the other capped peer deleted', []);
});

// Found by the kernel model test: LimitsService.change() read the stored caps, merged and wrote without
// holding anything, so the later writer put back the direction the other request had changed.
test('Concurrent edits naming different directions of one peer all land: PUT {up} and PUT {down} at once store both, and the kernel matches', { timeout: 120_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const { world, networkId, peers, ifname } = await oneInterface(t);
  const { panel } = world;
  const created = await panel.post(`/api/networks/${networkId}/peers`, {
    name: 'busy', public_key: key(30), allowed_ips: ['10.77.3.1/32'], bandwidth_up_kbps: 1000, bandwidth_down_kbps: 1000,
  });
  expectStatus(created, 201, 'POST peer');
  const id = created.body.peer.id as number;
  peers.set(id, { type: 'peer', id, interface: ifname, addresses: ['10.77.3.1/32'], up: 1000, down: 1000 });
  const lost: string[] = [];
  for (let i = 0; i < 10; i += 1) {
    const up = 2000 + i;
    const down = 3000 + i;
    const path = i % 2 === 0 ? `/api/bandwidth/limits/peer/${id}` : `/api/networks/${networkId}/peers/${id}`;
    const answers = await Promise.all([panel.put(path, { bandwidth_up_kbps: up }), panel.put(path, { bandwidth_down_kbps: down })]);
    answers.forEach((answer) => expectStatus(answer, 200, `PUT ${path}`));
    peers.set(id, { ...peers.get(id)!, up, down });
    const stored = await panel.get(`/api/networks/${networkId}/peers/${id}`);
    const got = { up: stored.body.peer.bandwidth_up_kbps as number, down: stored.body.peer.bandwidth_down_kbps as number };
    if (got.up !== up || got.down !== down) lost.push(`${path}: sent up ${up} and down ${down} at once, stored up ${got.up} down ${got.down}`);
  }
  assert.deepEqual(lost, [], 'no update is lost');
  await assertInStep(world, ifname, peers, 'after the concurrent pairs', []);
});
