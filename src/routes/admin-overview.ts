import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Request, Response } from 'express';
import type { Host } from '../plugin-api.js';
import { countLimits, countLimitsByStatus, getLimit, listLimits } from '../db/limits.js';
import { listEvents } from '../db/events.js';
import type { LimitsService } from '../limits/service.js';
import type { Settings } from '../settings.js';
import { bandwidthInput } from '../hooks/bandwidth-fields.js';
import { formatCaps, formatKbps } from '../views/format.js';
import { RouteError } from './errors.js';
import { lastRates, type Collector } from '../accounting/collector.js';
import { totalsBySubject } from '../accounting/queries.js';
import { formatBytes, formatRate } from '../views/format.js';
import { lookupSubject } from './subject-lookup.js';

export const PLUGIN_VIEWS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'views');

export interface ExecutorInfo {
  mode: 'local' | 'recording';
  reason: string;
}

/**
 * `/admin/bandwidth`: cards with the limit counts, every known subject with its caps, status and a
 * set/clear form (works without JavaScript), and the audit log.
 */
export function mountOverview(
  host: Host,
  settings: Settings,
  service: LimitsService,
  collector: Collector | null,
  executor: ExecutorInfo,
  page: { path: string; minRole: 'admin' | 'viewer' },
): void {
  const { router, auth, db, views } = host;

  async function render(req: Request, res: Response, formError: { key: string; message: string } | null = null) {
    const onlyLimited = req.query.all !== '1';
    const filter = onlyLimited ? { limitedOnly: true } : {};
    const counts = await countLimitsByStatus(db);
    const total = await countLimits(db, filter);
    const pages = Math.max(1, Math.ceil(total / settings.page_size));
    const requested = Number(req.query.page ?? 1);
    const current = Number.isInteger(requested) && requested >= 1 ? Math.min(requested, pages) : 1;
    const limits = await listLimits(db, filter, { offset: (current - 1) * settings.page_size, limit: settings.page_size });
    const { events } = await listEvents(db, { offset: 0, limit: 20 });
    const now = Date.now();
    const ids = (type: string) => limits.filter((l) => l.subjectType === type).map((l) => l.subjectId);
    const totals = new Map<string, { day?: { upBytes: bigint; downBytes: bigint }; month?: { upBytes: bigint; downBytes: bigint } }>();
    for (const type of ['peer', 'vm'] as const) {
      if (ids(type).length === 0) continue;
      for (const [range, from] of [['day', now - 86_400_000], ['month', now - 30 * 86_400_000]] as const) {
        for (const [key, total] of await totalsBySubject(db, from, now, { subjectType: type, subjectIds: ids(type) })) {
          totals.set(key, { ...totals.get(key), [range]: total });
        }
      }
    }
    const rates = collector ? collector.rates() : await lastRates(db, limits.map((l) => ({ subjectType: l.subjectType, subjectId: l.subjectId })));
    const lastTick = collector?.lastTick ?? null;
    await views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'overview.ejs'), {
      title: 'Bandwidth',
      counts,
      limits,
      events,
      page: current,
      pages,
      onlyLimited,
      basePath: page.path,
      executor,
      formError,
      formatCaps,
      formatKbps,
      formatBytes,
      formatRate,
      totals,
      rates,
      lastTick,
      accounting: collector !== null,
      canEdit: auth.role(req) === 'admin',
    });
  }

  router.get(page.path, auth.admin(page.minRole), (req, res) => render(req, res));

  router.post(`${page.path}/limits/:type/:id`, auth.admin('admin'), auth.verifyCsrf, async (req, res) => {
    const clear = req.body?.action === 'clear';
    const parsed = clear ? { upKbps: 0, downKbps: 0, issues: [] } : bandwidthInput((req.body ?? {}) as Record<string, unknown>);
    const key = `${String(req.params.type)}:${String(req.params.id)}`;
    const issue = parsed.issues[0];
    if (issue) {
      res.status(400);
      return render(req, res, { key, message: issue.message });
    }
    let subject;
    try {
      subject = await lookupSubject(host, req.params.type, req.params.id);
    } catch (error) {
      if (error instanceof RouteError) {
        res.status(error.status);
        return views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'not-found.ejs'), { title: 'Not found', message: error.message });
      }
      throw error;
    }
    const stored = await getLimit(db, subject.subjectType, subject.subjectId);
    subject.upKbps = parsed.upKbps ?? stored?.upKbps ?? 0;
    subject.downKbps = parsed.downKbps ?? stored?.downKbps ?? 0;
    const problem = (await service.validate(subject))[0];
    if (problem) {
      res.status(400);
      return render(req, res, { key, message: problem.message });
    }
    const { limit } = await service.set(subject, auth.actor(req).name);
    const verdict = limit.status === 'failed' ? ` — the kernel refused: ${limit.lastError ?? ''}` : limit.status === 'pending' ? ` (pending: ${limit.lastError ?? ''})` : '';
    views.flash(req, `${limit.name}: ${formatCaps(limit.upKbps, limit.downKbps)}${verdict}`);
    res.redirect(303, typeof req.body?.return_to === 'string' && req.body.return_to.startsWith(`${page.path}`) ? req.body.return_to : page.path);
  });
}
