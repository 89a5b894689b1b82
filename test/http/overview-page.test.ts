import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes } from '../../src/views/format.js';
import { KernelError } from '../../src/shaping/errors.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import { bandwidthRows, created, startPanel, wgKey, type AdminSession, type TestPanel } from '../support/panel.js';
import { DAY_MS, seedSubjects, seededTotal, type Seeded, type SeededSubject } from '../support/seed.js';

const OVERVIEW = '/admin/bandwidth';
/**
 * The plugin's clock and the time usage is seeded against: 00:20 UTC on 1 March, so the 24 h
 * totals cross midnight and the 30 d ones the end of February; fixed, so no hour ends between
 * seeding 10,000 subjects and reading their totals.
 */
const NOW = Date.UTC(2026, 2, 1, 0, 20);

const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();

/** One row of the subjects table: its key, the text of its eleven data cells (not the cap form) and its raw HTML. */
interface Row {
  key: string;
  cells: string[];
  html: string;
}

function rows(html: string): Row[] {
  const body = /<table class="subjects">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? '';
  return [...body.matchAll(/<tr data-subject="([^"]+)"[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => ({
    key: m[1]!,
    html: m[2]!,
    cells: [...m[2]!.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].slice(0, 11).map((cell) => text(cell[1]!)),
  }));
}

/** The value of the card whose label starts with `label`, as text. */
function card(html: string, label: string): string | undefined {
  const match = [...html.matchAll(/<div class="stat"><div class="value"[^>]*>([\s\S]*?)<\/div>\s*<div class="label">([\s\S]*?)<\/div><\/div>/g)]
    .find((m) => text(m[2]!).startsWith(label));
  return match ? text(match[1]!) : undefined;
}

