import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { loadManifest } from '../../src/manifest/load.js';
import { startPanel } from '../support/panel.js';

/** The plugin's default `page_size` (plugin.json), which the test panels do not override. */
const PAGE_SIZE = Number(loadManifest(REPO_ROOT).settings.page_size?.default);

interface Limit {
  name: string;
  subject_type?: 'peer' | 'vm';
  interface?: string;
  netns?: string | null;
  up_kbps: number;
  down_kbps: number;
  status?: 'pending' | 'applied' | 'failed';
  last_error?: string | null;
}

let nextSubjectId = 1;

/** Inserts limits straight into `bw_limits`, as the plugin stores them. */
async function insertLimits(db: Knex, limits: Limit[]): Promise<void> {
  const now = Date.now();
  const rows = limits.map((limit) => {
    const subjectType = limit.subject_type ?? 'peer';
    return {
      subject_type: subjectType,
      subject_id: String(nextSubjectId++),
      name: limit.name,
      interface: limit.interface ?? 'wg0',
      netns: limit.netns ?? null,
      interface_kind: subjectType === 'vm' ? 'vm' : 'wireguard',
      addresses: JSON.stringify(subjectType === 'vm' ? [] : ['10.8.0.2/32']),
      up_kbps: limit.up_kbps,
      down_kbps: limit.down_kbps,
      status: limit.status ?? 'applied',
      last_error: limit.last_error ?? null,
      created_at: now,
      updated_at: now,
    };
  });
  for (let i = 0; i < rows.length; i += 100) await db('bw_limits').insert(rows.slice(i, i + 100));
}

/** The limits table (not the audit log) of the page. */
function limitsTable(html: string): string {
  return [...html.matchAll(/<table(?: class="([^"]*)")?>([\s\S]*?)<\/table>/g)].find((m) => !/\bevents\b/.test(m[1] ?? ''))?.[2] ?? '';
}

/** The rows of the limits table, each as the text of its cells (tags stripped, forms dropped). */
function tableRows(html: string): string[][] {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(limitsTable(html))?.[1] ?? '';
  return [...body.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].map((row) =>
    [...row[1]!.replace(/<form[\s\S]*?<\/form>/g, '').matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)]
      .map((cell) => cell[1]!.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim())
      .filter((text, index) => index < 5 || text !== ''),
  );
}

/** The text of a card's value, tags stripped (`3 of 3`, `1 / 1`). */
function stat(html: string, label: string): string | undefined {
  const card = html.split('<div class="stat">').find((part) => part.includes(`<div class="label">${label}`));
  const value = card === undefined ? undefined : /<div class="value"[^>]*>([\s\S]*?)<\/div>\s*<div class="label">/.exec(card)?.[1];
  return value?.replace(/<[^>]+>/g, '').replace(/\s+/g, ' ').trim();
}

test('a logged-out visitor is sent to /login', async (t) => {
  const host = await startPanel(t);
  const response = await host.visitor().get('/admin/bandwidth');
  assert.equal(response.status, 303);
  assert.equal(response.headers.location, '/login?next=%2Fadmin%2Fbandwidth');
});

test('with no limits the page shows its empty state', async (t) => {
  const host = await startPanel(t);
  const admin = await host.login();

  const page = await admin.agent.get('/admin/bandwidth');

  assert.equal(page.status, 200);
  assert.match(page.text, /<title>Bandwidth · Panel<\/title>/);
  assert.match(page.text, /<a href="\/admin\/bandwidth" class="active">Bandwidth<\/a>/, 'the nav marks the page');
  assert.match(page.text, /<p class="empty">[^<]*\bNo peers?\b[^<]*/, 'the limits card says there is nothing to show');
  assert.equal(stat(page.text, 'Limited subjects'), '0 of 0');
  assert.deepEqual(tableRows(page.text), []);
  assert.ok(!page.text.includes('class="pager"'));
});

