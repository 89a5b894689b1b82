import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Knex } from 'knex';
import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { PLUGIN_TABLES } from '../../src/db/migrate.js';
import { loadManifest } from '../../src/manifest/load.js';
import { created, startPanel, wgKey, type AdminSession } from '../support/panel.js';

/** The bandwidth plugin as its manifest describes it: what the plugin list must show. */
const BANDWIDTH = (() => {
  const { id, name, version, description } = loadManifest(REPO_ROOT);
  return { id, name, version, description: description ?? '' };
})();
const NAV_LINK = '<a href="/admin/bandwidth"';

async function bwTables(db: Knex): Promise<string[]> {
  const rows = (await db.raw("select name from sqlite_master where type = 'table' and name like 'bw\\_%' escape '\\' order by name")) as { name: string }[];
  return rows.map((row) => row.name);
}

/** A limit row as the plugin stores it, with the host's peer it belongs to, to check that data survives a disable. */
async function insertLimit(db: Knex): Promise<void> {
  const now = Date.now();
  // Enabling resyncs with the host, which drops a limit of a peer the host does not have.
  await db('networks').insert({ id: 1, name: 'office', interface: 'wg0', netns: '', created_at: now, updated_at: now });
  await db('peers').insert({
    id: 1, network_id: 1, name: 'laptop', public_key: wgKey(1), allowed_ips: JSON.stringify(['10.8.0.2/32']), created_at: now, updated_at: now,
  });
  await db('bw_limits').insert({
    subject_type: 'peer', subject_id: '1', name: 'laptop', interface: 'wg0', interface_kind: 'wireguard',
    addresses: JSON.stringify(['10.8.0.2/32']), up_kbps: 10_000, down_kbps: 0, status: 'applied', created_at: now, updated_at: now,
  });
}

/** What an admin sees: the bandwidth page's status and whether the nav links to it. */
async function adminSees(admin: AdminSession): Promise<{ page: number; navLink: boolean }> {
  const page = await admin.agent.get('/admin/bandwidth');
  const networks = await admin.agent.get('/admin/networks').expect(200);
  return { page: page.status, navLink: networks.text.includes(NAV_LINK) };
}

