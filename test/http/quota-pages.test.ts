import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry } from '../../src/nodes/protocol.js';
import { enqueueWebhook } from '../../src/quotas/webhooks.js';
import { parseCsv } from '../support/csv.js';
import { HERMETIC_PLUGIN_OPTIONS, created, startPanel, wgKey } from '../support/panel.js';

const BASE = '/admin/bandwidth';
const GB = 1_000_000_000n;
const MINUTE = 60_000;
/**
 * The plugin's clock: 12:00 UTC on 15 March 2026, 14.5 days into the March cycle of a quota that
 * starts on day 1 in UTC (31 days). Fixed, so no cycle ends between ingesting and asking.
 */
const NOW = Date.UTC(2026, 2, 15, 12, 0);
const MARCH = { start: Date.UTC(2026, 2, 1), end: Date.UTC(2026, 3, 1) };
const METRICS_TOKEN = 'quota-metrics-token-0123456789';

const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
const iso = (ms: number) => new Date(ms).toISOString();

/** One peer or VM of the seeded host: what it used this cycle (up + down) and its quota. */
interface Subject {
  type: 'peer' | 'vm';
  id: string;
  name: string;
  up: bigint;
  down: bigint;
}

/**
 * A host with network `office` (wg0) and four peers, and VM `web-01`, each with this cycle's usage
 * ingested as a ledger page of node `local`, then own quotas set through the API (so the enforcer
 * opens each cycle from that history and evaluates it, as it does for a quota set mid-cycle):
 * - alpha: 7.2 of 12 GB (60 %), ok
 * - bravo: 10.2 of 12 GB (85 %), warning
 * - charlie: 12.6 of 12 GB (105 %), exceeded, throttled to 1 / 2 Mbps
 * - delta: 3 GB used, no quota
 * - web-01: 1.5 of 50 GB, ok, its cycle from day 1 in Europe/Berlin
 */
async function quotaHost(t: TestContext, pluginOptions: Record<string, unknown> = {}) {
  const host = await startPanel(t, { now: () => NOW, pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, ...pluginOptions } } });
  const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  const peer = async (name: string, seed: number, up: bigint, down: bigint): Promise<Subject> => {
    const record = await created(host.api.post(`/api/networks/${network.id}/peers`).send({ name, public_key: wgKey(seed), allowed_ips: [`10.8.0.${seed}/32`] }), 'peer');
    return { type: 'peer', id: String(record.id), name, up, down };
  };
  const alpha = await peer('alpha', 2, 1_200_000_000n, 6_000_000_000n);
  const bravo = await peer('bravo', 3, 200_000_000n, 10n * GB);
  const charlie = await peer('charlie', 4, 600_000_000n, 12n * GB);
  const delta = await peer('delta', 5, GB, 2n * GB);
  const vmRecord = await created(host.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');
  const vm: Subject = { type: 'vm', id: String(vmRecord.id), name: 'web-01', up: 500_000_000n, down: GB };

  // Each subject's bytes as two minutes of 10 March, and a minute of last month that no cycle counts.
  const entries: LedgerEntry[] = [];
  for (const subject of [alpha, bravo, charlie, delta, vm]) {
    const iface = subject.type === 'vm' ? 'tap-web01' : 'wg0';
    for (const [start, up, down] of [
      [Date.UTC(2026, 1, 20, 8, 0), 9n * GB, 9n * GB],
      [Date.UTC(2026, 2, 10, 10, 0), subject.up / 2n, subject.down / 2n],
      [Date.UTC(2026, 2, 10, 10, 1), subject.up - subject.up / 2n, subject.down - subject.down / 2n],
    ] as const) {
      entries.push({
        seq: entries.length + 1, subjectType: subject.type, subjectId: subject.id, source: 'wireguard', interface: iface,
        periodStart: start, periodEnd: start + MINUTE, upBytes: String(up), downBytes: String(down),
      });
    }
  }
  await ingestPage(host.db, 'local', { node: 'local', ledgerId: 'quota-pages', head: entries.length, oldest: 1, entries }, { now: NOW });

  const quota = async (subject: Subject, body: Record<string, unknown>) => {
    const response = await host.api.put(`/api/bandwidth/quotas/${subject.type}/${subject.id}`).send(body);
    assert.equal(response.status, 200, `PUT quota of ${subject.name}: ${response.text.slice(0, 300)}`);
  };
  const twelve = { allowance_bytes: String(12n * GB), throttle_up_kbps: 1000, throttle_down_kbps: 2000 };
  await quota(alpha, twelve);
  await quota(bravo, twelve);
  await quota(charlie, twelve);
  await quota(vm, { allowance_bytes: String(50n * GB), time_zone: 'Europe/Berlin', action: 'notify' });
  return { host, admin: await host.login(), networkId: network.id, alpha, bravo, charlie, delta, vm };
}

