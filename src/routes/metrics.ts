import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import client from 'prom-client';
import type { Knex } from 'knex';
import type { Host, Logger } from '../plugin-api.js';
import type { CollectorView as Collector } from '../accounting/collector.js';
import { bigintColumn, toBigInt } from '../db/bigint.js';
import { directionUtilisation } from '../accounting/utilisation.js';
import { OUTCOME_REASONS } from '../limits/outcome-reason.js';
import { isLimited } from '../db/limits.js';
import { listNetworkCaps, type NetworkCaps } from '../db/network-caps.js';
import type { SubjectType } from '../plugin-api.js';
import type { QuotaService, QuotaStatus } from '../quotas/service.js';
import type { QuotaState } from '../quotas/rules.js';

const { Registry, Gauge } = client;

/** One subject's row of bw_limits, as a scrape reads it. */
interface SubjectRow {
  labels: { subject_type: string; subject_id: string };
  networkId: string | null;
  upKbps: number;
  downKbps: number;
  /** True while the kernel caps it: caps of its own, its network's default, or a quota throttle in force. */
  limited: boolean;
  status: string | null;
  reason: string | null;
}

/** What one scrape reads from the database: two queries, each one row per subject. */
export interface Snapshot {
  subjects: Map<string, SubjectRow>;
  totals: { labels: SubjectRow['labels']; up: bigint; down: bigint }[];
  networks: NetworkCaps[];
}

/** The database reads of one scrape (exported for bench/metrics.ts). */
export async function readSnapshot(db: Knex): Promise<Snapshot> {
  const limits = (await db('bw_limits').select(
    'subject_type', 'subject_id', 'network_id', 'up_kbps', 'down_kbps', 'default_up_kbps', 'default_down_kbps', 'throttle_up_kbps', 'throttle_down_kbps', 'status', 'reason',
  )) as Record<string, unknown>[];
  const subjects = new Map<string, SubjectRow>();
  for (const row of limits) {
    const labels = { subject_type: String(row.subject_type), subject_id: String(row.subject_id) };
    const caps = {
      upKbps: Number(row.up_kbps), downKbps: Number(row.down_kbps), defaultUpKbps: Number(row.default_up_kbps ?? 0), defaultDownKbps: Number(row.default_down_kbps ?? 0),
      throttleUpKbps: row.throttle_up_kbps === null ? null : Number(row.throttle_up_kbps), throttleDownKbps: row.throttle_down_kbps === null ? null : Number(row.throttle_down_kbps),
    };
    subjects.set(`${labels.subject_type}:${labels.subject_id}`, {
      labels, networkId: row.network_id === null || row.network_id === undefined ? null : String(row.network_id), upKbps: caps.upKbps, downKbps: caps.downKbps,
      limited: isLimited(caps), status: row.status === null ? null : String(row.status), reason: row.reason === null ? null : String(row.reason),
    });
  }
  // Only subjects the panel still has: a deleted subject's totals stay in the table, not in /metrics.
  const totals = (await db('bw_usage_totals as t')
    .join('bw_limits as l', (on) => on.on('l.subject_type', '=', 't.subject_type').andOn('l.subject_id', '=', 't.subject_id'))
    .select('t.subject_type', 't.subject_id', bigintColumn(db, 't.up_bytes', 'up'), bigintColumn(db, 't.down_bytes', 'down'))) as Record<string, unknown>[];
  return {
    subjects,
    networks: await listNetworkCaps(db),
    totals: totals.map((row) => ({
      labels: { subject_type: String(row.subject_type), subject_id: String(row.subject_id) },
      up: toBigInt(row.up) ?? 0n,
      down: toBigInt(row.down) ?? 0n,
    })),
  };
}

/** One series of a per-subject family: the subject, the direction and the value. */
type Sample = [SubjectRow['labels'], 'up' | 'down', number | bigint];

/** A label value in the text format: backslash, double quote and newline escaped. */
const labelValue = (value: string) => value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));

/**
 * One family in the Prometheus text format (0.0.4). The per-subject families are written here
 * rather than through prom-client's metric objects: those cost ~30 µs per series to fill and
 * print (60-250 ms for 2,000 subjects here), which a scrape would take from the event loop.
 * Bigints print exactly.
 */
