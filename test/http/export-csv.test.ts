import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import express from 'express';
import { exportCsv } from '../../src/routes/export-csv.js';
import type { Host } from '../../src/plugin-api.js';
import { parseCsv } from '../support/csv.js';
import { API_TOKEN, listen, startPanel, type TestPanel } from '../support/panel.js';
import { DAY_MS, HOUR_MS, floorTo, seedDailyForAll, seedSubjects, type Seeded, type UsageRow } from '../support/seed.js';

const API = '/api/bandwidth/export.csv';
const ADMIN = '/admin/bandwidth/export.csv';
const HEADER = 'subject_type,subject_id,name,period_start,period_end,up_bytes,down_bytes';
/** The columns of each subject's current quota cycle (the admin export; quota-pages.test.ts checks their values). */
const QUOTA_HEADER = 'quota_source,quota_state,cycle_start,cycle_end,quota_used_bytes,quota_limit_bytes';
const iso = (ms: number) => new Date(ms).toISOString();
/** The plugin's clock and the time usage is seeded against (fixed: no day may end between seeding and exporting). */
const NOW = Date.UTC(2026, 2, 1, 0, 20);

/** The CSV records a roll-up row becomes (name as a spreadsheet would show it after defusing). */
function expectedRecord(seeded: Seeded, row: UsageRow, bucketMs: number): string[] {
  const subject = seeded.byKey.get(`${row.subjectType}:${row.subjectId}`)!;
  // No quota applies to a seeded subject: its six cycle fields are empty.
  return [row.subjectType, row.subjectId, subject.name, iso(row.start), iso(row.start + bucketMs), String(row.up), String(row.down), '', '', '', '', '', ''];
}

const byRecord = (a: string[], b: string[]) => (a.join('\u0000') < b.join('\u0000') ? -1 : 1);

async function seededHost(t: Parameters<typeof startPanel>[0]): Promise<{ host: TestPanel; seeded: Seeded }> {
  const host = await startPanel(t, { now: () => NOW });
  const seeded = await seedSubjects(host.db, { count: 12, usage: (index) => index % 3 !== 0, now: NOW });
  return { host, seeded };
}

describe('the rows of a range', () => {
  test('step=day: a header, then exactly the daily roll-up rows in [from, to), oldest first', async (t) => {
    const { host, seeded } = await seededHost(t);
    const today = floorTo(NOW, DAY_MS);
    const from = today - 10 * DAY_MS;
    const to = today - 3 * DAY_MS;

    const response = await host.api.get(`${API}?step=day&from=${iso(from)}&to=${iso(to)}`);

    assert.equal(response.status, 200);
    assert.equal(response.headers['content-type'], 'text/csv; charset=utf-8');
    assert.equal(response.headers['content-disposition'], `attachment; filename="bandwidth-day-${iso(from).slice(0, 10)}-${iso(to).slice(0, 10)}.csv"`);
    assert.equal(response.headers['cache-control'], 'no-store');
    const [header, ...records] = parseCsv(response.text);
    assert.equal(header?.join(','), `${HEADER},${QUOTA_HEADER}`);
    const expected = seeded.subjects.flatMap((s) => s.daily).filter((row) => row.start >= from && row.start < to);
    assert.equal(expected.length, 8 * 7, '8 subjects with usage × 7 days');
    assert.deepEqual([...records].sort(byRecord), expected.map((row) => expectedRecord(seeded, row, DAY_MS)).sort(byRecord));
    const starts = records.map((r) => Date.parse(r[3]!));
    assert.deepEqual(starts, [...starts].sort((a, b) => a - b), 'rows come in time order');
  });

  test('step=hour: exactly the hourly roll-up rows in [from, to)', async (t) => {
    const { host, seeded } = await seededHost(t);
    const hour = floorTo(NOW, HOUR_MS);
    const from = hour - 30 * HOUR_MS;
    const to = hour - 6 * HOUR_MS;

    const response = await host.api.get(`${API}?step=hour&from=${iso(from)}&to=${iso(to)}`);

    assert.equal(response.status, 200);
    const [header, ...records] = parseCsv(response.text);
    assert.equal(header?.join(','), `${HEADER},${QUOTA_HEADER}`);
    const expected = seeded.subjects.flatMap((s) => s.hourly).filter((row) => row.start >= from && row.start < to);
    assert.equal(expected.length, 8 * 24);
    assert.deepEqual([...records].sort(byRecord), expected.map((row) => expectedRecord(seeded, row, HOUR_MS)).sort(byRecord));
  });

  test('a range that starts or ends inside a bucket includes that bucket', async (t) => {
    const { host, seeded } = await seededHost(t);
    const today = floorTo(NOW, DAY_MS);
    const from = today - 5 * DAY_MS + 6 * HOUR_MS;
    const to = today - 3 * DAY_MS + 6 * HOUR_MS;

    const records = parseCsv((await host.api.get(`${API}?from=${iso(from)}&to=${iso(to)}`)).text).slice(1);

    const days = [...new Set(records.map((r) => r[3]))].sort();
    assert.deepEqual(days, [iso(today - 5 * DAY_MS), iso(today - 4 * DAY_MS), iso(today - 3 * DAY_MS)]);
    assert.equal(records.length, 3 * seeded.subjects.filter((s) => s.daily.length > 0).length);
  });

  test('without from and to, the last 30 days of daily rows', async (t) => {
    const { host, seeded } = await seededHost(t);

    const records = parseCsv((await host.api.get(API)).text).slice(1);

    const expected = seeded.subjects.flatMap((s) => s.daily).filter((row) => row.start >= floorTo(NOW - 30 * DAY_MS, DAY_MS) && row.start < NOW);
    assert.equal(records.length, expected.length);
    assert.ok(records.length > 0);
  });

  test('a range with no usage is the header alone', async (t) => {
    const { host } = await seededHost(t);
    const response = await host.api.get(`${API}?from=2020-01-01&to=2020-02-01`);
    assert.equal(response.status, 200);
    assert.equal(response.text, `${HEADER},${QUOTA_HEADER}\n`);
  });
});

