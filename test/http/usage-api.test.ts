import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import { writeTick } from '../../src/accounting/store.js';
import type { Sample } from '../../src/accounting/sample.js';
import { counterSample } from '../support/samples.js';
import { seedHost, startPanel, wgKey, type Agent } from '../support/panel.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Writes one collector tick per reading of a subject's absolute counters. The host's rx is what the
 * subject sent (its up), tx what it received (its down); the first reading only sets the baseline.
 */
async function readings(db: Knex, subject: { type: 'peer' | 'vm'; id: number; key: string }, points: [string, bigint, bigint][]) {
  for (const [time, rx, tx] of points) {
    const sample: Sample = counterSample({ ...subject, iface: subject.type === 'peer' ? 'wg0' : 'tap-web01' }, at(time), rx, tx);
    await writeTick(db, [sample]);
  }
}

async function usage(api: Agent, query: string) {
  return api.get(`/api/bandwidth/usage?${query}`);
}

/** An hourly or daily series of `count` buckets from `first`, zero except where `values` says. */
function series(first: string, count: number, stepMs: number, values: Record<string, [number, number]> = {}) {
  return Array.from({ length: count }, (_, i) => {
    const start = iso(at(first) + i * stepMs);
    const [up_bytes, down_bytes] = values[start] ?? [0, 0];
    return { start, up_bytes, down_bytes };
  });
}

