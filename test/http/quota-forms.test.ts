import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import {
  bandwidthRows, created, hostRows, seedHost, startPanel, wgKey,
  type AdminSession, type SeededHost, type TestPanel,
} from '../support/panel.js';

/** A seeded host with an admin logged in. */
async function adminHost(t: Parameters<typeof startPanel>[0]): Promise<{ host: TestPanel; ids: SeededHost; admin: AdminSession }> {
  const host = await startPanel(t);
  const ids = await seedHost(host.api);
  return { host, ids, admin: await host.login() };
}

/** Every row the host and the plugin keep, to prove that a refused request wrote nothing. */
async function everyRow(db: Knex) {
  return {
    host: await hostRows(db),
    plugin: await bandwidthRows(db),
    bw_quotas: await db('bw_quotas').orderBy('id'),
    bw_quota_cycles: await db('bw_quota_cycles').orderBy('id'),
  };
}

/** A subject's quota as the plugin's quota API answers it. */
async function quotaOf(host: TestPanel, type: 'peer' | 'vm', id: number): Promise<Record<string, unknown>> {
  const response = await host.api.get(`/api/bandwidth/quotas/${type}/${id}`);
  assert.equal(response.status, 200, response.text);
  return response.body as Record<string, unknown>;
}

/** The plugin's quota fieldset in a host form (the first one on the page). */
function quotaFieldset(html: string): string {
  const fieldset = /<fieldset class="bandwidth-fields quota-fields">[\s\S]*?<\/fieldset>/.exec(html)?.[0];
  assert.ok(fieldset, 'the page has the quota fieldset');
  return fieldset;
}

