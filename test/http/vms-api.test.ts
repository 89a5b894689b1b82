import { test } from 'node:test';
import assert from 'node:assert/strict';
import { created, hostRows, startPanel } from '../support/panel.js';

/** The host's own fields of a VM (plugins may add more through `vm.serialize`). */
function hostFields(vm: Record<string, unknown>) {
  const { name, interface: iface, netns } = vm;
  return { name, interface: iface, netns };
}

test('a VM created through the API is listed, fetched, updated and deleted', async (t) => {
  const { api } = await startPanel(t);

  const create = await api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' });
  assert.equal(create.status, 201);
  const vm = create.body.vm;
  assert.deepEqual(hostFields(vm), { name: 'web-01', interface: 'tap-web01', netns: null });
  assert.equal(typeof vm.id, 'number');

  const list = await api.get('/api/vms');
  assert.equal(list.status, 200);
  assert.deepEqual(list.body, { vms: [vm] });
  const fetched = await api.get(`/api/vms/${vm.id}`);
  assert.equal(fetched.status, 200);
  assert.deepEqual(fetched.body, { vm });

  const update = await api.put(`/api/vms/${vm.id}`).send({ name: 'web-02', interface: 'tap-web02', netns: 'tenant-7' });
  assert.equal(update.status, 200);
  assert.deepEqual(hostFields(update.body.vm), { name: 'web-02', interface: 'tap-web02', netns: 'tenant-7' });
  assert.equal(update.body.vm.id, vm.id);
  assert.equal(update.body.vm.created_at, vm.created_at);
  assert.deepEqual((await api.get(`/api/vms/${vm.id}`)).body, update.body);

  const remove = await api.delete(`/api/vms/${vm.id}`);
  assert.equal(remove.status, 204);
  assert.equal(remove.text, '');
  assert.equal((await api.get(`/api/vms/${vm.id}`)).status, 404);
  assert.deepEqual((await api.get('/api/vms')).body, { vms: [] });
});

test('unknown VM ids answer 404 on GET, PUT and DELETE', async (t) => {
  const { api, db } = await startPanel(t);
  await created(api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  const before = await hostRows(db);

  for (const response of [
    await api.get('/api/vms/999'),
    await api.put('/api/vms/999').send({ name: 'x' }),
    await api.delete('/api/vms/999'),
  ]) {
    assert.equal(response.status, 404);
    assert.deepEqual(response.body, { error: { code: 'not_found', message: 'No VM with id `999`' } });
  }
  assert.deepEqual(await hostRows(db), before);
});

test('a VM cannot take an interface a VM or a network uses in its namespace: 409 and nothing written', async (t) => {
  const { api, db } = await startPanel(t);
  await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  await created(api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  await created(api.post('/api/vms').send({ name: 'tenant web', interface: 'eth1', netns: 'tenant-7' }), 'vm');
  const before = await hostRows(db);

  for (const body of [
    { name: 'web-02', interface: 'tap-web01' },
    { name: 'web-02', interface: 'wg0' },
    { name: 'web-02', interface: 'eth1', netns: 'tenant-7' },
  ]) {
    const response = await api.post('/api/vms').send(body);
    assert.equal(response.status, 409, JSON.stringify(body));
    assert.deepEqual(response.body, {
      error: { code: 'conflict', message: `Interface \`${body.interface}\` is already used by a network or VM`, field: 'interface' },
    });
  }
  assert.deepEqual(await hostRows(db), before);

  const otherNamespace = await api.post('/api/vms').send({ name: 'web-02', interface: 'eth1' });
  assert.equal(otherNamespace.status, 201, 'eth1 in the host namespace is not eth1 in tenant-7');
});

test('moving a VM onto a used interface answers 409 and leaves it as it was', async (t) => {
  const { api, db } = await startPanel(t);
  await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  await created(api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  const db01 = await created(api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01' }), 'vm');
  const before = await hostRows(db);

  for (const iface of ['tap-web01', 'wg0']) {
    const response = await api.put(`/api/vms/${db01.id}`).send({ name: 'renamed', interface: iface });
    assert.equal(response.status, 409, iface);
    assert.equal(response.body.error.field, 'interface');
  }
  assert.deepEqual(await hostRows(db), before);

  const rename = await api.put(`/api/vms/${db01.id}`).send({ name: 'renamed', interface: 'tap-db01' });
  assert.equal(rename.status, 200, 'a VM does not conflict with itself');
  assert.equal(rename.body.vm.name, 'renamed');
});
