import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import {
  bandwidthRows, created, hostRows, seedHost, startPanel, watchExecutor, wgKey,
  type AdminSession, type SeededHost, type TestPanel,
} from '../support/panel.js';

const UP = 'bandwidth_up_kbps';
const DOWN = 'bandwidth_down_kbps';
/** Why a cap is pending in these tests; EJS leaves its backticks and parentheses as they are. */
const DRY_RUN = 'dry run: the `executor` option is `recording` (dry run)';

/** The plugin's fieldset in a host form (the first one on the page). */
function bandwidthFieldset(html: string): string {
  const fieldset = /<fieldset class="bandwidth-fields">[\s\S]*?<\/fieldset>/.exec(html)?.[0];
  assert.ok(fieldset, 'the page has the bandwidth fieldset');
  return fieldset;
}

/** The `value` of the first input named `name`. */
function inputValue(html: string, name: string): string | undefined {
  return new RegExp(`<input name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/** The checkbox named `name`, and whether it is ticked. */
function checkbox(html: string, name: string): { label: string; checked: boolean } | undefined {
  const match = new RegExp(`<label class="check"><input type="checkbox" name="${name}"([^>]*)>([^<]*)</label>`).exec(html);
  return match ? { label: match[2]!.trim(), checked: /\bchecked\b/.test(match[1]!) } : undefined;
}

/** The form error above a host form: the field it names and its text. */
function formError(html: string): { field: string; message: string } | undefined {
  const match = /<p class="error" role="alert" data-field="([^"]*)">([^<]*)<\/p>/.exec(html);
  return match ? { field: match[1]!, message: match[2]! } : undefined;
}

const cellText = (cell: string) => cell.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();

/** The cells under `header` in a host table, by the text of each row's first cell. */
function column(html: string, header: string): Map<string, string> {
  const table = [...html.matchAll(/<table>([\s\S]*?)<\/table>/g)].find((m) => m[1]!.includes(`<th>${header}</th>`))?.[1];
  assert.ok(table, `a table with a ${header} column`);
  const headers = [.../<thead>[\s\S]*?<\/thead>/.exec(table)![0].matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1]);
  const index = headers.indexOf(header);
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(table)![1]!;
  return new Map(
    [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => {
      const cells = [...row[1]!.matchAll(/<td>([\s\S]*?)<\/td>/g)].map((m) => m[1]!);
      return [cellText(cells[0]!), cells[index]!.trim()];
    }),
  );
}

/** The row of one subject in the /admin/bandwidth table. */
function overviewRow(html: string, key: string): string | undefined {
  return new RegExp(`<tr data-subject="${key}"[^>]*>([\\s\\S]*?)</tr>`).exec(html)?.[1];
}

/** The audit log on /admin/bandwidth, each row as its cells' text. */
function auditLog(html: string): string[][] {
  const table = /<table class="events">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? '';
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(table)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => [...row[1]!.matchAll(/<td>([\s\S]*?)<\/td>/g)].map((cell) => cellText(cell[1]!)));
}

async function limitOf(db: Knex, type: 'peer' | 'vm', id: number): Promise<[number, number] | undefined> {
  const row = await db('bw_limits').where({ subject_type: type, subject_id: String(id) }).first();
  return row ? [row.up_kbps, row.down_kbps] : undefined;
}

/** A seeded host with an admin logged in. */
async function adminHost(t: Parameters<typeof startPanel>[0]): Promise<{ host: TestPanel; ids: SeededHost; admin: AdminSession }> {
  const host = await startPanel(t);
  const ids = await seedHost(host.api);
  return { host, ids, admin: await host.login() };
}

const laptopForm = (fields: Record<string, string>) => ({ name: 'laptop', public_key: wgKey(1), allowed_ips: '10.8.0.2/32', ...fields });
const webForm = (fields: Record<string, string>) => ({ name: 'web-01', interface: 'tap-web01', netns: '', ...fields });

describe('the peer and VM forms carry the bandwidth fields', () => {
  test('a peer\'s form shows its stored caps, two unticked "unlimited" boxes and the pending status', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await host.api.put(`/api/bandwidth/limits/peer/${ids.peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);

    const page = await admin.agent.get(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`);

    assert.equal(page.status, 200);
    const fields = bandwidthFieldset(page.text);
    assert.match(fields, /<legend>Bandwidth <span class="muted">\(kbps, from the peer&#39;s side; 0 = unlimited\)<\/span><\/legend>/);
    assert.equal(inputValue(fields, UP), '10000');
    assert.equal(inputValue(fields, DOWN), '50000');
    assert.deepEqual(checkbox(fields, 'bandwidth_up_unlimited'), { label: 'Make upload unlimited', checked: false });
    assert.deepEqual(checkbox(fields, 'bandwidth_down_unlimited'), { label: 'Make download unlimited', checked: false });
    assert.ok(fields.includes(`<span class="badge pending" title="${DRY_RUN}">pending</span>`), fields);

    const network = await admin.agent.get(`/admin/networks/${ids.networkId}`);
    const addPeer = bandwidthFieldset(network.text.slice(network.text.indexOf('<h2>Add a peer</h2>')));
    assert.deepEqual([inputValue(addPeer, UP), inputValue(addPeer, DOWN)], ['0', '0'], 'a new peer starts unlimited');
    assert.equal(checkbox(addPeer, 'bandwidth_up_unlimited')?.checked, false);
    assert.ok(!addPeer.includes('Kernel status'), 'a new peer has no status yet');
  });

  test('a VM\'s form shows its caps, speaking of the VM\'s side', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await host.api.put(`/api/vms/${ids.vmId}`).send({ [UP]: 0, [DOWN]: 8_000 }).expect(200);

    const page = await admin.agent.get(`/admin/vms/${ids.vmId}`);

    const fields = bandwidthFieldset(page.text);
    assert.match(fields, /from the VM&#39;s side; 0 = unlimited/);
    assert.deepEqual([inputValue(fields, UP), inputValue(fields, DOWN)], ['0', '8000']);
    assert.deepEqual(
      [checkbox(fields, 'bandwidth_up_unlimited'), checkbox(fields, 'bandwidth_down_unlimited')],
      [{ label: 'Make upload unlimited', checked: false }, { label: 'Make download unlimited', checked: false }],
    );
    const list = await admin.agent.get('/admin/vms');
    const addVm = bandwidthFieldset(list.text);
    assert.deepEqual([inputValue(addVm, UP), inputValue(addVm, DOWN)], ['0', '0']);
  });

  test('the "Add a VM" form speaks of the VM\'s side', async (t) => {
    const { admin } = await adminHost(t);
    const list = await admin.agent.get('/admin/vms');
    assert.match(bandwidthFieldset(list.text), /from the VM&#39;s side/);
  });
});

describe('submitting the forms stores the caps', () => {
  test('saving a peer\'s form stores its caps and the audit log names the admin', async (t) => {
    const { host, ids, admin } = await adminHost(t);

    const saved = await admin.form(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`, laptopForm({ [UP]: '10000', [DOWN]: '50000' }));

    assert.equal(saved.status, 303, saved.text);
    assert.deepEqual(await limitOf(host.db, 'peer', ids.peerId), [10_000, 50_000]);
    const [event] = (await host.api.get('/api/bandwidth/events')).body.events;
    assert.deepEqual([event.actor, event.action, event.old, event.new], ['admin', 'limit.set', { up_kbps: 0, down_kbps: 0 }, { up_kbps: 10_000, down_kbps: 50_000 }]);
    const page = await admin.agent.get(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`);
    assert.deepEqual([inputValue(page.text, UP), inputValue(page.text, DOWN)], ['10000', '50000'], 'the form shows what was saved');
  });

  test('adding a peer or a VM through its form stores the caps typed in', async (t) => {
    const { host, ids, admin } = await adminHost(t);

    const peer = await admin.form(`/admin/networks/${ids.networkId}/peers`, { name: 'phone', public_key: wgKey(2), allowed_ips: '10.8.0.3/32', [UP]: '500', [DOWN]: '1500' });
    const vm = await admin.form('/admin/vms', { name: 'db-01', interface: 'tap-db01', netns: '', [UP]: '0', [DOWN]: '20000' });

    assert.equal(peer.status, 303, peer.text);
    assert.equal(vm.status, 303, vm.text);
    const phone = await host.db('peers').where({ name: 'phone' }).first();
    const db01 = await host.db('vms').where({ name: 'db-01' }).first();
    assert.deepEqual(await limitOf(host.db, 'peer', phone.id), [500, 1_500]);
    assert.deepEqual(await limitOf(host.db, 'vm', db01.id), [0, 20_000]);
  });

  test('a typed cap with its box unticked is kept; ticking a box makes that direction unlimited', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    const peerPath = `/admin/networks/${ids.networkId}/peers/${ids.peerId}`;
    const vmPath = `/admin/vms/${ids.vmId}`;

    await admin.form(peerPath, laptopForm({ [UP]: '10000', [DOWN]: '50000', bandwidth_down_unlimited: '1' })).expect(303);
    assert.deepEqual(await limitOf(host.db, 'peer', ids.peerId), [10_000, 0], 'the ticked box wins over the number beside it');

    await admin.form(peerPath, laptopForm({ [UP]: '12000', [DOWN]: '3000' })).expect(303);
    assert.deepEqual(await limitOf(host.db, 'peer', ids.peerId), [12_000, 3_000]);

    await admin.form(peerPath, laptopForm({ [UP]: '12000', [DOWN]: '3000', bandwidth_up_unlimited: '1', bandwidth_down_unlimited: '1' })).expect(303);
    assert.deepEqual(await limitOf(host.db, 'peer', ids.peerId), [0, 0]);

    await admin.form(vmPath, webForm({ [UP]: '4000', [DOWN]: '9000', bandwidth_up_unlimited: '1' })).expect(303);
    assert.deepEqual(await limitOf(host.db, 'vm', ids.vmId), [0, 9_000]);
    await admin.form(vmPath, webForm({ [UP]: '4000', [DOWN]: '9000' })).expect(303);
    assert.deepEqual(await limitOf(host.db, 'vm', ids.vmId), [4_000, 9_000]);
  });

  /** A form with one malformed cap (`field`); `typed` is what the re-rendered form must still hold. */
  const BAD_FORMS: { title: string; path(ids: SeededHost): string; fields: Record<string, string>; field: string; typed: Record<string, string> }[] = [
    {
      title: 'editing a peer',
      path: (ids) => `/admin/networks/${ids.networkId}/peers/${ids.peerId}`,
      fields: laptopForm({ name: 'renamed', [UP]: '10 mbit', [DOWN]: '50000' }),
      field: UP,
      typed: { name: 'renamed', [UP]: '10 mbit', [DOWN]: '50000' },
    },
    {
      title: 'adding a peer',
      path: (ids) => `/admin/networks/${ids.networkId}/peers`,
      fields: { name: 'phone', public_key: wgKey(2), allowed_ips: '10.8.0.3/32', [UP]: '5000', [DOWN]: '-1' },
      field: DOWN,
      typed: { name: 'phone', public_key: wgKey(2), [UP]: '5000', [DOWN]: '-1' },
    },
    {
      title: 'editing a VM',
      path: (ids) => `/admin/vms/${ids.vmId}`,
      fields: webForm({ name: 'web-02', [UP]: '1.5', [DOWN]: '' }),
      field: UP,
      typed: { name: 'web-02', [UP]: '1.5', [DOWN]: '' },
    },
    {
      title: 'adding a VM',
      path: () => '/admin/vms',
      fields: { name: 'db-01', interface: 'tap-db01', netns: '', [UP]: '100', [DOWN]: '$(reboot)' },
      field: DOWN,
      typed: { name: 'db-01', interface: 'tap-db01', [UP]: '100', [DOWN]: '$(reboot)' },
    },
  ];

  for (const form of BAD_FORMS) {
    test(`a bad cap when ${form.title} re-renders the form with the message and what was typed, and writes nothing`, async (t) => {
      const { host, ids, admin } = await adminHost(t);
      await host.api.put(`/api/bandwidth/limits/peer/${ids.peerId}`).send({ [UP]: 7_000 }).expect(200);
      const kernel = watchExecutor(t);
      const before = { host: await hostRows(host.db), plugin: await bandwidthRows(host.db) };

      const response = await admin.form(form.path(ids), form.fields);

      assert.equal(response.status, 400, response.text.slice(0, 300));
      const error = formError(response.text);
      assert.equal(error?.field, form.field);
      assert.match(error?.message ?? '', new RegExp(`^\`${form.field}\` must be a whole number of kbps from 0 \\(unlimited\\) to 100000000, got `));
      for (const [name, value] of Object.entries(form.typed)) {
        assert.equal(inputValue(response.text, name), value, `the form keeps ${name}`);
      }
      assert.deepEqual({ host: await hostRows(host.db), plugin: await bandwidthRows(host.db) }, before);
      assert.equal(kernel.calls(), 0);
    });
  }

  test('a form refused for one cap keeps the ticked "unlimited" box of the other', async (t) => {
    const { ids, admin } = await adminHost(t);
    const response = await admin.form(`/admin/vms/${ids.vmId}`, webForm({ [UP]: '4000', bandwidth_up_unlimited: '1', [DOWN]: 'lots' }));
    assert.equal(response.status, 400);
    assert.equal(checkbox(bandwidthFieldset(response.text), 'bandwidth_up_unlimited')?.checked, true);
  });
});

