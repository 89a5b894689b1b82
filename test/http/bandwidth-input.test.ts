import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type supertest from 'supertest';
import {
  bandwidthRows, hostRows, seedHost, startPanel, watchExecutor, wgKey,
  type Agent, type SeededHost,
} from '../support/panel.js';

const UP = 'bandwidth_up_kbps';
const DOWN = 'bandwidth_down_kbps';
type Field = typeof UP | typeof DOWN;

/** A malformed cap: sent as JSON `value`, or as `raw` JSON text; `got` is how the message must describe it. */
interface Bad {
  title: string;
  value?: unknown;
  raw?: string;
  got: string | RegExp;
}

/** Text is quoted in backticks in the message, cut at 40 characters. */
const text = (title: string, value: string): Bad => ({ title, value, got: `\`${value.slice(0, 40)}\`` });

const BAD: Bad[] = [
  // numbers that are not whole kbps from 0 to 100,000,000
  { title: 'minus one', value: -1, got: '`-1`' },
  { title: 'a large negative number', value: -100_000, got: '`-100000`' },
  { title: 'a fraction', value: 1.5, got: '`1.5`' },
  { title: 'a tiny fraction', value: 0.001, got: '`0.001`' },
  { title: 'one above the maximum', value: 100_000_001, got: '`100000001`' },
  { title: 'a huge number', value: 1e20, got: '`100000000000000000000`' },
  { title: 'a number beyond 2^53', raw: '9007199254740993', got: '`9007199254740992`' },
  { title: 'a literal that overflows to Infinity', raw: '1e400', got: '`Infinity`' },
  // text that is not a plain run of digits
  text('"1e3" as text', '1e3'),
  text('"10 mbit"', '10 mbit'),
  text('"10Mbps"', '10Mbps'),
  text('negative text', '-5'),
  text('text with a plus sign', '+5'),
  text('decimal text', '1000.0'),
  text('hexadecimal text', '0x3e8'),
  text('a thousands separator', '1,000'),
  text('an underscore separator', '1_000'),
  text('a leading space', ' 1000'),
  text('a trailing new line', '1000\n'),
  text('full-width digits', '１０００'),
  text('ten digits', '1000000000'),
  text('nine digits above the maximum', '999999999'),
  text('an empty string', ''),
  text('the word "unlimited"', 'unlimited'),
  text('the word "Infinity"', 'Infinity'),
  // other JSON types, and null (a missing field keeps the stored cap; null is not "missing")
  { title: 'null', value: null, got: 'null' },
  { title: 'true', value: true, got: 'a boolean' },
  { title: 'false', value: false, got: 'a boolean' },
  { title: 'an empty array', value: [], got: 'an array' },
  { title: 'an array holding a valid cap', value: [1000], got: 'an array' },
  { title: 'an empty object', value: {}, got: 'an object' },
  { title: 'an object holding a cap', value: { kbps: 1000 }, got: 'an object' },
  // SQL- and shell-looking text is refused as text, never run
  text('SQL after a number', '1000; DROP TABLE bw_limits; --'),
  text('an SQL tautology', "' OR '1'='1"),
  text('a shell substitution', '$(reboot)'),
  text('shell backticks', '`tc qdisc del dev wg0 root`'),
  text('a shell chain', '1000 && tc qdisc del dev wg0 root'),
  text('a pipe into a shell', '1000 | sh'),
  text('extra tc arguments', '1000kbit ceil 1gbit'),
  text('a long string', `1${'0'.repeat(60)}`),
];

interface Endpoint {
  title: string;
  method: 'post' | 'put';
  path(ids: SeededHost): string;
  /** The rest of a body that would be accepted. */
  body(): Record<string, unknown>;
}

