import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { writeTick } from '../../src/accounting/store.js';
import type { Sample } from '../../src/accounting/sample.js';
import { formatBytes } from '../../src/views/format.js';
import { created, startPanel, wgKey, type AdminSession, type TestPanel } from '../support/panel.js';
import { DAY_MS, floorTo, seedSubjects, seededTotal, type SeededSubject } from '../support/seed.js';

const BASE = '/admin/bandwidth';
/**
 * The plugin's clock and the time usage is seeded against: 00:20 UTC on 1 March, so "the last
 * 24 hours" crosses midnight and "the last 30 days" the end of February. Fixed, so no test sees
 * an hour or a day end between seeding and asking.
 */
const NOW = Date.UTC(2026, 2, 1, 0, 20);
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The value of the card whose label starts with `label`. */
function card(html: string, label: string): string | undefined {
  const match = [...html.matchAll(/<div class="stat"><div class="value"[^>]*>([\s\S]*?)<\/div><div class="label">([\s\S]*?)<\/div><\/div>/g)]
    .find((m) => text(m[2]!).startsWith(label));
  return match ? text(match[1]!) : undefined;
}

/** The "Cap and kernel status" facts, by their term. */
function facts(html: string): Record<string, string> {
  const list = /<dl class="facts">([\s\S]*?)<\/dl>/.exec(html)?.[1] ?? '';
  return Object.fromEntries([...list.matchAll(/<dt>([^<]*)<\/dt><dd[^>]*>([\s\S]*?)<\/dd>/g)].map((m) => [m[1]!, text(m[2]!)]));
}

/** The SVG charts: title, number of points per line, and the cap lines' titles. */
function charts(html: string): { title: string; points: { down: number; up: number }; caps: string[] }[] {
  return [...html.matchAll(/<svg [^>]*class="bw-chart">([\s\S]*?)<\/svg>/g)].map((m) => {
    const svg = m[1]!;
    const points = (kind: string) => (new RegExp(`<polyline points="([^"]*)" class="${kind}">`).exec(svg)?.[1] ?? '').split(' ').filter(Boolean).length;
    return {
      title: /^<title>([^<]*)<\/title>/.exec(svg)?.[1] ?? '',
      points: { down: points('down'), up: points('up') },
      caps: [...svg.matchAll(/<line [^>]*class="cap (?:up|down)"><title>([^<]*)<\/title><\/line>/g)].map((c) => c[1]!),
    };
  });
}

/** The audit events table, each row as its cells' text. */
function events(html: string): string[][] {
  const body = /<table class="events">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => [...row[1]!.matchAll(/<td>([\s\S]*?)<\/td>/g)].map((cell) => text(cell[1]!)));
}

const bytes = (total: { up: bigint; down: bigint }) => `${formatBytes(total.up)} / ${formatBytes(total.down)}`;

async function onePeer(t: Parameters<typeof startPanel>[0], caps = { upKbps: 10_000, downKbps: 50_000 }): Promise<{ host: TestPanel; admin: AdminSession; peer: SeededSubject }> {
  const host = await startPanel(t, { now: () => NOW });
  const seeded = await seedSubjects(host.db, { count: 1, name: () => 'laptop', caps: () => caps, status: () => 'applied', usage: () => true, now: NOW });
  return { host, admin: await host.login(), peer: seeded.subjects[0]! };
}