describe('the peer and VM tables show a Limit column', () => {
  test('capped subjects read "10 / 50 Mbps" with a pending badge titled with the reason; the others "Unlimited"', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await created(host.api.post(`/api/networks/${ids.networkId}/peers`).send({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }), 'peer');
    await host.api.put(`/api/bandwidth/limits/peer/${ids.peerId}`).send({ [UP]: 10_000, [DOWN]: 50_000 }).expect(200);
    await created(host.api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01', [UP]: 512, [DOWN]: 2_000 }), 'vm');

    const peers = column((await admin.agent.get(`/admin/networks/${ids.networkId}`)).text, 'Limit');
    const vms = column((await admin.agent.get('/admin/vms')).text, 'Limit');

    const pending = (caps: string) => `<span title="${DRY_RUN}">${caps}</span> <span class="badge pending" title="${DRY_RUN}">pending</span>`;
    assert.deepEqual(Object.fromEntries(peers), { laptop: pending('10 / 50 Mbps'), phone: 'Unlimited' });
    assert.deepEqual(Object.fromEntries(vms), { 'web-01': 'Unlimited', 'db-01': pending('512 kbps / 2 Mbps') });
  });
});

describe('/admin/bandwidth', () => {
  test('explains that this is a dry run, and why', async (t) => {
    const { admin } = await adminHost(t);
    const page = await admin.agent.get('/admin/bandwidth');
    assert.equal(page.status, 200);
    assert.match(
      page.text,
      /<p class="error" role="alert" data-executor="recording"><strong>Dry run:<\/strong> caps are stored and planned but not applied to the kernel[^<]*, because the `executor` option is `recording` \(dry run\)\.<\/p>/,
    );
  });

  test('the inline form sets and clears a cap, and the audit log lists both changes by the admin', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    const kernel = watchExecutor(t);
    const first = await admin.agent.get('/admin/bandwidth');
    const row = overviewRow(first.text, `peer:${ids.peerId}`);
    assert.ok(row?.includes(`action="/admin/bandwidth/limits/peer/${ids.peerId}"`), 'the row has its form');

    const set = await admin.form(`/admin/bandwidth/limits/peer/${ids.peerId}`, { [UP]: '10000', [DOWN]: '50000', action: 'set', return_to: '/admin/bandwidth' });
    assert.equal(set.status, 303, set.text.slice(0, 300));
    assert.equal(set.headers.location, '/admin/bandwidth');
    assert.deepEqual(await limitOf(host.db, 'peer', ids.peerId), [10_000, 50_000]);
    assert.ok(kernel.batches() > 0, 'the plan went to the (recording) executor');
    const after = await admin.agent.get('/admin/bandwidth');
    assert.ok(after.text.includes(`<p class="flash" role="status">laptop: 10 / 50 Mbps (pending: ${DRY_RUN})</p>`), 'the flash says what happened');
    assert.match(overviewRow(after.text, `peer:${ids.peerId}`) ?? '', /<span class="badge pending" title="dry run: [^"]+">pending<\/span>/);

    const clear = await admin.form(`/admin/bandwidth/limits/peer/${ids.peerId}`, { [UP]: '10000', [DOWN]: '50000', action: 'clear' });
    assert.equal(clear.status, 303);
    assert.deepEqual(await limitOf(host.db, 'peer', ids.peerId), [0, 0]);

    const log = auditLog((await admin.agent.get('/admin/bandwidth')).text).map((cells) => cells.slice(1, 5));
    assert.deepEqual(log, [
      ['admin', 'limit.cleared', `peer ${ids.peerId}`, '10 / 50 Mbps → Unlimited'],
      ['admin', 'limit.set', `peer ${ids.peerId}`, 'Unlimited → 10 / 50 Mbps'],
    ]);
  });

  test('the inline form without the session\'s CSRF token answers 403 and writes nothing', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    const before = await bandwidthRows(host.db);
    const fields = { [UP]: '10000', [DOWN]: '50000', action: 'set' };

    const missing = await admin.agent.post(`/admin/bandwidth/limits/peer/${ids.peerId}`).type('form').send(fields);
    const wrong = await admin.agent.post(`/admin/bandwidth/limits/vm/${ids.vmId}`).type('form').send({ ...fields, _csrf: 'x'.repeat(32) });

    assert.equal(missing.status, 403);
    assert.equal(wrong.status, 403);
    assert.deepEqual(await bandwidthRows(host.db), before);
  });

  test('a bad inline value answers 400 with the message on that subject\'s row, and writes nothing', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await host.api.put(`/api/bandwidth/limits/vm/${ids.vmId}`).send({ [DOWN]: 8_000 }).expect(200);
    const kernel = watchExecutor(t);
    const before = await bandwidthRows(host.db);

    const response = await admin.form(`/admin/bandwidth/limits/vm/${ids.vmId}`, { [UP]: '1,000', [DOWN]: '8000', action: 'set', return_to: '/admin/bandwidth' });

    assert.equal(response.status, 400);
    const message = '`bandwidth_up_kbps` must be a whole number of kbps from 0 (unlimited) to 100000000, got `1,000`';
    assert.ok(overviewRow(response.text, `vm:${ids.vmId}`)?.includes(`<p class="error" role="alert">${message}</p>`), 'the message is on the VM\'s row');
    assert.ok(!overviewRow(response.text, `peer:${ids.peerId}`)?.includes('role="alert"'), 'and on no other row');
    assert.deepEqual(await bandwidthRows(host.db), before);
    assert.equal(kernel.calls(), 0);
  });

  test('a bad inline value for a subject on page 2 shows the message on its row', async (t) => {
    const host = await startPanel(t, { pluginOptions: { bandwidth: { executor: 'recording', page_size: 10 } } });
    for (let i = 0; i < 10; i++) await host.api.post('/api/vms').send({ name: `vm-${i}`, interface: `tap-${i}` }).expect(201);
    const last = await created(host.api.post('/api/vms').send({ name: 'zz-last', interface: 'tap-last' }), 'vm');
    const admin = await host.login();
    const page2 = await admin.agent.get('/admin/bandwidth?page=2');
    assert.ok(overviewRow(page2.text, `vm:${last.id}`), 'arranged: the VM is on page 2');

    const response = await admin.form(`/admin/bandwidth/limits/vm/${last.id}`, { [UP]: 'x', [DOWN]: '0', action: 'set', return_to: '/admin/bandwidth?page=2' });

    assert.equal(response.status, 400);
    assert.match(overviewRow(response.text, `vm:${last.id}`) ?? '', /<p class="error" role="alert">`bandwidth_up_kbps` must be/);
  });
});
