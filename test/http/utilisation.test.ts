import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { writeTick } from '../../src/accounting/store.js';
import type { Sample, SourceName } from '../../src/accounting/sample.js';
import { classSeriesKey } from '../../src/accounting/tc-classes.js';
import { HERMETIC_PLUGIN_OPTIONS, created, startPanel, wgKey, type TestPanel } from '../support/panel.js';

const OVERVIEW = '/admin/bandwidth';
const CAP = 8_000;
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();

/** The Use cell of a subject's row on the overview: its text, the meter's value, basis and title. */
function useCell(html: string, key: string): { text: string; value: string; basis: string; title: string } | undefined {
  const row = new RegExp(`<tr data-subject="${key}"[^>]*>([\\s\\S]*?)</tr>`).exec(html)?.[1];
  const cell = row && /<td class="use">([\s\S]*?)<\/td>/.exec(row)?.[1];
  if (!cell) return undefined;
  const meter = /<meter [^>]*value="([^"]*)"[^>]*data-use-basis="([^"]*)" title="([^"]*)"/.exec(cell);
  return { text: text(cell), value: meter?.[1] ?? '', basis: meter?.[2] ?? '', title: meter?.[3] ?? '' };
}

/** The subject page's "Use of the cap" card: value text and label. */
function useCard(html: string): { value: string; label: string } | undefined {
  const match = /<div class="stat"><div class="value use">([\s\S]*?)<\/div><div class="label">([\s\S]*?)<\/div><\/div>/.exec(html);
  return match ? { value: text(match[1]!), label: text(match[2]!) } : undefined;
}

/**
 * A network with alice (capped at 8 Mbit/s each way, class 1:2) and bob (unlimited), and two
 * collector ticks a minute apart as the `collect` timer writes them: alice's class passed 7,920 kbit/s
 * down (99% of her cap) in 628-byte packets, which WireGuard counted 7% larger (+44 bytes each).
 */
