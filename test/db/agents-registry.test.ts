import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { ENGINES, openEngine, openMigrated } from '../support/databases.js';
import * as hostTables from '../../examples/host-panel/migrations/0001_create_panel_tables.js';
import * as hostNodes from '../../examples/host-panel/migrations/0002_add_node_to_networks_and_vms.js';
import * as addTokenCiphertext from '../../migrations/0016_add_bw_agents_token_ciphertext.js';
import { AgentRegistry } from '../../src/nodes/panel/registry.js';
import { SecretBox, SECRET_KEY_ENV } from '../../src/nodes/panel/secret.js';
import { nodeSeries, nodeTotals } from '../../src/nodes/panel/node-usage.js';
import { ConflictError, InputError, NotFoundError } from '../../src/errors.js';
import { fromBigInt } from '../../src/db/bigint.js';

const NOW = Date.UTC(2026, 10, 21, 12, 0, 0, 0);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const TOKEN = 'a'.repeat(20) + randomBytes(16).toString('hex');
const ABOVE_2_53 = 2n ** 53n + 1n;

const box = (key = randomBytes(32)) => new SecretBox({ env: { [SECRET_KEY_ENV]: key.toString('hex') }, keyFile: '/nonexistent/never-used.key' });

function registryOn(knex: Knex, secrets = box()) {
  const warnings: string[] = [];
  const registry = new AgentRegistry({ db: knex, secrets, logger: { warn: (message) => warnings.push(message) }, now: () => NOW });
  return { registry, warnings, secrets };
}

/** A subject of `type:id` placed on `node` (only the columns a registry and node totals read matter). */
async function placeSubject(knex: Knex, node: string, type: 'peer' | 'vm', id: string): Promise<void> {
  await knex('bw_limits').insert({
    subject_type: type, subject_id: id, name: `${type}-${id}`, node, interface: type === 'vm' ? `tap${id}` : 'wg0', netns: null,
    interface_kind: type === 'vm' ? 'vm' : 'wireguard', addresses: '[]', up_kbps: 0, down_kbps: 0, class_minor: null,
    status: 'applied', created_at: NOW, updated_at: NOW,
  });
}

async function rejectsWith(promise: Promise<unknown>, type: new (...args: never[]) => Error, field: string | undefined, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    if (field !== undefined) assert.equal((error as { field?: string }).field, field);
    assert.match((error as Error).message, message);
    return true;
  });
}

const HOST_TABLES = ['panel_plugins', 'vms', 'peers', 'networks', 'panel_sessions', 'panel_settings', 'panel_users', 'panel_knex_migrations', 'panel_knex_migrations_lock'];
async function dropHostTables(knex: Knex): Promise<void> {
  for (const table of HOST_TABLES) await knex.schema.dropTableIfExists(table);
}

