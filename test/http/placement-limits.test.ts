/**
 * Validation refuses what the planner cannot build (issue 9): a u32 bucket holds at most 4095
 * prefixes of one length. The subject that would cross that limit gets a 400 naming its field and
 * nothing is written; the other subjects of the interface keep their caps and their status.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { startPanel, wgKey } from '../support/panel.js';

const UP = 'bandwidth_up_kbps';
const DOWN = 'bandwidth_down_kbps';

test('the peer whose /32 would be the 4096th in a bucket is refused with 400 on allowed_ips; the interface stays as it was', async (t) => {
  const { api, db } = await startPanel(t);
  const network = await api.post('/api/networks').send({ name: 'big', interface: 'wg-big' }).expect(201);
  const networkId = network.body.network.id as number;
  // 4095 host addresses ending in .7 (bucket 7 of the /32 table), 32 per peer (the host's maximum).
  let left = 4095;
  for (let peer = 0; left > 0; peer += 1) {
    const count = Math.min(32, left);
    left -= count;
    const allowed = Array.from({ length: count }, (_, j) => `10.${peer}.${j}.7/32`);
    const response = await api.post(`/api/networks/${networkId}/peers`).send({ name: `p${peer}`, public_key: wgKey(peer + 1), allowed_ips: allowed, [UP]: 1000, [DOWN]: 2000 });
    assert.equal(response.status, 201, response.text);
  }
  const small = await api.post(`/api/networks/${networkId}/peers`).send({ name: 'small', public_key: wgKey(200), allowed_ips: ['10.250.0.8/32'], [DOWN]: 500 }).expect(201);
  const before = await db('bw_limits').orderBy('id');
  const peersBefore = Number(((await db('peers').count({ n: '*' })) as { n: number }[])[0]?.n);

  const refused = await api.post(`/api/networks/${networkId}/peers`).send({ name: 'one-too-many', public_key: wgKey(201), allowed_ips: ['10.200.0.7/32'], [DOWN]: 1000 });
  assert.equal(refused.status, 400, refused.text);
  assert.equal(refused.body.error.field, 'allowed_ips');
  assert.match(refused.body.error.message, /10\.200\.0\.7\/32: bucket 320:7: of the IPv4 \/32 table already holds 4095 prefixes/);
  assert.equal(Number(((await db('peers').count({ n: '*' })) as { n: number }[])[0]?.n), peersBefore, 'the host wrote nothing');

  // Unlimited, the same address needs no filter: accepted. Capping it later is refused the same way.
  const free = await api.post(`/api/networks/${networkId}/peers`).send({ name: 'free', public_key: wgKey(202), allowed_ips: ['10.200.0.7/32'] }).expect(201);
  const cap = await api.put(`/api/bandwidth/limits/peer/${free.body.peer.id}`).send({ [UP]: 1000 });
  assert.equal(cap.status, 400, cap.text);
  assert.equal(cap.body.error.field, 'allowed_ips');

  // Everything that was there is unchanged: caps, class ids, statuses (nobody turned `failed`).
  const after = (await db('bw_limits').orderBy('id')).filter((row: { subject_id: unknown }) => String(row.subject_id) !== String(free.body.peer.id));
  assert.deepEqual(
    after.map((row: Record<string, unknown>) => [row.subject_id, row.up_kbps, row.down_kbps, row.class_minor, row.status]),
    before.map((row: Record<string, unknown>) => [row.subject_id, row.up_kbps, row.down_kbps, row.class_minor, row.status]),
  );
  assert.ok(after.every((row: { status: string }) => row.status !== 'failed'));
  const smallRow = after.find((row: { subject_id: unknown }) => String(row.subject_id) === String(small.body.peer.id)) as { down_kbps: number };
  assert.equal(Number(smallRow.down_kbps), 500);
});
