import { test } from 'node:test';
import assert from 'node:assert/strict';
import type supertest from 'supertest';
import type { Agent } from '../support/panel.js';
import { created, hostRows, startPanel, wgKey } from '../support/panel.js';

/** The host's own fields of a peer (plugins may add more through `peer.serialize`). */
function hostFields(peer: Record<string, unknown>) {
  const { network_id, name, public_key, allowed_ips } = peer;
  return { network_id, name, public_key, allowed_ips };
}

async function network(api: Agent, name = 'office', iface = 'wg0') {
  return created(api.post('/api/networks').send({ name, interface: iface }), 'network');
}

test('a peer created through the API is listed, fetched, updated and deleted', async (t) => {
  const { api } = await startPanel(t);
  const office = await network(api);

  const create = await api
    .post(`/api/networks/${office.id}/peers`)
    .send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2', 'fd00:0:0:0::2', ' 10.8.0.2/32 '] });
  assert.equal(create.status, 201);
  const peer = create.body.peer;
  assert.equal(typeof peer.id, 'number');
  assert.deepEqual(
    hostFields(peer),
    { network_id: office.id, name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32', 'fd00::2/128'] },
    'allowed IPs come back canonical (prefix added, IPv6 compressed) and without duplicates',
  );

  const list = await api.get(`/api/networks/${office.id}/peers`);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body, { peers: [peer] });
  const fetched = await api.get(`/api/networks/${office.id}/peers/${peer.id}`);
  assert.equal(fetched.status, 200);
  assert.deepEqual(fetched.body, { peer });

  const update = await api
    .put(`/api/networks/${office.id}/peers/${peer.id}`)
    .send({ name: 'work laptop', allowed_ips: ['10.8.0.0/30'] });
  assert.equal(update.status, 200);
  assert.equal(update.body.peer.name, 'work laptop');
  assert.deepEqual(update.body.peer.allowed_ips, ['10.8.0.0/30']);
  assert.equal(update.body.peer.public_key, wgKey(1), 'fields not sent are kept');
  assert.deepEqual((await api.get(`/api/networks/${office.id}/peers/${peer.id}`)).body, update.body);

  const remove = await api.delete(`/api/networks/${office.id}/peers/${peer.id}`);
  assert.equal(remove.status, 204);
  assert.equal(remove.text, '');
  assert.equal((await api.get(`/api/networks/${office.id}/peers/${peer.id}`)).status, 404);
  assert.deepEqual((await api.get(`/api/networks/${office.id}/peers`)).body, { peers: [] });
});

test('unknown networks and peers answer 404, also a peer asked for under another network', async (t) => {
  const { api, db } = await startPanel(t);
  const office = await network(api);
  const lab = await network(api, 'lab', 'wg1');
  const peer = await created(
    api.post(`/api/networks/${office.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }),
    'peer',
  );
  const before = await hostRows(db);
  const valid = { name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] };

  const cases: [string, () => supertest.Test, string][] = [
    ['list on an unknown network', () => api.get('/api/networks/999/peers'), 'No network with id `999`'],
    ['create on an unknown network', () => api.post('/api/networks/999/peers').send(valid), 'No network with id `999`'],
    ['get an unknown peer', () => api.get(`/api/networks/${office.id}/peers/999`), 'No peer with id `999`'],
    ['update an unknown peer', () => api.put(`/api/networks/${office.id}/peers/999`).send({ name: 'x' }), 'No peer with id `999`'],
    ['delete an unknown peer', () => api.delete(`/api/networks/${office.id}/peers/999`), 'No peer with id `999`'],
    ['get a peer under another network', () => api.get(`/api/networks/${lab.id}/peers/${peer.id}`), `No peer with id \`${peer.id}\``],
    ['update a peer under another network', () => api.put(`/api/networks/${lab.id}/peers/${peer.id}`).send({ name: 'x' }), `No peer with id \`${peer.id}\``],
    ['delete a peer under another network', () => api.delete(`/api/networks/${lab.id}/peers/${peer.id}`), `No peer with id \`${peer.id}\``],
  ];
  for (const [label, request, message] of cases) {
    const response = await request();
    assert.equal(response.status, 404, label);
    assert.deepEqual(response.body, { error: { code: 'not_found', message } }, label);
  }
  assert.deepEqual(await hostRows(db), before);
});