function renderFamily(name: string, type: 'counter' | 'gauge', help: string, samples: Sample[]): string {
  const lines = [`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`];
  for (const [labels, direction, value] of samples) {
    lines.push(`${name}{subject_type="${labelValue(labels.subject_type)}",subject_id="${labelValue(labels.subject_id)}",direction="${direction}"} ${value}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The values of the one-hot state family, each a series per subject. */
const QUOTA_STATES: readonly QuotaState[] = ['ok', 'warning', 'exceeded'];

/** One series of a quota family: its labels as written between the braces, and its value. */
type LabelledSample = [string, number];

/** A subject's labels as the text format writes them (built once per subject, not per series). */
const subjectLabels = (labels: SubjectRow['labels']): string => `subject_type="${labelValue(labels.subject_type)}",subject_id="${labelValue(labels.subject_id)}"`;

/** A gauge family whose series carry any labels (the quota families), in the same text format. */
function renderLabelled(name: string, help: string, samples: LabelledSample[]): string {
  const lines = [`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} gauge`];
  for (const [labels, value] of samples) lines.push(`${name}{${labels}} ${value}`);
  return `${lines.join('\n')}\n`;
}

/** The quota status of every subject in the snapshot that has one. */
async function readQuotas(quotas: QuotaService, subjects: Map<string, SubjectRow>): Promise<Map<string, QuotaStatus>> {
  const result = new Map<string, QuotaStatus>();
  for (const type of ['peer', 'vm'] as const satisfies readonly SubjectType[]) {
    const ids = [...subjects.values()].filter((subject) => subject.labels.subject_type === type).map((subject) => subject.labels.subject_id);
    for (const [key, status] of await quotas.statuses(type, ids)) result.set(key, status);
  }
  return result;
}

/** The panel's metrics: `scrape()` answers the exposition text. */
export interface Metrics {
  registry: client.Registry;
  /**
   * Reads the database once and renders every family. Scrapes that arrive while one is running
   * share its answer: the snapshot and prom-client's metrics are shared state that each scrape
   * replaces (before, two interleaved scrapes added their byte totals onto each other's).
   */
  scrape(): Promise<string>;
}

/**
 * Prometheus metrics from the database (totals survive restarts) and the live collector. A scrape
 * costs two reads of one row per subject: caps and statuses from bw_limits, byte totals from
 * bw_usage_totals (kept in step with the roll-ups, in their transaction). Only subjects in bw_limits
 * are exposed, so a deleted subject's series end with it. Byte totals are all-time counters: they
 * only grow (retention deletes roll-up rows, never totals).
 * Stable ids are labels; names are not (they change and may hold anything).
 */
export function createMetrics(db: Knex, collector: Collector | null, quotas?: QuotaService): Metrics {
  const registry = new Registry();
  let snapshot: Snapshot = { subjects: new Map(), totals: [], networks: [] };
  let quotaStatuses = new Map<string, QuotaStatus>();
  /** The collector's rates of subjects the panel still has (a deleted one lingers until the next tick). */
  const currentRates = () => [...(collector?.rates() ?? [])].flatMap(([key, rate]) => {
    const subject = snapshot.subjects.get(key);
    return subject ? [{ subject, rate }] : [];
  });
  /** The per-subject families: rendered here, a line per series (see {@link renderFamily}). */
  const subjectFamilies = (): string => {
    const bytes: Sample[] = [];
    for (const { labels, up, down } of snapshot.totals) bytes.push([labels, 'up', up], [labels, 'down', down]);
    const caps: Sample[] = [];
    for (const { labels, upKbps, downKbps } of snapshot.subjects.values()) caps.push([labels, 'up', upKbps], [labels, 'down', downKbps]);
    const rates: Sample[] = [];
    const classRates: Sample[] = [];
    const utilisation: Sample[] = [];
    for (const { subject, rate } of currentRates()) {
      rates.push([subject.labels, 'up', rate.upKbps], [subject.labels, 'down', rate.downKbps]);
      if (rate.classUpKbps !== null) classRates.push([subject.labels, 'up', rate.classUpKbps]);
      if (rate.classDownKbps !== null) classRates.push([subject.labels, 'down', rate.classDownKbps]);
      for (const [direction, cap] of [['up', subject.upKbps], ['down', subject.downKbps]] as const) {
        const use = directionUtilisation(cap, rate, direction);
        if (use) utilisation.push([subject.labels, direction, use.ratio]);
      }
    }
    return [
      renderFamily('panel_bandwidth_subject_bytes_total', 'counter', 'Bytes transferred per subject and direction (from the subject’s side) since it was first counted.', bytes),
      renderFamily('panel_bandwidth_subject_cap_kbps', 'gauge', 'Configured cap per subject and direction in kbit/s (0 = unlimited).', caps),
      renderFamily('panel_bandwidth_subject_rate_kbps', 'gauge', 'Current rate of the billed bytes (billing_bytes) per subject and direction in kbit/s, over the last collector interval.', rates),
      renderFamily('panel_bandwidth_subject_class_rate_kbps', 'gauge', 'Current rate through the subject’s HTB class (the bytes its cap governs) in kbit/s, over the last collector interval; only directions whose class was counted.', classRates),
      renderFamily('panel_bandwidth_subject_utilisation_ratio', 'gauge', 'Current rate / cap per capped direction (1 = at the cap): the class rate where the class was counted, else the billed rate.', utilisation),
      ...(quotas ? [quotaFamilies()] : []),
      networkFamilies(),
    ].join('');
  };
  /** Per network with caps: its cap and default per direction, and the current rate of its subjects together. */
  const networkFamilies = (): string => {
    const rates = new Map<string, { up: number; down: number }>();
    for (const { subject, rate } of currentRates()) {
      if (subject.networkId === null) continue;
      const sum = rates.get(subject.networkId) ?? { up: 0, down: 0 };
      sum.up += rate.upKbps;
      sum.down += rate.downKbps;
      rates.set(subject.networkId, sum);
    }
    const caps: LabelledSample[] = [];
    const defaults: LabelledSample[] = [];
    const use: LabelledSample[] = [];
    for (const network of snapshot.networks) {
      const labels = `network_id="${labelValue(network.networkId)}"`;
      caps.push([`${labels},direction="up"`, network.totalUpKbps], [`${labels},direction="down"`, network.totalDownKbps]);
      defaults.push([`${labels},direction="up"`, network.defaultUpKbps], [`${labels},direction="down"`, network.defaultDownKbps]);
      const rate = rates.get(network.networkId) ?? { up: 0, down: 0 };
      use.push([`${labels},direction="up"`, rate.up], [`${labels},direction="down"`, rate.down]);
    }
    return [
      renderLabelled('panel_bandwidth_network_cap_kbps', 'Network cap per network and direction in kbit/s: all its traffic stays under it (0 = none); only networks with caps or defaults.', caps),
      renderLabelled('panel_bandwidth_network_default_cap_kbps', 'Default cap per network and direction in kbit/s for its peers without a cap of their own (0 = none).', defaults),
      renderLabelled('panel_bandwidth_network_rate_kbps', 'Current rate of the billed bytes of a network\u2019s subjects together, per direction in kbit/s (over the last collector interval).', use),
    ].join('');
  };
  /** Per subject with a quota: used / limit of its current cycle, and its state one-hot. */
  const quotaFamilies = (): string => {
    const ratios: LabelledSample[] = [];
    const states: LabelledSample[] = [];
    for (const [key, status] of quotaStatuses) {
      const subject = snapshot.subjects.get(key);
      if (!subject) continue;
      const labels = subjectLabels(subject.labels);
      ratios.push([labels, status.ratio]);
      for (const state of QUOTA_STATES) states.push([`${labels},state="${state}"`, status.state === state ? 1 : 0]);
    }
    return [
      renderLabelled('panel_bandwidth_quota_used_ratio', 'Bytes used / limit (allowance plus traffic blocks) of the subject\u2019s current quota cycle (1 = used up); only subjects a quota applies to.', ratios),
      renderLabelled('panel_bandwidth_quota_state', 'Quota state of the subject\u2019s current cycle: 1 for its state (ok, warning or exceeded), 0 for the others.', states),
    ].join('');
  };
  /** Limited subjects counted by one column of bw_limits (status or reason). */
  const limitedBy = (column: 'status' | 'reason'): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const subject of snapshot.subjects.values()) {
      const value = subject[column];
      if (subject.limited && value !== null) counts.set(value, (counts.get(value) ?? 0) + 1);
    }
    return counts;
  };
  const statuses = new Gauge({
    name: 'panel_bandwidth_limits',
    help: 'Limited subjects (own caps, their network\u2019s default or a quota throttle) by status: throttled = applied with a quota throttle in force.',
    labelNames: ['status'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const counts = limitedBy('status');
      for (const status of ['pending', 'applied', 'failed', 'throttled']) statuses.set({ status }, counts.get(status) ?? 0);
    },
  });
  const reasons = new Gauge({
    name: 'panel_bandwidth_limits_by_reason',
    help: 'Limited subjects that are not applied, by the typed reason of their status (dry_run, interface_missing, …).',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const counts = limitedBy('reason');
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
  let running: Promise<string> | null = null;
  const scrape = async (): Promise<string> => {
    snapshot = await readSnapshot(db);
    quotaStatuses = quotas ? await readQuotas(quotas, snapshot.subjects) : new Map();
    return `${await registry.metrics()}${subjectFamilies()}`;
  };
  return {
    registry,
    scrape: () => (running ??= scrape().finally(() => {
      running = null;
    })),
  };
}

/** Who may read /metrics: anyone (`metrics_open`), or whoever sends the token with this SHA-256. */
export type MetricsAccess = { open: true } | { open: false; tokenSha256: Buffer };

/** The bw_credentials row of the generated token. */
const CREDENTIAL = 'metrics_token';

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Decides who may read /metrics, once at `register`: `metrics_open: true` opens it, `metrics_token`
 * sets the token; otherwise the token generated on the first start is used, its SHA-256 kept in
 * bw_credentials (shared by every panel process on the database). A newly generated token is
 * logged once, as a warning; only its hash is stored, so it cannot be shown again (set
 * `metrics_token`, or delete the row and restart, for another).
 * @example const access = await metricsAccess(host.db, settings, host.logger);
 */
export async function metricsAccess(
  db: Knex,
  settings: { metrics_token: string; metrics_open: boolean },
  logger: Logger,
  now = Date.now(),
): Promise<MetricsAccess> {
  if (settings.metrics_open) {
    logger.warn('/metrics is open to anyone who can reach the panel (metrics_open)');
    return { open: true };
  }
  if (settings.metrics_token !== '') return { open: false, tokenSha256: sha256(settings.metrics_token) };
  const stored = async () => (await db('bw_credentials').where({ name: CREDENTIAL }).first()) as { sha256: string } | undefined;
  let row = await stored();
  if (!row) {
    const token = randomBytes(24).toString('base64url');
    // Two panel processes starting at once: one row wins, and only its token is printed.
    await db('bw_credentials').insert({ name: CREDENTIAL, sha256: sha256(token).toString('hex'), created_at: now }).onConflict('name').ignore();
    row = await stored();
    if (row?.sha256 === sha256(token).toString('hex')) {
      logger.warn(`First start: /metrics token \`${token}\` (shown once; send it as \`Authorization: Bearer <token>\`, or set metrics_token)`);
    }
  }
  if (!row) throw new Error('bw_credentials has no metrics_token row after writing it');
  return { open: false, tokenSha256: Buffer.from(row.sha256, 'hex') };
}

/** True when the request carries `Authorization: Bearer <token>` with the token `access` wants. */
function authorised(access: MetricsAccess, authorization: string | undefined): boolean {
  if (access.open) return true;
  const sent = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  if (sent === undefined) return false;
  // Both sides are 32-byte digests: the compare takes the same time whatever was sent (no length
  // leak) and never throws on a token whose bytes differ in number from its characters.
  return timingSafeEqual(sha256(sent), access.tokenSha256);
}

/** `GET /metrics`, behind the bearer token unless `access` is open. */
export function mountMetrics(host: Host, metrics: Metrics, access: MetricsAccess): void {
  host.router.get('/metrics', async (req, res) => {
    if (!authorised(access, req.get('authorization'))) {
      res.status(401).set('WWW-Authenticate', 'Bearer').type('text').send('metrics token required\n');
      return;
    }
    const text = await metrics.scrape();
    res.type(metrics.registry.contentType).send(text);
  });
}