test('names are quoted where needed and formulas defused', async (t) => {
  const host = await startPanel(t, { now: () => NOW });
  const names = ['=cmd()', 'a,b "quoted"', '+1', '-2', '@sum', 'plain'];
  const seeded = await seedSubjects(host.db, { count: names.length, vmEvery: 1000, name: (index) => names[index - 1]!, usage: () => true, now: NOW });
  const day = floorTo(NOW, DAY_MS) - 2 * DAY_MS;

  const response = await host.api.get(`${API}?from=${iso(day)}&to=${iso(day + DAY_MS)}`);

  const lines = response.text.trimEnd().split('\n').slice(1);
  // The name is what lies between the id and the last 4 + 6 fields (period, bytes; the quota's six, empty here).
  const nameField = (id: string) => lines.find((line) => line.startsWith(`peer,${id},`))!.split(',').slice(2, -10).join(',');
  const [formula, comma, plus, minus, at, plain] = seeded.subjects.map((s) => nameField(s.id));
  // A defused field is quoted too (OWASP: the `'` inside quotes); csv-injection.test.ts covers the other separators.
  assert.deepEqual([formula, comma, plus, minus, at, plain], [`"'=cmd()"`, '"a,b ""quoted"""', `"'+1"`, `"'-2"`, `"'@sum"`, 'plain']);
  const parsed = parseCsv(response.text).slice(1);
  assert.deepEqual(parsed.map((r) => r[2]).sort(), ["'+1", "'-2", "'=cmd()", "'@sum", 'a,b "quoted"', 'plain']);
  assert.ok(parsed.every((r) => r.length === 13), 'every record has thirteen fields');
});

describe('who may export', () => {
  test('the API route needs the bearer token', async (t) => {
    const { host } = await seededHost(t);
    for (const authorization of [undefined, 'Bearer wrong-token', `Basic ${API_TOKEN}`]) {
      const call = host.visitor().get(API);
      const response = await (authorization ? call.set('Authorization', authorization) : call);
      assert.equal(response.status, 401, String(authorization));
      assert.ok(!response.text.startsWith(HEADER), `${String(authorization)}: no data`);
    }
  });

  test('the admin route needs a login and then serves the API\'s rows, with each subject\'s quota cycle after them', async (t) => {
    const { host } = await seededHost(t);
    const query = '?step=day&from=2000-01-01';

    const anonymous = await host.visitor().get(`${ADMIN}${query}`);
    const admin = await host.login();
    const page = await admin.agent.get(`${ADMIN}${query}`);

    assert.equal(anonymous.status, 303);
    assert.equal(anonymous.headers.location, `/login?next=${encodeURIComponent(`${ADMIN}${query}`)}`);
    assert.equal(page.status, 200);
    const [header, ...records] = parseCsv(page.text);
    assert.equal(header?.join(','), `${HEADER},${QUOTA_HEADER}`);
    assert.ok(records.every((record) => record.slice(7).join('') === ''), 'no quota applies to any seeded subject: its columns are empty');
    assert.deepEqual(records, parseCsv((await host.api.get(`${API}${query}`)).text).slice(1), 'the API exports the same records');
  });

  test('the API export carries the same quota columns', async (t) => {
    const { host } = await seededHost(t);
    assert.equal(parseCsv((await host.api.get(API)).text)[0]?.join(','), `${HEADER},${QUOTA_HEADER}`);
  });
});

test('bad parameters are a 400 that names the parameter', async (t) => {
  const { host } = await seededHost(t);
  for (const [query, field] of [['step=week', 'step'], ['from=yesterday', 'from'], ['from=2026-02-01&to=2026-01-01', 'from']] as const) {
    const response = await host.api.get(`${API}?${query}`);
    assert.equal(response.status, 400, query);
    assert.equal(response.body.error?.field, field, query);
  }
  const admin = await host.login();
  assert.equal((await admin.agent.get(`${ADMIN}?step=week`)).status, 400);
});