/** The overview's rows: key, the text of each data cell (not the cap form), and the quota cell's HTML. */
function rows(html: string): { key: string; cells: string[]; quota: string }[] {
  const body = /<table class="subjects">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? '';
  return [...body.matchAll(/<tr data-subject="([^"]+)"[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => {
    const cells = [...m[2]!.matchAll(/<td([^>]*)>([\s\S]*?)<\/td>/g)];
    return { key: m[1]!, cells: cells.slice(0, 11).map((cell) => text(cell[2]!)), quota: cells.find((cell) => cell[1]!.includes('class="quota"'))?.[2] ?? '' };
  });
}

/** The value of the card whose label starts with `label`, as text. */
function card(html: string, label: string): string | undefined {
  const match = [...html.matchAll(/<div class="stat"><div class="value"[^>]*>([\s\S]*?)<\/div>\s*<div class="label">([\s\S]*?)<\/div><\/div>/g)]
    .find((m) => text(m[2]!).startsWith(label));
  return match ? text(match[1]!) : undefined;
}

/** The quota section's facts, by their term. */
function quotaFacts(html: string): Record<string, string> {
  const list = /<dl class="facts quota-facts">([\s\S]*?)<\/dl>/.exec(html)?.[1] ?? '';
  return Object.fromEntries([...list.matchAll(/<dt>([^<]*)<\/dt><dd[^>]*>([\s\S]*?)<\/dd>/g)].map((m) => [m[1]!, text(m[2]!)]));
}

/** An audit table's rows as cell texts: when, who, what, subject, change, result. */
function events(html: string): string[][] {
  const body = /<table class="events">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => [...row[1]!.matchAll(/<td>([\s\S]*?)<\/td>/g)].map((cell) => text(cell[1]!)));
}

const keyOf = (subject: Subject) => `${subject.type}:${subject.id}`;
const flash = (html: string) => /<p class="flash" role="status">([^<]*)<\/p>/.exec(html)?.[1];

