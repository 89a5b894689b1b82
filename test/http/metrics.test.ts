import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { TestContext } from 'node:test';
import { API_TOKEN, HERMETIC_PLUGIN_OPTIONS, seedHost, startPanel, type PanelOptions, type TestPanel } from '../support/panel.js';
import { metricsAccess } from '../../src/routes/metrics.js';
import type { Logger } from '../../src/plugin-api.js';
import { seedSubjects } from '../support/seed.js';

/** A metric family as parse-prometheus-text-format returns it (the prom2json shape). */
interface Family {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: { value?: string; labels?: Record<string, string> }[];
}

// The package ships CommonJS without type declarations: load it through require, typed here.
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

/** Parses an exposition and indexes its families by name. */
function families(text: string): Map<string, Family> {
  return new Map(parsePrometheus(text).map((family) => [family.name, family]));
}

/** Sample values of a family, by their labels in a fixed order (`peer/3/up`). */
function samples(family: Family | undefined, labels: string[]): Map<string, number> {
  assert.ok(family, 'the family is exposed');
  return new Map(family.metrics.map((m) => [labels.map((l) => m.labels?.[l] ?? '').join('/'), Number(m.value)]));
}

const SUBJECT_LABELS = ['subject_type', 'subject_id', 'direction'];
const METRICS_TOKEN = 'metrics-token-0123456789';

/** A panel whose /metrics takes METRICS_TOKEN. */
const withToken = (options: PanelOptions = {}): PanelOptions => ({ ...options, pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, metrics_token: METRICS_TOKEN } } });
const startWithToken = (t: TestContext, options: PanelOptions = {}) => startPanel(t, withToken(options));
/** GET /metrics as Prometheus sends it. */
const scrape = (host: TestPanel) => host.visitor().get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);

describe('GET /metrics', () => {
  test('parses as Prometheus text; byte totals are the daily roll-up sums, caps the stored caps', async (t) => {
    const host = await startWithToken(t);
    const seeded = await seedSubjects(host.db, { count: 20, vmEvery: 4, usage: (index) => index % 3 !== 0 });

    const response = await scrape(host);

    assert.equal(response.status, 200);
    const [mediaType, ...parameters] = String(response.headers['content-type']).split(/;\s*/);
    assert.equal(mediaType, 'text/plain');
    assert.ok(parameters.includes('version=0.0.4'), 'the text format version is declared');
    const parsed = families(response.text);
    const bytesFamily = parsed.get('panel_bandwidth_subject_bytes_total');
    assert.equal(bytesFamily?.type, 'COUNTER');
    const expectedBytes = new Map<string, number>();
    for (const subject of seeded.subjects.filter((s) => s.daily.length > 0)) {
      expectedBytes.set(`${subject.type}/${subject.id}/up`, Number(subject.daily.reduce((sum, row) => sum + row.up, 0n)));
      expectedBytes.set(`${subject.type}/${subject.id}/down`, Number(subject.daily.reduce((sum, row) => sum + row.down, 0n)));
    }
    assert.equal(expectedBytes.size, 2 * 14, '14 subjects with usage, two directions each');
    assert.deepEqual(samples(bytesFamily, SUBJECT_LABELS), expectedBytes);

    const capsFamily = parsed.get('panel_bandwidth_subject_cap_kbps');
    assert.equal(capsFamily?.type, 'GAUGE');
    assert.deepEqual(
      samples(capsFamily, SUBJECT_LABELS),
      new Map(seeded.subjects.flatMap((s) => [[`${s.type}/${s.id}/up`, s.upKbps], [`${s.type}/${s.id}/down`, s.downKbps]] as [string, number][])),
    );
    assert.deepEqual(samples(parsed.get('panel_bandwidth_limits'), ['status']), new Map([
      ['pending', seeded.counts.pending], ['applied', seeded.counts.applied], ['failed', seeded.counts.failed], ['throttled', 0],
    ]));
    assert.equal(parsed.get('panel_bandwidth_quota_used_ratio')?.type, 'GAUGE');
    assert.deepEqual(parsed.get('panel_bandwidth_quota_state')?.metrics, [], 'no quota applies: no quota series');
  });

  test('the collector health gauges are there (zero in a dry run, which collects nothing)', async (t) => {
    const host = await startWithToken(t);

    const parsed = families((await scrape(host)).text);

    for (const name of ['panel_bandwidth_collector_last_success_timestamp_seconds', 'panel_bandwidth_collector_last_duration_seconds', 'panel_bandwidth_collector_errors_total']) {
      const family = parsed.get(name);
      assert.equal(family?.type, 'GAUGE', name);
      assert.ok(family.help.length > 0, `${name} has a help text`);
      assert.deepEqual(family.metrics.map((m) => Number(m.value)), [0], name);
    }
    assert.deepEqual(parsed.get('panel_bandwidth_subject_rate_kbps')?.metrics, [], 'no rates without a collector');
    assert.deepEqual(parsed.get('panel_bandwidth_subject_bytes_total')?.metrics, [], 'no usage yet');
  });

  test('a cap set through the API shows in the cap gauge at the next scrape', async (t) => {
    const host = await startWithToken(t);
    const { peerId } = await seedHost(host.api);
    const caps = async () => samples(families((await scrape(host)).text).get('panel_bandwidth_subject_cap_kbps'), SUBJECT_LABELS);
    assert.equal((await caps()).get(`peer/${peerId}/down`), 0);

    await host.api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ bandwidth_up_kbps: 2_500, bandwidth_down_kbps: 40_000 }).expect(200);

    const after = await caps();
    assert.deepEqual([after.get(`peer/${peerId}/up`), after.get(`peer/${peerId}/down`)], [2_500, 40_000]);
  });
});

