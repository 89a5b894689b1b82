import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Request, Response } from 'express';
import type { Host, SubjectType } from '../plugin-api.js';
import type { Clock } from '../clock.js';
import { countLimitsByStatus, type LimitRow } from '../db/limits.js';
import { countSubjects, listSubjects, QUOTA_FILTERS, SORT_KEYS, type QuotaFilter, type SortKey, type SubjectQuery } from '../db/subject-list.js';
import { listEvents } from '../db/events.js';
import type { LimitsService } from '../limits/service.js';
import type { Settings } from '../settings.js';
import { bandwidthInput, shareInput, type ShareInput } from '../hooks/bandwidth-fields.js';
import { formatBytes, formatCaps, formatKbps, formatRate } from '../views/format.js';
import { outcomeVerdict, reasonText } from '../views/reason.js';
import { eventChange, eventSubject } from '../views/event-change.js';
import { usageText, usedPercent } from '../views/quota.js';
import type { QuotaService, QuotaStatus } from '../quotas/service.js';
import { listDeliveries } from '../quotas/webhooks.js';
import { httpAnswer } from './errors.js';
import { lookupSubject } from './subject-lookup.js';
import type { CollectorView as Collector } from '../accounting/collector.js';
import { currentRates, type Rate } from '../accounting/rates.js';
import { countOptionsOf } from '../accounting/billing.js';
import { utilisation } from '../accounting/utilisation.js';
import { DAY_MS } from '../accounting/buckets.js';
import { grandTotals, totalsBySubject, type Totals } from '../accounting/queries.js';
import { LOCAL_NODE, NODE_NAME } from '../nodes/node-name.js';
import { effectiveCaps } from '../limits/effective.js';
import { networkSummaries } from './network-summary.js';

export const PLUGIN_VIEWS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'views');

export interface ExecutorInfo {
  mode: 'local' | 'recording';
  reason: string;
}

/** The status filter's values, in the order the select lists them. */
export const STATUS_FILTERS: readonly string[] = ['applied', 'pending', 'failed', 'throttled', 'unlimited'];
/** Webhook deliveries the overview lists (newest first). */
const DELIVERIES_SHOWN = 20;

/** The overview's query string, read leniently: an unknown value means "no filter" / the default. */
export function readOverviewQuery(query: Record<string, unknown>): SubjectQuery & { page: number } {
  const text = (name: string) => (typeof query[name] === 'string' ? (query[name] as string) : '');
  const sort = (SORT_KEYS as readonly string[]).includes(text('sort')) ? (text('sort') as SortKey) : 'name';
  const type = text('type');
  const status = text('status');
  const network = text('network');
  const node = text('node');
  const quota = text('quota');
  const page = Number(text('page') || 1);
  return {
    node: NODE_NAME.test(node) ? node : undefined,
    search: text('q').trim().slice(0, 100) || undefined,
    subjectType: type === 'peer' || type === 'vm' ? (type as SubjectType) : undefined,
    networkId: /^\d{1,10}$/.test(network) ? network : undefined,
    status: STATUS_FILTERS.includes(status) ? (status as SubjectQuery['status']) : undefined,
    quota: (QUOTA_FILTERS as readonly string[]).includes(quota) ? (quota as QuotaFilter) : undefined,
    sort,
    order: text('order') === 'desc' ? 'desc' : 'asc',
    page: Number.isInteger(page) && page >= 1 ? page : 1,
  };
}

/**
 * `/admin/bandwidth`: cards (24 h totals, current aggregate rate, limited, failed/pending,
 * collector), each network's caps and how full it is (its peers' live rate against its network
 * cap, per direction), then every subject with caps, live rate, utilisation, 24 h and 30 d totals and
 * status and quota use — sortable by any column, searchable, filterable (by quota state too) and
 * paginated on the server, with an inline set/clear form that works without JavaScript; then the
 * audit log and the quota webhook's delivery log.
 */
