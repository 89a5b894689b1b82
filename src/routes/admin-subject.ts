import { join } from 'node:path';
import type { Request, Response } from 'express';
import type { Host } from '../plugin-api.js';
import type { Clock } from '../clock.js';
import { getLimit } from '../db/limits.js';
import { listEvents } from '../db/events.js';
import { totalsBySubject, usageSeries } from '../accounting/queries.js';
import { DAY_MS, HOUR_MS } from '../accounting/buckets.js';
import type { CollectorView as Collector } from '../accounting/collector.js';
import { currentRates } from '../accounting/rates.js';
import type { CountOptions } from '../accounting/billing.js';
import { utilisation } from '../accounting/utilisation.js';
import { renderChart } from '../views/chart.js';
import { formatBytes, formatCaps, formatKbps, formatRate } from '../views/format.js';
import { reasonText } from '../views/reason.js';
import { eventChange, eventSubject } from '../views/event-change.js';
import { formatDecimalBytes, formatInZone, formatUtc, usageText, usedPercent } from '../views/quota.js';
import type { SubjectLimit } from '../db/limits.js';
import { MAX_BYTES, parseGigabytes } from '../quotas/input.js';
import type { QuotaService } from '../quotas/service.js';
import { InputError } from '../errors.js';
import { httpAnswer, inputError } from './errors.js';
import { lookupSubject } from './subject-lookup.js';
import { parseTime } from './time-params.js';
import { PLUGIN_VIEWS } from './admin-overview.js';
import { effectiveBurst, effectiveCaps } from '../limits/effective.js';
import { getNetworkCaps } from '../db/network-caps.js';

const hourLabel = (start: number) => new Date(start).toISOString().slice(11, 16);
const dayLabel = (start: number) => new Date(start).toISOString().slice(5, 10);

/** A problem with a quota form, shown in the quota section (`field` names the input, when one is at fault). */
interface QuotaFormError {
  field: string | null;
  message: string;
  /** What was typed, shown again. */
  values: Record<string, string>;
}

/** Largest traffic block the form takes, in GB (the API takes bytes up to 2^63 - 1). */
const MAX_EXTRA_GB = 1_000_000_000n;

/**
 * The traffic-block form's `extra_gb`: decimal gigabytes (10^9 bytes), e.g. `5` or `0.5`.
 * @returns the bytes, or the message naming the field.
 */
export function parseExtraGigabytes(value: unknown): bigint | string {
  const bytes = parseGigabytes('extra_gb', typeof value === 'string' ? value : '');
  if (typeof bytes !== 'bigint') return bytes.message;
  if (bytes > MAX_EXTRA_GB * 1_000_000_000n || bytes > MAX_BYTES) return `\`extra_gb\` must be at most ${MAX_EXTRA_GB} gigabytes, got \`${String(value).trim().slice(0, 20)}\``;
  return bytes;
}

/**
 * `/admin/bandwidth/:type/:id`: history charts (48 h hourly, 30 d daily, caps drawn), totals for
 * 24 h / 7 d / 30 d and a custom range, the cap and its last kernel answer, the quota's current
 * cycle (with forms for a manual reset and a traffic block), the audit events and the cap form.
 */