describe('GET /metrics for network caps (issue 14)', () => {
  test('a network\u2019s cap and default are gauges by network id; a peer under the default counts as limited', async (t) => {
    const host = await startWithToken(t);
    const { networkId } = await seedHost(host.api);
    const limited = async () => samples(families((await scrape(host)).text).get('panel_bandwidth_limits'), ['status']);
    const pendingBefore = (await limited()).get('pending') ?? 0;

    await host.api.put(`/api/bandwidth/networks/${networkId}`).send({ bandwidth_total_down_kbps: 30_000, bandwidth_default_down_kbps: 10_000 }).expect(200);

    const parsed = families((await scrape(host)).text);
    const network = ['network_id', 'direction'];
    assert.deepEqual(samples(parsed.get('panel_bandwidth_network_cap_kbps'), network), new Map([[`${networkId}/up`, 0], [`${networkId}/down`, 30_000]]));
    assert.deepEqual(samples(parsed.get('panel_bandwidth_network_default_cap_kbps'), network), new Map([[`${networkId}/up`, 0], [`${networkId}/down`, 10_000]]));
    assert.deepEqual(samples(parsed.get('panel_bandwidth_network_rate_kbps'), network), new Map([[`${networkId}/up`, 0], [`${networkId}/down`, 0]]), 'a dry run collects nothing');
    // seedHost's network has peers without caps of their own: the default now caps them (pending in a dry run).
    const peers = (await host.db('bw_limits').where({ subject_type: 'peer', network_id: String(networkId), up_kbps: 0, down_kbps: 0 })).length;
    assert.ok(peers > 0);
    assert.equal((await limited()).get('pending'), pendingBefore + peers);
  });
});

describe('GET /metrics by reason', () => {
  test('limited subjects that are not applied are counted by their typed reason, every reason present', async (t) => {
    const host = await startWithToken(t);
    const { peerId, vmId } = await seedHost(host.api);
    const reasons = async () => samples(families((await scrape(host)).text).get('panel_bandwidth_limits_by_reason'), ['reason']);
    const none = new Map([['dry_run', 0], ['interface_missing', 0], ['kernel_refused', 0], ['plan_invalid', 0], ['node_unreachable', 0]]);
    assert.deepEqual(await reasons(), none, 'nothing limited yet');

    await host.api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ bandwidth_down_kbps: 40_000 }).expect(200);
    await host.api.put(`/api/bandwidth/limits/vm/${vmId}`).send({ bandwidth_up_kbps: 1_000 }).expect(200);
    await host.db('bw_limits').where({ subject_type: 'vm' }).update({ status: 'failed', reason: 'kernel_refused' });

    assert.deepEqual(await reasons(), new Map([...none, ['dry_run', 1], ['kernel_refused', 1]]));
  });
});

