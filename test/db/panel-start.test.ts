import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import request from 'supertest';
import { ENGINES, dropPluginTables, openEngine } from '../support/databases.js';
import { createPanel } from '../../examples/host-panel/src/app.js';
import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { PLUGIN_TABLES } from '../../src/db/migrate.js';

const HOST_TABLES = ['panel_plugins', 'vms', 'peers', 'networks', 'panel_sessions', 'panel_settings', 'panel_users', 'panel_knex_migrations', 'panel_knex_migrations_lock'];

async function dropEverything(knex: Knex): Promise<void> {
  await dropPluginTables(knex);
  for (const table of HOST_TABLES) await knex.schema.dropTableIfExists(table);
}

const TOKEN = 'db-layer-token-0123456789';

for (const engine of ENGINES) {
  describe(`the reference panel on ${engine.id}`, () => {
    test('starts on an empty database with PANEL_DEMO=0, enables the plugin and runs its migrations', async (t) => {
      const knex = await openEngine(t, engine, { cleanup: dropEverything });
      if (!knex) return;
      await dropEverything(knex);
      const url = (knex.client.config.connection as { filename?: string }).filename ? `sqlite:${(knex.client.config.connection as { filename: string }).filename}` : engine.url();
      const panel = await createPanel(
        {
          port: 0, host: '127.0.0.1', databaseUrl: url, apiToken: TOKEN, adminUser: 'admin', adminPassword: 'admin-password',
          sessionSecret: 'secret', demo: false, pluginDirs: [REPO_ROOT],
        },
        { logLevel: 'silent' },
      );
      t.after(() => panel.close());

      for (const table of PLUGIN_TABLES) assert.ok(await knex.schema.hasTable(table), `${table} exists`);
      const plugins = await request(panel.app).get('/api/plugins').set('Authorization', `Bearer ${TOKEN}`).expect(200);
      assert.deepEqual(plugins.body.plugins.map((p: { id: string; running: boolean }) => [p.id, p.running]), [['bandwidth', true]]);
      const networks = await request(panel.app).get('/api/networks').set('Authorization', `Bearer ${TOKEN}`).expect(200);
      assert.deepEqual(networks.body.networks, [], 'PANEL_DEMO=0 starts empty');

      const created = await request(panel.app)
        .post('/api/networks').set('Authorization', `Bearer ${TOKEN}`)
        .send({ name: 'edge', interface: 'wg7' }).expect(201);
      const peer = await request(panel.app)
        .post(`/api/networks/${created.body.network.id}/peers`).set('Authorization', `Bearer ${TOKEN}`)
        .send({ name: 'p1', public_key: `${'A'.repeat(43)}=`, allowed_ips: ['10.9.0.2/32', 'fd00:9::2'] }).expect(201);
      assert.deepEqual(peer.body.peer.allowed_ips, ['10.9.0.2/32', 'fd00:9::2/128']);
      await request(panel.app)
        .post(`/api/networks/${created.body.network.id}/peers`).set('Authorization', `Bearer ${TOKEN}`)
        .send({ name: 'p2', public_key: `${'A'.repeat(43)}=`, allowed_ips: ['10.9.0.3/32'] }).expect(409);
    });

    test('a demo start seeds once, also across restarts', async (t) => {
      const knex = await openEngine(t, engine, { cleanup: dropEverything });
      if (!knex) return;
      await dropEverything(knex);
      const url = (knex.client.config.connection as { filename?: string }).filename ? `sqlite:${(knex.client.config.connection as { filename: string }).filename}` : engine.url();
      const config = {
        port: 0, host: '127.0.0.1', databaseUrl: url, apiToken: undefined, adminUser: undefined, adminPassword: undefined,
        sessionSecret: undefined, demo: true, pluginDirs: [REPO_ROOT],
      };
      const first = await createPanel(config, { logLevel: 'silent' });
      assert.equal(first.demoSeeded, true);
      assert.ok(first.generated.adminPassword && first.generated.apiToken, 'first start generates credentials');
      await first.close();
      const second = await createPanel(config, { logLevel: 'silent' });
      t.after(() => second.close());
      assert.equal(second.demoSeeded, false);
      assert.deepEqual(second.generated, {}, 'credentials are shown once only');
      assert.equal(Number((await knex('peers').count({ n: '*' }))[0]?.n), 4);
      assert.equal(Number((await knex('vms').count({ n: '*' }))[0]?.n), 3);
    });
  });
}