export function mountSubjectPage(
  host: Host,
  basePath: string,
  minRole: 'admin' | 'viewer',
  quotas: QuotaService,
  collector: Collector | null,
  counting: CountOptions,
  clock: Clock = Date.now,
): void {
  const { router, auth, db, views } = host;

  /** The subject of the route, or null after answering the not-found page. */
  const subjectOf = async (req: Request, res: Response): Promise<SubjectLimit | null> => {
    try {
      return await lookupSubject(host, req.params.type, req.params.id);
    } catch (error) {
      const answer = httpAnswer(error);
      if (!answer) throw error;
      res.status(answer.status);
      await views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'not-found.ejs'), { title: 'Not found', message: answer.message });
      return null;
    }
  };

  router.get(`${basePath}/:type/:id`, auth.admin(minRole), async (req, res) => {
    const subject = await subjectOf(req, res);
    if (subject) await render(req, res, subject, null);
  });

  router.post(`${basePath}/:type/:id/quota/reset`, auth.admin('admin'), auth.verifyCsrf, async (req, res) => {
    const subject = await subjectOf(req, res);
    if (!subject) return;
    const done = await quotaAction(req, res, subject, {}, async () => {
      const after = await quotas.reset(subject.subjectType, subject.subjectId, auth.actor(req).name);
      return `${subject.name}: quota reset; this cycle counts from ${formatUtc(after.countedFrom)} UTC (${usageText(after.usedBytes, after.limitBytes)})`;
    });
    if (done) res.redirect(303, `${basePath}/${subject.subjectType}/${subject.subjectId}`);
  });

  router.post(`${basePath}/:type/:id/quota/extra`, auth.admin('admin'), auth.verifyCsrf, async (req, res) => {
    const subject = await subjectOf(req, res);
    if (!subject) return;
    const typed = typeof req.body?.extra_gb === 'string' ? (req.body.extra_gb as string) : '';
    const bytes = parseExtraGigabytes(req.body?.extra_gb);
    if (typeof bytes === 'string') {
      res.status(400);
      return render(req, res, subject, { field: 'extra_gb', message: bytes, values: { extra_gb: typed.slice(0, 40) } });
    }
    const done = await quotaAction(req, res, subject, { extra_gb: typed }, async () => {
      const after = await quotas.extra(subject.subjectType, subject.subjectId, bytes, auth.actor(req).name);
      return `${subject.name}: ${formatDecimalBytes(bytes)} added to this cycle; ${usageText(after.usedBytes, after.limitBytes)}, ${after.state}`;
    }, { bytes: 'extra_gb' });
    if (done) res.redirect(303, `${basePath}/${subject.subjectType}/${subject.subjectId}`);
  });

  /**
   * Runs a quota change and flashes its result; a refusal (no quota applies, blocks past the
   * largest count) re-renders the page with it, naming the form's field for the service's (`fields`).
   */
  async function quotaAction(
    req: Request,
    res: Response,
    subject: SubjectLimit,
    values: Record<string, string>,
    change: () => Promise<string>,
    fields: Record<string, string> = {},
  ): Promise<boolean> {
    try {
      views.flash(req, await change());
      return true;
    } catch (error) {
      const answer = httpAnswer(error);
      if (!answer) throw error;
      res.status(answer.status);
      await render(req, res, subject, { field: answer.field === undefined ? null : (fields[answer.field] ?? answer.field), message: answer.message, values });
      return false;
    }
  }

  async function render(req: Request, res: Response, subject: SubjectLimit, quotaError: QuotaFormError | null): Promise<void> {
    const key = `${subject.subjectType}:${subject.subjectId}`;
    const limit = await getLimit(db, subject.subjectType, subject.subjectId);
    const now = clock();
    const ids = { subjectType: subject.subjectType, subjectIds: [subject.subjectId] };
    const total = async (from: number, to: number) => (await totalsBySubject(db, from, to, ids)).get(key) ?? { upBytes: 0n, downBytes: 0n };
    let custom: { from: number; to: number; totals: { upBytes: bigint; downBytes: bigint } } | null = null;
    let rangeError: string | null = null;
    if (req.query.from !== undefined || req.query.to !== undefined) {
      try {
        const to = parseTime('to', req.query.to, now);
        const from = parseTime('from', req.query.from, to - 7 * DAY_MS);
        if (from >= to) throw inputError('from', '`from` must be before `to`');
        custom = { from, to, totals: await total(from, to) };
      } catch (error) {
        if (!(error instanceof InputError)) throw error;
        rangeError = error.message;
        res.status(400);
      }
    }
    const hourEnd = Math.ceil(now / HOUR_MS) * HOUR_MS;
    const dayEnd = Math.ceil(now / DAY_MS) * DAY_MS;
    const [hours, days, day, week, month, events, rates] = await Promise.all([
      usageSeries(db, subject.subjectType, subject.subjectId, hourEnd - 48 * HOUR_MS, hourEnd, 'hour'),
      usageSeries(db, subject.subjectType, subject.subjectId, dayEnd - 30 * DAY_MS, dayEnd, 'day'),
      total(now - DAY_MS, now),
      total(now - 7 * DAY_MS, now),
      total(now - 30 * DAY_MS, now),
      listEvents(db, { offset: 0, limit: 50, subjectType: subject.subjectType, subjectId: subject.subjectId }),
      currentRates(db, collector, [{ subjectType: subject.subjectType, subjectId: subject.subjectId }], counting),
    ]);
    const quota = await quotas.status(subject.subjectType, subject.subjectId);
    const network = limit?.networkId ? await host.records.network(Number(limit.networkId)) : undefined;
    const networkCaps = limit?.networkId ? await getNetworkCaps(db, limit.networkId) : undefined;
    // What the kernel holds per direction and where it comes from: its own cap, its network's default, a quota's throttle.
    const effective = effectiveCaps(limit ?? { upKbps: 0, downKbps: 0 });
    const capUp = effective.upKbps;
    const capDown = effective.downKbps;
    const name = limit?.name || subject.name;
    await views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'subject.ejs'), {
      title: `${subject.subjectType === 'vm' ? 'VM' : 'Peer'} ${name}`,
      basePath,
      subject,
      key,
      name,
      limit,
      rate: rates.get(key) ?? null,
      use: utilisation({ upKbps: capUp, downKbps: capDown }, rates.get(key)),
      totals: { day, week, month },
      custom,
      rangeError,
      rangeValues: { from: typeof req.query.from === 'string' ? req.query.from : '', to: typeof req.query.to === 'string' ? req.query.to : '' },
      hourChart: renderChart({ title: `${name}: last 48 hours, hourly average`, points: hours, bucketMs: HOUR_MS, capUpKbps: capUp, capDownKbps: capDown, label: hourLabel }),
      dayChart: renderChart({ title: `${name}: last 30 days, daily average`, points: days, bucketMs: DAY_MS, capUpKbps: capUp, capDownKbps: capDown, label: dayLabel }),
      events: events.events,
      quota,
      quotaNetwork: quota?.source === 'network' && network ? { id: network.id, name: network.name } : null,
      effective,
      burst: limit ? effectiveBurst(limit) : undefined,
      network: network ? { id: network.id, name: network.name } : null,
      networkCaps: networkCaps ?? null,
      quotaError,
      quotaPercent: quota ? usedPercent(quota.usedBytes, quota.limitBytes) : 0,
      projectedPercent: quota && quota.projectedBytes !== null ? usedPercent(quota.projectedBytes, quota.limitBytes) : null,
      eventChange,
      eventSubject,
      formatDecimalBytes,
      formatInZone,
      formatUtc,
      usageText,
      formatBytes,
      formatCaps,
      formatKbps,
      formatRate,
      reasonText,
      canEdit: auth.role(req) === 'admin',
    });
  }
}