describe('GET /metrics with the metrics_token option', () => {
  test('answers 401 without the token, with a wrong one or with the panel\'s API token', async (t) => {
    const host = await startWithToken(t);

    // The last three are not ASCII; two have the token's length in characters but not in bytes (é is
    // two bytes in UTF-8): comparing them with the token used to throw a RangeError (a 500).
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${API_TOKEN}`, `Bearer ${METRICS_TOKEN}x`, `Basic ${METRICS_TOKEN}`, METRICS_TOKEN,
      `Bearer ${METRICS_TOKEN.slice(0, -1)}é`, `Bearer ${METRICS_TOKEN.slice(0, -1)}ÿ`, 'Bearer tökén-ünïcødé']) {
      const call = host.visitor().get('/metrics');
      const response = await (authorization === undefined ? call : call.set('Authorization', authorization));
      assert.equal(response.status, 401, String(authorization));
      assert.equal(response.headers['www-authenticate'], 'Bearer', String(authorization));
      assert.ok(!response.text.includes('panel_bandwidth'), `${String(authorization)}: no metrics leak`);
    }
  });

  test('answers 200 with `Authorization: Bearer <token>`', async (t) => {
    const host = await startWithToken(t);

    const response = await scrape(host);

    assert.equal(response.status, 200);
    assert.ok(families(response.text).has('panel_bandwidth_subject_cap_kbps'));
  });
});

/** A logger that keeps its lines (the panel under test logs nothing). */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (message: string) => void lines.push(message);
  return { lines, debug: keep, info: keep, warn: keep, error: keep };
}

describe('GET /metrics by default', () => {
  test('answers 401 without a token: one is generated on the first start and only its hash is stored', async (t) => {
    const host = await startPanel(t);

    const response = await host.visitor().get('/metrics');

    assert.equal(response.status, 401);
    assert.equal(response.headers['www-authenticate'], 'Bearer');
    assert.ok(!response.text.includes('panel_bandwidth'));
    const stored = (await host.db('bw_credentials').select('name', 'sha256')) as { name: string; sha256: string }[];
    assert.deepEqual(stored.map((row) => row.name), ['metrics_token']);
    assert.match(stored[0]!.sha256, /^[0-9a-f]{64}$/);
    assert.equal((await host.api.get('/metrics')).status, 401, 'the panel\'s API token is not the metrics token');
  });

  test('the token printed on the first start opens /metrics, also after a restart; a later start prints none', async (t) => {
    const host = await startPanel(t);
    // Test panels log nothing: take the first start's part again on their database, with a logger.
    await host.db('bw_credentials').delete();
    const firstStart = recordingLogger();
    await metricsAccess(host.db, { metrics_token: '', metrics_open: false }, firstStart);
    const token = /\/metrics token `([^`]+)`/.exec(firstStart.lines.join('\n'))?.[1];
    assert.ok(token, `the token is printed: ${firstStart.lines.join(' | ')}`);
    const laterStart = recordingLogger();
    await metricsAccess(host.db, { metrics_token: '', metrics_open: false }, laterStart);
    assert.deepEqual(laterStart.lines, [], 'printed once');

    const restarted = await host.restart();

    assert.equal((await restarted.visitor().get('/metrics').set('Authorization', `Bearer ${token}`)).status, 200);
    assert.equal((await restarted.visitor().get('/metrics').set('Authorization', `Bearer ${token}x`)).status, 401);
    assert.equal((await restarted.visitor().get('/metrics')).status, 401);
  });

  test('`metrics_open: true` serves it without a token, and stores none', async (t) => {
    const host = await startPanel(t, { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, metrics_open: true } } });

    const response = await host.visitor().get('/metrics');

    assert.equal(response.status, 200);
    assert.ok(families(response.text).has('panel_bandwidth_subject_cap_kbps'));
    assert.deepEqual(await host.db('bw_credentials').select('name'), []);
  });
});

describe('GET /metrics cost and lifetime of series', () => {
  test('a deleted peer\'s and VM\'s series vanish at the next scrape; the others stay', async (t) => {
    const host = await startWithToken(t);
    const seeded = await seedSubjects(host.db, { count: 8, vmEvery: 4, usage: () => true });
    const peer = seeded.subjects.find((s) => s.type === 'peer')!;
    const vm = seeded.subjects.find((s) => s.type === 'vm')!;
    const seriesOf = async (type: string, id: string) => {
      const parsed = families((await scrape(host)).text);
      return ['panel_bandwidth_subject_bytes_total', 'panel_bandwidth_subject_cap_kbps'].flatMap((name) =>
        (parsed.get(name)?.metrics ?? []).filter((m) => m.labels?.subject_type === type && m.labels.subject_id === id).map((m) => `${name}/${m.labels?.direction}`));
    };
    assert.equal((await seriesOf('peer', peer.id)).length, 4, 'bytes and caps, up and down');
    assert.equal((await seriesOf('vm', vm.id)).length, 4);

    await host.api.delete(`/api/networks/${peer.networkId}/peers/${peer.id}`).expect(204);
    await host.api.delete(`/api/vms/${vm.id}`).expect(204);

    assert.deepEqual(await seriesOf('peer', peer.id), []);
    assert.deepEqual(await seriesOf('vm', vm.id), []);
    const other = seeded.subjects.find((s) => s.type === 'peer' && s.id !== peer.id)!;
    assert.equal((await seriesOf('peer', other.id)).length, 4);
  });

  test('byte totals come from the maintained totals, not the daily rows: retention does not lower a counter', async (t) => {
    const host = await startWithToken(t);
    await seedSubjects(host.db, { count: 6, vmEvery: 3, usage: () => true });
    const bytes = async () => samples(families((await scrape(host)).text).get('panel_bandwidth_subject_bytes_total'), SUBJECT_LABELS);
    const before = await bytes();
    assert.equal(before.size, 12);

    await host.db('bw_usage_daily').delete();

    assert.deepEqual(await bytes(), before);
  });

  test('concurrent scrapes all answer the same totals (none adds its bytes onto another\'s)', async (t) => {
    const host = await startWithToken(t);
    await seedSubjects(host.db, { count: 12, vmEvery: 4, usage: () => true });
    const one = samples(families((await scrape(host)).text).get('panel_bandwidth_subject_bytes_total'), SUBJECT_LABELS);

    const answers = await Promise.all(Array.from({ length: 6 }, () => scrape(host)));

    for (const answer of answers) {
      assert.equal(answer.status, 200);
      assert.deepEqual(samples(families(answer.text).get('panel_bandwidth_subject_bytes_total'), SUBJECT_LABELS), one);
    }
  });
});
