import type { Host } from '../plugin-api.js';
import type { Clock } from '../clock.js';
import { totalsBySubject, usageSeries } from '../accounting/queries.js';
import { inputError } from './errors.js';
import { sendJson } from './json.js';
import { lookupSubject } from './subject-lookup.js';
import { parseRange } from './time-params.js';
import { exportCsv } from './export-csv.js';
import type { QuotaService } from '../quotas/service.js';


/** `GET /api/bandwidth/usage`: totals and a per-hour or per-day series for one subject. */
export function mountUsageApi(host: Host, clock: Clock = Date.now, quotas?: QuotaService): void {
  host.router.get('/api/bandwidth/export.csv', host.auth.api, exportCsv(host, clock, quotas));
  host.router.get('/api/bandwidth/usage', host.auth.api, async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const { step, from, to } = parseRange(query, clock());
    if (query.subject_type === undefined) throw inputError('subject_type', '`subject_type` is required: `peer` or `vm`');
    if (query.subject_id === undefined) throw inputError('subject_id', '`subject_id` is required');
    const subject = await lookupSubject(host, query.subject_type, query.subject_id, { type: 'subject_type', id: 'subject_id', badIdIsInput: true });
    const totals = (await totalsBySubject(host.db, from, to, { subjectType: subject.subjectType, subjectIds: [subject.subjectId] })).get(
      `${subject.subjectType}:${subject.subjectId}`,
    );
    const series = await usageSeries(host.db, subject.subjectType, subject.subjectId, from, to, step);
    sendJson(res, {
      subject_type: subject.subjectType,
      subject_id: Number(subject.subjectId),
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      step,
      totals: { up_bytes: totals?.upBytes ?? 0n, down_bytes: totals?.downBytes ?? 0n },
      series: series.map((point) => ({ start: new Date(point.start).toISOString(), up_bytes: point.upBytes, down_bytes: point.downBytes })),
    });
  });
}
