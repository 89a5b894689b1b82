import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { writeTick } from '../../src/accounting/store.js';
import type { Sample } from '../../src/accounting/sample.js';
import { connect } from '../../src/db/connect.js';
import { ENGINES, type Engine } from '../support/databases.js';
import { ownDatabase } from '../support/own-database.js';
import { bandwidthRows, created, hostRows, rowCounts, startPanel, wgKey, type Agent, type TestPanel } from '../support/panel.js';

const TOTAL_UP = 'bandwidth_total_up_kbps';
const TOTAL_DOWN = 'bandwidth_total_down_kbps';
const DEFAULT_UP = 'bandwidth_default_up_kbps';
const DEFAULT_DOWN = 'bandwidth_default_down_kbps';
const OVERVIEW = '/admin/bandwidth';

const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
/** The `value` of the first input named `name` on a page. */
const inputValue = (html: string, name: string) => new RegExp(`<input name="${name}" value="([^"]*)"`).exec(html)?.[1];
/** The form error above a host form: the field it names and its text. */
function formError(html: string): { field: string; message: string } | undefined {
  const match = /<p class="error" role="alert" data-field="([^"]*)">([^<]*)<\/p>/.exec(html);
  return match ? { field: match[1]!, message: match[2]! } : undefined;
}
const NETWORK_FIELDS = [TOTAL_UP, TOTAL_DOWN, DEFAULT_UP, DEFAULT_DOWN];

/** A panel on a database of the test's own on `engine` (SQLite: a fresh file). */
async function panelOn(t: TestContext, engine: Engine): Promise<TestPanel | undefined> {
  const own = await ownDatabase(t, engine, 'netcaps');
  if (!own) return undefined;
  const host = await startPanel(t, { databaseUrl: own.url });
  own.closeFirst(() => host.close());
  return host;
}

/** The four caps of a network as the host's network API and the plugin's answer them. */
const capsOf = (body: Record<string, unknown>) => [body[TOTAL_UP], body[TOTAL_DOWN], body[DEFAULT_UP], body[DEFAULT_DOWN]];

/** Everything a refused request must leave as it was: the host's rows, the plugin's limits, events and network caps. */
async function everything(db: Knex) {
  return { ...(await hostRows(db)), ...(await bandwidthRows(db)), bw_network_caps: await db('bw_network_caps').orderBy('id') };
}

async function limitOf(api: Agent, type: 'peer' | 'vm', id: number): Promise<Record<string, unknown>> {
  const limits = (await api.get('/api/bandwidth/limits').expect(200)).body.limits as Record<string, unknown>[];
  const limit = limits.find((row) => row.subject_type === type && row.subject_id === String(id));
  assert.ok(limit, `${type} ${id} has a limit row`);
  return limit;
}

