import { test } from 'node:test';
import assert from 'node:assert/strict';
import { created, hostRows, rowCounts, startPanel, wgKey } from '../support/panel.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

test('a network created through the API is listed, fetched, renamed and deleted', async (t) => {
  const { api } = await startPanel(t);

  const create = await api.post('/api/networks').send({ name: '  Office VPN  ', interface: 'wg0' });
  assert.equal(create.status, 201);
  const network = create.body.network;
  assert.deepEqual(Object.keys(create.body), ['network']);
  assert.equal(typeof network.id, 'number');
  assert.equal(network.name, 'Office VPN', 'the name is trimmed');
  assert.equal(network.interface, 'wg0');
  assert.equal(network.netns, null, 'no namespace is the host namespace: null');
  assert.match(network.created_at, ISO);
  assert.equal(network.updated_at, network.created_at);

  const list = await api.get('/api/networks');
  assert.equal(list.status, 200);
  assert.deepEqual(list.body, { networks: [network] });

  const fetched = await api.get(`/api/networks/${network.id}`);
  assert.equal(fetched.status, 200);
  assert.deepEqual(fetched.body, { network });

  const update = await api.put(`/api/networks/${network.id}`).send({ name: 'Head office', netns: 'blue' });
  assert.equal(update.status, 200);
  assert.deepEqual(
    { ...update.body.network, updated_at: undefined },
    { ...network, name: 'Head office', netns: 'blue', updated_at: undefined },
  );
  assert.ok(update.body.network.updated_at >= network.updated_at);
  assert.deepEqual((await api.get(`/api/networks/${network.id}`)).body, update.body);

  const remove = await api.delete(`/api/networks/${network.id}`);
  assert.equal(remove.status, 204);
  assert.equal(remove.text, '');
  assert.equal((await api.get(`/api/networks/${network.id}`)).status, 404);
  assert.deepEqual((await api.get('/api/networks')).body, { networks: [] });
});

test('an empty namespace means the host namespace, and a PUT can move a network back to it', async (t) => {
  const { api } = await startPanel(t);
  const network = await created(api.post('/api/networks').send({ name: 'edge', interface: 'wg0', netns: 'blue' }), 'network');
  assert.equal(network.netns, 'blue');

  const moved = await api.put(`/api/networks/${network.id}`).send({ netns: '' });
  assert.equal(moved.status, 200);
  assert.equal(moved.body.network.netns, null);
  assert.equal(moved.body.network.name, 'edge', 'fields not sent are kept');
});

test('unknown network ids answer 404 on GET, PUT and DELETE', async (t) => {
  const { api } = await startPanel(t);
  await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');

  for (const response of [
    await api.get('/api/networks/999'),
    await api.put('/api/networks/999').send({ name: 'x' }),
    await api.delete('/api/networks/999'),
  ]) {
    assert.equal(response.status, 404);
    assert.deepEqual(response.body, { error: { code: 'not_found', message: 'No network with id `999`' } });
  }
});

test('an interface is used once per namespace, by a network or a VM: 409 and nothing written', async (t) => {
  const { api, db } = await startPanel(t);
  await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  await created(api.post('/api/networks').send({ name: 'lab', interface: 'wg0', netns: 'lab' }), 'network');
  await created(api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  const before = await hostRows(db);

  const sameInterface = await api.post('/api/networks').send({ name: 'copy', interface: 'wg0' });
  assert.equal(sameInterface.status, 409);
  assert.deepEqual(sameInterface.body, {
    error: { code: 'conflict', message: 'Interface `wg0` is already used by a network or VM', field: 'interface' },
  });

  const sameInNamespace = await api.post('/api/networks').send({ name: 'copy', interface: 'wg0', netns: 'lab' });
  assert.equal(sameInNamespace.status, 409);
  assert.equal(sameInNamespace.body.error.message, 'Interface `wg0` is already used by a network or VM in namespace `lab`');

  const vmsInterface = await api.post('/api/networks').send({ name: 'copy', interface: 'tap-web01' });
  assert.equal(vmsInterface.status, 409);
  assert.equal(vmsInterface.body.error.field, 'interface');

  assert.deepEqual(await hostRows(db), before);
  const elsewhere = await api.post('/api/networks').send({ name: 'copy', interface: 'tap-web01', netns: 'lab' });
  assert.equal(elsewhere.status, 201, 'the same name in another namespace is another interface');
});

test('moving a network onto a used interface answers 409 and leaves it as it was', async (t) => {
  const { api, db } = await startPanel(t);
  const office = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  await created(api.post('/api/networks').send({ name: 'lab', interface: 'wg1' }), 'network');
  await created(api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  const before = await hostRows(db);

  for (const iface of ['wg1', 'tap-web01']) {
    const response = await api.put(`/api/networks/${office.id}`).send({ name: 'renamed', interface: iface });
    assert.equal(response.status, 409, iface);
    assert.equal(response.body.error.field, 'interface');
  }
  assert.deepEqual(await hostRows(db), before);

  const keepsItsOwn = await api.put(`/api/networks/${office.id}`).send({ name: 'renamed', interface: 'wg0' });
  assert.equal(keepsItsOwn.status, 200, 'a network does not conflict with itself');
  assert.equal(keepsItsOwn.body.network.name, 'renamed');
});

test('deleting a network deletes its peers and only its peers', async (t) => {
  const { api, db } = await startPanel(t);
  const office = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  const lab = await created(api.post('/api/networks').send({ name: 'lab', interface: 'wg1' }), 'network');
  for (const [index, network] of [office, office, lab].entries()) {
    await created(
      api.post(`/api/networks/${network.id}/peers`).send({ name: `peer-${index}`, public_key: wgKey(index + 1), allowed_ips: [`10.0.0.${index + 2}/32`] }),
      'peer',
    );
  }
  assert.deepEqual(await rowCounts(db), { networks: 2, peers: 3, vms: 0 });

  assert.equal((await api.delete(`/api/networks/${office.id}`)).status, 204);

  assert.deepEqual(await rowCounts(db), { networks: 1, peers: 1, vms: 0 });
  assert.equal((await api.get(`/api/networks/${office.id}/peers`)).status, 404);
  const labPeers = await api.get(`/api/networks/${lab.id}/peers`);
  assert.deepEqual(labPeers.body.peers.map((peer: { name: string }) => peer.name), ['peer-2']);
});

test('two networks created at the same time on one interface: one is created, the other gets 409', async (t) => {
  const { api, db } = await startPanel(t);
  for (const iface of ['wg0', 'wg1', 'wg2', 'wg3', 'wg4']) {
    const answers = await Promise.all([
      api.post('/api/networks').send({ name: 'first', interface: iface }),
      api.post('/api/networks').send({ name: 'second', interface: iface }),
    ]);
    assert.deepEqual(answers.map((r) => r.status).sort(), [201, 409], iface);
  }
  assert.equal((await rowCounts(db)).networks, 5);
});

test(
  'a network and a VM created at the same time cannot share an interface',
  async (t) => {
    const { api } = await startPanel(t);
    for (const iface of ['tap0', 'tap1', 'tap2', 'tap3', 'tap4']) {
      const answers = await Promise.all([
        api.post('/api/networks').send({ name: 'network', interface: iface }),
        api.post('/api/vms').send({ name: 'vm', interface: iface }),
      ]);
      assert.deepEqual(answers.map((r) => r.status).sort(), [201, 409], `${iface}: both were created`);
    }
  },
);