describe('a subject that does not exist', () => {
  test('an unknown peer or VM answers the 404 page, on an empty database and beside a real one', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();
    const empty = await admin.agent.get(`${BASE}/peer/1`);
    await seedSubjects(host.db, { count: 1 });

    const pages = { 'peer 1 of an empty database': empty, 'peer 999': await admin.agent.get(`${BASE}/peer/999`), 'vm 1': await admin.agent.get(`${BASE}/vm/1`), 'peer abc': await admin.agent.get(`${BASE}/peer/abc`) };

    for (const [what, page] of Object.entries(pages)) {
      assert.equal(page.status, 404, what);
      assert.match(page.text, /<title>Not found · Panel<\/title>/, what);
      assert.match(page.text, /<h1>Not found<\/h1>\s*<p>No (peer|VM) with id `[^`]+`<\/p>/, what);
      assert.match(page.text, /<a href="\/admin\/bandwidth">Back to Bandwidth<\/a>/, what);
    }
    const router = await admin.agent.get(`${BASE}/router/1/extra`);
    assert.equal(router.status, 404, 'a path the plugin does not serve is the host\'s 404');
    const badType = await admin.agent.get(`${BASE}/router/1`);
    assert.equal(badType.status, 400);
    assert.match(badType.text, /`type` must be `peer` or `vm`, got `router`/);
  });

  test('a logged-out visitor is sent to /login, even for an unknown subject', async (t) => {
    const host = await startPanel(t);
    const response = await host.visitor().get(`${BASE}/peer/1`);
    assert.equal(response.status, 303);
    assert.equal(response.headers.location, '/login?next=%2Fadmin%2Fbandwidth%2Fpeer%2F1');
  });
});

describe('the page of a capped peer with 30 days of usage', () => {
  test('the cards show its 24 h, 7 d and 30 d totals; the custom range line its exact bytes', async (t) => {
    const { admin, peer } = await onePeer(t);
    const today = floorTo(NOW, DAY_MS);
    const from = today - 29 * DAY_MS;
    const to = today + DAY_MS;

    const page = await admin.agent.get(`${BASE}/peer/${peer.id}?from=${isoDate(from)}&to=${isoDate(to)}`);
    const now = NOW;

    assert.equal(page.status, 200);
    assert.match(page.text, /<title>Peer laptop · Panel<\/title>/);
    assert.match(page.text, /<h1>Peer laptop <small><code>wg0<\/code><\/small><\/h1>/);
    assert.equal(card(page.text, 'Now'), '—', 'a dry run has no rates');
    assert.equal(card(page.text, 'Last 24 h'), bytes(seededTotal(peer, now - DAY_MS, now)));
    assert.equal(card(page.text, 'Last 7 days'), bytes(seededTotal(peer, now - 7 * DAY_MS, now)));
    assert.equal(card(page.text, 'Last 30 days'), bytes(seededTotal(peer, now - 30 * DAY_MS, now)));
    const all = seededTotal(peer, from, to);
    assert.equal(all.up, peer.hourly.reduce((sum, row) => sum + row.up, 0n), 'the range holds every seeded byte');
    const line = /<p class="custom-total">([^<]*)<\/p>/.exec(page.text)?.[1];
    assert.equal(
      line,
      `${isoDate(from)} 00:00 → ${isoDate(to)} 00:00 UTC: ↑ ${formatBytes(all.up)} (${all.up} bytes), ↓ ${formatBytes(all.down)} (${all.down} bytes)`,
    );
    assert.match(page.text, new RegExp(`<input type="date" name="from" value="${isoDate(from)}">`), 'the form keeps the range');
  });

  test('two SVG charts, 48 hours and 30 days, each with both cap lines', async (t) => {
    const { admin, peer } = await onePeer(t);

    const page = await admin.agent.get(`${BASE}/peer/${peer.id}`);

    assert.deepEqual(charts(page.text), [
      { title: 'laptop: last 48 hours, hourly average', points: { down: 48, up: 48 }, caps: ['down cap 50.0 Mbps', 'up cap 10.0 Mbps'] },
      { title: 'laptop: last 30 days, daily average', points: { down: 30, up: 30 }, caps: ['down cap 50.0 Mbps', 'up cap 10.0 Mbps'] },
    ]);
    assert.ok(!/<script(?![^>]*\bsrc=)/i.test(page.text), 'the charts carry no script');
  });

  test('an unlimited subject has charts without cap lines and says so', async (t) => {
    const { admin, peer } = await onePeer(t, { upKbps: 0, downKbps: 0 });

    const page = await admin.agent.get(`${BASE}/peer/${peer.id}`);

    assert.deepEqual(charts(page.text).map((c) => c.caps), [[], []]);
    assert.equal(facts(page.text)['Limit (up / down)'], 'Unlimited');
    assert.equal(facts(page.text).Status, 'unlimited');
  });

  test('the cap facts show the cap, status, kernel answer, class and addresses', async (t) => {
    const { admin, peer } = await onePeer(t);

    const page = await admin.agent.get(`${BASE}/peer/${peer.id}`);

    const shown = facts(page.text);
    assert.equal(shown['Limit (up / down)'], '10 / 50 Mbps');
    assert.equal(shown.Status, 'applied');
    assert.match(shown['Last kernel answer']!, /^applied at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.equal(shown.Class, '1:2');
    assert.equal(shown.Addresses, peer.address);
  });

  test('saving the cap form records an audit event that the page lists, and flashes the result', async (t) => {
    const { admin, peer } = await onePeer(t);
    const path = `${BASE}/peer/${peer.id}`;
    assert.match((await admin.agent.get(path)).text, /<p class="empty">Nothing has changed yet\.<\/p>/);

    const saved = await admin.form(`${BASE}/limits/peer/${peer.id}`, { return_to: path, bandwidth_up_kbps: '20000', bandwidth_down_kbps: '80000', action: 'set' });

    assert.equal(saved.status, 303);
    assert.equal(saved.headers.location, path);
    const page = await admin.agent.get(path);
    assert.match(page.text, /<p class="flash" role="status">laptop: 20 \/ 80 Mbps \(pending: [^<]+\)<\/p>/);
    assert.equal(facts(page.text)['Limit (up / down)'], '20 / 80 Mbps');
    const [event, ...older] = events(page.text);
    assert.equal(older.length, 0);
    assert.deepEqual(event?.slice(1), ['admin', 'limit.set', `peer ${peer.id}`, '10 / 50 Mbps → 20 / 80 Mbps', event?.[5]]);
    assert.match(event![5]!, /^pending\b/);
    assert.deepEqual(charts(page.text).map((c) => c.caps), [['down cap 80.0 Mbps', 'up cap 20.0 Mbps'], ['down cap 80.0 Mbps', 'up cap 20.0 Mbps']]);
  });

  test('a bad custom range is a 400 that names the problem and still shows the page', async (t) => {
    const { admin, peer } = await onePeer(t);
    for (const [query, message] of [
      ['from=yesterday', '`from` must be an ISO-8601 time'],
      ['from=2026-02-01&to=2026-01-01', '`from` must be before `to`'],
      ['to=2026-13-45', '`to` is not a valid time'],
    ] as const) {
      const page = await admin.agent.get(`${BASE}/peer/${peer.id}?${query}`);
      assert.equal(page.status, 400, query);
      assert.match(page.text, new RegExp(`<p class="error" role="alert">${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), query);
      assert.equal(charts(page.text).length, 2, `${query}: the rest of the page is there`);
      assert.ok(!page.text.includes('class="custom-total"'), query);
    }
  });
});