/** The `value` of the first input named `name`. */
function inputValue(html: string, name: string): string | undefined {
  return new RegExp(`<input name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/** The selected option of the select named `name`. */
function selected(html: string, name: string): string | undefined {
  const select = new RegExp(`<select name="${name}">([\\s\\S]*?)</select>`).exec(html)?.[1];
  return select ? /<option value="([^"]*)" selected>/.exec(select)?.[1] : undefined;
}

/** Every quota field of a form as a browser would send it back unchanged. */
function quotaFormFields(html: string): Record<string, string> {
  const fieldset = quotaFieldset(html);
  const sent: Record<string, string> = {};
  for (const name of ['quota_allowance_gb', 'quota_cycle_day', 'quota_time_zone', 'quota_warn_percents', 'quota_throttle_up_kbps', 'quota_throttle_down_kbps']) {
    sent[name] = inputValue(fieldset, name) ?? assert.fail(`no input ${name}`);
  }
  for (const name of ['quota_counted', 'quota_action']) sent[name] = selected(fieldset, name) ?? assert.fail(`no selected ${name}`);
  return sent;
}

/** The form error above a host form: the field it names and its text. */
function formError(html: string): { field: string; message: string } | undefined {
  const match = /<p class="error" role="alert" data-field="([^"]*)">([^<]*)<\/p>/.exec(html);
  return match ? { field: match[1]!, message: match[2]! } : undefined;
}

const GB = 1_000_000_000;
/** What an empty quota form sends (a browser sends every field, the selects with their first option). */
const EMPTY_QUOTA_FORM = {
  quota_allowance_gb: '', quota_counted: 'total', quota_cycle_day: '', quota_time_zone: '', quota_warn_percents: '', quota_action: 'throttle',
  quota_throttle_up_kbps: '', quota_throttle_down_kbps: '',
};
const laptopForm = (fields: Record<string, string>) => ({ name: 'laptop', public_key: wgKey(1), allowed_ips: '10.8.0.2/32', ...EMPTY_QUOTA_FORM, ...fields });
const webForm = (fields: Record<string, string>) => ({ name: 'web-01', interface: 'tap-web01', netns: '', node: '', ...EMPTY_QUOTA_FORM, ...fields });

describe('quota fields of the host\'s JSON API', () => {
  test('a peer created with quota_* fields has its own quota, and the answer carries it with its state', async (t) => {
    const { host, ids } = await adminHost(t);

    const peer = await created(host.api.post(`/api/networks/${ids.networkId}/peers`).send({
      name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'],
      quota_allowance_bytes: 100 * GB, quota_counted: 'down', quota_cycle_day: 15, quota_time_zone: 'Europe/Berlin',
      quota_warn_percents: [90, 50], quota_action: 'notify',
    }), 'peer');

    assert.deepEqual(
      Object.fromEntries(Object.entries(peer).filter(([key]) => key.startsWith('quota_') && key !== 'quota_cycle_end')),
      {
        quota_allowance_bytes: '100000000000', quota_counted: 'down', quota_cycle_day: 15, quota_time_zone: 'Europe/Berlin', quota_warn_percents: [50, 90],
        quota_action: 'notify', quota_throttle_up_kbps: 1000, quota_throttle_down_kbps: 1000,
        quota_source: 'subject', quota_state: 'ok', quota_used_bytes: '0', quota_limit_bytes: '100000000000',
      },
    );
    assert.match(String(peer.quota_cycle_end), /^\d{4}-\d{2}-1[45]T\d{2}:00:00\.000Z$/, 'the cycle ends on the 15th, Berlin time');
    const quota = await quotaOf(host, 'peer', peer.id);
    assert.deepEqual([quota.source, quota.state, (quota.own as Record<string, unknown>).time_zone], ['subject', 'ok', 'Europe/Berlin']);
  });

  test('a VM created and then updated through the API stores and changes its quota; bytes past 2^53 stay exact', async (t) => {
    const { host } = await adminHost(t);

    const vm = await created(host.api.post('/api/vms').send({ name: 'db-01', interface: 'tap-db01', quota_allowance_bytes: '2000000000000' }), 'vm');
    assert.deepEqual([vm.quota_allowance_bytes, vm.quota_counted, vm.quota_action, vm.quota_source], ['2000000000000', 'total', 'throttle', 'subject']);

    const updated = await host.api.put(`/api/vms/${vm.id}`).send({ quota_allowance_bytes: '9007199254740993', quota_throttle_down_kbps: 256 });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.vm.quota_allowance_bytes, '9007199254740993');
    assert.equal(updated.body.vm.quota_throttle_down_kbps, 256);
    assert.equal(updated.body.vm.quota_throttle_up_kbps, 1000, 'a field the update does not mention keeps what was stored');
    const fetched = await host.api.get(`/api/vms/${vm.id}`).expect(200);
    assert.equal(fetched.body.vm.quota_allowance_bytes, '9007199254740993');
  });

  test('an update with a null allowance removes the peer\'s own quota: it inherits its network\'s again', async (t) => {
    const { host, ids } = await adminHost(t);
    await host.api.put(`/api/bandwidth/quotas/network/${ids.networkId}`).send({ allowance_bytes: 500 * GB }).expect(200);
    await host.api.put(`/api/networks/${ids.networkId}/peers/${ids.peerId}`).send({ quota_allowance_bytes: 20 * GB }).expect(200);
    assert.equal((await quotaOf(host, 'peer', ids.peerId)).source, 'subject');

    const removed = await host.api.put(`/api/networks/${ids.networkId}/peers/${ids.peerId}`).send({ quota_allowance_bytes: null });

    assert.equal(removed.status, 200, removed.text);
    assert.deepEqual([removed.body.peer.quota_allowance_bytes, removed.body.peer.quota_source, removed.body.peer.quota_limit_bytes], [null, 'network', '500000000000']);
    const quota = await quotaOf(host, 'peer', ids.peerId);
    assert.deepEqual([quota.own, quota.source], [null, 'network']);
  });

  test('an update that names no quota field leaves the quota alone', async (t) => {
    const { host, ids } = await adminHost(t);
    await host.api.put(`/api/vms/${ids.vmId}`).send({ quota_allowance_bytes: 7 * GB }).expect(200);

    await host.api.put(`/api/vms/${ids.vmId}`).send({ name: 'web-02', bandwidth_down_kbps: 5000 }).expect(200);

    assert.equal(((await quotaOf(host, 'vm', ids.vmId)).own as Record<string, unknown>).allowance_bytes, 7 * GB);
  });

  const BAD_BODIES: { title: string; method: 'post' | 'put'; path(ids: SeededHost): string; body: Record<string, unknown>; field: string; message: RegExp }[] = [
    {
      title: 'a cycle day of 32 when adding a peer', method: 'post', path: (ids) => `/api/networks/${ids.networkId}/peers`,
      body: { name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], quota_allowance_bytes: GB, quota_cycle_day: 32 },
      field: 'quota_cycle_day', message: /^`quota_cycle_day` must be a whole number \(day of the month\) from 1 to 31, got `32`$/,
    },
    {
      title: 'an unknown time zone when adding a peer', method: 'post', path: (ids) => `/api/networks/${ids.networkId}/peers`,
      body: { name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], quota_allowance_bytes: GB, quota_time_zone: 'Mars/Base' },
      field: 'quota_time_zone', message: /^`quota_time_zone` must be an IANA time zone/,
    },
    {
      title: 'a negative allowance when adding a VM', method: 'post', path: () => '/api/vms',
      body: { name: 'db-01', interface: 'tap-db01', quota_allowance_bytes: -5 },
      field: 'quota_allowance_bytes', message: /^`quota_allowance_bytes` must be a whole number of bytes from 1 to 9223372036854775807, got `-5`$/,
    },
    {
      title: 'a warning above 100% when editing a peer', method: 'put', path: (ids) => `/api/networks/${ids.networkId}/peers/${ids.peerId}`,
      body: { name: 'renamed', quota_allowance_bytes: GB, quota_warn_percents: [80, 120] },
      field: 'quota_warn_percents', message: /^`quota_warn_percents` must be a list of at most 10 whole percentages from 1 to 100/,
    },
    {
      title: 'an unknown action when editing a VM', method: 'put', path: (ids) => `/api/vms/${ids.vmId}`,
      body: { name: 'web-02', quota_allowance_bytes: GB, quota_action: 'explode' },
      field: 'quota_action', message: /^`quota_action` must be one of throttle, notify, got `explode`$/,
    },
    {
      title: 'a quota field that does not exist when editing a peer', method: 'put', path: (ids) => `/api/networks/${ids.networkId}/peers/${ids.peerId}`,
      body: { quota_allowance_bytes: GB, quota_colour: 'red' },
      field: 'quota_colour', message: /^`quota_colour` is not a quota field/,
    },
    {
      title: 'quota settings without an allowance when adding a VM', method: 'post', path: () => '/api/vms',
      body: { name: 'db-01', interface: 'tap-db01', quota_counted: 'up' },
      field: 'quota_allowance_bytes', message: /needs `quota_allowance_bytes`/,
    },
    {
      title: 'a throttle to 0 in both directions when editing a VM', method: 'put', path: (ids) => `/api/vms/${ids.vmId}`,
      body: { quota_allowance_bytes: GB, quota_throttle_up_kbps: 0, quota_throttle_down_kbps: 0 },
      field: 'quota_throttle_down_kbps', message: /cannot both be 0 with the action `throttle`/,
    },
  ];
  for (const bad of BAD_BODIES) {
    test(`${bad.title} answers 400 naming ${bad.field} and writes nothing`, async (t) => {
      const { host, ids } = await adminHost(t);
      await host.api.put(`/api/vms/${ids.vmId}`).send({ quota_allowance_bytes: 3 * GB }).expect(200);
      const before = await everyRow(host.db);

      const response = await host.api[bad.method](bad.path(ids)).send(bad.body);

      assert.equal(response.status, 400, response.text);
      assert.equal(response.body.error.field, bad.field);
      assert.match(response.body.error.message, bad.message);
      assert.deepEqual(await everyRow(host.db), before);
    });
  }
});

describe('quota fields of the host\'s forms', () => {
  test('the forms offer an empty allowance to new subjects and to subjects without a quota of their own', async (t) => {
    const { ids, admin } = await adminHost(t);
    const pages = {
      addPeer: (await admin.agent.get(`/admin/networks/${ids.networkId}`)).text.split('<h2>Add a peer</h2>')[1]!,
      peer: (await admin.agent.get(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`)).text,
      addVm: (await admin.agent.get('/admin/vms')).text,
      vm: (await admin.agent.get(`/admin/vms/${ids.vmId}`)).text,
    };
    for (const [page, html] of Object.entries(pages)) {
      assert.deepEqual(quotaFormFields(html), EMPTY_QUOTA_FORM, page);
      assert.ok(!quotaFieldset(html).includes('This cycle:'), `${page}: no state without a quota`);
    }
    assert.match(quotaFieldset(pages.peer), /it inherits its network&#39;s or the default/);
    assert.match(quotaFieldset(pages.vm), /it inherits the default/);
    assert.match(quotaFieldset(pages.peer), /<label>Monthly allowance \(GB\)/);
  });

  test('adding a peer and a VM through their forms stores the allowance typed in gigabytes, the empty fields taking the defaults', async (t) => {
    const { host, ids, admin } = await adminHost(t);

    const peer = await admin.form(`/admin/networks/${ids.networkId}/peers`, {
      ...laptopForm({ quota_allowance_gb: '12.5', quota_warn_percents: '75, 100', quota_action: 'notify' }), name: 'phone', public_key: wgKey(2), allowed_ips: '10.8.0.3/32',
    });
    const vm = await admin.form('/admin/vms', { ...webForm({ quota_allowance_gb: '0.5', quota_counted: 'up', quota_cycle_day: '31', quota_time_zone: 'America/New_York', quota_throttle_up_kbps: '64' }), name: 'db-01', interface: 'tap-db01' });

    assert.equal(peer.status, 303, peer.text.slice(0, 300));
    assert.equal(vm.status, 303, vm.text.slice(0, 300));
    const phone = await host.db('peers').where({ name: 'phone' }).first();
    const db01 = await host.db('vms').where({ name: 'db-01' }).first();
    assert.deepEqual((await quotaOf(host, 'peer', phone.id)).own, {
      allowance_bytes: 12.5 * GB, counted: 'total', cycle_day: 1, time_zone: 'UTC', warn_percents: [75, 100], action: 'notify', throttle_up_kbps: 1000, throttle_down_kbps: 1000,
    });
    assert.deepEqual((await quotaOf(host, 'vm', db01.id)).own, {
      allowance_bytes: 0.5 * GB, counted: 'up', cycle_day: 31, time_zone: 'America/New_York', warn_percents: [80, 90, 100], action: 'throttle', throttle_up_kbps: 64, throttle_down_kbps: 1000,
    });
  });

  test('a subject\'s form shows its own quota in exact gigabytes and its state; saving it unchanged keeps the quota', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await host.api.put(`/api/bandwidth/quotas/peer/${ids.peerId}`).send({
      allowance_bytes: 1_500_000_001, counted: 'down', cycle_day: 28, time_zone: 'Asia/Kathmandu', warn_percents: [50, 100], action: 'notify', throttle_up_kbps: 0, throttle_down_kbps: 300,
    }).expect(200);
    const path = `/admin/networks/${ids.networkId}/peers/${ids.peerId}`;

    const page = await admin.agent.get(path);

    const shown = quotaFormFields(page.text);
    assert.deepEqual(shown, {
      quota_allowance_gb: '1.500000001', quota_counted: 'down', quota_cycle_day: '28', quota_time_zone: 'Asia/Kathmandu', quota_warn_percents: '50, 100',
      quota_action: 'notify', quota_throttle_up_kbps: '0', quota_throttle_down_kbps: '300',
    });
    assert.match(quotaFieldset(page.text), /<p class="muted quota-state" data-quota-state="ok" data-quota-source="subject">This cycle: <span class="badge ok">ok<\/span>\s*0 GB of 1.5 GB used, until \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC; allowance its own\.<\/p>/);
    const before = await host.db('bw_quotas').select('allowance_bytes', 'counted', 'cycle_day', 'time_zone', 'warn_percents', 'action', 'throttle_up_kbps', 'throttle_down_kbps');

    const saved = await admin.form(path, laptopForm(shown));

    assert.equal(saved.status, 303, saved.text.slice(0, 300));
    assert.deepEqual(await host.db('bw_quotas').select('allowance_bytes', 'counted', 'cycle_day', 'time_zone', 'warn_percents', 'action', 'throttle_up_kbps', 'throttle_down_kbps'), before);
  });

  test('a peer inheriting its network\'s quota shows the state read-only, with an empty allowance of its own', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await host.api.put(`/api/bandwidth/quotas/network/${ids.networkId}`).send({ allowance_bytes: 40 * GB }).expect(200);

    const page = await admin.agent.get(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`);

    const fields = quotaFieldset(page.text);
    assert.equal(inputValue(fields, 'quota_allowance_gb'), '');
    assert.match(fields, /data-quota-source="network">This cycle: <span class="badge ok">ok<\/span>\s*0 GB of 40 GB used, until [^;]+; allowance inherited from its network\./);
  });

  test('emptying the allowance on a peer\'s and a VM\'s form removes their own quotas', async (t) => {
    const { host, ids, admin } = await adminHost(t);
    await admin.form(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`, laptopForm({ quota_allowance_gb: '10' })).expect(303);
    await admin.form(`/admin/vms/${ids.vmId}`, webForm({ quota_allowance_gb: '20' })).expect(303);
    assert.equal(await host.db('bw_quotas').count({ n: '*' }).first().then((row) => Number(row?.n)), 2);

    await admin.form(`/admin/networks/${ids.networkId}/peers/${ids.peerId}`, laptopForm({ quota_allowance_gb: '', quota_cycle_day: '9' })).expect(303);
    await admin.form(`/admin/vms/${ids.vmId}`, webForm({ quota_allowance_gb: '' })).expect(303);

    assert.deepEqual([(await quotaOf(host, 'peer', ids.peerId)).own, (await quotaOf(host, 'vm', ids.vmId)).own], [null, null]);
    assert.deepEqual(await host.db('bw_quotas'), []);
  });

  /** A form with one bad quota field; every field typed must come back in the re-rendered form. */
  const BAD_FORMS: { title: string; path(ids: SeededHost): string; fields: Record<string, string>; field: string; message: RegExp }[] = [
    {
      title: 'editing a peer with a comma in the gigabytes',
      path: (ids) => `/admin/networks/${ids.networkId}/peers/${ids.peerId}`,
      fields: laptopForm({ name: 'renamed', quota_allowance_gb: '12,5', quota_counted: 'down', quota_warn_percents: '50, 90' }),
      field: 'quota_allowance_gb', message: /^`quota_allowance_gb` must be a number of gigabytes such as 12 or 0.5, got `12,5`$/,
    },
    {
      title: 'adding a peer with cycle day 0',
      path: (ids) => `/admin/networks/${ids.networkId}/peers`,
      fields: { ...laptopForm({ quota_allowance_gb: '100', quota_cycle_day: '0', quota_time_zone: 'Europe/Paris' }), name: 'phone', public_key: wgKey(2), allowed_ips: '10.8.0.3/32' },
      field: 'quota_cycle_day', message: /^`quota_cycle_day` must be a whole number \(day of the month\) from 1 to 31, got `0`$/,
    },
    {
      title: 'editing a VM with an unknown time zone',
      path: (ids) => `/admin/vms/${ids.vmId}`,
      fields: webForm({ name: 'web-02', quota_allowance_gb: '3', quota_time_zone: 'Mars/Olympus_Mons', quota_action: 'notify' }),
      field: 'quota_time_zone', message: /^`quota_time_zone` must be an IANA time zone such as Europe\/Berlin or UTC, got `Mars\/Olympus_Mons`$/,
    },
    {
      title: 'adding a VM with a warning at 120%',
      path: () => '/admin/vms',
      fields: { ...webForm({ quota_allowance_gb: '3', quota_warn_percents: '80, 120', quota_throttle_down_kbps: '512' }), name: 'db-01', interface: 'tap-db01' },
      field: 'quota_warn_percents', message: /^`quota_warn_percents` must be a list of at most 10 whole percentages from 1 to 100, got `80, 120`$/,
    },
    {
      title: 'adding a VM with a throttle in words',
      path: () => '/admin/vms',
      fields: { ...webForm({ quota_allowance_gb: '3', quota_throttle_up_kbps: '1 mbit' }), name: 'db-01', interface: 'tap-db01' },
      field: 'quota_throttle_up_kbps', message: /^`quota_throttle_up_kbps` must be a whole number of kbps from 0 to \d+, got `1 mbit`$/,
    },
  ];
  for (const form of BAD_FORMS) {
    test(`${form.title} re-renders the form with the message and what was typed, and writes nothing`, async (t) => {
      const { host, ids, admin } = await adminHost(t);
      await host.api.put(`/api/networks/${ids.networkId}/peers/${ids.peerId}`).send({ quota_allowance_bytes: 2 * GB }).expect(200);
      const before = await everyRow(host.db);

      const response = await admin.form(form.path(ids), form.fields);

      assert.equal(response.status, 400, response.text.slice(0, 300));
      const error = formError(response.text);
      assert.equal(error?.field, form.field);
      assert.match(error?.message.replaceAll('&#39;', "'") ?? '', form.message);
      const typed = Object.fromEntries(Object.entries(form.fields).filter(([name]) => name.startsWith('quota_')));
      assert.deepEqual(quotaFormFields(response.text), typed, 'the form shows what was typed');
      assert.equal(inputValue(response.text, 'name'), form.fields.name);
      assert.deepEqual(await everyRow(host.db), before);
    });
  }
});