describe('the plugin list in the API', () => {
  test('lists the bandwidth plugin, enabled and running', async (t) => {
    const { api } = await startPanel(t);
    const response = await api.get('/api/plugins');
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { plugins: [{ ...BANDWIDTH, enabled: true, running: true, error: null }] });
  });

  test('disable removes the page and the nav link but keeps the tables and their rows; enable brings the page back', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    await insertLimit(host.db);
    assert.deepEqual(await adminSees(admin), { page: 200, navLink: true });

    const disabled = await host.api.post('/api/plugins/bandwidth/disable');
    assert.equal(disabled.status, 200);
    assert.deepEqual(disabled.body, { plugin: { ...BANDWIDTH, enabled: false, running: false, error: null } });
    assert.deepEqual(await adminSees(admin), { page: 404, navLink: false });
    assert.equal(await host.db.schema.hasTable('bw_limits'), true);
    assert.equal((await host.db('bw_limits').select('name'))[0]?.name, 'laptop');

    const enabled = await host.api.post('/api/plugins/bandwidth/enable');
    assert.equal(enabled.status, 200);
    assert.deepEqual(enabled.body, { plugin: { ...BANDWIDTH, enabled: true, running: true, error: null } });
    assert.deepEqual(await adminSees(admin), { page: 200, navLink: true });
    assert.match((await admin.agent.get('/admin/bandwidth')).text, />laptop<\/a>/, 'the kept row shows again');
  });

  test('a disabled plugin stays disabled after a restart', async (t) => {
    const first = await startPanel(t);
    await first.api.post('/api/plugins/bandwidth/disable').expect(200);

    const second = await first.restart();

    const list = await second.api.get('/api/plugins').expect(200);
    assert.deepEqual(list.body.plugins[0], { ...BANDWIDTH, enabled: false, running: false, error: null });
    assert.deepEqual(await adminSees(await second.login()), { page: 404, navLink: false });
  });

  test('uninstall drops the plugin tables and their data; enable creates them again, empty', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    await insertLimit(host.db);

    const uninstalled = await host.api.post('/api/plugins/bandwidth/uninstall');
    assert.equal(uninstalled.status, 200);
    assert.deepEqual(uninstalled.body, { plugin: { ...BANDWIDTH, enabled: false, running: false, error: null } });
    for (const table of PLUGIN_TABLES) assert.equal(await host.db.schema.hasTable(table), false, `${table} dropped`);
    assert.deepEqual(await adminSees(admin), { page: 404, navLink: false });

    const enabled = await host.api.post('/api/plugins/bandwidth/enable');
    assert.equal(enabled.status, 200);
    assert.equal(enabled.body.plugin.running, true);
    for (const table of PLUGIN_TABLES) assert.equal(await host.db.schema.hasTable(table), true, `${table} created`);
    assert.equal((await host.db('bw_limits').count({ n: '*' }))[0]?.n, 0);
    assert.deepEqual(await adminSees(admin), { page: 200, navLink: true });
  });

  test(
    'uninstall leaves no bw_* table behind',
    async (t) => {
      const host = await startPanel(t);
      await host.api.post('/api/plugins/bandwidth/uninstall').expect(200);
      assert.deepEqual(await bwTables(host.db), []);
    },
  );

  test('an unknown plugin id answers 404 on enable, disable and uninstall', async (t) => {
    const { api } = await startPanel(t);
    for (const action of ['enable', 'disable', 'uninstall']) {
      const response = await api.post(`/api/plugins/nope/${action}`);
      assert.equal(response.status, 404, action);
      assert.deepEqual(response.body, { error: { code: 'not_found', message: 'No plugin with id `nope`' } }, action);
    }
    assert.equal((await api.get('/api/plugins')).body.plugins[0].running, true);
  });
});

describe('the plugin list at /admin/plugins', () => {
  test('shows the plugin enabled with a disable form', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();

    const page = await admin.agent.get('/admin/plugins');

    assert.equal(page.status, 200);
    const row = pluginRow(page.text);
    assert.match(row, /<strong>Bandwidth<\/strong> <code>bandwidth<\/code>/);
    assert.match(row, /<span class="badge ok">Enabled<\/span>/);
    assert.deepEqual(formActions(row), ['/admin/plugins/bandwidth/disable']);
  });

  test('disable, enable, uninstall and enable again through the forms', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    await insertLimit(host.db);

    const disable = await admin.form('/admin/plugins/bandwidth/disable');
    assert.equal(disable.status, 303);
    assert.equal(disable.headers.location, '/admin/plugins');
    const afterDisable = await admin.agent.get('/admin/plugins').expect(200);
    assert.match(afterDisable.text, /<p class="flash" role="status">Plugin bandwidth disabled<\/p>/);
    assert.match(pluginRow(afterDisable.text), /<span class="badge off">Disabled<\/span>/);
    assert.deepEqual(formActions(pluginRow(afterDisable.text)), ['/admin/plugins/bandwidth/enable', '/admin/plugins/bandwidth/uninstall']);
    assert.deepEqual(await adminSees(admin), { page: 404, navLink: false });
    assert.equal(await host.db.schema.hasTable('bw_limits'), true);

    const enable = await admin.form('/admin/plugins/bandwidth/enable');
    assert.equal(enable.status, 303);
    assert.match((await admin.agent.get('/admin/plugins')).text, /Plugin bandwidth enabled/);
    assert.deepEqual(await adminSees(admin), { page: 200, navLink: true });

    await admin.form('/admin/plugins/bandwidth/disable').expect(303);
    const uninstall = await admin.form('/admin/plugins/bandwidth/uninstall');
    assert.equal(uninstall.status, 303);
    assert.match((await admin.agent.get('/admin/plugins')).text, /Plugin bandwidth uninstalled/);
    for (const table of PLUGIN_TABLES) assert.equal(await host.db.schema.hasTable(table), false, `${table} dropped`);

    await admin.form('/admin/plugins/bandwidth/enable').expect(303);
    for (const table of PLUGIN_TABLES) assert.equal(await host.db.schema.hasTable(table), true, `${table} created`);
    const overview = await admin.agent.get('/admin/bandwidth');
    assert.equal(overview.status, 200);
    assert.match(overview.text, /<p class="empty">[^<]*\bNo peers?\b/, "the page shows its empty state");
  });

  test('an unknown plugin id answers a 404 page', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    for (const action of ['enable', 'disable', 'uninstall']) {
      const response = await admin.form(`/admin/plugins/nope/${action}`);
      assert.equal(response.status, 404, action);
      assert.match(response.text, /<h1>404 · Not found<\/h1>/, action);
      assert.match(response.text, /No plugin with id `nope`/, action);
    }
  });
});