describe('GET /api/bandwidth/usage', () => {
  test('an hourly series has every bucket, zeros included, and its totals add up', async (t) => {
    const { api, db } = await startPanel(t);
    const { vmId, peerId } = await seedHost(api);
    assert.equal(vmId, peerId, 'arranged: peer and VM share an id, and must not share usage');
    // Each reading's delta lies within one UTC hour, so it lands in that hour's bucket.
    await readings(db, { type: 'vm', id: vmId, key: 'tap-web01' }, [
      ['2026-01-01T01:00:00Z', 0n, 0n],
      ['2026-01-01T02:00:00Z', 600_000n, 6_000n],
      ['2026-01-01T02:10:00Z', 1_600_000n, 8_000n],
      ['2026-01-01T03:00:00Z', 2_600_000n, 10_000n],
      ['2026-01-01T03:20:00Z', 3_100_000n, 11_000n],
    ]);
    await readings(db, { type: 'peer', id: peerId, key: wgKey(1) }, [['2026-01-01T02:00:00Z', 0n, 0n], ['2026-01-01T03:00:00Z', 77n, 77n]]);

    const response = await usage(api, `subject_type=vm&subject_id=${vmId}&from=2026-01-01T00:00:00Z&to=2026-01-01T06:00:00Z&step=hour`);

    assert.equal(response.status, 200, response.text);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.deepEqual(response.body, {
      subject_type: 'vm',
      subject_id: vmId,
      from: '2026-01-01T00:00:00.000Z',
      to: '2026-01-01T06:00:00.000Z',
      step: 'hour',
      totals: { up_bytes: 3_100_000, down_bytes: 11_000 },
      series: series('2026-01-01T00:00:00.000Z', 6, HOUR, {
        '2026-01-01T01:00:00.000Z': [600_000, 6_000],
        '2026-01-01T02:00:00.000Z': [2_000_000, 4_000],
        '2026-01-01T03:00:00.000Z': [500_000, 1_000],
      }),
    });
    assert.ok(!/"(up|down)_bytes":"/.test(response.text), 'byte counts are JSON numbers, not strings');
  });

  test('a daily series and the hours around midnight count the same bytes', async (t) => {
    const { api, db } = await startPanel(t);
    const { peerId } = await seedHost(api);
    await readings(db, { type: 'peer', id: peerId, key: wgKey(1) }, [
      ['2026-01-02T22:00:00Z', 0n, 0n],
      ['2026-01-02T23:00:00Z', 2_000n, 4_000n],
      ['2026-01-03T00:00:00Z', 3_000n, 6_000n],
      ['2026-01-03T01:00:00Z', 4_000n, 8_000n],
    ]);

    const days = await usage(api, `subject_type=peer&subject_id=${peerId}&from=2026-01-01&to=2026-01-05&step=day`);
    assert.equal(days.status, 200, days.text);
    assert.deepEqual(days.body.totals, { up_bytes: 4_000, down_bytes: 8_000 });
    assert.deepEqual(days.body.series, series('2026-01-01T00:00:00.000Z', 4, DAY, {
      '2026-01-02T00:00:00.000Z': [3_000, 6_000],
      '2026-01-03T00:00:00.000Z': [1_000, 2_000],
    }));

    const hours = await usage(api, `subject_type=peer&subject_id=${peerId}&from=2026-01-02T21:00:00Z&to=2026-01-03T03:00:00Z`);
    assert.equal(hours.body.step, 'hour', 'hour is the default step');
    assert.deepEqual(hours.body.totals, { up_bytes: 4_000, down_bytes: 8_000 });
    assert.deepEqual(hours.body.series, series('2026-01-02T21:00:00.000Z', 6, HOUR, {
      '2026-01-02T22:00:00.000Z': [2_000, 4_000],
      '2026-01-02T23:00:00.000Z': [1_000, 2_000],
      '2026-01-03T00:00:00.000Z': [1_000, 2_000],
    }));
  });

  test('byte counts above 2^53 come out as exact integer literals', async (t) => {
    const { api, db } = await startPanel(t);
    const { vmId } = await seedHost(api);
    const big = 2n ** 53n + 1n; // 9007199254740993: a double would print ...992
    const rows = (table: string, column: string, starts: number[], bytes: bigint) =>
      db(table).insert(starts.map((start) => ({ subject_type: 'vm', subject_id: String(vmId), [column]: start, up_bytes: bytes.toString(), down_bytes: '1' })));
    await rows('bw_usage_hourly', 'hour_start', [at('2026-03-01T00:00:00Z'), at('2026-03-01T01:00:00Z')], big);
    await rows('bw_usage_daily', 'day_start', [at('2026-03-01T00:00:00Z')], 2n * big);

    const hours = await usage(api, `subject_type=vm&subject_id=${vmId}&from=2026-03-01T00:00:00Z&to=2026-03-01T03:00:00Z&step=hour`);
    const days = await usage(api, `subject_type=vm&subject_id=${vmId}&from=2026-03-01&to=2026-03-02&step=day`);

    assert.equal(hours.status, 200, hours.text);
    const point = (start: string, up: bigint) => `{"start":"${start}","up_bytes":${up},"down_bytes":${up === 0n ? 0 : 1}}`;
    assert.ok(
      hours.text.includes(`"series":[${point('2026-03-01T00:00:00.000Z', big)},${point('2026-03-01T01:00:00.000Z', big)},${point('2026-03-01T02:00:00.000Z', 0n)}]`),
      hours.text,
    );
    assert.ok(hours.text.includes(`"totals":{"up_bytes":${2n * big},"down_bytes":2}`), hours.text);
    assert.ok(days.text.includes(`"totals":{"up_bytes":18014398509481986,"down_bytes":1}`), days.text);
    assert.ok(days.text.includes(`"series":[${point('2026-03-01T00:00:00.000Z', 2n * big)}]`), days.text);
  });

  test('without from and to it answers the last 24 hours by hour, or the last 30 days by day', async (t) => {
    // The plugin's clock, inside an hour and a day: the first bucket starts before `from`.
    const now = at('2026-03-01T00:20:30.250Z');
    const { api } = await startPanel(t, { now: () => now });
    const { vmId } = await seedHost(api);

    for (const [step, span, stepMs] of [['hour', DAY, HOUR], ['day', 30 * DAY, DAY]] as const) {
      const response = await usage(api, `subject_type=vm&subject_id=${vmId}${step === 'day' ? '&step=day' : ''}`);

      assert.equal(response.status, 200, response.text);
      const to = Date.parse(response.body.to);
      const from = Date.parse(response.body.from);
      assert.deepEqual([response.body.to, response.body.from], [iso(now), iso(now - span)], `${step}: to is now`);
      const first = Math.floor(from / stepMs) * stepMs;
      const expected = [];
      for (let start = first; start < to; start += stepMs) expected.push({ start: iso(start), up_bytes: 0, down_bytes: 0 });
      assert.deepEqual(response.body.series, expected, `${step}: every bucket that overlaps the range, in order`);
      assert.deepEqual(response.body.totals, { up_bytes: 0, down_bytes: 0 });
    }
  });

  test('times take a zone offset, and a time without a zone is UTC', async (t) => {
    const { api } = await startPanel(t);
    const { vmId } = await seedHost(api);
    const response = await usage(api, `subject_type=vm&subject_id=${vmId}&from=2026-01-01T02:00:00%2B02:00&to=2026-01-01T03:00`);
    assert.equal(response.status, 200, response.text);
    assert.deepEqual([response.body.from, response.body.to, response.body.series.length], ['2026-01-01T00:00:00.000Z', '2026-01-01T03:00:00.000Z', 3]);
  });

  test('bad parameters answer 400 naming the parameter', async (t) => {
    const { api } = await startPanel(t);
    const { vmId } = await seedHost(api);
    const vm = `subject_type=vm&subject_id=${vmId}`;
    const cases: [string, string, RegExp][] = [
      [`${vm}&step=week`, 'step', /^`step` must be `hour` or `day`$/],
      [`${vm}&step=Hour`, 'step', /^`step` must be/],
      [`${vm}&step=`, 'step', /^`step` must be/],
      [`${vm}&step=hour&step=day`, 'step', /^`step` must be/],
      [`${vm}&from=yesterday`, 'from', /^`from` must be an ISO-8601 time such as 2026-11-01T00:00:00Z$/],
      [`${vm}&from=1767225600`, 'from', /^`from` must be an ISO-8601 time/],
      [`${vm}&from=2026-1-1`, 'from', /^`from` must be an ISO-8601 time/],
      [`${vm}&from=2026-01-01%2000:00:00`, 'from', /^`from` must be an ISO-8601 time/],
      [`${vm}&from=2026-01-01&from=2026-01-02`, 'from', /^`from` must be an ISO-8601 time/],
      [`${vm}&from=2026-13-01`, 'from', /^`from` is not a valid time$/],
      [`${vm}&from=2026-01-01T25:00Z`, 'from', /^`from` is not a valid time$/],
      [`${vm}&to=2026-01-01T00:00:00Z;DROP TABLE bw_usage`, 'to', /^`to` must be an ISO-8601 time/],
      [`${vm}&to=$(date)`, 'to', /^`to` must be an ISO-8601 time/],
      [`${vm}&from=2026-01-02&to=2026-01-01`, 'from', /^`from` must be before `to`$/],
      [`${vm}&from=2026-01-01&to=2026-01-01`, 'from', /^`from` must be before `to`$/],
      [`${vm}&from=2024-01-01&to=2026-01-01&step=hour`, 'from', /^The range holds more than 9600 hours: use a shorter range or step=day$/],
      [`subject_id=${vmId}`, 'subject_type', /^`subject_type` is required: `peer` or `vm`$/],
      ['subject_type=vm', 'subject_id', /^`subject_id` is required$/],
    ];
    for (const [query, field, message] of cases) {
      const response = await usage(api, query);
      assert.equal(response.status, 400, `${query}: ${response.text.slice(0, 200)}`);
      assert.equal(response.body.error.code, 'invalid_input', query);
      assert.equal(response.body.error.field, field, query);
      assert.match(response.body.error.message, message, query);
    }
  });

  test('a subject_type other than peer or vm answers 400 naming subject_type', async (t) => {
    const { api } = await startPanel(t);
    const { vmId } = await seedHost(api);
    const response = await usage(api, `subject_type=network&subject_id=${vmId}`);
    assert.equal(response.status, 400);
    assert.equal(response.body.error.field, 'subject_type');
    assert.match(response.body.error.message, /^`subject_type` must be `peer` or `vm`/);
  });

  test('a subject_id that is not a positive integer answers 400 naming subject_id', async (t) => {
    const { api } = await startPanel(t);
    await seedHost(api);
    for (const id of ['abc', '1.5', '-1', '1&subject_id=2']) {
      const response = await usage(api, `subject_type=vm&subject_id=${id}`);
      assert.equal(response.status, 400, id);
      assert.equal(response.body.error.field, 'subject_id', id);
    }
  });

  test('a day that does not exist answers 400', async (t) => {
    const { api } = await startPanel(t);
    const { vmId } = await seedHost(api);
    for (const [query, field] of [['from=2026-02-30', 'from'], ['from=2026-01-01&to=2026-04-31T00:00:00Z', 'to']]) {
      const response = await usage(api, `subject_type=vm&subject_id=${vmId}&step=day&${query}`);
      assert.equal(response.status, 400, `${query}: ${response.text.slice(0, 200)}`);
      assert.equal(response.body.error.field, field, query);
    }
  });

  test('an unknown subject answers 404', async (t) => {
    const host = await startPanel(t);
    const { vmId, peerId } = await seedHost(host.api);
    for (const [query, message] of [
      ['subject_type=vm&subject_id=999', /^No VM with id `999`$/],
      [`subject_type=peer&subject_id=${peerId + vmId + 1}`, /^No peer with id `\d+`$/],
    ] as const) {
      const response = await usage(host.api, query);
      assert.equal(response.status, 404, query);
      assert.equal(response.body.error.code, 'not_found');
      assert.match(response.body.error.message, message);
    }
  });

  test('the bearer token is required', async (t) => {
    const host = await startPanel(t);
    const { vmId } = await seedHost(host.api);
    const anonymous = await host.visitor().get(`/api/bandwidth/usage?subject_type=vm&subject_id=${vmId}`);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error.code, 'unauthorized');
  });
});