/** "10000 subjects", "Page 1 of 200" and the pager's links. */
function pager(html: string): { total: string; page: string; links: Record<string, string> } | undefined {
  const nav = /<nav class="pager"[^>]*>([\s\S]*?)<\/nav>/.exec(html)?.[1];
  if (!nav) return undefined;
  const spans = [...nav.matchAll(/<span class="muted">([^<]*)<\/span>/g)].map((m) => m[1]!);
  const links = Object.fromEntries([...nav.matchAll(/<a href="([^"]+)">([^<]+)<\/a>/g)].map((m) => [m[2]!.trim(), m[1]!.replaceAll('&amp;', '&')]));
  return { total: spans[0]!, page: spans[1]!, links };
}

/** The sort links of the table head, by column label (arrows stripped), with `aria-sort` where set. */
function sortLinks(html: string): Map<string, { href: string; ariaSort: string | null; label: string }> {
  const head = /<table class="subjects">[\s\S]*?<thead>([\s\S]*?)<\/thead>/.exec(html)?.[1] ?? '';
  return new Map(
    [...head.matchAll(/<th class="[^"]*"\s*(?:aria-sort=(\w+))?\s*><a href="([^"]+)">([^<]+)<\/a><\/th>/g)].map((m) => {
      const label = m[3]!.trim();
      return [label.replace(/ [▲▼]$/, ''), { href: m[2]!.replaceAll('&amp;', '&'), ariaSort: m[1] ?? null, label }];
    }),
  );
}

/** The 24 h cell as the page prints a subject's seeded bytes. */
function dayCell(subject: SeededSubject, now: number): string {
  const total = seededTotal(subject, now - DAY_MS, now);
  return `${formatBytes(total.up)} / ${formatBytes(total.down)}`;
}

describe('the overview of an empty database', () => {
  test('shows zero on every card, the empty state, no table and no pager', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();

    const page = await admin.agent.get(OVERVIEW);

    assert.equal(page.status, 200);
    assert.equal(card(page.text, 'Last 24 h'), '0 B / 0 B');
    assert.equal(card(page.text, 'Now'), '0 kbps / 0 kbps');
    assert.equal(card(page.text, 'Limited subjects'), '0 of 0');
    assert.equal(card(page.text, 'Failed / pending'), '0 / 0');
    assert.equal(card(page.text, 'Collector last run'), 'off', 'a dry run collects nothing');
    assert.match(page.text, /<p class="empty">No peers or VMs known yet: they appear here when they are created in the panel\.<\/p>/);
    assert.deepEqual(rows(page.text), []);
    assert.equal(pager(page.text), undefined);
    assert.match(page.text, /<p class="empty">Nothing has changed yet\.<\/p>/, 'the audit log is empty too');
  });

  test('filters that match nothing on an empty database still show the empty state', async (t) => {
    const host = await startPanel(t);
    const admin = await host.login();

    const page = await admin.agent.get(`${OVERVIEW}?q=nothing&type=vm&status=failed&sort=usage_24h&order=desc`);

    assert.equal(page.status, 200);
    assert.match(page.text, /No peers or VMs known yet/);
    assert.match(page.text, /<input type="search" name="q" value="nothing"/, 'the search box keeps what was typed');
    assert.match(page.text, /<a href="\/admin\/bandwidth">Reset<\/a>/);
  });
});

describe('the overview of one subject', () => {
  async function onePeer(t: Parameters<typeof startPanel>[0]): Promise<{ host: TestPanel; admin: AdminSession; seeded: Seeded; peer: SeededSubject }> {
    const host = await startPanel(t, { now: () => NOW });
    const seeded = await seedSubjects(host.db, {
      count: 1,
      name: () => 'laptop',
      caps: () => ({ upKbps: 10_000, downKbps: 50_000 }),
      status: () => 'applied',
      usage: () => true,
      now: NOW,
    });
    return { host, admin: await host.login(), seeded, peer: seeded.subjects[0]! };
  }

  test('its row shows name, address, caps, 24 h and 30 d totals of its bytes and its status; the cards count it', async (t) => {
    const { admin, peer } = await onePeer(t);

    const page = await admin.agent.get(OVERVIEW);
    const now = NOW;

    assert.equal(page.status, 200);
    const [row, ...others] = rows(page.text);
    assert.equal(others.length, 0);
    assert.equal(row?.key, peer.key);
    const month = seededTotal(peer, now - 30 * DAY_MS, now);
    assert.deepEqual(row.cells, [
      `laptop ${peer.address}`, 'Peer', 'wg0', '10 Mbps', '50 Mbps', '—', '0% 0%',
      dayCell(peer, now), `${formatBytes(month.up)} / ${formatBytes(month.down)}`, 'applied', '—',
    ]);
    assert.match(row.html, new RegExp(`<a href="/admin/bandwidth/peer/${peer.id}">laptop</a>`));
    assert.equal(card(page.text, 'Last 24 h'), dayCell(peer, now), 'the card sums every subject: here, the one');
    assert.equal(card(page.text, 'Limited subjects'), '1 of 1');
    assert.equal(card(page.text, 'Failed / pending'), '0 / 0');
    assert.equal(card(page.text, 'Throttled / over quota warning'), '0 / 0');
    assert.deepEqual(pager(page.text), {
      total: '1 subject',
      page: 'Page 1 of 1',
      links: { 'Export CSV (30 d, daily)': '/admin/bandwidth/export.csv?step=day' },
    });
  });

  test('saving a cap with the inline form stores it, flashes it and shows it in the row', async (t) => {
    const { host, admin, peer } = await onePeer(t);

    const saved = await admin.form(`${OVERVIEW}/limits/peer/${peer.id}`, {
      return_to: OVERVIEW, bandwidth_up_kbps: '20000', bandwidth_down_kbps: '80000', action: 'set',
    });

    assert.equal(saved.status, 303, saved.text.slice(0, 300));
    assert.equal(saved.headers.location, OVERVIEW);
    const stored = await host.db('bw_limits').where({ subject_type: 'peer', subject_id: peer.id }).first();
    assert.deepEqual([stored.up_kbps, stored.down_kbps], [20_000, 80_000]);
    const page = await admin.agent.get(OVERVIEW);
    assert.match(page.text, /<p class="flash" role="status">laptop: 20 \/ 80 Mbps \(pending: dry run: [^<]*\)<\/p>/);
    const [row] = rows(page.text);
    assert.deepEqual(row?.cells.slice(3, 5), ['20 Mbps', '80 Mbps']);
    assert.equal(row?.cells[9], 'pending dry run', 'a dry run leaves the cap pending, and says so by its reason');
    assert.match(row?.html ?? '', /<span class="reason small muted" data-reason="dry_run">dry run<\/span>/);
  });

  test('a save the kernel refuses flashes that the kernel refused, and the row names the reason, not just the status', async (t) => {
    const { admin, peer } = await onePeer(t);
    t.mock.method(RecordingExecutor.prototype, 'batch', async () => {
      throw new KernelError({ argv: ['tc', '-batch', '-'], stderr: 'Error: Exclusivity flag on, cannot modify.', exitCode: 2, timedOut: false });
    });

    const saved = await admin.form(`${OVERVIEW}/limits/peer/${peer.id}`, {
      return_to: OVERVIEW, bandwidth_up_kbps: '20000', bandwidth_down_kbps: '80000', action: 'set',
    });

    assert.equal(saved.status, 303, saved.text.slice(0, 300));
    const page = await admin.agent.get(OVERVIEW);
    assert.match(page.text, /<p class="flash" role="status">laptop: 20 \/ 80 Mbps — the kernel refused: [^<]*Exclusivity flag on, cannot modify\.<\/p>/);
    const [row] = rows(page.text);
    assert.equal(row?.cells[9], 'failed kernel refused');
    assert.match(row?.html ?? '', /data-reason="kernel_refused"/);
    assert.match(page.text, /<span class="badge failed" title="[^"]*Exclusivity[^"]*">failed<\/span> <span class="reason small muted" data-reason="kernel_refused">kernel refused<\/span>/, 'the audit log names it too');
  });

  test('the inline form refuses a missing, wrong or other session\'s CSRF token and writes nothing', async (t) => {
    const { host, admin, peer } = await onePeer(t);
    const other = await host.login();
    const before = await bandwidthRows(host.db);
    const path = `${OVERVIEW}/limits/peer/${peer.id}`;
    const fields = { bandwidth_up_kbps: '1', bandwidth_down_kbps: '1', action: 'set' };

    const refusals = {
      'no token': await admin.agent.post(path).type('form').send(fields),
      'an empty token': await admin.agent.post(path).type('form').send({ ...fields, _csrf: '' }),
      'a wrong token': await admin.agent.post(path).type('form').send({ ...fields, _csrf: `${admin.csrf.slice(0, -2)}xx` }),
      'another session\'s token': await admin.agent.post(path).type('form').send({ ...fields, _csrf: other.csrf }),
    };

    for (const [what, response] of Object.entries(refusals)) {
      assert.equal(response.status, 403, what);
      assert.match(response.text, /The form has expired or did not come from this panel/, what);
    }
    assert.deepEqual(await bandwidthRows(host.db), before, 'no cap and no audit event written');
  });
});

test('a peer named <script>alert(1)</script> is shown as text on the overview and the network page', async (t) => {
  const host = await startPanel(t);
  const network = await created(host.api.post('/api/networks').send({ name: '<b>net</b>', interface: 'wg0' }), 'network');
  const peer = await created(
    host.api.post(`/api/networks/${network.id}/peers`).send({ name: '<script>alert(1)</script>', public_key: wgKey(7), allowed_ips: ['10.8.0.7/32'] }),
    'peer',
  );
  await host.api.put(`/api/bandwidth/limits/peer/${peer.id}`).send({ bandwidth_up_kbps: 1000, bandwidth_down_kbps: 2000 }).expect(200);
  const admin = await host.login();

  const pages = {
    overview: await admin.agent.get(OVERVIEW),
    'overview searched for it': await admin.agent.get(`${OVERVIEW}?q=${encodeURIComponent('<script>')}`),
    'network page': await admin.agent.get(`/admin/networks/${network.id}`),
  };

  for (const [what, page] of Object.entries(pages)) {
    assert.equal(page.status, 200, what);
    assert.ok(!page.text.includes('<script>alert(1)</script>'), `${what}: the raw name is not in the page`);
    assert.ok(!/<script(?![^>]*\bsrc=)/i.test(page.text), `${what}: no <script> but the page's own script files`);
    assert.ok(page.text.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), `${what}: the name is shown as text`);
  }
  assert.equal(rows(pages['overview searched for it'].text).length, 1, 'the search finds it by its name');
  assert.match(pages.overview.text, /aria-label="Upload cap of &lt;script&gt;alert\(1\)&lt;\/script&gt; in kbps"/, 'attributes are escaped too');
  assert.match(pages['overview searched for it'].text, /name="q" value="&lt;script&gt;"/, 'the search box echoes the query escaped');
});

