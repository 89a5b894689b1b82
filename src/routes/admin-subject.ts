import { join } from 'node:path';
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
import { InputError } from '../errors.js';
import { httpAnswer, inputError } from './errors.js';
import { lookupSubject } from './subject-lookup.js';
import { parseTime } from './time-params.js';
import { PLUGIN_VIEWS } from './admin-overview.js';

const hourLabel = (start: number) => new Date(start).toISOString().slice(11, 16);
const dayLabel = (start: number) => new Date(start).toISOString().slice(5, 10);

/**
 * `/admin/bandwidth/:type/:id`: history charts (48 h hourly, 30 d daily, caps drawn), totals for
 * 24 h / 7 d / 30 d and a custom range, the cap and its last kernel answer, the audit events and
 * the cap form.
 */
export function mountSubjectPage(host: Host, basePath: string, minRole: 'admin' | 'viewer', collector: Collector | null, counting: CountOptions, clock: Clock = Date.now): void {
  const { router, auth, db, views } = host;
  router.get(`${basePath}/:type/:id`, auth.admin(minRole), async (req, res) => {
    let subject;
    try {
      subject = await lookupSubject(host, req.params.type, req.params.id);
    } catch (error) {
      const answer = httpAnswer(error);
      if (!answer) throw error;
      res.status(answer.status);
      return views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'not-found.ejs'), { title: 'Not found', message: answer.message });
    }
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
    const capUp = limit?.upKbps ?? 0;
    const capDown = limit?.downKbps ?? 0;
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
      formatBytes,
      formatCaps,
      formatKbps,
      formatRate,
      reasonText,
      canEdit: auth.role(req) === 'admin',
    });
  });
}
