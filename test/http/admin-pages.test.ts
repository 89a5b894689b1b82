import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { created, hostRows, rowCounts, seedHost, startPanel, wgKey } from '../support/panel.js';

/** The `value` of the form input named `name` (first match). */
function inputValue(html: string, name: string): string | undefined {
  return new RegExp(`<input name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/** The text of the form error shown above a form, and the field it names. */
function formError(html: string): { field: string; message: string } | undefined {
  const match = /<p class="error" role="alert" data-field="([^"]*)">([^<]*)<\/p>/.exec(html);
  return match ? { field: match[1]!, message: match[2]! } : undefined;
}

describe('pages list what the API created', () => {
  test('the networks page lists each network with its interface, namespace and peer count', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const lab = await created(host.api.post('/api/networks').send({ name: 'lab', interface: 'wg1', netns: 'lab-ns' }), 'network');
    const admin = await host.login();

    const page = await admin.agent.get('/admin/networks');

    assert.equal(page.status, 200);
    assert.match(page.text, /<title>Networks · Panel<\/title>/);
    const rows = [...page.text.matchAll(/<tr>\s*<td><a href="([^"]+)">([^<]+)<\/a><\/td>\s*<td><code>([^<]+)<\/code><\/td>\s*<td>([^<]+)<\/td>\s*<td class="num">(\d+)<\/td>/g)]
      .map((m) => m.slice(1));
    assert.deepEqual(rows, [
      [`/admin/networks/${networkId}`, 'office', 'wg0', '—', '1'],
      [`/admin/networks/${lab.id}`, 'lab', 'wg1', 'lab-ns', '0'],
    ]);
  });

  test('a network page lists its peers, and a peer page shows the peer in its form', async (t) => {
    const host = await startPanel(t);
    const { networkId, peerId } = await seedHost(host.api);
    await created(
      host.api.post(`/api/networks/${networkId}/peers`).send({ name: 'router', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32', '192.168.50.0/24'] }),
      'peer',
    );
    const admin = await host.login();

    const network = await admin.agent.get(`/admin/networks/${networkId}`);
    assert.equal(network.status, 200);
    assert.match(network.text, /<h1>office <small><code>wg0<\/code><\/small><\/h1>/);
    assert.match(network.text, new RegExp(`<a href="/admin/networks/${networkId}/peers/${peerId}">laptop</a>`));
    assert.ok(network.text.includes(`<code class="key">${wgKey(1)}</code>`));
    assert.match(network.text, /<td>10\.8\.0\.3\/32, 192\.168\.50\.0\/24<\/td>/);

    const peer = await admin.agent.get(`/admin/networks/${networkId}/peers/${peerId}`);
    assert.equal(peer.status, 200);
    assert.match(peer.text, /<h1>Peer laptop<\/h1>/);
    assert.equal(inputValue(peer.text, 'name'), 'laptop');
    assert.equal(inputValue(peer.text, 'public_key'), wgKey(1));
    assert.equal(inputValue(peer.text, 'allowed_ips'), '10.8.0.2/32');
  });

  test('the VMs page lists each VM, and a VM page shows it in its form', async (t) => {
    const host = await startPanel(t);
    const { vmId } = await seedHost(host.api);
    await created(host.api.post('/api/vms').send({ name: 'db-01', interface: 'eth1', netns: 'tenant-7' }), 'vm');
    const admin = await host.login();

    const list = await admin.agent.get('/admin/vms');
    assert.equal(list.status, 200);
    const rows = [...list.text.matchAll(/<tr>\s*<td><a href="[^"]+">([^<]+)<\/a><\/td>\s*<td><code>([^<]+)<\/code><\/td>\s*<td>([^<]+)<\/td>/g)].map((m) => m.slice(1));
    assert.deepEqual(rows, [['web-01', 'tap-web01', '—'], ['db-01', 'eth1', 'tenant-7']]);

    const page = await admin.agent.get(`/admin/vms/${vmId}`);
    assert.equal(page.status, 200);
    assert.match(page.text, /<h1>VM web-01<\/h1>/);
    assert.equal(inputValue(page.text, 'name'), 'web-01');
    assert.equal(inputValue(page.text, 'interface'), 'tap-web01');
    assert.equal(inputValue(page.text, 'netns'), '');
  });

  test('unknown ids answer a 404 page', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const admin = await host.login();
    for (const path of ['/admin/networks/999', '/admin/networks/abc', `/admin/networks/${networkId}/peers/999`, '/admin/vms/999', '/admin/vms/1.5', '/admin/nothing-here']) {
      const response = await admin.agent.get(path);
      assert.equal(response.status, 404, path);
      assert.match(response.text, /<h1>404 · Not found<\/h1>/, path);
    }
  });
});

describe('forms write through the same rules as the API', () => {
  test('adding a network through the form redirects to its page with a flash message', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();

    const response = await admin.form('/admin/networks', { name: 'office', interface: 'wg0', netns: '' });

    assert.equal(response.status, 303);
    const row = await host.db('networks').first();
    assert.equal(response.headers.location, `/admin/networks/${row.id}`);
    assert.deepEqual({ name: row.name, interface: row.interface, netns: row.netns }, { name: 'office', interface: 'wg0', netns: '' });
    const page = await admin.agent.get(response.headers.location!);
    assert.match(page.text, /<p class="flash" role="status">Network office created<\/p>/);
    const again = await admin.agent.get(response.headers.location!);
    assert.ok(!again.text.includes('class="flash"'), 'a flash message is shown once');
  });

  test('peers added through the form take allowed IPs separated by commas, spaces or new lines', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const admin = await host.login();

    const response = await admin.form(`/admin/networks/${networkId}/peers`, {
      name: 'router', public_key: wgKey(2), allowed_ips: '10.8.0.3/32, 192.168.50.0/24\r\nfd00::3 ,10.8.0.3',
    });

    assert.equal(response.status, 303);
    assert.equal(response.headers.location, `/admin/networks/${networkId}`);
    const peers = (await host.api.get(`/api/networks/${networkId}/peers`)).body.peers;
    assert.deepEqual(peers[1].allowed_ips, ['10.8.0.3/32', '192.168.50.0/24', 'fd00::3/128']);
  });

  test('a bad network form comes back with 400, the typed values and the message, and writes nothing', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();

    const response = await admin.form('/admin/networks', { name: 'Branch office', interface: 'wg 0', netns: 'branch' });

    assert.equal(response.status, 400);
    assert.deepEqual(formError(response.text), {
      field: 'interface',
      message: '`interface` must be a kernel interface name: 1 to 15 characters of A-Z a-z 0-9 _ . -',
    });
    assert.equal(inputValue(response.text, 'name'), 'Branch office');
    assert.equal(inputValue(response.text, 'interface'), 'wg 0');
    assert.equal(inputValue(response.text, 'netns'), 'branch');
    assert.deepEqual(await rowCounts(host.db), { networks: 0, peers: 0, vms: 0 });
  });

  test('a network form for a used interface comes back with 409 and the conflict', async (t) => {
    const host = await startPanel(t);
    await seedHost(host.api);
    const admin = await host.login();
    const before = await hostRows(host.db);

    const response = await admin.form('/admin/networks', { name: 'copy', interface: 'tap-web01', netns: '' });

    assert.equal(response.status, 409);
    assert.deepEqual(formError(response.text), { field: 'interface', message: 'Interface `tap-web01` is already used by a network or VM' });
    assert.equal(inputValue(response.text, 'name'), 'copy');
    assert.deepEqual(await hostRows(host.db), before);
  });

  test('a bad peer form comes back on the network page with the typed values and the message', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const admin = await host.login();
    const before = await hostRows(host.db);

    const typed = { name: 'router', public_key: wgKey(2), allowed_ips: '10.8.0.3/32, 10.0.0.1/24' };
    const bad = await admin.form(`/admin/networks/${networkId}/peers`, typed);
    assert.equal(bad.status, 400);
    assert.deepEqual(formError(bad.text), {
      field: 'allowed_ips.1',
      message: '`allowed_ips[1]` `10.0.0.1/24` has host bits set: did you mean `10.0.0.0/24`?',
    });
    assert.equal(inputValue(bad.text, 'public_key'), typed.public_key);
    assert.equal(inputValue(bad.text, 'allowed_ips'), typed.allowed_ips);
    assert.match(bad.text, /<a href="[^"]+">laptop<\/a>/, 'the page still lists the peers');

    const overlapping = await admin.form(`/admin/networks/${networkId}/peers`, { ...typed, allowed_ips: '10.8.0.0/24' });
    assert.equal(overlapping.status, 409);
    assert.deepEqual(formError(overlapping.text), {
      field: 'allowed_ips',
      message: 'Allowed IP `10.8.0.0/24` overlaps `10.8.0.2/32` of peer `laptop`',
    });
    assert.equal(inputValue(overlapping.text, 'allowed_ips'), '10.8.0.0/24');
    assert.deepEqual(await hostRows(host.db), before);
  });

  test('a bad edit of a peer comes back on the peer page with the typed values', async (t) => {
    const host = await startPanel(t);
    const { networkId, peerId } = await seedHost(host.api);
    const admin = await host.login();
    const before = await hostRows(host.db);

    const response = await admin.form(`/admin/networks/${networkId}/peers/${peerId}`, {
      name: 'new name', public_key: 'not-a-key', allowed_ips: '10.8.0.2/32',
    });

    assert.equal(response.status, 400);
    assert.match(response.text, /<h1>Peer laptop<\/h1>/, 'the heading shows the stored name');
    assert.equal(formError(response.text)?.field, 'public_key');
    assert.equal(inputValue(response.text, 'name'), 'new name');
    assert.equal(inputValue(response.text, 'public_key'), 'not-a-key');
    assert.deepEqual(await hostRows(host.db), before);
  });

  test('a VM form for a used interface comes back with 409 and the typed values', async (t) => {
    const host = await startPanel(t);
    await seedHost(host.api);
    const admin = await host.login();
    const before = await hostRows(host.db);

    const response = await admin.form('/admin/vms', { name: 'web-02', interface: 'wg0', netns: '' });

    assert.equal(response.status, 409);
    assert.deepEqual(formError(response.text), { field: 'interface', message: 'Interface `wg0` is already used by a network or VM' });
    assert.equal(inputValue(response.text, 'name'), 'web-02');
    assert.equal(inputValue(response.text, 'interface'), 'wg0');
    assert.deepEqual(await hostRows(host.db), before);
  });

  test('deleting a network through its form removes it and its peers', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const admin = await host.login();

    const response = await admin.form(`/admin/networks/${networkId}/delete`);

    assert.equal(response.status, 303);
    assert.equal(response.headers.location, '/admin/networks');
    assert.deepEqual(await rowCounts(host.db), { networks: 0, peers: 0, vms: 1 });
    const page = await admin.agent.get('/admin/networks');
    assert.match(page.text, /Network office and its peers deleted/);
    assert.match(page.text, /No networks yet/);
  });
});

describe('names are shown escaped', () => {
  const SCRIPT = '<script>alert(1)</script>';
  const ESCAPED = '&lt;script&gt;alert(1)&lt;/script&gt;';

  test('a peer named <script> is escaped on the network page, the peer page and in the flash message', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await seedHost(host.api);
    const admin = await host.login();

    const added = await admin.form(`/admin/networks/${networkId}/peers`, { name: SCRIPT, public_key: wgKey(2), allowed_ips: '10.8.0.3/32' });
    assert.equal(added.status, 303);
    const peerId = (await host.db('peers').where({ name: SCRIPT }).first()).id;

    const pages = {
      'network page with the flash': await admin.agent.get(`/admin/networks/${networkId}`),
      'network page': await admin.agent.get(`/admin/networks/${networkId}`),
      'peer page': await admin.agent.get(`/admin/networks/${networkId}/peers/${peerId}`),
      'peer page after a bad edit': await admin.form(`/admin/networks/${networkId}/peers/${peerId}`, { name: SCRIPT, public_key: 'x', allowed_ips: '' }),
    };
    for (const [label, response] of Object.entries(pages)) {
      assert.ok(!response.text.includes(SCRIPT), `${label}: the raw name is never in the page`);
      assert.ok(response.text.includes(ESCAPED), `${label}: the escaped name is`);
    }
    assert.ok(pages['network page with the flash'].text.includes(`<p class="flash" role="status">Peer ${ESCAPED} added</p>`));
    assert.ok(pages['peer page'].text.includes(`<title>Peer ${ESCAPED} · Panel</title>`));
    assert.equal(inputValue(pages['peer page'].text, 'name'), ESCAPED);
  });

  test('a network and a VM named <script> are escaped on their lists and pages', async (t) => {
    const host = await startPanel(t);
    const network = await created(host.api.post('/api/networks').send({ name: SCRIPT, interface: 'wg0' }), 'network');
    const peer = await created(
      host.api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }),
      'peer',
    );
    const vm = await created(host.api.post('/api/vms').send({ name: SCRIPT, interface: 'tap-web01' }), 'vm');
    const admin = await host.login();

    for (const path of ['/admin/networks', `/admin/networks/${network.id}`, `/admin/networks/${network.id}/peers/${peer.id}`, '/admin/vms', `/admin/vms/${vm.id}`]) {
      const response = await admin.agent.get(path);
      assert.equal(response.status, 200, path);
      assert.ok(!response.text.includes(SCRIPT), `${path}: the raw name is never in the page`);
      assert.ok(response.text.includes(ESCAPED), `${path}: the escaped name is`);
    }
  });
});
