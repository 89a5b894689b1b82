import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { bandwidthRows, created, hostRows, startPanel, wgKey, type TestPanel } from '../support/panel.js';

const UP = 'bandwidth_up_kbps';
const DOWN = 'bandwidth_down_kbps';
const MIN = 'bandwidth_min_kbps';
const BURST = 'bandwidth_burst_kbps';
const BURST_BYTES = 'bandwidth_burst_bytes';

/** The `value` of the first input named `name` on a page. */
const inputValue = (html: string, name: string) => new RegExp(`<input name="${name}" value="([^"]*)"`).exec(html)?.[1];

/** The form error above a host form: the field it names and its text. */
function formError(html: string): { field: string; message: string } | undefined {
  const match = /<p class="error" role="alert" data-field="([^"]*)">([^<]*)<\/p>/.exec(html);
  return match ? { field: match[1]!, message: match[2]! } : undefined;
}

/** Everything a refused request must leave as it was. */
async function everything(db: Knex) {
  return { ...(await hostRows(db)), ...(await bandwidthRows(db)), bw_network_caps: await db('bw_network_caps').orderBy('id') };
}

/** A network with a 30 Mbit/s network cap each way and a peer capped at 5 Mbit/s each way. */
async function sharedNetwork(host: TestPanel) {
  const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0', bandwidth_total_up_kbps: 30_000, bandwidth_total_down_kbps: 30_000 }), 'network');
  const peer = await created(
    host.api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'], [UP]: 5_000, [DOWN]: 5_000 }),
    'peer',
  );
  return { networkId: network.id, peerId: peer.id };
}