test('limits show with escaped names, readable rates and status badges', async (t) => {
  const host = await startPanel(t);
  const admin = await host.login();
  await insertLimits(host.db, [
    { name: 'laptop', up_kbps: 10_000, down_kbps: 0, status: 'applied' },
    { name: '<b>phone</b>', up_kbps: 500, down_kbps: 1_500, status: 'pending' },
    { name: 'web-01', subject_type: 'vm', interface: 'tap-web01', netns: 'tenant-7', up_kbps: 0, down_kbps: 100_000, status: 'failed', last_error: 'RTNETLINK answers: "No such device"' },
  ]);

  const page = await admin.agent.get('/admin/bandwidth');

  assert.equal(page.status, 200);
  const rows = tableRows(page.text).map((cells) => cells.join(' | '));
  assert.equal(rows.length, 3, rows.join('\n'));
  const [phone, laptop, web] = rows as [string, string, string];
  assert.match(phone, /^&lt;b&gt;phone&lt;\/b&gt; 10\.8\.0\.2\/32 \| Peer \| wg0 \| /);
  assert.match(phone, /\b500 kbps\b.*\b1\.5 Mbps\b.*\bpending\b/);
  assert.match(laptop, /^laptop 10\.8\.0\.2\/32 \| Peer \| wg0 \| /);
  assert.match(laptop, /\b10 Mbps\b.*\bUnlimited\b.*\bapplied\b/);
  assert.match(web, /^web-01 \| VM \| tap-web01 \| /);
  assert.match(page.text, /<code title="in network namespace tenant-7">tap-web01<\/code>/);
  assert.match(web, /\bUnlimited\b.*\b100 Mbps\b.*\bfailed\b/);
  assert.ok(!page.text.includes('<b>phone</b>'), 'the raw name is never in the page');
  assert.match(page.text, /<span class="badge applied" title="">applied<\/span>/);
  assert.match(page.text, /<span class="badge pending" title="">pending<\/span>/);
  assert.match(page.text, /<span class="badge failed" title="RTNETLINK answers: &#34;No such device&#34;">failed<\/span>/);
  assert.deepEqual(
    ['Limited subjects', 'Failed / pending'].map((label) => stat(page.text, label)),
    ['3 of 3', '1 / 1'],
  );
});

test(`${PAGE_SIZE + 1} limits make two pages; a bad page number shows page 1`, async (t) => {
  assert.ok(Number.isInteger(PAGE_SIZE) && PAGE_SIZE > 0, `page_size default from plugin.json: ${PAGE_SIZE}`);
  const host = await startPanel(t);
  const admin = await host.login();
  const names = Array.from({ length: PAGE_SIZE + 1 }, (_, i) => `peer-${String(i).padStart(3, '0')}`);
  await insertLimits(host.db, names.map((name) => ({ name, up_kbps: 1_000, down_kbps: 2_000 })));
  const subjects = (html: string) => tableRows(html).map((cells) => cells[0]?.split(' ')[0]);

  const first = await admin.agent.get('/admin/bandwidth');
  assert.equal(first.status, 200);
  assert.deepEqual(subjects(first.text), names.slice(0, PAGE_SIZE));
  assert.match(first.text, /<span class="muted">Page 1 of 2<\/span>/);
  assert.match(first.text, /<a href="\/admin\/bandwidth\?page=2(&amp;[^"]*)?">Next ›<\/a>/);
  assert.ok(!first.text.includes('‹ Previous'));

  const second = await admin.agent.get('/admin/bandwidth?page=2');
  assert.equal(second.status, 200);
  assert.deepEqual(subjects(second.text), [names[PAGE_SIZE]]);
  assert.match(second.text, /<span class="muted">Page 2 of 2<\/span>/);
  assert.match(second.text, /<a href="\/admin\/bandwidth">‹ Previous<\/a>/, 'page 1 is the bare URL');
  assert.ok(!second.text.includes('Next ›'));

  for (const page of ['abc', '0', '-1', '1.5', '', '2&page=2']) {
    const response = await admin.agent.get(`/admin/bandwidth?page=${page}`);
    assert.equal(response.status, 200, `?page=${page}`);
    assert.match(response.text, /Page 1 of 2/, `?page=${page} shows page 1`);
    assert.deepEqual(subjects(response.text), names.slice(0, PAGE_SIZE), `?page=${page}`);
  }
  const beyond = await admin.agent.get('/admin/bandwidth?page=99');
  assert.match(beyond.text, /Page 2 of 2/, 'a page past the end shows the last page');
});