describe('the overview with quotas', () => {
  test('each row shows a usage-of-allowance meter, its words and the state; throttled where throttled; none without a quota', async (t) => {
    const { admin, alpha, bravo, charlie, delta, vm } = await quotaHost(t);

    const page = await admin.agent.get(BASE);

    assert.equal(page.status, 200);
    const byKey = new Map(rows(page.text).map((row) => [row.key, row]));
    assert.deepEqual([alpha, bravo, charlie, delta, vm].map((s) => byKey.get(keyOf(s))?.cells[10]), [
      '60 % 7.2 of 12 GB (60 %) ok',
      '85 % 10.2 of 12 GB (85 %) warning',
      '105 % 12.6 of 12 GB (105 %) exceeded throttled',
      '—',
      '3 % 1.5 of 50 GB (3 %) ok',
    ]);
    assert.match(byKey.get(keyOf(alpha))!.quota, /<meter min="0" max="100" low="80" high="99.99" optimum="0" value="60" title="7.2 of 12 GB \(60 %\)">60 %<\/meter>/);
    assert.match(byKey.get(keyOf(charlie))!.quota, /value="100"/, 'the meter stops at its maximum; the words say 105 %');
    assert.match(page.text, /<th class="quota">Quota \(this cycle\)<\/th>/);
    assert.equal(card(page.text, 'Throttled / over quota warning'), '0 / 2', 'a dry run leaves the throttle pending: no limit is `throttled` yet');
  });

  test('quota=over_warning lists exactly the subjects in warning or exceeded, counted and paged by the database', async (t) => {
    const { host, admin, bravo, charlie } = await quotaHost(t);

    const over = await admin.agent.get(`${BASE}?quota=over_warning`);
    const peersOver = await admin.agent.get(`${BASE}?quota=over_warning&type=peer&q=char`);

    assert.deepEqual(rows(over.text).map((row) => row.key), [keyOf(bravo), keyOf(charlie)]);
    assert.match(over.text, /<span class="muted">2 subjects<\/span>/);
    assert.match(over.text, /<option value="over_warning" selected>/, 'the select keeps the filter');
    assert.match(over.text, /<a href="\/admin\/bandwidth">Reset<\/a>/);
    assert.match(over.text, /<a href="\/admin\/bandwidth\?quota=over_warning&amp;sort=type">Type<\/a>/, 'sorting keeps the filter');
    assert.deepEqual(rows(peersOver.text).map((row) => row.key), [keyOf(charlie)], 'combined with type and search');

    // The stored cycle keeps its last state once the quota is gone: the filter asks for a quota that still applies.
    await host.api.delete(`/api/bandwidth/quotas/peer/${bravo.id}`).expect(204);
    const after = await admin.agent.get(`${BASE}?quota=over_warning`);
    assert.deepEqual(rows(after.text).map((row) => row.key), [keyOf(charlie)]);
    assert.equal(card(after.text, 'Throttled / over quota warning'), '0 / 1');
  });

  test('a network quota and the default apply to the filter and the column too', async (t) => {
    const { host, admin, alpha, delta, vm, networkId } = await quotaHost(t);

    await host.api.put(`/api/bandwidth/quotas/network/${networkId}`).send({ allowance_bytes: String(3n * GB) }).expect(200);
    const withNetwork = await admin.agent.get(`${BASE}?quota=over_warning`);
    await host.api.put('/api/bandwidth/quotas/default').send({ allowance_bytes: String(GB) }).expect(200);
    const withDefault = rows((await admin.agent.get(`${BASE}?quota=over_warning`)).text);

    assert.deepEqual(rows(withNetwork.text).find((row) => row.key === keyOf(delta))?.cells[10], '100 % 3 of 3 GB (100 %) exceeded throttled', 'delta inherits its network\'s quota');
    assert.ok(!rows(withNetwork.text).some((row) => row.key === keyOf(alpha)), 'alpha\'s own quota wins over its network\'s');
    assert.ok(!withDefault.some((row) => row.key === keyOf(vm)), 'the VM keeps its own quota (1.5 of 50 GB)');
  });

  test('status=throttled lists the subjects whose throttle the kernel applied, and the card counts them', async (t) => {
    const { host, admin, charlie } = await quotaHost(t);
    // What the applier records when a node reports the throttled class applied (a dry run never does).
    await host.db('bw_limits').where({ subject_type: 'peer', subject_id: charlie.id }).update({ status: 'throttled', reason: null, last_error: null });

    const page = await admin.agent.get(`${BASE}?status=throttled`);

    assert.deepEqual(rows(page.text).map((row) => [row.key, row.cells[9]]), [[keyOf(charlie), 'throttled']]);
    assert.match(page.text, /<option value="throttled" selected>throttled<\/option>/);
    assert.equal(card(page.text, 'Throttled / over quota warning'), '1 / 2');
  });
});