describe('guaranteed share and burst fields', () => {
  test('a peer\'s guarantee and burst are stored from the host\'s body and answered by the host and the plugin API', async (t) => {
    const host = await startPanel(t);
    const { networkId } = await sharedNetwork(host);
    const fields = { [UP]: 4_000, [DOWN]: 8_000, [MIN]: 3_000, [BURST]: '20000', [BURST_BYTES]: 10_000_000 };
    const peer = await created(host.api.post(`/api/networks/${networkId}/peers`).send({ name: 'burst', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], ...fields }), 'peer');
    assert.deepEqual([peer[MIN], peer[BURST], peer[BURST_BYTES]], [3_000, 20_000, 10_000_000], 'peer.serialize answers them');

    const limit = async () => {
      const limits = (await host.api.get(`/api/bandwidth/limits?network_id=${networkId}`).expect(200)).body.limits as Record<string, unknown>[];
      const row = limits.find((l) => l.subject_id === String(peer.id))!;
      return [row[MIN], row[BURST], row[BURST_BYTES], row.burst_active];
    };
    assert.deepEqual(await limit(), [3_000, 20_000, 10_000_000, true]);
    const bandwidth = (await host.api.get(`/api/networks/${networkId}/bandwidth`).expect(200)).body.peers as Record<string, unknown>[];
    const mine = bandwidth.find((p) => p.peer_id === peer.id)!;
    assert.deepEqual([mine[MIN], mine[BURST], mine[BURST_BYTES], mine.effective_up_kbps, mine.effective_down_kbps], [3_000, 20_000, 10_000_000, 4_000, 8_000]);

    // The plugin's API changes the fields it names and keeps the others.
    const put = await host.api.put(`/api/bandwidth/limits/peer/${peer.id}`).send({ [BURST]: 0, [BURST_BYTES]: 0 }).expect(200);
    assert.deepEqual([put.body.limit[UP], put.body.limit[MIN], put.body.limit[BURST], put.body.limit.burst_active], [4_000, 3_000, 0, false]);
    assert.deepEqual(await limit(), [3_000, 0, 0, false]);

    const vm = await created(host.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', [DOWN]: 10_000, [BURST]: 50_000, [BURST_BYTES]: '4000000' }), 'vm');
    assert.deepEqual([vm[BURST], vm[BURST_BYTES]], [50_000, 4_000_000]);
  });

  test('each misfit is refused with 400 naming the field, through the host\'s API and the plugin\'s, and nothing is written', async (t) => {
    const host = await startPanel(t);
    const { networkId, peerId } = await sharedNetwork(host);
    const other = await created(host.api.post('/api/networks').send({ name: 'plain', interface: 'wg1' }), 'network');
    const newPeer = (body: Record<string, unknown>) => ({ name: 'new', public_key: wgKey(9), allowed_ips: ['10.8.0.9/32'], ...body });
    const cases: [string, Record<string, unknown>, string][] = [
      ['a guarantee above the network cap', { [MIN]: 30_001 }, MIN],
      ['a burst rate without a size', { [BURST]: 20_000 }, BURST_BYTES],
      ['a burst size without a rate', { [BURST_BYTES]: 1_000_000 }, BURST],
      ['a burst not above the cap', { [BURST]: 5_000, [BURST_BYTES]: 1_000_000 }, BURST],
      ['a guarantee that is not a number', { [MIN]: '2 Mbit' }, MIN],
      ['a negative burst size', { [BURST]: 20_000, [BURST_BYTES]: -1 }, BURST_BYTES],
      ['a fractional burst rate', { [BURST]: 20_000.5, [BURST_BYTES]: 1_000 }, BURST],
    ];
    const before = await everything(host.db);
    for (const [what, body, field] of cases) {
      for (const [where, request] of [
        ['PUT /api/networks/:id/peers/:pid', () => host.api.put(`/api/networks/${networkId}/peers/${peerId}`).send(body)],
        ['PUT /api/bandwidth/limits/peer/:id', () => host.api.put(`/api/bandwidth/limits/peer/${peerId}`).send(body)],
        ['POST /api/networks/:id/peers', () => host.api.post(`/api/networks/${networkId}/peers`).send(newPeer({ [UP]: 5_000, ...body }))],
      ] as const) {
        const response = await request();
        assert.equal(response.status, 400, `${what} through ${where}: ${response.text}`);
        assert.equal(response.body.error.field, field, `${what} through ${where}: ${response.body.error.message}`);
      }
    }
    // Without any cap, own or default, there is nothing to burst above.
    const uncapped = await host.api.post(`/api/networks/${other.id}/peers`).send(newPeer({ [BURST]: 20_000, [BURST_BYTES]: 1_000_000 })).expect(400);
    assert.equal(uncapped.body.error.field, BURST);
    assert.match(uncapped.body.error.message, /needs a cap to burst above/);
    const vm = await host.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', [BURST]: 20_000, [BURST_BYTES]: 1_000_000 }).expect(400);
    assert.equal(vm.body.error.field, BURST);
    assert.deepEqual(await everything(host.db), before, 'no refused request wrote anything');
  });

  test('the peer form shows the stored guarantee and burst, and keeps what was typed after a refused submit', async (t) => {
    const host = await startPanel(t);
    const { networkId, peerId } = await sharedNetwork(host);
    await host.api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ [MIN]: 2_000, [BURST]: 9_000, [BURST_BYTES]: 5_000_000 }).expect(200);
    const admin = await host.login();
    const page = `/admin/networks/${networkId}/peers/${peerId}`;

    const shown = (await admin.agent.get(page).expect(200)).text;
    assert.deepEqual([MIN, BURST, BURST_BYTES].map((name) => inputValue(shown, name)), ['2000', '9000', '5000000']);

    const before = await everything(host.db);
    const typed = { name: 'laptop', public_key: wgKey(1), allowed_ips: '10.8.0.2/32', [UP]: '5000', [DOWN]: '5000', [MIN]: '1500', [BURST]: '4000', [BURST_BYTES]: '7000000' };
    const refused = await admin.form(page, typed).expect(400);
    assert.equal(formError(refused.text)?.field, BURST);
    assert.match(formError(refused.text)?.message ?? '', /must be above its upload cap of 5000/);
    assert.deepEqual([MIN, BURST, BURST_BYTES].map((name) => inputValue(refused.text, name)), ['1500', '4000', '7000000'], 'the typed values come back');
    assert.deepEqual(await everything(host.db), before);

    const escaped = await admin.form(page, { ...typed, [BURST_BYTES]: '"><script>x</script>' }).expect(400);
    assert.equal(formError(escaped.text)?.field, BURST_BYTES);
    assert.equal(inputValue(escaped.text, BURST_BYTES), '&#34;&gt;&lt;script&gt;x&lt;/script&gt;', 'what was typed comes back escaped');
  });
});