test('with 10,000 subjects the overview pages, sorts, searches and filters on the server', async (t) => {
  const host = await startPanel(t, { now: () => NOW });
  const started = performance.now();
  const seeded = await seedSubjects(host.db, {
    now: NOW,
    count: 10_000,
    usage: (index) => index % 100 === 42,
    bytesPerHour: (index, hour) => {
      const up = BigInt(index === 4242 ? 50_000 : index) * 1_000_000n + BigInt(hour);
      return { up, down: 3n * up };
    },
  });
  t.diagnostic(`seeded 10,000 subjects in ${Math.round(performance.now() - started)} ms`);
  const admin = await host.login();
  const heavy = seeded.subjects[4241]!;
  const timed = async (path: string) => {
    const start = performance.now();
    const response = await admin.agent.get(path);
    t.diagnostic(`GET ${path}: ${Math.round(performance.now() - start)} ms`);
    assert.equal(response.status, 200, path);
    return response.text;
  };
  // SQLite orders names by their bytes (BINARY collation); the seeded names are ASCII.
  const byName = [...seeded.subjects].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  await t.test('page 1 of 200 lists the first 50 by name; the cards count everything', async () => {
    const started = performance.now();
    const page = await timed(OVERVIEW);
    assert.ok(performance.now() - started < 5000, 'renders in well under 5 s');

    assert.deepEqual(rows(page).map((r) => r.key), byName.slice(0, 50).map((s) => s.key));
    assert.deepEqual(pager(page)?.total, '10000 subjects');
    assert.deepEqual(pager(page)?.page, 'Page 1 of 200');
    assert.equal(pager(page)?.links['Next ›'], `${OVERVIEW}?page=2`);
    assert.equal(card(page, 'Limited subjects'), `${seeded.counts.limited} of 10000`);
    assert.equal(card(page, 'Failed / pending'), `${seeded.counts.failed} / ${seeded.counts.pending}`);
    const now = NOW;
    let up = 0n;
    let down = 0n;
    for (const subject of seeded.subjects) {
      const total = seededTotal(subject, now - DAY_MS, now);
      up += total.up;
      down += total.down;
    }
    assert.equal(card(page, 'Last 24 h'), `${formatBytes(up)} / ${formatBytes(down)}`);
    const last = await timed(`${OVERVIEW}?page=200`);
    assert.equal(pager(last)?.page, 'Page 200 of 200');
    assert.deepEqual(rows(last).map((r) => r.key), byName.slice(9950).map((s) => s.key));
  });

  await t.test('every column heads a sort link; the active one flips the order', async () => {
    const page = await timed(OVERVIEW);
    const links = sortLinks(page);
    assert.deepEqual([...links.keys()], ['Subject', 'Type', 'Interface', 'Cap ↑', 'Cap ↓', 'Now ↑ / ↓', 'Use', '24 h ↑ / ↓', '30 d ↑ / ↓', 'Status']);
    assert.deepEqual(links.get('Subject'), { href: `${OVERVIEW}?sort=name&order=desc`, ariaSort: 'ascending', label: 'Subject ▲' });
    assert.deepEqual(links.get('24 h ↑ / ↓'), { href: `${OVERVIEW}?sort=usage_24h`, ariaSort: null, label: '24 h ↑ / ↓' });

    const sorted = await timed(`${OVERVIEW}?sort=usage_24h&order=desc`);
    assert.deepEqual(sortLinks(sorted).get('24 h ↑ / ↓'), { href: `${OVERVIEW}?sort=usage_24h`, ariaSort: 'descending', label: '24 h ↑ / ↓ ▼' });
    assert.equal(pager(sorted)?.links['Next ›'], `${OVERVIEW}?sort=usage_24h&order=desc&page=2`, 'paging keeps the order');
  });

  await t.test('sorting by 24 h usage, descending, puts the heaviest subject first', async () => {
    const page = await timed(`${OVERVIEW}?sort=usage_24h&order=desc`);
    const now = NOW;
    const withUsage = seeded.subjects.filter((s) => s.hourly.length > 0);
    const expected = withUsage
      .map((s) => ({ s, bytes: seededTotal(s, now - DAY_MS, now) }))
      .sort((a, b) => Number(b.bytes.up + b.bytes.down - (a.bytes.up + a.bytes.down)))
      .slice(0, 50)
      .map((e) => e.s);
    const listed = rows(page);
    assert.equal(listed[0]?.key, heavy.key, 'the heaviest first');
    assert.deepEqual(listed.map((r) => r.key), expected.map((s) => s.key));
    assert.deepEqual(listed.slice(0, 3).map((r) => r.cells[7]), expected.slice(0, 3).map((s) => dayCell(s, now)));
  });

  await t.test('the search finds a subject by name and by address', async () => {
    for (const q of [heavy.name, heavy.address!, heavy.name.toUpperCase()]) {
      const page = await timed(`${OVERVIEW}?q=${encodeURIComponent(q)}`);
      assert.deepEqual(rows(page).map((r) => r.key), [heavy.key], `q=${q}`);
      assert.equal(pager(page)?.total, '1 subject', `q=${q}`);
    }
    const none = await timed(`${OVERVIEW}?q=${encodeURIComponent('%_!')}`);
    assert.match(none, /<p class="empty">No subject matches these filters\.<\/p>/, 'LIKE wildcards are searched for literally');
  });

  await t.test('filters by type, network and status count and list only what matches', async () => {
    const cases: [string, (s: SeededSubject) => boolean][] = [
      ['type=vm', (s) => s.type === 'vm'],
      ['type=peer', (s) => s.type === 'peer'],
      [`network=${seeded.networkIds[2]}`, (s) => s.networkId === seeded.networkIds[2]],
      ['status=failed', (s) => (s.upKbps > 0 || s.downKbps > 0) && s.status === 'failed'],
      ['status=pending', (s) => (s.upKbps > 0 || s.downKbps > 0) && s.status === 'pending'],
      ['status=unlimited', (s) => s.upKbps === 0 && s.downKbps === 0],
      ['type=vm&status=applied', (s) => s.type === 'vm' && (s.upKbps > 0 || s.downKbps > 0) && s.status === 'applied'],
    ];
    for (const [query, matches] of cases) {
      const page = await timed(`${OVERVIEW}?${query}`);
      const expected = byName.filter(matches);
      assert.ok(expected.length > 1, `${query}: the seed has subjects to find`);
      assert.equal(pager(page)?.total, `${expected.length} subjects`, query);
      assert.deepEqual(rows(page).map((r) => r.key), expected.slice(0, 50).map((s) => s.key), query);
    }
    const vms = rows(await timed(`${OVERVIEW}?type=vm`));
    assert.ok(vms.every((r) => r.cells[1] === 'VM'));
    const unlimited = rows(await timed(`${OVERVIEW}?status=unlimited`));
    assert.ok(unlimited.every((r) => r.cells[9] === 'unlimited' && r.cells[3] === 'Unlimited'));
  });

  await t.test('a network page with 1,000 peers shows each one\'s cap in the Limit column', async () => {
    const networkId = seeded.networkIds[0]!;
    const page = await timed(`/admin/networks/${networkId}`);
    const peerRows = [...page.matchAll(/<tr>\s*<td><a href="\/admin\/networks\/\d+\/peers\/\d+">([^<]+)<\/a><\/td>([\s\S]*?)<\/tr>/g)];
    const onNetwork = seeded.subjects.filter((s) => s.networkId === networkId);
    assert.equal(peerRows.length, onNetwork.length);
    assert.equal(onNetwork.length, 1000);
    const capped = onNetwork.find((s) => s.status === 'applied' && s.upKbps > 0)!;
    const unlimited = onNetwork.find((s) => s.upKbps === 0 && s.downKbps === 0)!;
    const cell = (name: string) => text(peerRows.find((m) => m[1] === name)![2]!.split('<td>').at(-1)!);
    assert.equal(cell(capped.name), `${capped.upKbps / 1000} / ${capped.downKbps / 1000} Mbps`);
    assert.equal(cell(unlimited.name), 'Unlimited');
  });

  await t.test('an unknown sort, order or filter value falls back to the default', async () => {
    const fallback = await timed(`${OVERVIEW}?sort=bogus&order=sideways&type=router&status=weird&network=x`);
    assert.deepEqual(rows(fallback).map((r) => r.key), byName.slice(0, 50).map((s) => s.key));
    assert.equal(sortLinks(fallback).get('Subject')?.ariaSort, 'ascending');
    assert.equal(pager(fallback)?.total, '10000 subjects');
  });
});