describe('network caps through the host and the plugin API', () => {
  for (const engine of ENGINES) {
    test(`a network's caps are stored from the host's body, answered by both APIs and changed field by field (${engine.id})`, async (t) => {
      const host = await panelOn(t, engine);
      if (!host) return;
      const { api } = host;

      const network = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_UP]: 30_000, [TOTAL_DOWN]: '60000', [DEFAULT_UP]: 5_000 }), 'network');
      assert.deepEqual(capsOf(network), [30_000, 60_000, 5_000, 0], 'the create answer carries the stored caps (network.serialize)');
      assert.deepEqual(capsOf((await api.get(`/api/networks/${network.id}`).expect(200)).body.network), [30_000, 60_000, 5_000, 0]);
      const listed = (await api.get('/api/networks').expect(200)).body.networks as Record<string, unknown>[];
      assert.deepEqual(capsOf(listed[0]!), [30_000, 60_000, 5_000, 0]);

      const read = (await api.get(`/api/bandwidth/networks/${network.id}`).expect(200)).body.network as Record<string, unknown>;
      assert.deepEqual(
        { ...read, updated_at: undefined },
        {
          network_id: network.id, name: 'office', node: null, interface: 'wg0', netns: null,
          [TOTAL_UP]: 30_000, [TOTAL_DOWN]: 60_000, [DEFAULT_UP]: 5_000, [DEFAULT_DOWN]: 0,
          peers: 0, current_up_kbps: 0, current_down_kbps: 0, use_up_percent: 0, use_down_percent: 0, updated_at: undefined,
        },
      );
      assert.match(String(read.updated_at), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);

      // The plugin's own API: a field left out keeps its value.
      const put = await api.put(`/api/bandwidth/networks/${network.id}`).send({ [DEFAULT_DOWN]: 10_000 }).expect(200);
      assert.deepEqual(capsOf(put.body.network), [30_000, 60_000, 5_000, 10_000]);
      // The host's API: the same fields in a network body.
      const updated = await api.put(`/api/networks/${network.id}`).send({ [TOTAL_UP]: 0, name: 'head office' }).expect(200);
      assert.equal(updated.body.network.name, 'head office');
      assert.deepEqual(capsOf(updated.body.network), [0, 60_000, 5_000, 10_000]);
      assert.deepEqual(capsOf((await api.get(`/api/bandwidth/networks/${network.id}`).expect(200)).body.network), [0, 60_000, 5_000, 10_000]);
      const stored = await host.db('bw_network_caps').where({ network_id: String(network.id) });
      assert.deepEqual(stored.map((row) => [row.interface, Number(row.total_up_kbps), Number(row.total_down_kbps), Number(row.default_up_kbps), Number(row.default_down_kbps)]), [
        ['wg0', 0, 60_000, 5_000, 10_000],
      ]);
    });

    test(`a default above the network cap is refused with 400 naming the field, and nothing is written (${engine.id})`, async (t) => {
      const host = await panelOn(t, engine);
      if (!host) return;
      const { api } = host;

      const refusedCreate = await api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_DOWN]: 20_000, [DEFAULT_DOWN]: 25_000 }).expect(400);
      assert.equal(refusedCreate.body.error.field, DEFAULT_DOWN);
      assert.match(refusedCreate.body.error.message, /bandwidth_default_down_kbps.*above the network's download cap of 20000/);
      assert.deepEqual(await rowCounts(host.db), { networks: 0, peers: 0, vms: 0 }, 'the host wrote no network');
      assert.equal((await host.db('bw_network_caps')).length, 0);

      const network = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_UP]: 10_000, [TOTAL_DOWN]: 20_000 }), 'network');
      const before = await everything(host.db);
      for (const [request, field] of [
        [api.put(`/api/networks/${network.id}`).send({ name: 'renamed', [DEFAULT_UP]: 10_001 }), DEFAULT_UP],
        [api.put(`/api/networks/${network.id}`).send({ [TOTAL_DOWN]: 5_000, [DEFAULT_DOWN]: 6_000 }), DEFAULT_DOWN],
        [api.put(`/api/bandwidth/networks/${network.id}`).send({ [DEFAULT_UP]: 10_001 }), DEFAULT_UP],
        // Lowering the network cap under the stored default is the same mistake from the other side.
        [api.put(`/api/bandwidth/networks/${network.id}`).send({ [DEFAULT_UP]: 8_000, [TOTAL_UP]: 7_000 }), DEFAULT_UP],
        [api.put(`/api/bandwidth/networks/${network.id}`).send({ [TOTAL_UP]: '10 mbit' }), TOTAL_UP],
        [api.put(`/api/bandwidth/networks/${network.id}`).send({ [TOTAL_DOWN]: -1 }), TOTAL_DOWN],
        [api.put(`/api/bandwidth/networks/${network.id}`).send({ [DEFAULT_DOWN]: 1.5 }), DEFAULT_DOWN],
        [api.put(`/api/bandwidth/networks/${network.id}`).send({ bandwidth_total_kbps: 1 }), 'bandwidth_total_kbps'],
        [api.put(`/api/bandwidth/networks/${network.id}`).send({}), 'body'],
        [api.put(`/api/bandwidth/networks/${network.id}`).send([1]), 'body'],
        [api.post('/api/networks').send({ name: 'other', interface: 'wg1', [TOTAL_UP]: null }), TOTAL_UP],
      ] as const) {
        const response = await request;
        assert.equal(response.status, 400, `${field}: ${response.text}`);
        assert.equal(response.body.error.field, field, response.body.error.message);
      }
      assert.deepEqual(await everything(host.db), before, 'no refused request wrote anything');
      await api.get('/api/bandwidth/networks/999999').expect(404);
      await api.put('/api/bandwidth/networks/999999').send({ [TOTAL_UP]: 1 }).expect(404);
      await api.get('/api/bandwidth/networks/x').expect(404);
      await host.visitor().get(`/api/bandwidth/networks/${network.id}`).expect(401);
    });
  }
});