const ENDPOINTS: Endpoint[] = [
  {
    title: 'POST /api/networks/:id/peers',
    method: 'post',
    path: (ids) => `/api/networks/${ids.networkId}/peers`,
    body: () => ({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'] }),
  },
  { title: 'PUT /api/networks/:id/peers/:pid', method: 'put', path: (ids) => `/api/networks/${ids.networkId}/peers/${ids.peerId}`, body: () => ({ name: 'work laptop' }) },
  { title: 'POST /api/vms', method: 'post', path: () => '/api/vms', body: () => ({ name: 'db-01', interface: 'tap-db01' }) },
  { title: 'PUT /api/vms/:id', method: 'put', path: (ids) => `/api/vms/${ids.vmId}`, body: () => ({ name: 'web-02' }) },
  { title: 'PUT /api/bandwidth/limits/peer/:id', method: 'put', path: (ids) => `/api/bandwidth/limits/peer/${ids.peerId}`, body: () => ({}) },
  { title: 'PUT /api/bandwidth/limits/vm/:id', method: 'put', path: (ids) => `/api/bandwidth/limits/vm/${ids.vmId}`, body: () => ({}) },
];

/** Sends `body` with `field` set to the malformed value, as JSON text (so `raw` literals go out unchanged). */
function sendBad(api: Agent, endpoint: Endpoint, ids: SeededHost, body: Record<string, unknown>, field: Field, bad: Bad): supertest.Test {
  const marker = '"__malformed_cap__"';
  const json = JSON.stringify({ ...body, [field]: '__malformed_cap__' }).replace(marker, bad.raw ?? JSON.stringify(bad.value));
  return api[endpoint.method](endpoint.path(ids)).set('Content-Type', 'application/json').send(json);
}

const CAP_MESSAGE = (field: Field) => new RegExp(`^\`${field}\` must be a whole number of kbps from 0 \\(unlimited\\) to 100000000, got (.*)$`, 's');

/** A host whose peer and VM already carry caps, so a refused request has something to leave alone. */
async function cappedHost(t: Parameters<typeof startPanel>[0]) {
  const host = await startPanel(t);
  const ids = await seedHost(host.api);
  for (const [type, id, caps] of [['peer', ids.peerId, { [UP]: 10_000, [DOWN]: 50_000 }], ['vm', ids.vmId, { [UP]: 2_000, [DOWN]: 0 }]] as const) {
    const response = await host.api.put(`/api/bandwidth/limits/${type}/${id}`).send(caps);
    assert.equal(response.status, 200, response.text);
  }
  return { host, ids };
}

describe('malformed caps are refused with 400 naming the field, and nothing is written or applied', () => {
  test(`the table holds at least 30 malformed caps (${BAD.length})`, () => {
    assert.ok(BAD.length >= 30);
  });

  ENDPOINTS.forEach((endpoint, e) => {
    test(endpoint.title, async (t) => {
      const { host, ids } = await cappedHost(t);
      const kernel = watchExecutor(t);
      const hostBefore = await hostRows(host.db);
      const limitsBefore = await bandwidthRows(host.db);
      assert.ok(
        (limitsBefore.bw_limits as { status: string; reason: string | null }[]).every((row) => row.status === 'applied' || row.reason === 'dry_run'),
        'arranged: the capped subjects wait as a dry run',
      );

      for (const [i, bad] of BAD.entries()) {
        // Alternate the fields across endpoints and cases; the other field holds a valid cap that must not be written either.
        const field: Field = (i + e) % 2 === 0 ? UP : DOWN;
        const other: Field = field === UP ? DOWN : UP;
        await t.test(`${bad.title} as \`${field}\``, async () => {
          const response = await sendBad(host.api, endpoint, ids, { ...endpoint.body(), [other]: 5_000 }, field, bad);

          assert.equal(response.status, 400, response.text);
          assert.match(String(response.headers['content-type']), /^application\/json/);
          assert.equal(response.body.error?.code, 'invalid_input');
          assert.equal(response.body.error.field, field);
          const got = CAP_MESSAGE(field).exec(response.body.error.message)?.[1];
          assert.ok(got !== undefined, `message: ${response.body.error.message}`);
          if (typeof bad.got === 'string') assert.equal(got, bad.got);
          else assert.match(got, bad.got);
          assert.deepEqual(await hostRows(host.db), hostBefore, 'host rows unchanged');
          assert.deepEqual(await bandwidthRows(host.db), limitsBefore, 'limit rows and audit log unchanged');
          assert.equal(kernel.calls(), 0, 'the executor was not called');
        });
      }

      await t.test('control: a valid cap on the same endpoint is stored and reaches the executor', async () => {
        const response = await host.api[endpoint.method](endpoint.path(ids)).send({ ...endpoint.body(), [UP]: 7_000, [DOWN]: '9000' });
        assert.ok(response.status === 200 || response.status === 201, response.text);
        assert.ok(kernel.calls() > 0, 'the watch sees the plugin executor');
        const rows = (await bandwidthRows(host.db)).bw_limits as { up_kbps: number; down_kbps: number }[];
        assert.ok(rows.some((row) => row.up_kbps === 7_000 && row.down_kbps === 9_000));
      });
    });
  });
});

describe('what counts as a cap', () => {
  test('null is refused, while leaving a field out keeps the stored cap', async (t) => {
    const { host, ids } = await cappedHost(t);
    const peerPath = `/api/networks/${ids.networkId}/peers/${ids.peerId}`;

    const renamed = await host.api.put(peerPath).send({ name: 'work laptop' });
    assert.equal(renamed.status, 200);
    assert.deepEqual([renamed.body.peer.bandwidth_up_kbps, renamed.body.peer.bandwidth_down_kbps], [10_000, 50_000]);
    const upOnly = await host.api.put(`/api/bandwidth/limits/peer/${ids.peerId}`).send({ [UP]: 20_000 });
    assert.deepEqual([upOnly.body.limit.bandwidth_up_kbps, upOnly.body.limit.bandwidth_down_kbps], [20_000, 50_000]);

    const before = await bandwidthRows(host.db);
    const nulled = await host.api.put(peerPath).send({ [DOWN]: null });
    assert.equal(nulled.status, 400);
    assert.equal(nulled.body.error.field, DOWN);
    assert.match(nulled.body.error.message, /got null$/);
    assert.deepEqual(await bandwidthRows(host.db), before);
  });

  test('with both caps malformed the answer names the upload cap', async (t) => {
    const { host, ids } = await cappedHost(t);
    for (const path of [`/api/vms/${ids.vmId}`, `/api/bandwidth/limits/vm/${ids.vmId}`, `/api/networks/${ids.networkId}/peers/${ids.peerId}`]) {
      const response = await host.api.put(path).send({ [DOWN]: -1, [UP]: 'fast' });
      assert.equal(response.status, 400, path);
      assert.equal(response.body.error.field, UP, path);
    }
  });

  test('the edges are accepted: 0 to 100000000 as numbers or as digit strings, and 1e3 as a JSON number', async (t) => {
    const { host, ids } = await cappedHost(t);
    const accepted: [string, number][] = [
      ['0', 0], ['1', 1], ['100000000', 100_000_000], ['"0"', 0], ['"100000000"', 100_000_000], ['"2500"', 2_500],
      // JSON cannot tell 1e3 from 1000: both are the number one thousand.
      ['1e3', 1_000],
    ];
    for (const [raw, kbps] of accepted) {
      const response = await host.api.put(`/api/bandwidth/limits/vm/${ids.vmId}`).set('Content-Type', 'application/json').send(`{"${DOWN}": ${raw}}`);
      assert.equal(response.status, 200, `${raw}: ${response.text}`);
      assert.equal(response.body.limit.bandwidth_down_kbps, kbps, raw);
      assert.equal((await host.db('bw_limits').where({ subject_type: 'vm', subject_id: String(ids.vmId) }).first()).down_kbps, kbps, raw);
    }
  });

  test('an object is described as "an object"', async (t) => {
    const { host, ids } = await cappedHost(t);
    const response = await host.api.put(`/api/vms/${ids.vmId}`).send({ [UP]: { kbps: 1000 } });
    assert.equal(response.status, 400);
    assert.match(response.body.error.message, /, got an object$/);
  });
});