test('a public key is used once per network: 409 on create and on update, and nothing written', async (t) => {
  const { api, db } = await startPanel(t);
  const office = await network(api);
  await created(api.post(`/api/networks/${office.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }), 'peer');
  const phone = await created(
    api.post(`/api/networks/${office.id}/peers`).send({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }),
    'peer',
  );
  const before = await hostRows(db);

  const duplicate = await api
    .post(`/api/networks/${office.id}/peers`)
    .send({ name: 'tablet', public_key: wgKey(1), allowed_ips: ['10.8.0.4/32'] });
  assert.equal(duplicate.status, 409);
  assert.deepEqual(duplicate.body, {
    error: { code: 'conflict', message: 'Another peer of this network has this public key', field: 'public_key' },
  });

  const takeOver = await api.put(`/api/networks/${office.id}/peers/${phone.id}`).send({ public_key: wgKey(1) });
  assert.equal(takeOver.status, 409);
  assert.equal(takeOver.body.error.field, 'public_key');
  assert.deepEqual(await hostRows(db), before);

  const ownKey = await api.put(`/api/networks/${office.id}/peers/${phone.id}`).send({ public_key: wgKey(2), name: 'phone 2' });
  assert.equal(ownKey.status, 200, 'a peer does not conflict with its own key');
  const lab = await network(api, 'lab', 'wg1');
  const otherNetwork = await api
    .post(`/api/networks/${lab.id}/peers`)
    .send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] });
  assert.equal(otherNetwork.status, 201, 'the same key and addresses on another network are another peer');
});

test('allowed IPs of two peers of a network may not overlap: 409 naming both, and nothing written', async (t) => {
  const { api, db } = await startPanel(t);
  const office = await network(api);
  await created(
    api.post(`/api/networks/${office.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32', 'fd00::2/128'] }),
    'peer',
  );
  const router = await created(
    api.post(`/api/networks/${office.id}/peers`).send({ name: 'router', public_key: wgKey(2), allowed_ips: ['192.168.50.0/24'] }),
    'peer',
  );
  const before = await hostRows(db);

  const cases: [string, string[], string][] = [
    ['the same address', ['10.8.0.2/32'], 'Allowed IP `10.8.0.2/32` overlaps `10.8.0.2/32` of peer `laptop`'],
    ['a subnet holding an address', ['10.8.0.0/24'], 'Allowed IP `10.8.0.0/24` overlaps `10.8.0.2/32` of peer `laptop`'],
    ['an address inside a subnet', ['10.9.0.1/32', '192.168.50.7'], 'Allowed IP `192.168.50.7/32` overlaps `192.168.50.0/24` of peer `router`'],
    ['an IPv6 subnet holding an address', ['fd00::/64'], 'Allowed IP `fd00::/64` overlaps `fd00::2/128` of peer `laptop`'],
    ['everything', ['0.0.0.0/0'], 'Allowed IP `0.0.0.0/0` overlaps `10.8.0.2/32` of peer `laptop`'],
  ];
  for (const [index, [label, allowed_ips, message]] of cases.entries()) {
    const response = await api
      .post(`/api/networks/${office.id}/peers`)
      .send({ name: 'tablet', public_key: wgKey(10 + index), allowed_ips });
    assert.equal(response.status, 409, label);
    assert.deepEqual(response.body, { error: { code: 'conflict', message, field: 'allowed_ips' } }, label);
  }

  const update = await api.put(`/api/networks/${office.id}/peers/${router.id}`).send({ allowed_ips: ['10.8.0.0/16'] });
  assert.equal(update.status, 409);
  assert.equal(update.body.error.field, 'allowed_ips');
  assert.deepEqual(await hostRows(db), before);

  const itself = await api.put(`/api/networks/${office.id}/peers/${router.id}`).send({ allowed_ips: ['192.168.50.0/25'] });
  assert.equal(itself.status, 200, 'a peer does not overlap with its own old addresses');
  const otherFamily = await api
    .post(`/api/networks/${office.id}/peers`)
    .send({ name: 'tablet', public_key: wgKey(20), allowed_ips: ['10.8.0.3/32', 'fd00::3/128'] });
  assert.equal(otherFamily.status, 201, 'neighbouring addresses do not overlap');
});

test('two peers created at the same time with one key: one is created, the other gets 409', async (t) => {
  const { api } = await startPanel(t);
  const office = await network(api);
  for (let i = 0; i < 5; i++) {
    const answers = await Promise.all(
      [`10.1.${i}.2/32`, `10.1.${i}.3/32`].map((ip) =>
        api.post(`/api/networks/${office.id}/peers`).send({ name: 'twin', public_key: wgKey(i + 1), allowed_ips: [ip] }),
      ),
    );
    assert.deepEqual(answers.map((r) => r.status).sort(), [201, 409], `attempt ${i}`);
  }
});

test(
  'two peers created at the same time with overlapping allowed IPs: one is refused',
  async (t) => {
    const { api } = await startPanel(t);
    const office = await network(api);
    for (let i = 0; i < 5; i++) {
      const answers = await Promise.all([
        api.post(`/api/networks/${office.id}/peers`).send({ name: 'subnet', public_key: wgKey(2 * i + 1), allowed_ips: [`10.1.${i}.0/24`] }),
        api.post(`/api/networks/${office.id}/peers`).send({ name: 'host', public_key: wgKey(2 * i + 2), allowed_ips: [`10.1.${i}.5/32`] }),
      ]);
      assert.deepEqual(answers.map((r) => r.status).sort(), [201, 409], `attempt ${i}: both were created`);
    }
  },
);