for (const engine of ENGINES) {
  describe(`node agents on ${engine.id}`, () => {
    test('the reference host\'s 0002 puts networks and VMs on nodes: one interface name per node, down and up keeping rows', async (t) => {
      const knex = await openEngine(t, engine, { cleanup: dropHostTables });
      if (!knex) return;
      await dropHostTables(knex);
      await hostTables.up(knex);
      const row = (name: string, extra: Record<string, unknown> = {}) => ({ name, interface: 'wg0', netns: '', created_at: NOW, updated_at: NOW, ...extra });
      const [networkId] = await knex('networks').insert(row('office'), ['id']);
      const network = Number(typeof networkId === 'object' ? (networkId as { id: number }).id : networkId);
      await knex('peers').insert({ network_id: network, name: 'laptop', public_key: 'k'.repeat(44), allowed_ips: '[]', created_at: NOW, updated_at: NOW });
      await knex('vms').insert(row('web-01', { interface: 'tap0' }));

      await hostNodes.up(knex);
      await hostNodes.up(knex);

      assert.deepEqual((await knex('networks').select('name', 'node')).map((r) => [r.name, r.node]), [['office', '']], 'existing rows are on the panel\'s machine');
      await knex('networks').insert(row('branch', { node: 'gw-1' }));
      await knex('vms').insert(row('web-02', { interface: 'tap0', node: 'hv-1' }));
      await rejectsWith(knex('networks').insert(row('again', { node: 'gw-1' })), Error, undefined, /unique|duplicate/i);
      await rejectsWith(knex('vms').insert(row('again', { interface: 'tap0', node: 'hv-1' })), Error, undefined, /unique|duplicate/i);

      await knex('networks').where({ node: 'gw-1' }).delete();
      await knex('vms').where({ node: 'hv-1' }).delete();
      await hostNodes.down(knex);
      assert.deepEqual([await knex.schema.hasColumn('networks', 'node'), await knex.schema.hasColumn('vms', 'node')], [false, false]);
      assert.deepEqual((await knex('peers').select('name')).map((r) => r.name), ['laptop'], 'a network\'s peers survive its table being rebuilt');
      await rejectsWith(knex('networks').insert(row('again')), Error, undefined, /unique|duplicate/i);
      await hostNodes.up(knex);
      assert.equal((await knex('networks').first()).node, '');
    });


    test('0016 adds the token ciphertext, pin and version columns, down and up again, keeping the rows', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const columns = async () => Promise.all(['token_ciphertext', 'tls_fingerprint', 'last_version'].map((c) => knex.schema.hasColumn('bw_agents', c)));
      assert.deepEqual(await columns(), [true, true, true]);
      await knex('bw_agents').insert({
        name: 'hv-01', url: 'https://hv-01.example:9731', token_hash: 'f'.repeat(64), token_ciphertext: `v1:${'A'.repeat(200)}`,
        tls_fingerprint: 'ab'.repeat(32), last_version: '0.1.0', enabled: true, status: 'unknown', created_at: NOW, updated_at: NOW,
      });

      await addTokenCiphertext.down(knex);
      assert.deepEqual(await columns(), [false, false, false]);
      const kept = await knex('bw_agents').first();
      assert.deepEqual([kept.name, kept.url, kept.token_hash, Boolean(kept.enabled)], ['hv-01', 'https://hv-01.example:9731', 'f'.repeat(64), true]);
      await addTokenCiphertext.down(knex);

      await addTokenCiphertext.up(knex);
      await addTokenCiphertext.up(knex);
      assert.deepEqual(await columns(), [true, true, true], 'a second up is a no-op');
      const after = await knex('bw_agents').first();
      assert.deepEqual([after.name, after.token_ciphertext, after.tls_fingerprint], ['hv-01', null, null], 'the row is kept; its token is gone with the column');
      await rejectsWith(
        knex('bw_agents').insert({ name: 'hv-01', url: 'http://x:1', token_hash: 'x', enabled: true, status: 'unknown', created_at: NOW, updated_at: NOW }),
        Error, undefined, /unique|duplicate/i,
      );
    });

    test('a registered agent keeps its token encrypted, shows it nowhere, and hands it decrypted to the manager', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { registry } = registryOn(knex);

      const agent = await registry.create({ name: 'hv-01', url: 'https://hv-01.example:9731/', token: TOKEN, tls_fingerprint: 'AB:'.repeat(31) + 'AB' });

      assert.deepEqual(
        { ...agent },
        {
          id: agent.id, name: 'hv-01', url: 'https://hv-01.example:9731', tlsFingerprint: 'ab'.repeat(32), enabled: true, tokenState: 'set',
          lastSeenAt: null, lastError: null, lastVersion: null, createdAt: new Date(NOW), updatedAt: new Date(NOW),
        },
      );
      const [row] = await knex('bw_agents').select('*');
      assert.ok(!Object.values(row).some((value) => String(value).includes(TOKEN)), 'no column holds the token');
      assert.match(String(row.token_ciphertext), /^v1:/);
      assert.match(String(row.token_hash), /^[0-9a-f]{64}$/);
      assert.deepEqual(await registry.records(), [
        { id: agent.id, name: 'hv-01', url: 'https://hv-01.example:9731', token: TOKEN, tlsFingerprint: 'ab'.repeat(32), enabled: true },
      ]);
      assert.ok(!JSON.stringify(await registry.list()).includes(TOKEN));
      assert.ok(!JSON.stringify(await registry.get(agent.id)).includes(TOKEN));
    });

    test('names are unique (409 on name), 64 characters fit and 65 do not, and `local` is reserved', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { registry } = registryOn(knex);
      const long = `n${'x'.repeat(63)}`;
      await registry.create({ name: long, url: `http://${'h'.repeat(200)}.example:9731`, token: TOKEN });
      assert.equal((await registry.byName(long))?.name, long, 'a 64-character name is stored whole');

      await rejectsWith(registry.create({ name: long, url: 'http://other:9731', token: TOKEN }), ConflictError, 'name', /already registered/);
      await rejectsWith(registry.create({ name: `${long}y`, url: 'http://x:1', token: TOKEN }), InputError, 'name', /1-64 characters/);
      await rejectsWith(registry.create({ name: 'local', url: 'http://x:1', token: TOKEN }), InputError, 'name', /reserved/);

      // Two panels registering the same name at once: the unique index settles it.
      const results = await Promise.allSettled([
        registry.create({ name: 'race', url: 'http://a:1', token: TOKEN }),
        registry.create({ name: 'race', url: 'http://b:1', token: TOKEN }),
      ]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const refused = results.find((r) => r.status === 'rejected');
      assert.ok(refused?.reason instanceof ConflictError && refused.reason.field === 'name', String(refused?.reason));
      assert.equal((await registry.list()).length, 2);
    });

    test('a change updates only what it names; a new token replaces the stored one', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { registry } = registryOn(knex);
      const agent = await registry.create({ name: 'gw-1', url: 'https://gw-1:9731', token: TOKEN, tls_fingerprint: 'cd'.repeat(32) });
      const newToken = 'z'.repeat(40);

      const { before, after } = await registry.update(agent.id, { url: 'https://gw-1.example:443', token: newToken, enabled: false });

      assert.equal(before.url, 'https://gw-1:9731');
      assert.deepEqual([after.name, after.url, after.tlsFingerprint, after.enabled], ['gw-1', 'https://gw-1.example:443', 'cd'.repeat(32), false]);
      assert.equal((await registry.records())[0]?.token, newToken);
      await rejectsWith(registry.update(agent.id, { url: 'http://gw-1:9731' }), InputError, 'tls_fingerprint', /needs an https:\/\/ url/);
      const unpinned = await registry.update(agent.id, { url: 'http://gw-1:9731', tls_fingerprint: null });
      assert.deepEqual([unpinned.after.url, unpinned.after.tlsFingerprint], ['http://gw-1:9731', null]);
      await rejectsWith(registry.update(agent.id, {}), InputError, 'body', /names no field/);
      await rejectsWith(registry.update(9999, { enabled: true }), NotFoundError, undefined, /No node agent with id `9999`/);
    });

    test('a node that holds subjects can be neither renamed nor deleted; once empty it can', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { registry } = registryOn(knex);
      const agent = await registry.create({ name: 'hv-02', url: 'http://hv-02:9731', token: TOKEN });
      await placeSubject(knex, 'hv-02', 'vm', '7');

      await rejectsWith(registry.update(agent.id, { name: 'hv-03' }), ConflictError, 'name', /cannot be renamed while 1 subject is on it/);
      await rejectsWith(registry.remove(agent.id), ConflictError, 'name', /cannot be deleted while 1 subject is on it/);
      assert.equal((await registry.get(agent.id)).name, 'hv-02');

      await knex('bw_limits').where({ node: 'hv-02' }).delete();
      assert.equal((await registry.update(agent.id, { name: 'hv-03' })).after.name, 'hv-03');
      await registry.remove(agent.id);
      assert.deepEqual(await registry.list(), []);
      await rejectsWith(registry.get(agent.id), NotFoundError, undefined, /No node agent/);
    });

    test('an agent whose token the current key cannot decrypt is left out of the manager\'s records, with a warning', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const before = registryOn(knex);
      await before.registry.create({ name: 'old-key', url: 'http://a:1', token: TOKEN });
      await knex('bw_agents').insert({ name: 'pre-0016', url: 'http://b:1', token_hash: 'f'.repeat(64), enabled: true, status: 'unknown', created_at: NOW, updated_at: NOW });

      const { registry, warnings } = registryOn(knex, box());
      const fresh = await registry.create({ name: 'new-key', url: 'http://c:1', token: TOKEN });

      assert.deepEqual((await registry.records()).map((r) => r.name), ['new-key']);
      assert.equal(warnings.length, 2);
      assert.match(warnings.join('\n'), /node old-key is left out: Cannot decrypt an agent token with the secret key from PANEL_BANDWIDTH_SECRET_KEY/);
      assert.match(warnings.join('\n'), /node pre-0016 has no stored token/);
      assert.deepEqual((await registry.list()).map((a) => [a.name, a.tokenState]), [['new-key', 'set'], ['old-key', 'unreadable'], ['pre-0016', 'missing']]);

      await registry.update((await registry.byName('old-key'))!.id, { token: TOKEN });
      assert.deepEqual((await registry.records()).map((r) => r.name), ['new-key', 'old-key'], 'entering the token again fixes it');
      assert.equal(fresh.tokenState, 'set');
    });

    test('what the manager learns of a node is stored and shown', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      const { registry } = registryOn(knex);
      const agent = await registry.create({ name: 'hv-04', url: 'http://hv-04:9731', token: TOKEN });

      await registry.recordHealth('hv-04', { status: 'connected', lastSeenAt: NOW + 5, lastError: null, version: '0.2.0' });
      await registry.recordHealth('hv-04', { status: 'unreachable', lastError: 'connect ECONNREFUSED' });

      const view = await registry.get(agent.id);
      assert.deepEqual([view.lastSeenAt?.getTime(), view.lastVersion, view.lastError], [NOW + 5, '0.2.0', 'connect ECONNREFUSED']);
      assert.equal((await knex('bw_agents').first()).status, 'unreachable');
    });

    test('a node\'s bandwidth sums the usage of the subjects on it, exactly past 2^53, and no other node\'s', async (t) => {
      const knex = await openMigrated(t, engine);
      if (!knex) return;
      await placeSubject(knex, 'hv-01', 'vm', '1');
      await placeSubject(knex, 'hv-01', 'peer', '1');
      await placeSubject(knex, 'local', 'vm', '2');
      const day = Math.floor(NOW / DAY) * DAY;
      const hourly = (type: string, id: string, start: number, up: bigint, down: bigint) =>
        ({ subject_type: type, subject_id: id, hour_start: start, up_bytes: fromBigInt(up), down_bytes: fromBigInt(down) });
      await knex('bw_usage_hourly').insert([
        hourly('vm', '1', day + 2 * HOUR, ABOVE_2_53, 10n),
        hourly('peer', '1', day + 2 * HOUR, 1n, 20n),
        hourly('vm', '1', day + 5 * HOUR, 2n, 30n),
        hourly('vm', '2', day + 2 * HOUR, 1000n, 1000n), // on the panel's machine
        hourly('peer', '9', day + 2 * HOUR, 1000n, 1000n), // no limit row: on no node
      ]);
      await knex('bw_usage_daily').insert([
        { subject_type: 'vm', subject_id: '1', day_start: day - DAY, up_bytes: '5', down_bytes: fromBigInt(ABOVE_2_53) },
        { subject_type: 'vm', subject_id: '2', day_start: day - DAY, up_bytes: '7', down_bytes: '7' },
      ]);

      // Whole hours of today come from the hourly roll-up, yesterday (a whole day) from the daily one.
      const today = await nodeTotals(knex, 'hv-01', day, day + 6 * HOUR);
      assert.deepEqual(today, { upBytes: ABOVE_2_53 + 3n, downBytes: 60n });
      const sinceYesterday = await nodeTotals(knex, 'hv-01', day - DAY, day + 6 * HOUR);
      assert.deepEqual(sinceYesterday, { upBytes: ABOVE_2_53 + 8n, downBytes: ABOVE_2_53 + 60n });
      assert.deepEqual(await nodeTotals(knex, 'hv-01', day + 3 * HOUR, day + 6 * HOUR), { upBytes: 2n, downBytes: 30n });
      assert.deepEqual(await nodeTotals(knex, 'local', day - DAY, day + 6 * HOUR), { upBytes: 1007n, downBytes: 1007n });
      assert.deepEqual(await nodeTotals(knex, 'nowhere', day - DAY, day + 6 * HOUR), { upBytes: 0n, downBytes: 0n });

      const hours = await nodeSeries(knex, 'hv-01', day, day + 6 * HOUR, 'hour');
      assert.deepEqual(hours.map((p) => [(p.start - day) / HOUR, p.upBytes, p.downBytes]), [
        [0, 0n, 0n], [1, 0n, 0n], [2, ABOVE_2_53 + 1n, 30n], [3, 0n, 0n], [4, 0n, 0n], [5, 2n, 30n],
      ]);
      const days = await nodeSeries(knex, 'hv-01', day - DAY, day + DAY, 'day');
      assert.deepEqual(days.map((p) => [p.start, p.upBytes, p.downBytes]), [[day - DAY, 5n, ABOVE_2_53], [day, 0n, 0n]]);
    });
  });
}