describe('when the plugin cannot store a network\'s caps', () => {
  test('the host does not create the network (503), undoes an update (503), and a retry stores them (postgres)', { timeout: 120_000 }, async (t) => {
    const engine = ENGINES.find((e) => e.id === 'postgres')!;
    const own = await ownDatabase(t, engine, 'netcapfail');
    if (!own) return;
    // The panel's sessions give up a lock wait after 1.5 s (as MariaDB's innodb_lock_wait_timeout would, later).
    const host = await startPanel(t, { databaseUrl: `${own.url}?options=${encodeURIComponent('-c lock_timeout=1500')}` });
    own.closeFirst(() => host.close());
    const { api } = host;
    const office = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_UP]: 10_000 }), 'network');

    // Another session holds bw_network_caps against writes (reads go on: validate still passes).
    const holder = connect(own.url);
    const trx = await holder.transaction();
    await trx.raw('LOCK TABLE bw_network_caps IN EXCLUSIVE MODE');
    let released = false;
    const release = async () => {
      if (!released) await trx.commit();
      released = true;
    };
    own.closeFirst(async () => {
      await release();
      await holder.destroy();
    });

    const refused = await api.post('/api/networks').send({ name: 'lab', interface: 'wg1', [TOTAL_DOWN]: 20_000 });
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.body.error.message, /^The network was not created: plugin `bandwidth` could not store its settings \(.+\)\. Nothing was saved; try again\.$/);
    const undone = await api.put(`/api/networks/${office.id}`).send({ name: 'head office', [TOTAL_UP]: 20_000 });
    assert.equal(undone.status, 503, undone.text);
    assert.match(undone.body.error.message, /^The network was not changed: plugin `bandwidth`/);
    await release();

    const networks = (await api.get('/api/networks').expect(200)).body.networks as Record<string, unknown>[];
    assert.deepEqual(networks.map((n) => [n.name, ...capsOf(n)]), [['office', 10_000, 0, 0, 0]], 'no network without its caps, and the old name and caps stay');
    const retried = await created(api.post('/api/networks').send({ name: 'lab', interface: 'wg1', [TOTAL_DOWN]: 20_000 }), 'network');
    assert.deepEqual(capsOf(retried), [0, 20_000, 0, 0]);
  });
});