test('an export of 10,000 subjects × 30 days (300,000 rows)', async (t) => {
  const host = await startPanel(t, { now: () => NOW });
  const seeded = await seedSubjects(host.db, { count: 10_000, now: NOW });
  const rows = await seedDailyForAll(host.db, 30, NOW);
  assert.equal(rows, 300_000);
  const base = await listen(t, host.panel.app);
  const today = floorTo(NOW, DAY_MS);
  const url = `${base}${API}?from=${iso(today - 29 * DAY_MS)}&to=${iso(today + DAY_MS)}`;
  const headers = { Authorization: `Bearer ${API_TOKEN}` };

  await t.test('streams in chunks without holding the export in memory', async (t) => {
    const expectedUp = seeded.subjects.reduce((sum, s) => sum + 30 * Number(s.id) * 1000 + (29 * 30) / 2, 0);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    const started = performance.now();
    const result = await new Promise<{ status: number; headers: Record<string, unknown>; chunks: number; bytes: number; lines: number; upSum: number; firstRowMs: number }>((resolve, reject) => {
      const req = request(url, { headers }, (res) => {
        let chunks = 0;
        let bytes = 0;
        let lines = 0;
        let upSum = 0;
        let rest = '';
        let firstRowMs = -1;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          chunks++;
          bytes += Buffer.byteLength(chunk);
          const parts = (rest + chunk).split('\n');
          rest = parts.pop()!;
          for (const line of parts) {
            lines++;
            if (lines === 2) firstRowMs = performance.now() - started;
            if (lines > 1) upSum += Number(line.split(',')[5]);
          }
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, chunks, bytes, lines, upSum, firstRowMs }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    const totalMs = performance.now() - started;
    clearInterval(sampler);
    const growthMb = (peak - baseline) / 1024 / 1024;
    t.diagnostic(`300,000 rows: ${(result.bytes / 1024 / 1024).toFixed(1)} MiB in ${result.chunks} chunks, first row after ${Math.round(result.firstRowMs)} ms, all after ${Math.round(totalMs)} ms; RSS grew by ${growthMb.toFixed(1)} MiB (peak ${(peak / 1024 / 1024).toFixed(0)} MiB)`);

    assert.equal(result.status, 200);
    assert.equal(result.headers['transfer-encoding'], 'chunked', 'streamed, not sent with a Content-Length');
    assert.equal(result.lines, 300_001, 'the header and every row');
    assert.equal(result.upSum, expectedUp, 'every row carries its own bytes');
    assert.ok(result.chunks >= 50, `arrived in ${result.chunks} chunks`);
    assert.ok(result.firstRowMs < totalMs / 4, 'the first rows arrive long before the last');
    assert.ok(growthMb < 100, `RSS grew by ${growthMb.toFixed(1)} MiB`);
  });

  await t.test('the request handler returns once a client that stopped reading goes away', async (t) => {
    const handler = exportCsv({ db: host.db } as unknown as Host);
    let settled = false;
    const app = express();
    app.get('/export.csv', async (req, res, next) => {
      try {
        await handler(req, res, next);
      } finally {
        settled = true;
      }
    });
    const direct = await listen(t, app);
    await new Promise<void>((resolve) => {
      const req = request(`${direct}/export.csv?from=${iso(today - 29 * DAY_MS)}&to=${iso(today + DAY_MS)}`, (res) => {
        res.once('data', () => {
          res.pause();
          // Long enough for the server's buffers to fill and the handler to wait for a drain.
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 300);
        });
      });
      req.on('error', () => {});
      req.end();
    });
    const deadline = performance.now() + 1000;
    while (!settled && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(settled, 'the handler returned after the client went away');
  });

  await t.test('a client that goes away stops the reads', async () => {
    let queries = 0;
    const count = () => queries++;
    host.db.on('query', count);
    try {
      await new Promise<void>((resolve, reject) => {
        const req = request(url, { headers }, (res) => {
          let bytes = 0;
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            if (bytes > 200_000) {
              req.destroy();
              resolve();
            }
          });
        });
        req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve() : reject(error)));
        req.end();
      });
      // The server notices the reset after a read in flight; on a loaded machine that takes longer
      // than any fixed wait, so wait for the reads to stop (no new one for 300 ms, at most 10 s),
      // then check that none comes after and that few were made: the export did not run to its end.
      let afterAbort = queries;
      for (let quietSince = performance.now(), deadline = quietSince + 10_000; performance.now() - quietSince < 300 && performance.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (queries !== afterAbort) [afterAbort, quietSince] = [queries, performance.now()];
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(queries, afterAbort, 'no chunk is read once the client has gone');
      assert.ok(afterAbort < 20, `${afterAbort} chunks of 2,000 rows read of 150`);
    } finally {
      host.db.off('query', count);
    }
  });
});