test('the last collector tick gives the Now card and the totals, counted once across raw rows and roll-ups', async (t) => {
  const host = await startPanel(t, { now: () => NOW });
  const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  const peer = await created(host.api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }), 'peer');
  const admin = await host.login();
  const reading = (at: number, rx: bigint, tx: bigint): Sample => ({
    identity: { node: 'local', source: 'wireguard', interface: 'wg0', seriesKey: wgKey(1), ifindex: null, bootId: 'boot-1' },
    subjectType: 'peer', subjectId: String(peer.id), rxBytes: rx, txBytes: tx, rxPackets: null, txPackets: null, at,
  });
  const tick = async (db: Knex, sample: Sample) => writeTick(db, [sample]);
  // Two ticks just after midnight: raw rows and the new day's roll-ups both hold them; every total counts them once.
  await tick(host.db, reading(NOW - 90_000, 1_000_000n, 2_000_000n));
  // 7.5 MB up and 15 MB down in 60 s: 1,000 and 2,000 kbit/s.
  await tick(host.db, reading(NOW - 30_000, 8_500_000n, 17_000_000n));

  const page = await admin.agent.get(`${BASE}/peer/${peer.id}`);

  assert.equal(card(page.text, 'Now'), '1.0 Mbps / 2.0 Mbps');
  for (const label of ['Last 24 h', 'Last 7 days', 'Last 30 days']) {
    assert.equal(card(page.text, label), `${formatBytes(7_500_000n)} / ${formatBytes(15_000_000n)}`, label);
  }
});