describe('the subject page\'s quota section', () => {
  test('shows the source, the cycle in its time zone and in UTC, used / limit / remaining, extra, the projection and the state', async (t) => {
    const { admin, bravo, vm } = await quotaHost(t);

    const peerPage = await admin.agent.get(`${BASE}/peer/${bravo.id}`);
    const vmPage = await admin.agent.get(`${BASE}/vm/${vm.id}`);

    assert.equal(peerPage.status, 200);
    // 10.2 GB in the first 14.5 of 31 days: 10.2 × 31 / 14.5 at the end.
    const projected = (10_200_000_000n * BigInt(MARCH.end - MARCH.start)) / BigInt(NOW - MARCH.start);
    assert.equal(projected, 21_806_896_551n);
    assert.deepEqual(quotaFacts(peerPage.text), {
      Source: 'own quota',
      Allowance: '12 GB a cycle, counting upload and download; warnings at 80, 90, 100 %; when used up: throttle to 1 / 2 Mbps',
      'Cycle (UTC)': '2026-03-01 00:00 → 2026-04-01 00:00',
      'Used': '10.2 GB (10200000000 bytes; ↑ 200 MB, ↓ 10 GB)',
      Limit: '12 GB (12000000000 bytes)',
      Remaining: '1.8 GB (1800000000 bytes)',
      'Extra this cycle': '0 B (0 bytes)',
      'Projected at cycle end': '21.8 GB at the average rate so far (181 % of the limit)',
      State: 'warning',
      Throttled: 'no',
    });
    assert.match(peerPage.text, /<meter min="0" max="100" low="80" high="99.99" optimum="0" value="85" title="10.2 of 12 GB \(85 %\)">/);

    const vmFacts = quotaFacts(vmPage.text);
    assert.equal(vmFacts['Cycle (Europe/Berlin)'], '2026-03-01 00:00 → 2026-04-01 00:00');
    assert.equal(vmFacts['Cycle (UTC)'], '2026-02-28 23:00 → 2026-03-31 22:00', 'CET at the start, CEST (from 29 March) at the end');
    assert.equal(vmFacts.Allowance, '50 GB a cycle, counting upload and download; warnings at 80, 90, 100 %; when used up: notify only');
    assert.equal(vmFacts.State, 'ok');
    assert.match(vmPage.text, /<time datetime="2026-02-28T23:00:00\.000Z">2026-02-28 23:00<\/time>/);
  });

  test('an exceeded peer shows it is throttled; an inherited quota names its source; no quota says so', async (t) => {
    const { host, admin, charlie, delta, networkId } = await quotaHost(t);

    const exceeded = quotaFacts((await admin.agent.get(`${BASE}/peer/${charlie.id}`)).text);
    const none = await admin.agent.get(`${BASE}/peer/${delta.id}`);
    await host.api.put(`/api/bandwidth/quotas/network/${networkId}`).send({ allowance_bytes: String(100n * GB) }).expect(200);
    const inherited = quotaFacts((await admin.agent.get(`${BASE}/peer/${delta.id}`)).text);

    assert.equal(exceeded.State, 'exceeded');
    assert.equal(exceeded.Remaining, '0 B (0 bytes)');
    assert.equal(exceeded.Throttled, 'yes, to 1 / 2 Mbps (kernel status: pending)');
    assert.match(none.text, /<p class="empty">No quota applies: it has none of its own, its network has none and there is no plugin-wide default\.<\/p>/);
    assert.ok(!none.text.includes('/quota/reset'), 'no reset form without a quota');
    assert.equal(inherited.Source, 'network office');
    assert.equal(inherited.Used, '3 GB (3000000000 bytes; ↑ 1 GB, ↓ 2 GB)');
  });

  test('the manual reset counts from now, re-arms the thresholds, lifts the throttle, flashes and is audited', async (t) => {
    const { host, admin, charlie } = await quotaHost(t);

    const reset = await admin.form(`${BASE}/peer/${charlie.id}/quota/reset`);

    assert.equal(reset.status, 303, reset.text.slice(0, 300));
    assert.equal(reset.headers.location, `${BASE}/peer/${charlie.id}`);
    const page = await admin.agent.get(reset.headers.location!);
    assert.equal(flash(page.text), 'charlie: quota reset; this cycle counts from 2026-03-15 12:00 UTC (0 of 12 GB (0 %))');
    const facts = quotaFacts(page.text);
    assert.deepEqual([facts['Counted from'], facts.Used, facts.State, facts.Throttled, facts['Projected at cycle end']], [
      '2026-03-15 12:00 UTC (reset by hand)', '0 B (0 bytes; ↑ 0 B, ↓ 0 B)', 'ok', 'no', '— (the cycle has only just begun)',
    ]);
    const limit = await host.db('bw_limits').where({ subject_type: 'peer', subject_id: charlie.id }).first();
    assert.deepEqual([limit.throttle_up_kbps, limit.throttle_down_kbps], [null, null]);
    const audit = events(page.text).map((row) => row.slice(2, 5));
    assert.deepEqual(audit.filter((row) => row[0] === 'quota.manual_reset'), [['quota.manual_reset', `peer ${charlie.id}`, 'reset by hand: 12.6 GB (exceeded) → 0 B']]);
    assert.deepEqual(audit.filter((row) => row[0] === 'quota.restored'), [['quota.restored', `peer ${charlie.id}`, 'quota throttle lifted: its own caps apply again']]);
    assert.ok(!audit.some((row) => row[0] === 'quota.reset'), 'a manual reset is audited once, as quota.manual_reset');
  });

  test('a traffic block raises this cycle\'s limit, can lift the throttle, flashes and is audited', async (t) => {
    const { host, admin, charlie } = await quotaHost(t);

    const added = await admin.form(`${BASE}/peer/${charlie.id}/quota/extra`, { extra_gb: '1.5' });

    assert.equal(added.status, 303, added.text.slice(0, 300));
    const page = await admin.agent.get(`${BASE}/peer/${charlie.id}`);
    assert.equal(flash(page.text), 'charlie: 1.5 GB added to this cycle; 12.6 of 13.5 GB (93 %), warning');
    const facts = quotaFacts(page.text);
    assert.deepEqual([facts['Extra this cycle'], facts.Limit, facts.Remaining, facts.State, facts.Throttled], [
      '1.5 GB (1500000000 bytes)', '13.5 GB (13500000000 bytes)', '900 MB (900000000 bytes)', 'warning', 'no',
    ]);
    const cycle = await host.db('bw_quota_cycles').where({ subject_type: 'peer', subject_id: charlie.id }).first();
    assert.equal(String(cycle.extra_bytes), '1500000000');
    const audit = events(page.text).map((row) => row.slice(2, 5));
    assert.deepEqual(audit.filter((row) => row[0] === 'quota.extra'), [['quota.extra', `peer ${charlie.id}`, 'traffic block of 1.5 GB for this cycle (extra now 1.5 GB)']]);
    assert.ok(audit.some((row) => row[0] === 'quota.restored'));
  });

  test('a bad traffic block is a 400 that names `extra_gb`, shows the page with what was typed, and writes nothing', async (t) => {
    const { host, admin, alpha } = await quotaHost(t);
    const before = await host.db('bw_quota_cycles').orderBy('id');

    for (const [typed, message] of [
      ['abc', '`extra_gb` must be a number of gigabytes such as 12 or 0.5, got `abc`'],
      ['', '`extra_gb` must be a number of gigabytes such as 12 or 0.5, got nothing'],
      ['0', '`extra_gb` must be more than 0 gigabytes, got `0`'],
      ['-5', '`extra_gb` must be a number of gigabytes such as 12 or 0.5, got `-5`'],
    ] as const) {
      const response = await admin.form(`${BASE}/peer/${alpha.id}/quota/extra`, { extra_gb: typed });
      assert.equal(response.status, 400, typed);
      assert.match(response.text, /<h2>Transfer quota<\/h2>/, `${typed}: the page, not a bare error`);
      const error = /<p class="error" role="alert" data-field=extra_gb>([^<]*)<\/p>/.exec(response.text)?.[1];
      assert.equal(error?.replaceAll('&#39;', '\'').replaceAll('&#96;', '`'), message, typed);
      assert.match(response.text, new RegExp(`<input id="extra_gb" name="extra_gb" value="${typed}"[^>]*aria-invalid=true`), `${typed}: kept`);
    }
    assert.deepEqual(await host.db('bw_quota_cycles').orderBy('id'), before);

    // Blocks that would add up past the largest BIGINT are refused by the service: the form names its own field.
    await host.db('bw_quota_cycles').where({ subject_type: 'peer', subject_id: alpha.id }).update({ extra_bytes: String(2n ** 63n - 2n) });
    const past = await admin.form(`${BASE}/peer/${alpha.id}/quota/extra`, { extra_gb: '1' });
    assert.equal(past.status, 400);
    assert.match(past.text, /<p class="error" role="alert" data-field=extra_gb>the cycle&#39;s traffic blocks would pass 9223372036854775807 bytes[^<]*<\/p>/);
  });

  test('reset and traffic block need the session\'s CSRF token and the admin role; a subject without a quota is refused', async (t) => {
    const { host, admin, alpha, delta } = await quotaHost(t);
    const other = await host.login();
    const before = { cycles: await host.db('bw_quota_cycles').orderBy('id'), events: await host.db('bw_events').orderBy('id') };

    for (const path of [`${BASE}/peer/${alpha.id}/quota/reset`, `${BASE}/peer/${alpha.id}/quota/extra`]) {
      const refusals = {
        'no token': await admin.agent.post(path).type('form').send({ extra_gb: '5' }),
        'a wrong token': await admin.agent.post(path).type('form').send({ extra_gb: '5', _csrf: `${admin.csrf.slice(0, -2)}xx` }),
        'another session\'s token': await admin.agent.post(path).type('form').send({ extra_gb: '5', _csrf: other.csrf }),
      };
      for (const [what, response] of Object.entries(refusals)) assert.equal(response.status, 403, `${path}: ${what}`);
      const visitor = await host.visitor().post(path).type('form').send({ extra_gb: '5' });
      assert.equal(visitor.status, 303, 'a visitor is sent to log in');
      assert.match(String(visitor.headers.location), /^\/login/);
    }
    assert.deepEqual({ cycles: await host.db('bw_quota_cycles').orderBy('id'), events: await host.db('bw_events').orderBy('id') }, before);

    const noQuota = await admin.form(`${BASE}/peer/${delta.id}/quota/reset`);
    assert.equal(noQuota.status, 404);
    assert.match(noQuota.text, /<p class="error" role="alert">peer \d+ has no quota: set one on it, its network or as the default<\/p>/);
    const unknown = await admin.form(`${BASE}/peer/999/quota/reset`);
    assert.equal(unknown.status, 404);
    assert.match(unknown.text, /No peer with id `999`/);
  });
});

describe('quota events in the audit log', () => {
  test('the subject page lists set, warning, exceeded and throttled readably; the overview names a network or default target', async (t) => {
    const { host, admin, charlie, networkId } = await quotaHost(t);
    await host.api.put(`/api/bandwidth/quotas/network/${networkId}`).send({ allowance_bytes: String(100n * GB) }).expect(200);
    await host.api.delete(`/api/bandwidth/quotas/network/${networkId}`).expect(204);

    const page = await admin.agent.get(`${BASE}/peer/${charlie.id}`);
    const overview = await admin.agent.get(BASE);

    const quotaRows = events(page.text).map((row) => row.slice(2, 5)).filter((row) => row[0]!.startsWith('quota.')).reverse();
    assert.deepEqual(quotaRows, [
      ['quota.set', `peer ${charlie.id}`, 'set: 12 GB total a month from day 1 (UTC), warn at 80, 90, 100 %, then throttle to 1 / 2 Mbps'],
      ['quota.warning', `peer ${charlie.id}`, '80 % of the allowance reached: 12.6 of 12 GB (105 %)'],
      ['quota.warning', `peer ${charlie.id}`, '90 % of the allowance reached: 12.6 of 12 GB (105 %)'],
      ['quota.exceeded', `peer ${charlie.id}`, 'allowance used up: 12.6 of 12 GB (105 %); throttled'],
      ['quota.throttled', `peer ${charlie.id}`, 'throttled to 1 / 2 Mbps (quota exceeded)'],
    ]);
    const targets = events(overview.text).map((row) => row.slice(2, 5)).filter((row) => row[1] === `network ${networkId}`);
    assert.deepEqual(targets, [
      ['quota.removed', `network ${networkId}`, 'removed (was 100 GB total a month from day 1 (UTC), warn at 80, 90, 100 %, then throttle to 1 / 1 Mbps)'],
      ['quota.set', `network ${networkId}`, 'set: 100 GB total a month from day 1 (UTC), warn at 80, 90, 100 %, then throttle to 1 / 1 Mbps'],
    ]);
  });
});

describe('the webhook delivery log on the overview', () => {
  test('lists the newest deliveries with event, subject, status, attempts, last answer and times', async (t) => {
    const { host, admin, bravo, charlie } = await quotaHost(t);
    const hook = { url: 'https://hooks.example.invalid/bandwidth' };
    const exceeded = await enqueueWebhook(host.db, hook, { name: 'bandwidth.quota.exceeded', subjectType: 'peer', subjectId: charlie.id, payload: {} }, NOW - 10 * MINUTE);
    const warning = await enqueueWebhook(host.db, hook, { name: 'bandwidth.quota.warning', subjectType: 'peer', subjectId: bravo.id, payload: {} }, NOW - 5 * MINUTE);
    const reset = await enqueueWebhook(host.db, hook, { name: 'bandwidth.quota.reset', payload: {} }, NOW - MINUTE);
    // The deliverer's records of three outcomes (tested in quota-webhooks.test.ts): delivered, retrying, given up.
    await host.db('bw_webhook_deliveries').where({ delivery_id: exceeded }).update({ status: 'delivered', attempts: 1, last_status_code: 204, next_attempt_at: null, delivered_at: NOW - 9 * MINUTE, updated_at: NOW - 9 * MINUTE });
    await host.db('bw_webhook_deliveries').where({ delivery_id: warning }).update({ status: 'pending', attempts: 2, last_status_code: 503, last_error: 'HTTP 503 Service Unavailable: down for maintenance', next_attempt_at: NOW + 4 * MINUTE, updated_at: NOW - 2 * MINUTE });
    await host.db('bw_webhook_deliveries').where({ delivery_id: reset }).update({ status: 'failed', attempts: 8, last_status_code: null, last_error: 'fetch failed: connect ECONNREFUSED', next_attempt_at: null, updated_at: NOW });

    const page = await admin.agent.get(BASE);

    const section = /<section class="card" id="webhook-deliveries">([\s\S]*?)<\/section>/.exec(page.text)?.[1] ?? '';
    const listed = [...section.matchAll(/<tr data-delivery="([^"]+)">([\s\S]*?)<\/tr>/g)].map((m) => [m[1]!, ...[...m[2]!.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((cell) => text(cell[1]!))]);
    assert.deepEqual(listed, [
      [reset, '2026-03-15 11:59:00', 'bandwidth.quota.reset', '—', 'failed', '8', 'fetch failed: connect ECONNREFUSED', '2026-03-15 12:00:00', 'gave up'],
      [warning, '2026-03-15 11:55:00', 'bandwidth.quota.warning', `peer ${bravo.id}`, 'pending', '2', 'HTTP 503 Service Unavailable: down for maintenance', '2026-03-15 11:58:00', 'next try 2026-03-15 12:04:00'],
      [exceeded, '2026-03-15 11:50:00', 'bandwidth.quota.exceeded', `peer ${charlie.id}`, 'delivered', '1', 'HTTP 204', '2026-03-15 11:51:00', 'delivered 2026-03-15 11:51:00'],
    ]);
    assert.match(section, new RegExp(`<a href="/admin/bandwidth/peer/${bravo.id}">peer ${bravo.id}</a>`));
  });

  test('says how to turn it on while nothing was queued', async (t) => {
    const { admin } = await quotaHost(t);
    const page = await admin.agent.get(BASE);
    assert.match(page.text, /No quota notification has been queued for the webhook \(set <code>quota_webhook_url<\/code> to send them\)\./);
  });
});

describe('the CSV export with quotas', () => {
  test('each row carries its subject\'s current cycle: source, state, bounds, used and limit bytes; empty without a quota', async (t) => {
    const { admin, alpha, charlie, delta, vm } = await quotaHost(t);
    const query = `?step=day&from=${iso(Date.UTC(2026, 2, 10))}&to=${iso(Date.UTC(2026, 2, 11))}`;

    const response = await admin.agent.get(`${BASE}/export.csv${query}`);

    assert.equal(response.status, 200);
    const [header, ...records] = parseCsv(response.text);
    assert.deepEqual(header, [
      'subject_type', 'subject_id', 'name', 'period_start', 'period_end', 'up_bytes', 'down_bytes',
      'quota_source', 'quota_state', 'cycle_start', 'cycle_end', 'quota_used_bytes', 'quota_limit_bytes',
    ]);
    const day = [iso(Date.UTC(2026, 2, 10)), iso(Date.UTC(2026, 2, 11))];
    const byId = new Map(records.map((record) => [`${record[0]}:${record[1]}`, record]));
    assert.equal(records.length, 5);
    assert.deepEqual(byId.get(keyOf(alpha)), ['peer', alpha.id, 'alpha', ...day, '1200000000', '6000000000', 'subject', 'ok', iso(MARCH.start), iso(MARCH.end), '7200000000', '12000000000']);
    assert.deepEqual(byId.get(keyOf(charlie)), ['peer', charlie.id, 'charlie', ...day, '600000000', '12000000000', 'subject', 'exceeded', iso(MARCH.start), iso(MARCH.end), '12600000000', '12000000000']);
    assert.deepEqual(byId.get(keyOf(delta)), ['peer', delta.id, 'delta', ...day, '1000000000', '2000000000', '', '', '', '', '', '']);
    assert.deepEqual(byId.get(keyOf(vm)), ['vm', vm.id, 'web-01', ...day, '500000000', '1000000000', 'subject', 'ok', '2026-02-28T23:00:00.000Z', '2026-03-31T22:00:00.000Z', '1500000000', '50000000000']);
  });
});

describe('/metrics with quotas', () => {
  // The package ships CommonJS without type declarations: load it through require, typed here.
  const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => { name: string; type: string; metrics: { value?: string; labels?: Record<string, string> }[] }[];

  test('the used ratio and the one-hot state per subject with a quota; throttled limits counted by status', async (t) => {
    const { host, alpha, bravo, charlie, vm } = await quotaHost(t, { metrics_token: METRICS_TOKEN });
    await host.db('bw_limits').where({ subject_type: 'peer', subject_id: charlie.id }).update({ status: 'throttled', reason: null, last_error: null });

    const response = await host.visitor().get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);

    assert.equal(response.status, 200);
    const families = new Map(parsePrometheus(response.text).map((family) => [family.name, family]));
    const ratio = families.get('panel_bandwidth_quota_used_ratio');
    assert.equal(ratio?.type, 'GAUGE');
    assert.deepEqual(new Map(ratio.metrics.map((m) => [`${m.labels?.subject_type}/${m.labels?.subject_id}`, Number(m.value)])), new Map([
      [`peer/${alpha.id}`, 0.6], [`peer/${bravo.id}`, 0.85], [`peer/${charlie.id}`, 1.05], [`vm/${vm.id}`, 0.03],
    ]));
    const state = families.get('panel_bandwidth_quota_state');
    assert.equal(state?.type, 'GAUGE');
    const oneHot = new Map(state.metrics.map((m) => [`${m.labels?.subject_type}/${m.labels?.subject_id}/${m.labels?.state}`, Number(m.value)]));
    assert.deepEqual(oneHot, new Map([
      [`peer/${alpha.id}/ok`, 1], [`peer/${alpha.id}/warning`, 0], [`peer/${alpha.id}/exceeded`, 0],
      [`peer/${bravo.id}/ok`, 0], [`peer/${bravo.id}/warning`, 1], [`peer/${bravo.id}/exceeded`, 0],
      [`peer/${charlie.id}/ok`, 0], [`peer/${charlie.id}/warning`, 0], [`peer/${charlie.id}/exceeded`, 1],
      [`vm/${vm.id}/ok`, 1], [`vm/${vm.id}/warning`, 0], [`vm/${vm.id}/exceeded`, 0],
    ]));
    const limits = families.get('panel_bandwidth_limits');
    assert.deepEqual(new Map(limits?.metrics.map((m) => [m.labels?.status, Number(m.value)])), new Map([['pending', 0], ['applied', 0], ['failed', 0], ['throttled', 1]]),
      'charlie has no caps of its own: it counts as limited because its throttle is in force');
  });
});