export function mountOverview(
  host: Host,
  settings: Settings,
  service: LimitsService,
  quotas: QuotaService,
  collector: Collector | null,
  executor: ExecutorInfo,
  page: { path: string; minRole: 'admin' | 'viewer' },
  clock: Clock = Date.now,
): void {
  const { router, auth, db, views } = host;

  const ratesFor = (rows: LimitRow[]): Promise<ReadonlyMap<string, Rate>> =>
    currentRates(db, collector, rows.map((l) => ({ subjectType: l.subjectType, subjectId: l.subjectId })), countOptionsOf(settings));

  async function totalsFor(rows: LimitRow[], from: number, to: number): Promise<Map<string, Totals>> {
    const result = new Map<string, Totals>();
    for (const type of ['peer', 'vm'] as const) {
      const ids = rows.filter((l) => l.subjectType === type).map((l) => l.subjectId);
      if (ids.length === 0) continue;
      const subjectIds = rows.length > 500 ? undefined : ids;
      for (const [key, total] of await totalsBySubject(db, from, to, { subjectType: type, ...(subjectIds ? { subjectIds } : {}) })) {
        result.set(key, total);
      }
    }
    return result;
  }

  async function render(
    req: Request,
    res: Response,
    formError: { key: string; message: string } | null = null,
    queryText: Record<string, unknown> = req.query as Record<string, unknown>,
  ) {
    const now = clock();
    const query = { ...readOverviewQuery(queryText), at: now };
    const total = await countSubjects(db, query);
    const pages = Math.max(1, Math.ceil(total / settings.page_size));
    const current = Math.min(query.page, pages);
    const rank = async (rows: LimitRow[]): Promise<Map<string, number>> => {
      const ranks = new Map<string, number>();
      if (query.sort === 'usage_24h' || query.sort === 'usage_30d') {
        const totals = await totalsFor(rows, now - (query.sort === 'usage_24h' ? 1 : 30) * DAY_MS, now);
        for (const [key, t] of totals) ranks.set(key, Number(t.upBytes + t.downBytes));
      } else {
        const rates = await ratesFor(rows);
        for (const row of rows) {
          const key = `${row.subjectType}:${row.subjectId}`;
          const rate = rates.get(key);
          ranks.set(key, query.sort === 'rate' ? (rate?.upKbps ?? 0) + (rate?.downKbps ?? 0) : (utilisation(effectiveCaps(row), rate)?.percent ?? -1));
        }
      }
      return ranks;
    };
    const limits = await listSubjects(db, query, { offset: (current - 1) * settings.page_size, limit: settings.page_size }, rank);
    const [counts, overWarning, day, dayTotals, monthTotals, rates, events, quotaStatuses, deliveries] = await Promise.all([
      countLimitsByStatus(db),
      countSubjects(db, { sort: 'name', order: 'asc', quota: 'over_warning', at: now }),
      grandTotals(db, now - DAY_MS, now),
      totalsFor(limits, now - DAY_MS, now),
      totalsFor(limits, now - 30 * DAY_MS, now),
      ratesFor(limits),
      listEvents(db, { offset: 0, limit: 20 }),
      quotaStatusesOf(quotas, limits),
      listDeliveries(db, { limit: DELIVERIES_SHOWN }),
    ]);
    let aggregateUp = 0;
    let aggregateDown = 0;
    for (const rate of (collector ? collector.rates() : rates).values()) {
      aggregateUp += rate.upKbps;
      aggregateDown += rate.downKbps;
    }
    const networks = (await db('bw_limits').whereNotNull('network_id').distinct('network_id', 'interface').orderBy('interface')) as { network_id: string; interface: string }[];
    const networkRows = await networkSummaries(db, collector, countOptionsOf(settings), await host.records.networks());
    // The node column and filter appear once there is more than the panel's own machine.
    const nodeNames = new Set<string>([
      LOCAL_NODE,
      ...((await db('bw_limits').distinct('node')) as { node: string }[]).map((row) => String(row.node)),
      ...((await db('bw_agents').pluck('name')) as string[]).map(String),
    ]);
    const nodes = [LOCAL_NODE, ...[...nodeNames].filter((name) => name !== LOCAL_NODE).sort()];
    const link = (change: Record<string, string | number | undefined>) => {
      const params = new URLSearchParams();
      const merged: Record<string, string | number | undefined> = {
        q: query.search, type: query.subjectType, node: query.node, network: query.networkId, status: query.status, quota: query.quota,
        sort: query.sort === 'name' ? undefined : query.sort, order: query.order === 'asc' ? undefined : query.order, page: current === 1 ? undefined : current,
        ...change,
      };
      for (const [key, value] of Object.entries(merged)) if (value !== undefined && value !== '') params.set(key, String(value));
      const text = params.toString();
      return text ? `${page.path}?${text}` : page.path;
    };
    await views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'overview.ejs'), {
      title: 'Bandwidth',
      query,
      counts,
      overWarning,
      statusFilters: STATUS_FILTERS,
      day,
      aggregate: { upKbps: aggregateUp, downKbps: aggregateDown },
      limits,
      total,
      dayTotals,
      monthTotals,
      rates,
      events: events.events,
      quotaStatuses,
      deliveries,
      networks,
      networkRows,
      nodes,
      showNodes: nodes.length > 1 || (query.node !== undefined && query.node !== LOCAL_NODE),
      page: current,
      pages,
      link,
      basePath: page.path,
      executor,
      formError,
      lastTick: collector?.lastTick ?? null,
      accounting: collector !== null,
      utilisation,
      effectiveCaps,
      formatCaps,
      formatKbps,
      formatBytes,
      formatRate,
      reasonText,
      eventChange,
      eventSubject,
      usageText,
      usedPercent,
      canEdit: auth.role(req) === 'admin',
    });
  }

  router.get(page.path, auth.admin(page.minRole), (req, res) => render(req, res));

  router.post(`${page.path}/limits/:type/:id`, auth.admin('admin'), auth.verifyCsrf, async (req, res) => {
    const clear = req.body?.action === 'clear';
    const input = (req.body ?? {}) as Record<string, unknown>;
    // Clear takes the burst with the caps (a burst needs a cap to burst above); the guarantee stays.
    const caps = clear ? { upKbps: 0, downKbps: 0, issues: [] } : bandwidthInput(input);
    const share: ShareInput = clear ? { burstKbps: 0, burstBytes: 0, issues: [] } : shareInput(input);
    const parsed = { ...caps, ...share, issues: [...caps.issues, ...share.issues] };
    const key = `${String(req.params.type)}:${String(req.params.id)}`;
    const back = typeof req.body?.return_to === 'string' && req.body.return_to.startsWith(page.path) && !req.body.return_to.startsWith('//')
      ? (req.body.return_to as string)
      : page.path;
    const issue = parsed.issues[0];
    const refuse = async (message: string) => {
      res.status(400);
      if (back.startsWith(`${page.path}/${String(req.params.type)}/`)) {
        views.flash(req, message);
        return res.redirect(303, back);
      }
      // Show the page the form came from (its page and filters are in return_to), with the message on its row.
      const from = Object.fromEntries(new URL(back, 'http://panel.invalid').searchParams);
      return render(req, res, { key, message }, from);
    };
    if (issue) return refuse(issue.message);
    let subject;
    try {
      subject = await lookupSubject(host, req.params.type, req.params.id);
    } catch (error) {
      const answer = httpAnswer(error);
      if (answer) {
        res.status(answer.status);
        return views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'not-found.ejs'), { title: 'Not found', message: answer.message });
      }
      throw error;
    }
    const changed = await service.change(subject, {
      upKbps: parsed.upKbps, downKbps: parsed.downKbps, minKbps: parsed.minKbps, burstKbps: parsed.burstKbps, burstBytes: parsed.burstBytes,
    }, auth.actor(req).name);
    if (changed.issue) return refuse(changed.issue.message);
    const { limit } = changed;
    views.flash(req, `${limit.name}: ${formatCaps(limit.upKbps, limit.downKbps)}${outcomeVerdict(limit)}`);
    res.redirect(303, back);
  });
}

/** The quota status of each listed subject, by subject key (subjects without a quota are absent). */
async function quotaStatusesOf(quotas: QuotaService, rows: LimitRow[]): Promise<Map<string, QuotaStatus>> {
  const result = new Map<string, QuotaStatus>();
  for (const type of ['peer', 'vm'] as const) {
    const ids = rows.filter((row) => row.subjectType === type).map((row) => row.subjectId);
    for (const [key, status] of await quotas.statuses(type, ids)) result.set(key, status);
  }
  return result;
}