/**
 * A plugin directory whose plugin adds a nav link and a `peer.created` hook, then throws in
 * `register`; the hook would leave a `broken_hook_ran` row in panel_settings.
 */
function brokenPlugin(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-broken-plugin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'plugin.json'), JSON.stringify({
    id: 'broken', name: 'Broken', version: '0.0.1', entry: 'index.mjs', hostApi: '^1.0.0',
    hooks: ['peer.created'], adminPages: [], settings: {},
  }));
  writeFileSync(join(dir, 'index.mjs'), [
    'export async function register(host) {',
    "  host.views.addNavItem({ path: '/admin/broken', label: 'Broken', minRole: 'admin' });",
    "  host.hooks.on('peer.created', async () => { await host.db('panel_settings').insert({ key: 'broken_hook_ran', value: 'yes' }); });",
    "  throw new Error('broken on purpose');",
    '}',
  ].join('\n'));
  return dir;
}

describe('a plugin that fails while registering', () => {
  test('is listed with its error, not running, and the other plugins still run', async (t) => {
    const host = await startPanel(t, { pluginDirs: [brokenPlugin(t)] });

    const list = await host.api.get('/api/plugins').expect(200);

    const broken = list.body.plugins.find((plugin: { id: string }) => plugin.id === 'broken');
    assert.deepEqual(broken, {
      id: 'broken', name: 'Broken', version: '0.0.1', description: '', enabled: true, running: false, error: 'broken on purpose',
    });
    assert.equal(list.body.plugins.find((plugin: { id: string }) => plugin.id === 'bandwidth').running, true);
  });

  test(
    'leaves no nav link and no hook behind, also after a retried enable',
    async (t) => {
      const host = await startPanel(t, { pluginDirs: [brokenPlugin(t)] });
      const admin = await host.login();
      const retried = await host.api.post('/api/plugins/broken/enable');
      assert.notEqual(retried.status, 200, 'enabling a plugin whose register() throws fails');

      const page = await admin.agent.get('/admin/networks').expect(200);
      assert.equal(page.text.split('href="/admin/broken"').length - 1, 0, 'no nav link to the page of a plugin that is not running');
      const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
      await created(
        host.api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }),
        'peer',
      );
      assert.equal(await host.db('panel_settings').where({ key: 'broken_hook_ran' }).first(), undefined, 'the hook of a plugin that is not running never runs');
    },
  );
});

/** The table row of the bandwidth plugin on /admin/plugins. */
function pluginRow(html: string): string {
  const match = /<tr data-plugin="bandwidth">[\s\S]*?<\/tr>/.exec(html);
  assert.ok(match, 'the plugins page has a row for bandwidth');
  return match[0];
}

function formActions(html: string): string[] {
  return [...html.matchAll(/<form method="post" action="([^"]+)"/g)].map((m) => m[1]!);
}
