import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import express from 'express';
import { errorHandler } from '../../examples/host-panel/src/errors.js';
import { exportCsv } from '../../src/routes/export-csv.js';
import type { Host } from '../../src/plugin-api.js';
import { parseCsv } from '../support/csv.js';
import { listen, startPanel } from '../support/panel.js';
import { DAY_MS, floorTo, seedDailyForAll, seedSubjects } from '../support/seed.js';

// A subject's name is typed by whoever runs the panel's users' peers and VMs; the export must never
// hand a spreadsheet a formula, whichever separator the spreadsheet splits the file on.

const API = '/api/bandwidth/export.csv';
const ADMIN = '/admin/bandwidth/export.csv';
const iso = (ms: number) => new Date(ms).toISOString();
const NOW = Date.UTC(2026, 2, 1, 0, 20);
const DAY = floorTo(NOW, DAY_MS) - 2 * DAY_MS;
const RANGE = `?from=${iso(DAY)}&to=${iso(DAY + DAY_MS)}`;

/** The separators spreadsheets split CSV files on (Excel picks the locale's list separator). */
const SEPARATORS = [',', ';', '\t', '|'] as const;
/** What makes a spreadsheet cell a formula (OWASP: = + - @, and tab or CR before one). */
const FORMULA = /^[\s"]*[=+\-@]/;

/** Names with a formula at the start and after each separator. */
const NAMES = [
  'x;=1+2;@SUM(1)',
  '=HYPERLINK("http://evil.invalid","click")',
  'a;"=1"',
  '+1',
  '-2',
  '@SUM(A1:A9)',
  'a,=1',
  'a;+1',
  'a\t-1',
  'a|@x',
  ' =1',
  '\t=1',
  '\r=1',
  'a,\r=1',
  'first;second,third\tfourth|fifth',
  'plain name',
  'a-b',
];

async function namedExport(t: Parameters<typeof startPanel>[0], names: string[]) {
  const host = await startPanel(t, { now: () => NOW });
  const seeded = await seedSubjects(host.db, { count: names.length, vmEvery: 1000, name: (index) => names[index - 1]!, usage: () => true, now: NOW });
  const response = await host.api.get(`${API}${RANGE}`);
  assert.equal(response.status, 200);
  const nameOf = new Map(parseCsv(response.text).slice(1).map((record) => [record[1]!, record[2]!]));
  return { host, response, exported: seeded.subjects.map((subject) => ({ typed: subject.name, field: nameOf.get(subject.id)! })) };
}

describe('names with separators and formulas', () => {
  test('a CSV reader with `,` gets thirteen fields per row (seven, and six of the quota\'s cycle) and each name back, defused where a cell would start a formula', async (t) => {
    const { response, exported } = await namedExport(t, NAMES);

    assert.ok(parseCsv(response.text).every((record) => record.length === 13), 'thirteen fields in every record');
    const byTyped = Object.fromEntries(exported.map(({ typed, field }) => [typed, field]));
    assert.deepEqual(byTyped, {
      'x;=1+2;@SUM(1)': "x;'=1+2;'@SUM(1)",
      '=HYPERLINK("http://evil.invalid","click")': `'=HYPERLINK("http://evil.invalid","click")`,
      'a;"=1"': `a;'"=1"`,
      '+1': "'+1",
      '-2': "'-2",
      '@SUM(A1:A9)': "'@SUM(A1:A9)",
      'a,=1': "a,'=1",
      'a;+1': "a;'+1",
      'a\t-1': "a\t'-1",
      'a|@x': "a|'@x",
      ' =1': "' =1",
      '\t=1': "'\t'=1",
      '\r=1': "'\r'=1",
      'a,\r=1': "a,\r'=1",
      'first;second,third\tfourth|fifth': 'first;second,third\tfourth|fifth',
      'plain name': 'plain name',
      'a-b': 'a-b',
    });
  });

  test('the issue\'s name is one quoted field with each cell defused', async (t) => {
    const { response } = await namedExport(t, ['x;=1+2;@SUM(1)']);

    assert.match(response.text, /^peer,\d+,"x;'=1\+2;'@SUM\(1\)",/m);
  });

  for (const separator of SEPARATORS) {
    test(`a spreadsheet that splits on ${JSON.stringify(separator)} finds no formula in any cell`, async (t) => {
      const { response } = await namedExport(t, NAMES);

      // Quotes in mid-cell are literal to such a reader; a quoted cell's content is what it reads.
      const cells = response.text.split(/\r?\n|\r/).flatMap((line) => line.split(separator));
      const formulas = cells.filter((cell) => FORMULA.test(cell));
      assert.deepEqual(formulas, [], `cells that start a formula when split on ${JSON.stringify(separator)}`);
    });
  }

  test('a field with a separator but no formula is quoted, a plain one is not', async (t) => {
    const { response } = await namedExport(t, ['first;second,third\tfourth|fifth', 'plain name']);

    assert.match(response.text, /^peer,\d+,"first;second,third\tfourth\|fifth",/m);
    assert.match(response.text, /^peer,\d+,plain name,/m);
  });
});

describe('when the database fails', () => {
  test('before the first row: a 500 error, not a 200 with the header row alone', async (t) => {
    const host = await startPanel(t, { now: () => NOW });
    await seedSubjects(host.db, { count: 3, usage: () => true, now: NOW });
    await host.db.schema.renameTable('bw_usage_daily', 'bw_usage_daily_away');

    const api = await host.api.get(`${API}${RANGE}`);
    const admin = await (await host.login()).agent.get(`${ADMIN}${RANGE}`);

    assert.equal(api.status, 500);
    assert.match(api.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(api.body, { error: { code: 'internal', message: 'Internal error' } });
    assert.equal(admin.status, 500);
    assert.match(admin.headers['content-type'] ?? '', /^text\/html/);
    assert.doesNotMatch(admin.text, /subject_type,subject_id/);
    assert.equal(admin.headers['content-disposition'], undefined, 'no download offered');
  });

  test('after rows were sent: the connection is cut, so the download fails instead of ending short', async (t) => {
    const host = await startPanel(t, { now: () => NOW });
    await seedSubjects(host.db, { count: 100, now: NOW });
    assert.ok((await seedDailyForAll(host.db, 30, NOW)) > 2000, 'more than one page of rows');
    // The first page comes from the real table, every later one from a table that is not there.
    let reads = 0;
    const db = new Proxy(host.db, { apply: (target, _this, args: [string]) => target(reads++ === 0 ? args[0] : 'bw_no_such_table as u') });
    const app = express();
    app.get('/export.csv', exportCsv({ db } as unknown as Host, () => NOW));
    app.use(errorHandler({ debug() {}, info() {}, warn() {}, error() {} }, async (_req, res) => void res.end()));
    const base = await listen(t, app);

    const outcome = await new Promise<{ status: number; bytes: number; ended: 'complete' | 'cut' }>((resolve, reject) => {
      const req = request(`${base}/export.csv?from=${iso(NOW - 30 * DAY_MS)}&to=${iso(NOW + DAY_MS)}`, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => resolve({ status: res.statusCode!, bytes, ended: res.complete ? 'complete' : 'cut' }));
        res.on('error', () => resolve({ status: res.statusCode!, bytes, ended: 'cut' }));
        res.on('close', () => resolve({ status: res.statusCode!, bytes, ended: res.complete ? 'complete' : 'cut' }));
      });
      req.on('error', reject);
      req.end();
    });

    assert.equal(outcome.status, 200);
    assert.ok(outcome.bytes > 0, 'the first page was sent');
    assert.equal(outcome.ended, 'cut');
    assert.equal(reads, 2, 'the failing page was read once');
  });
});
