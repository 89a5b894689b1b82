import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { API_TOKEN, HERMETIC_PLUGIN_OPTIONS, seedHost, startPanel } from '../support/panel.js';
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

describe('GET /metrics', () => {
  test('parses as Prometheus text; byte totals are the daily roll-up sums, caps the stored caps', async (t) => {
    const host = await startPanel(t);
    const seeded = await seedSubjects(host.db, { count: 20, vmEvery: 4, usage: (index) => index % 3 !== 0 });

    const response = await host.visitor().get('/metrics');

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
      ['pending', seeded.counts.pending], ['applied', seeded.counts.applied], ['failed', seeded.counts.failed],
    ]));
  });

  test('the collector health gauges are there (zero in a dry run, which collects nothing)', async (t) => {
    const host = await startPanel(t);

    const parsed = families((await host.visitor().get('/metrics')).text);

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
    const host = await startPanel(t);
    const { peerId } = await seedHost(host.api);
    const caps = async () => samples(families((await host.visitor().get('/metrics')).text).get('panel_bandwidth_subject_cap_kbps'), SUBJECT_LABELS);
    assert.equal((await caps()).get(`peer/${peerId}/down`), 0);

    await host.api.put(`/api/bandwidth/limits/peer/${peerId}`).send({ bandwidth_up_kbps: 2_500, bandwidth_down_kbps: 40_000 }).expect(200);

    const after = await caps();
    assert.deepEqual([after.get(`peer/${peerId}/up`), after.get(`peer/${peerId}/down`)], [2_500, 40_000]);
  });
});

describe('GET /metrics by reason', () => {
  test('limited subjects that are not applied are counted by their typed reason, every reason present', async (t) => {
    const host = await startPanel(t);
    const { peerId, vmId } = await seedHost(host.api);
    const reasons = async () => samples(families((await host.visitor().get('/metrics')).text).get('panel_bandwidth_limits_by_reason'), ['reason']);
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
    const host = await startPanel(t, { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, metrics_token: METRICS_TOKEN } } });

    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${API_TOKEN}`, `Bearer ${METRICS_TOKEN}x`, `Basic ${METRICS_TOKEN}`, METRICS_TOKEN]) {
      const call = host.visitor().get('/metrics');
      const response = await (authorization === undefined ? call : call.set('Authorization', authorization));
      assert.equal(response.status, 401, String(authorization));
      assert.equal(response.headers['www-authenticate'], 'Bearer', String(authorization));
      assert.ok(!response.text.includes('panel_bandwidth'), `${String(authorization)}: no metrics leak`);
    }
  });

  test('answers 200 with `Authorization: Bearer <token>`', async (t) => {
    const host = await startPanel(t, { pluginOptions: { bandwidth: { ...HERMETIC_PLUGIN_OPTIONS.bandwidth, metrics_token: METRICS_TOKEN } } });

    const response = await host.visitor().get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);

    assert.equal(response.status, 200);
    assert.ok(families(response.text).has('panel_bandwidth_subject_cap_kbps'));
  });
});