describe('the host\'s network forms (the network.form slot)', () => {
  test('the settings form shows the stored caps; a refused submit answers 400, names the field, keeps what was typed and writes nothing', async (t) => {
    const host = await startPanel(t);
    const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_UP]: 30_000, [TOTAL_DOWN]: 60_000, [DEFAULT_DOWN]: 10_000 }), 'network');
    const admin = await host.login();
    const page = `/admin/networks/${network.id}`;

    const shown = (await admin.agent.get(page).expect(200)).text;
    assert.match(shown, /<fieldset class="bandwidth-fields network-fields">/);
    assert.deepEqual(NETWORK_FIELDS.map((name) => inputValue(shown, name)), ['30000', '60000', '0', '10000']);

    const before = await everything(host.db);
    const typed = { name: 'renamed', interface: 'wg0', netns: '', node: '', [TOTAL_UP]: '30000', [TOTAL_DOWN]: '8000', [DEFAULT_UP]: '1000', [DEFAULT_DOWN]: '10000' };
    const refused = await admin.form(page, typed).expect(400);
    assert.deepEqual(formError(refused.text), {
      field: DEFAULT_DOWN,
      message: '`bandwidth_default_down_kbps` (10000 kbit/s) is above the network&#39;s download cap of 8000 kbit/s',
    });
    assert.deepEqual(NETWORK_FIELDS.map((name) => inputValue(refused.text, name)), ['30000', '8000', '1000', '10000'], 'the typed values come back');
    assert.match(refused.text, /<input name="name" value="renamed"/, 'the host\'s own fields come back too');
    assert.deepEqual(await everything(host.db), before, 'neither the network nor its caps changed');

    const bad = await admin.form(page, { ...typed, [TOTAL_DOWN]: '"><b>8 Mbit</b>' }).expect(400);
    assert.equal(formError(bad.text)?.field, TOTAL_DOWN);
    assert.equal(inputValue(bad.text, TOTAL_DOWN), '&#34;&gt;&lt;b&gt;8 Mbit&lt;/b&gt;', 'escaped');

    await admin.form(page, { ...typed, [DEFAULT_DOWN]: '8000' }).expect(303);
    assert.deepEqual(capsOf((await host.api.get(`/api/bandwidth/networks/${network.id}`).expect(200)).body.network), [30_000, 8_000, 1_000, 8_000]);
  });

  test('the add-a-network form carries the fields too: a refused create keeps what was typed, an accepted one stores the caps', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    const empty = (await admin.agent.get('/admin/networks').expect(200)).text;
    assert.deepEqual(NETWORK_FIELDS.map((name) => inputValue(empty, name)), ['0', '0', '0', '0']);

    const typed = { name: 'office', interface: 'wg0', netns: '', node: '', [TOTAL_UP]: '20000', [TOTAL_DOWN]: '0', [DEFAULT_UP]: '25000', [DEFAULT_DOWN]: '0' };
    const refused = await admin.form('/admin/networks', typed).expect(400);
    assert.equal(formError(refused.text)?.field, DEFAULT_UP);
    assert.deepEqual(NETWORK_FIELDS.map((name) => inputValue(refused.text, name)), ['20000', '0', '25000', '0']);
    assert.deepEqual(await rowCounts(host.db), { networks: 0, peers: 0, vms: 0 });

    await admin.form('/admin/networks', { ...typed, [DEFAULT_UP]: '5000', [DEFAULT_DOWN]: '0' }).expect(303);
    const [network] = (await host.api.get('/api/networks').expect(200)).body.networks as Record<string, unknown>[];
    assert.deepEqual(capsOf(network!), [20_000, 0, 5_000, 0]);
  });
});