async function tunnel(t: Parameters<typeof startPanel>[0], options: { billing?: 'wire' | 'inner'; classCounted?: boolean } = {}) {
  const host = await startPanel(t, { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, ...(options.billing ? { billing_bytes: options.billing } : {}) } } });
  const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  const alice = await created(
    host.api.post(`/api/networks/${network.id}/peers`).send({ name: 'alice', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'], bandwidth_up_kbps: CAP, bandwidth_down_kbps: CAP }),
    'peer',
  );
  const bob = await created(host.api.post(`/api/networks/${network.id}/peers`).send({ name: 'bob', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }), 'peer');
  const at = Date.now() - 30_000;
  const reading = (source: SourceName, seriesKey: string, id: number, rx: bigint, tx: bigint, when: number): Sample => ({
    identity: { node: 'local', source, interface: 'wg0', seriesKey, ifindex: 4, bootId: 'boot-1' },
    subjectType: 'peer', subjectId: String(id), rxBytes: rx, txBytes: tx, rxPackets: null, txPackets: null, at: when,
  });
  const tick = (minutes: bigint, when: number): Sample[] => [
    ...(options.classCounted === false ? [] : [
      reading('tc', classSeriesKey(2, 'up'), alice.id, 600_000n * minutes, 0n, when - 5),
      reading('tc', classSeriesKey(2, 'down'), alice.id, 0n, 59_400_000n * minutes, when - 5),
    ]),
    reading('wireguard', wgKey(1), alice.id, 1_104_000n * minutes, 63_558_000n * minutes, when),
    reading('wireguard', wgKey(2), bob.id, 40_000_000n * minutes, 300_000_000n * minutes, when),
  ];
  const write = (db: Knex, samples: Sample[]) => writeTick(db, samples, { billing: options.billing ?? 'wire' });
  await write(host.db, tick(1n, at - 60_000));
  await write(host.db, tick(2n, at));
  return { host, networkId: network.id as number, alice: alice.id as number, bob: bob.id as number };
}

async function peerBandwidth(host: TestPanel, networkId: number, id: number): Promise<Record<string, unknown>> {
  const response = await host.api.get(`/api/networks/${networkId}/bandwidth`).expect(200);
  const peer = (response.body.peers as Record<string, unknown>[]).find((p) => p.peer_id === id);
  assert.ok(peer);
  return peer;
}

test('a peer at its cap reads 99% everywhere — by its class — though WireGuard counted 106%', async (t) => {
  const { host, networkId, alice, bob } = await tunnel(t);
  const admin = await host.login();

  const overview = await admin.agent.get(OVERVIEW).expect(200);
  const use = useCell(overview.text, `peer:${alice}`);
  assert.deepEqual(use, {
    text: '99% 99%', value: '99', basis: 'class', title: '99% of the cap, from the bytes through its class (what the cap governs)',
  });
  assert.equal(useCell(overview.text, `peer:${bob}`)?.text, '—', 'an unlimited peer has no utilisation');

  const page = await admin.agent.get(`${OVERVIEW}/peer/${alice}`).expect(200);
  assert.deepEqual(useCard(page.text), { value: '99% 99%', label: 'Use of the cap' });
  assert.equal(useCard((await admin.agent.get(`${OVERVIEW}/peer/${bob}`).expect(200)).text), undefined, 'no Use card without a cap');

  const api = await peerBandwidth(host, networkId, alice);
  assert.deepEqual(
    [api.current_up_kbps, api.current_down_kbps, api.class_up_kbps, api.class_down_kbps, api.utilisation_percent, api.utilisation_basis],
    [147, 8_474, 80, 7_920, 99, 'class'],
    'the billed (wire) rate is 106% of the cap; utilisation is the class rate\'s 99%',
  );
  const bobApi = await peerBandwidth(host, networkId, bob);
  assert.deepEqual([bobApi.class_down_kbps, bobApi.utilisation_percent, bobApi.utilisation_basis], [null, null, null]);
});

test('a capped peer whose class was not counted (cap not in the kernel) falls back to its billed rate, and the page says so', async (t) => {
  const { host, networkId, alice } = await tunnel(t, { classCounted: false });
  const admin = await host.login();

  const use = useCell((await admin.agent.get(OVERVIEW).expect(200)).text, `peer:${alice}`);
  assert.deepEqual(use, {
    text: '106% 106%', value: '100', basis: 'counted', title: '106% of the cap, from its billed counters: no class counted in the last interval',
  });
  assert.deepEqual(useCard((await admin.agent.get(`${OVERVIEW}/peer/${alice}`).expect(200)).text), {
    value: '106% 106%', label: 'Use of the cap (billed counters: no class counted)',
  });
  const api = await peerBandwidth(host, networkId, alice);
  assert.deepEqual([api.class_down_kbps, api.utilisation_percent, api.utilisation_basis], [null, 106, 'counted']);
});

test('sorting by use ranks by the class figure, not by WireGuard\'s', async (t) => {
  const { host, networkId, alice, bob } = await tunnel(t);
  // carol: her class at exactly her cap in full-size packets (WireGuard +2.3%): 100% by class, 102% by wire;
  // alice: 99% by class, 106% by wire.
  const carol = await created(
    host.api.post(`/api/networks/${networkId}/peers`).send({ name: 'carol', public_key: wgKey(3), allowed_ips: ['10.8.0.4/32'], bandwidth_down_kbps: CAP }),
    'peer',
  );
  const at = Date.now() - 30_000;
  const reading = (source: SourceName, seriesKey: string, tx: bigint, when: number): Sample => ({
    identity: { node: 'local', source, interface: 'wg0', seriesKey, ifindex: 4, bootId: 'boot-1' },
    subjectType: 'peer', subjectId: String(carol.id), rxBytes: 0n, txBytes: tx, rxPackets: null, txPackets: null, at: when,
  });
  for (const [minutes, when] of [[1n, at - 60_000], [2n, at]] as const) {
    await writeTick(host.db, [reading('tc', classSeriesKey(3, 'down'), 60_000_000n * minutes, when - 5), reading('wireguard', wgKey(3), 61_356_000n * minutes, when)]);
  }
  const admin = await host.login();
  const page = await admin.agent.get(`${OVERVIEW}?sort=utilisation&order=desc`).expect(200);
  const order = [...page.text.matchAll(/<tr data-subject="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(order, [`peer:${carol.id}`, `peer:${alice}`, `peer:${bob}`], 'carol (100%) before alice (99%); bob, unlimited, last');
  assert.deepEqual([useCell(page.text, `peer:${carol.id}`)?.text, useCell(page.text, `peer:${alice}`)?.text], ['100% 100%', '99% 99%']);
});

test('billing_bytes inner: the billed rate and the 24 h bytes are the class\'s; unlimited bob keeps his WireGuard bytes', async (t) => {
  const { host, networkId, alice, bob } = await tunnel(t, { billing: 'inner' });

  const api = await peerBandwidth(host, networkId, alice);
  assert.deepEqual([api.current_up_kbps, api.current_down_kbps, api.utilisation_percent], [80, 7_920, 99]);
  assert.deepEqual([api.up_bytes_24h, api.down_bytes_24h], [600_000, 59_400_000], 'one minute through the class');
  const bobApi = await peerBandwidth(host, networkId, bob);
  assert.deepEqual([bobApi.current_down_kbps, bobApi.down_bytes_24h], [40_000, 300_000_000]);
});

test('a billing_bytes the plugin does not know stops it at start, naming the option', async (t) => {
  const host = await startPanel(t, { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, billing_bytes: 'tunnel' } } });
  const response = await host.api.get('/api/plugins').expect(200);
  const plugin = (response.body.plugins as { id: string; running: boolean; error: string | null }[]).find((p) => p.id === 'bandwidth');
  assert.equal(plugin?.running, false);
  assert.match(plugin?.error ?? '', /Expected `billing_bytes` to be one of \["wire","inner"\], got `"tunnel"` \(string\)/);
});