test('a VM\'s page speaks of the VM and its whole interface', async (t) => {
  const host = await startPanel(t);
  const vm = await created(host.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', netns: 'tenant-7' }), 'vm');
  const admin = await host.login();

  const page = await admin.agent.get(`${BASE}/vm/${vm.id}`);

  assert.equal(page.status, 200);
  assert.match(page.text, /<h1>VM web-01 <small><code>tap-web01<\/code> in <code>tenant-7<\/code><\/small><\/h1>/);
  assert.equal(facts(page.text).Addresses, 'the whole interface');
  assert.equal(card(page.text, 'Last 30 days'), '0 B / 0 B');
  assert.equal(charts(page.text).length, 2, 'charts render with no usage at all');
});

test('a peer named <script>alert(1)</script> is text on its page and in the SVG titles', async (t) => {
  const host = await startPanel(t);
  const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  const peer = await created(
    host.api.post(`/api/networks/${network.id}/peers`).send({ name: '<script>alert(1)</script>', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }),
    'peer',
  );
  await host.api.put(`/api/bandwidth/limits/peer/${peer.id}`).send({ bandwidth_up_kbps: 1000, bandwidth_down_kbps: 2000 }).expect(200);
  const admin = await host.login();
  const path = `${BASE}/peer/${peer.id}`;
  await admin.form(`${BASE}/limits/peer/${peer.id}`, { return_to: path, bandwidth_up_kbps: '3000', bandwidth_down_kbps: '4000', action: 'set' }).expect(303);

  const page = await admin.agent.get(path);

  assert.equal(page.status, 200);
  assert.ok(!page.text.includes('<script>alert(1)</script>'), 'the raw name is nowhere');
  assert.ok(!/<script(?![^>]*\bsrc=)/i.test(page.text), 'no <script> but the page\'s own script files');
  assert.match(page.text, /<title>Peer &lt;script&gt;alert\(1\)&lt;\/script&gt; · Panel<\/title>/);
  assert.match(page.text, /<h1>Peer &lt;script&gt;alert\(1\)&lt;\/script&gt; <small>/);
  assert.match(page.text, /<p class="flash" role="status">&lt;script&gt;alert\(1\)&lt;\/script&gt;: 3 \/ 4 Mbps/, 'the flash too');
  assert.deepEqual(charts(page.text).map((c) => c.title), [
    '&#60;script&#62;alert(1)&#60;/script&#62;: last 48 hours, hourly average',
    '&#60;script&#62;alert(1)&#60;/script&#62;: last 30 days, daily average',
  ]);
  assert.match(page.text, /aria-label="&#60;script&#62;alert\(1\)&#60;\/script&#62;: last 48 hours, hourly average"/);
});

test('in a database of 10,000 subjects a subject\'s page shows its own totals', async (t) => {
  const host = await startPanel(t, { now: () => NOW });
  const seeded = await seedSubjects(host.db, { count: 10_000, usage: (index) => index % 100 === 42, now: NOW });
  const admin = await host.login();
  const subject = seeded.subjects[7641]!;
  const idle = seeded.subjects[7642]!;

  const started = performance.now();
  const page = await admin.agent.get(`${BASE}/${subject.type}/${subject.id}`);
  t.diagnostic(`subject page among 10,000 subjects: ${Math.round(performance.now() - started)} ms`);
  const now = NOW;

  assert.equal(page.status, 200);
  assert.match(page.text, new RegExp(`<h1>Peer ${subject.name} `));
  assert.equal(card(page.text, 'Last 30 days'), bytes(seededTotal(subject, now - 30 * DAY_MS, now)));
  assert.equal(card(page.text, 'Last 24 h'), bytes(seededTotal(subject, now - DAY_MS, now)));
  const other = await admin.agent.get(`${BASE}/${idle.type}/${idle.id}`);
  assert.equal(card(other.text, 'Last 30 days'), '0 B / 0 B', 'a neighbour\'s bytes are not counted');
});