describe('default caps', () => {
  test('peers without a cap of their own take the network default, shown with its source; a new default re-applies to them only', async (t) => {
    const host = await startPanel(t);
    const { api } = host;
    const network = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0', [DEFAULT_UP]: 2_000, [DEFAULT_DOWN]: 8_000 }), 'network');
    const plain = await created(api.post(`/api/networks/${network.id}/peers`).send({ name: 'plain', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }), 'peer');
    const half = await created(
      api.post(`/api/networks/${network.id}/peers`).send({ name: 'half', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], bandwidth_down_kbps: 50_000 }),
      'peer',
    );
    const own = await created(
      api.post(`/api/networks/${network.id}/peers`).send({ name: 'own', public_key: wgKey(3), allowed_ips: ['10.8.0.4/32'], bandwidth_up_kbps: 1_000, bandwidth_down_kbps: 1_000 }),
      'peer',
    );
    const effective = async (id: number) => {
      const limit = await limitOf(api, 'peer', id);
      return [limit.effective_up_kbps, limit.effective_down_kbps, limit.effective_source];
    };
    assert.deepEqual(await effective(plain.id), [2_000, 8_000, { up: 'default', down: 'default' }]);
    assert.deepEqual(await effective(half.id), [2_000, 50_000, { up: 'default', down: 'own' }]);
    assert.deepEqual(await effective(own.id), [1_000, 1_000, { up: 'own', down: 'own' }]);
    assert.deepEqual([plain.bandwidth_up_kbps, plain.bandwidth_down_kbps], [0, 0], 'the peer\'s own caps stay 0: the default is not copied into them');
    // The host's peer table: the Limit column says where a cap comes from; so does the peer's form.
    const admin = await host.login();
    const networkPage = (await admin.agent.get(`/admin/networks/${network.id}`).expect(200)).text;
    const table = text(networkPage);
    assert.match(table, /plain .* 2 \/ 8 Mbps \(network default\)/);
    assert.match(table, /half .* 2 \/ 50 Mbps \(upload: network default\)/);
    assert.match(table, /own .* 1 \/ 1 Mbps(?! \()/);
    // Under a default, 0 in a peer's form means the default, and the form says so.
    assert.match(text(networkPage), /0 = the network&#39;s default, or unlimited where it has none/);
    assert.match(networkPage, /name="bandwidth_up_unlimited" value="1" > No upload cap of its own \(network default 2 Mbps\)<\/label>/);
    const form = (await admin.agent.get(`/admin/networks/${network.id}/peers/${half.id}`).expect(200)).text;
    assert.match(form, /> No download cap of its own \(network default 8 Mbps\)<\/label>/);
    assert.deepEqual([...form.matchAll(/<p class="muted small effective-cap" data-direction="(\w+)" data-source="(\w+)">([^<]*)<\/p>/g)].map((m) => [m[1], m[2], m[3]]), [
      ['up', 'default', 'Upload in force: 2 Mbps, from the network default.'],
    ], 'only the direction that is not its own cap is explained');

    const ownBefore = await api.get(`/api/bandwidth/events?subject_type=peer&subject_id=${own.id}`).expect(200);
    await api.put(`/api/bandwidth/networks/${network.id}`).send({ [DEFAULT_UP]: 3_000, [DEFAULT_DOWN]: 0 }).expect(200);
    assert.deepEqual(await effective(plain.id), [3_000, 0, { up: 'default', down: 'none' }]);
    assert.deepEqual(await effective(half.id), [3_000, 50_000, { up: 'default', down: 'own' }]);
    assert.deepEqual(await effective(own.id), [1_000, 1_000, { up: 'own', down: 'own' }]);
    const ownAfter = await api.get(`/api/bandwidth/events?subject_type=peer&subject_id=${own.id}`).expect(200);
    assert.equal(ownAfter.body.total, ownBefore.body.total, 'a peer with caps of its own hears nothing of a new default');

    // The host's peer API shows the same through peer.serialize.
    const peers = (await api.get(`/api/networks/${network.id}/peers`).expect(200)).body.peers as Record<string, unknown>[];
    const plainPeer = peers.find((peer) => peer.id === plain.id)!;
    assert.deepEqual([plainPeer.bandwidth_up_kbps, plainPeer.bandwidth_down_kbps], [0, 0]);
  });
});

/**
 * Two collector ticks a minute apart for each peer, as the `collect` timer writes them: each peer
 * sent `upKbps` and received `downKbps` over the minute (WireGuard's `transfer-rx` is what the peer sent).
 */
async function seedRates(db: Knex, peers: { id: number; key: string; upKbps: number; downKbps: number }[]): Promise<void> {
  const at = Date.now() - 30_000;
  const perMinute = (kbps: number) => BigInt(kbps * 1000 / 8 * 60);
  const tick = (minutes: bigint, when: number): Sample[] => peers.map((peer) => ({
    identity: { node: 'local', source: 'wireguard', interface: 'wg0', seriesKey: peer.key, ifindex: 4, bootId: 'boot-1' },
    subjectType: 'peer', subjectId: String(peer.id), rxBytes: perMinute(peer.upKbps) * minutes, txBytes: perMinute(peer.downKbps) * minutes,
    rxPackets: null, txPackets: null, at: when,
  }));
  await writeTick(db, tick(1n, at - 60_000), { billing: 'wire' });
  await writeTick(db, tick(2n, at), { billing: 'wire' });
}

/** The overview's row of a network: its cells' text, and the percent of each direction's fullness. */
function networkRow(html: string, id: number): { cells: string[]; up: string; down: string } | undefined {
  const row = new RegExp(`<tr data-network="${id}"[^>]*>([\\s\\S]*?)</tr>`).exec(html)?.[1];
  if (!row) return undefined;
  const percent = (direction: string) => new RegExp(`<td class="use network-use" data-direction="${direction}" data-percent="([^"]*)"`).exec(row)?.[1] ?? '?';
  return { cells: [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => text(m[1]!)), up: percent('up'), down: percent('down') };
}

describe('the overview and the subject page', () => {
  test('the overview lists each network with its caps and how full it is, from its peers\' live rates', async (t) => {
    const host = await startPanel(t);
    const { api } = host;
    const office = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_UP]: 10_000, [TOTAL_DOWN]: 30_000, [DEFAULT_DOWN]: 20_000 }), 'network');
    const lab = await created(api.post('/api/networks').send({ name: 'lab <b>', interface: 'wg1' }), 'network');
    const a = await created(api.post(`/api/networks/${office.id}/peers`).send({ name: 'a', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }), 'peer');
    const b = await created(api.post(`/api/networks/${office.id}/peers`).send({ name: 'b', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }), 'peer');
    await seedRates(host.db, [{ id: a.id, key: wgKey(1), upKbps: 1_000, downKbps: 12_000 }, { id: b.id, key: wgKey(2), upKbps: 1_500, downKbps: 12_000 }]);

    const admin = await host.login();
    const html = (await admin.agent.get(OVERVIEW).expect(200)).text;
    assert.match(html, /<section class="card" id="networks">/);
    assert.deepEqual(networkRow(html, office.id), {
      cells: ['office', 'wg0', '10 / 30 Mbps', 'Unlimited / 20 Mbps', '2', '2.5 Mbps / 24.0 Mbps', '25% 25%', '80% 80%'],
      up: '25',
      down: '80',
    });
    assert.deepEqual(networkRow(html, lab.id), { cells: ['lab &lt;b&gt;', 'wg1', 'none', 'none', '0', '0 kbps / 0 kbps', '—', '—'], up: '', down: '' });
    assert.ok(html.includes('lab &lt;b&gt;') && !html.includes('lab <b>'), 'the network name is escaped');
    assert.match(text(html), new RegExp(`network\\.caps network ${office.id} cap Unlimited → 10 / 30 Mbps; default per peer Unlimited → Unlimited / 20 Mbps`), 'the audit log says what changed');
    // A peer under the default shows it, marked as the default, in its Cap ↓ cell.
    const row = new RegExp(`<tr data-subject="peer:${a.id}"[^>]*>([\\s\\S]*?)</tr>`).exec(html)?.[1] ?? '';
    const cells = [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => text(m[1]!));
    assert.deepEqual([cells[3], cells[4]], ['Unlimited', '20 Mbps default']);

    const api24 = (await api.get(`/api/bandwidth/networks/${office.id}`).expect(200)).body.network;
    assert.deepEqual([api24.peers, api24.current_up_kbps, api24.current_down_kbps, api24.use_up_percent, api24.use_down_percent], [2, 2_500, 24_000, 25, 80]);
  });

  test('the subject page says what cap is in force per direction and where it comes from', async (t) => {
    const host = await startPanel(t);
    const { api } = host;
    const network = await created(api.post('/api/networks').send({ name: 'office', interface: 'wg0', [TOTAL_UP]: 50_000, [TOTAL_DOWN]: 50_000, [DEFAULT_UP]: 4_000 }), 'network');
    const peer = await created(
      api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'], bandwidth_down_kbps: 9_000 }),
      'peer',
    );
    const admin = await host.login();
    const html = (await admin.agent.get(`${OVERVIEW}/peer/${peer.id}`).expect(200)).text;
    const facts = [...html.matchAll(/<dd class="effective" data-direction="(up|down)" data-source="([a-z]+)">([\s\S]*?)<\/dd>/g)].map((m) => [m[1], m[2], text(m[3]!)]);
    assert.deepEqual(facts, [
      ['up', 'default', '4 Mbps · from the default of network office'],
      ['down', 'own', '9 Mbps · from its own cap'],
    ]);
    assert.equal(text(/<dd class="network-caps">([\s\S]*?)<\/dd>/.exec(html)?.[1] ?? ''), 'office: network cap 50 / 50 Mbps, default per peer 4 Mbps / Unlimited');
    assert.equal(text(/<dd class="min">([\s\S]*?)<\/dd>/.exec(html)?.[1] ?? ''), 'an equal share of the network cap');

    // A peer capped by the default alone is shaped: its status is the kernel's, not `unlimited`.
    const plain = await created(api.post(`/api/networks/${network.id}/peers`).send({ name: 'plain', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }), 'peer');
    const plainPage = (await admin.agent.get(`${OVERVIEW}/peer/${plain.id}`).expect(200)).text;
    assert.match(plainPage, /<dt>Status<\/dt><dd><span class="badge pending">pending<\/span>/);
    assert.match(text(plainPage), /In force ↓ \(download\) Unlimited · no cap: none of its own and no network default/);
  });
});
