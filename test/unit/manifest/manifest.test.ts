import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadManifest, parseManifest, ManifestError, PLUGIN_EVENT_NAMES, PLUGIN_ROOT } from '../../../src/manifest/load.js';
import { join } from 'node:path';
import { HOST_API_VERSION } from '../../../src/plugin-api.js';

const shipped = JSON.parse(readFileSync(join(PLUGIN_ROOT, 'plugin.json'), 'utf8')) as Record<string, unknown>;
const withChange = (change: (m: Record<string, unknown>) => void) => {
  const copy = structuredClone(shipped);
  change(copy);
  return copy;
};

describe('plugin.json', () => {
  test('the shipped manifest is valid and names the bandwidth admin page', () => {
    const manifest = loadManifest();
    assert.equal(manifest.id, 'bandwidth');
    assert.deepEqual(manifest.adminPages.map((p) => p.path), ['/admin/bandwidth', '/admin/bandwidth/nodes']);
    assert.equal(manifest.settings.page_size?.default, 50);
  });

  test('the shipped manifest declares the quota events the plugin emits', () => {
    assert.deepEqual(loadManifest().events, ['bandwidth.quota.warning', 'bandwidth.quota.exceeded', 'bandwidth.quota.reset']);
  });

  test('the shipped manifest follows networks with every hook of contract 1.4.0 (validate, created, updated, deleted, serialize)', () => {
    const schema = JSON.parse(readFileSync(join(PLUGIN_ROOT, 'plugin.schema.json'), 'utf8')) as { properties: { hooks: { items: { enum: string[] } } } };
    const network = ['network.validate', 'network.created', 'network.updated', 'network.deleted', 'network.serialize'];
    assert.deepEqual(loadManifest().hooks.filter((hook) => hook.startsWith('network.')), network);
    assert.deepEqual(schema.properties.hooks.items.enum.filter((hook) => hook.startsWith('network.')), network);
    assert.equal(HOST_API_VERSION, '1.4.0');
  });

  test('a manifest without "events" (before host API 1.3.0) declares none', () => {
    assert.deepEqual(parseManifest(withChange((m) => { delete m.events; })).events, []);
  });

  test('the schema accepts exactly the plugin events of the host contract', () => {
    const schema = JSON.parse(readFileSync(join(PLUGIN_ROOT, 'plugin.schema.json'), 'utf8')) as { properties: { events: { items: { enum: string[] } } } };
    assert.deepEqual(schema.properties.events.items.enum, PLUGIN_EVENT_NAMES);
  });

  const cases: [string, (m: Record<string, unknown>) => void, RegExp, string][] = [
    ['an unknown top-level key', (m) => { m.colour = 'red'; }, /unknown key "colour"/, 'colour'],
    ['an unknown key in an admin page', (m) => { (m.adminPages as Record<string, unknown>[])[0]!.icon = 'x'; }, /unknown key "adminPages\.0\.icon"/, 'adminPages.0.icon'],
    ['a missing id', (m) => { delete m.id; }, /missing key "id"/, 'id'],
    ['a bad version', (m) => { m.version = 'one'; }, /"version" must match pattern/, 'version'],
    ['a hook that does not exist', (m) => { m.hooks = ['peer.exploded']; }, /"hooks\.0" must be equal to one of the allowed values/, 'hooks.0'],
    ['an event that does not exist', (m) => { m.events = ['bandwidth.quota.warning', 'bandwidth.quota.exceded']; }, /"events\.1" must be equal to one of the allowed values: bandwidth\.quota\.warning, bandwidth\.quota\.exceeded, bandwidth\.quota\.reset$/, 'events.1'],
    ['an event declared twice', (m) => { m.events = ['bandwidth.quota.reset', 'bandwidth.quota.reset']; }, /"events" must NOT have duplicate items/, 'events'],
    ['events that are not a list', (m) => { m.events = 'bandwidth.quota.reset'; }, /"events" must be array/, 'events'],
    ['a role that does not exist', (m) => { (m.adminPages as Record<string, unknown>[])[0]!.minRole = 'root'; }, /adminPages\.0\.minRole/, 'adminPages.0.minRole'],
    ['a setting default outside its range', (m) => { (m.settings as Record<string, Record<string, unknown>>).page_size!.default = 5; }, /Expected `page_size` to be an integer from 10 to 500, got `5`/, 'settings.page_size.default'],
    ['a setting with an unknown key', (m) => { (m.settings as Record<string, Record<string, unknown>>).page_size!.secret = true; }, /unknown key "settings\.page_size\.secret"/, 'settings.page_size.secret'],
  ];
  for (const [what, change, message, key] of cases) {
    test(`${what} is rejected with a message naming the key`, () => {
      assert.throws(() => parseManifest(withChange(change)), (error: unknown) => {
        assert.ok(error instanceof ManifestError);
        assert.match(error.message, message);
        assert.equal(error.key, key);
        return true;
      });
    });
  }
});
