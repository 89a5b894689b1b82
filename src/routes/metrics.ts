import { timingSafeEqual } from 'node:crypto';
import client from 'prom-client';
import type { Knex } from 'knex';
import type { Host } from '../plugin-api.js';
import type { CollectorView as Collector } from '../accounting/collector.js';
import { sumBigint, toBigInt } from '../db/bigint.js';
import { directionUtilisation } from '../accounting/utilisation.js';
import { OUTCOME_REASONS } from '../limits/outcome-reason.js';

const { Registry, Gauge } = client;

/**
 * Prometheus metrics from the database (totals survive restarts) and the live collector.
 * Byte totals are exposed as counters by value: they only grow, except when retention deletes
 * the raw rows they are summed from, so they are read from the daily roll-ups (kept 2 years).
 * Stable ids are labels; names are not (they change and may hold anything).
 */
export function createMetrics(db: Knex, collector: Collector | null): client.Registry {
  const registry = new Registry();
  const bytes = new client.Counter({
    name: 'panel_bandwidth_subject_bytes_total',
    help: 'Bytes transferred per subject and direction (from the subject’s side), from the daily roll-ups.',
    labelNames: ['subject_type', 'subject_id', 'direction'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const rows = (await db('bw_usage_daily')
        .select('subject_type', 'subject_id', sumBigint(db, 'up_bytes', 'up'), sumBigint(db, 'down_bytes', 'down'))
        .groupBy('subject_type', 'subject_id')) as Record<string, unknown>[];
      for (const row of rows) {
        const labels = { subject_type: String(row.subject_type), subject_id: String(row.subject_id) };
        bytes.inc({ ...labels, direction: 'up' }, Number(toBigInt(row.up)));
        bytes.inc({ ...labels, direction: 'down' }, Number(toBigInt(row.down)));
      }
    },
  });
  const caps = new Gauge({
    name: 'panel_bandwidth_subject_cap_kbps',
    help: 'Configured cap per subject and direction in kbit/s (0 = unlimited).',
    labelNames: ['subject_type', 'subject_id', 'direction'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of (await db('bw_limits').select('subject_type', 'subject_id', 'up_kbps', 'down_kbps')) as Record<string, unknown>[]) {
        const labels = { subject_type: String(row.subject_type), subject_id: String(row.subject_id) };
        caps.set({ ...labels, direction: 'up' }, Number(row.up_kbps));
        caps.set({ ...labels, direction: 'down' }, Number(row.down_kbps));
      }
    },
  });
  const rates = new Gauge({
    name: 'panel_bandwidth_subject_rate_kbps',
    help: 'Current rate of the billed bytes (billing_bytes) per subject and direction in kbit/s, over the last collector interval.',
    labelNames: ['subject_type', 'subject_id', 'direction'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, rate] of collector?.rates() ?? []) {
        const [subjectType = '', subjectId = ''] = key.split(':');
        rates.set({ subject_type: subjectType, subject_id: subjectId, direction: 'up' }, rate.upKbps);
        rates.set({ subject_type: subjectType, subject_id: subjectId, direction: 'down' }, rate.downKbps);
      }
    },
  });
  const classRates = new Gauge({
    name: 'panel_bandwidth_subject_class_rate_kbps',
    help: 'Current rate through the subject’s HTB class (the bytes its cap governs) in kbit/s, over the last collector interval; only directions whose class was counted.',
    labelNames: ['subject_type', 'subject_id', 'direction'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, rate] of collector?.rates() ?? []) {
        const [subjectType = '', subjectId = ''] = key.split(':');
        if (rate.classUpKbps !== null) classRates.set({ subject_type: subjectType, subject_id: subjectId, direction: 'up' }, rate.classUpKbps);
        if (rate.classDownKbps !== null) classRates.set({ subject_type: subjectType, subject_id: subjectId, direction: 'down' }, rate.classDownKbps);
      }
    },
  });
  const utilisation = new Gauge({
    name: 'panel_bandwidth_subject_utilisation_ratio',
    help: 'Current rate / cap per capped direction (1 = at the cap): the class rate where the class was counted, else the billed rate.',
    labelNames: ['subject_type', 'subject_id', 'direction'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const current = collector?.rates();
      if (!current || current.size === 0) return;
      const limited = (await db('bw_limits')
        .where((q) => q.where('up_kbps', '>', 0).orWhere('down_kbps', '>', 0))
        .select('subject_type', 'subject_id', 'up_kbps', 'down_kbps')) as Record<string, unknown>[];
      for (const row of limited) {
        const labels = { subject_type: String(row.subject_type), subject_id: String(row.subject_id) };
        const rate = current.get(`${labels.subject_type}:${labels.subject_id}`);
        for (const [direction, cap] of [['up', Number(row.up_kbps)], ['down', Number(row.down_kbps)]] as const) {
          const use = directionUtilisation(cap, rate, direction);
          if (use) utilisation.set({ ...labels, direction }, use.ratio);
        }
      }
    },
  });
  /** Limited subjects counted by one column of bw_limits (status or reason). */
  const limitedBy = async (column: 'status' | 'reason'): Promise<Map<string, number>> => {
    const rows = (await db('bw_limits')
      .where((q) => q.where('up_kbps', '>', 0).orWhere('down_kbps', '>', 0))
      .whereNotNull(column)
      .select(column)
      .count({ n: '*' })
      .groupBy(column)) as Record<string, string | number>[];
    return new Map(rows.map((row) => [String(row[column]), Number(row.n)]));
  };
  const statuses = new Gauge({
    name: 'panel_bandwidth_limits',
    help: 'Limited subjects by kernel status.',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const counts = await limitedBy('status');
      for (const status of ['pending', 'applied', 'failed']) statuses.set({ status }, counts.get(status) ?? 0);
    },
  });
  const reasons = new Gauge({
    name: 'panel_bandwidth_limits_by_reason',
    help: 'Limited subjects that are not applied, by the typed reason of their status (dry_run, interface_missing, …).',
    labelNames: ['reason'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const counts = await limitedBy('reason');
      for (const reason of OUTCOME_REASONS) reasons.set({ reason }, counts.get(reason) ?? 0);
    },
  });
  const lastSuccess = new Gauge({
    name: 'panel_bandwidth_collector_last_success_timestamp_seconds',
    help: 'When the collector last finished a tick without error (0: never, or accounting is off).',
    registers: [registry],
    collect() {
      const tick = collector?.lastSuccess;
      lastSuccess.set(tick ? tick / 1000 : 0);
    },
  });
  const duration = new Gauge({
    name: 'panel_bandwidth_collector_last_duration_seconds',
    help: 'How long the last collector tick took.',
    registers: [registry],
    collect() {
      duration.set((collector?.lastTick?.durationMs ?? 0) / 1000);
    },
  });
  const errors = new Gauge({
    name: 'panel_bandwidth_collector_errors_total',
    help: 'Collector ticks that failed since the process started.',
    registers: [registry],
    collect() {
      errors.set(collector?.errorCount ?? 0);
    },
  });
  return registry;
}

/** `GET /metrics`, with an optional bearer token (`metrics_token`). */
export function mountMetrics(host: Host, registry: client.Registry, token: string): void {
  host.router.get('/metrics', async (req, res) => {
    if (token !== '') {
      const sent = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1] ?? '';
      const ok = sent.length === token.length && timingSafeEqual(Buffer.from(sent), Buffer.from(token));
      if (!ok) {
        res.status(401).set('WWW-Authenticate', 'Bearer').type('text').send('metrics token required\n');
        return;
      }
    }
    res.type(registry.contentType).send(await registry.metrics());
  });
}
