/**
 * The quota API, behind the host's bearer token: a subject's, a network's or the plugin-wide
 * default quota (`GET`/`PUT`/`DELETE`), and a subject's manual reset and traffic blocks.
 */
import type { Request, Response } from 'express';
import type { Host, SubjectType } from '../plugin-api.js';
import { quotaJson, type QuotaRow } from '../db/quotas.js';
import { MAX_BYTES, parseBytes, parseQuotaBody } from '../quotas/input.js';
import type { QuotaService, QuotaStatus } from '../quotas/service.js';
import type { QuotaTarget } from '../quotas/rules.js';
import { listDeliveries, type DeliveryRow } from '../quotas/webhooks.js';
import { InputError } from '../errors.js';
import { inputError, notFound, parseId } from './errors.js';
import { sendJson } from './json.js';
import { lookupSubject } from './subject-lookup.js';

/** A subject's quota as the API answers it. */
export function quotaStatusJson(type: SubjectType, id: string, own: QuotaRow | undefined, status: QuotaStatus | null): Record<string, unknown> {
  return {
    subject_type: type,
    subject_id: id,
    source: status?.source ?? null,
    quota: status ? quotaJson(status.settings) : null,
    own: own ? quotaJson(own) : null,
    state: status?.state ?? null,
    used_bytes: status?.usedBytes ?? null,
    up_bytes: status?.upBytes ?? null,
    down_bytes: status?.downBytes ?? null,
    extra_bytes: status?.extraBytes ?? null,
    limit_bytes: status?.limitBytes ?? null,
    remaining_bytes: status?.remainingBytes ?? null,
    used_ratio: status?.ratio ?? null,
    projected_bytes: status?.projectedBytes ?? null,
    throttled: status?.throttled ?? false,
    cycle_start: status ? new Date(status.cycleStart).toISOString() : null,
    cycle_end: status ? new Date(status.cycleEnd).toISOString() : null,
    counted_from: status ? new Date(status.countedFrom).toISOString() : null,
  };
}

const isoOrNull = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A webhook delivery as the API answers it: snake_case and ISO times, like every other answer. */
function deliveryJson(row: DeliveryRow): Record<string, unknown> {
  return {
    id: row.id,
    delivery_id: row.deliveryId,
    event: row.event,
    subject_type: row.subjectType,
    subject_id: row.subjectId,
    url: row.url,
    status: row.status,
    attempts: row.attempts,
    last_status_code: row.lastStatusCode,
    last_error: row.lastError,
    next_attempt_at: isoOrNull(row.nextAttemptAt),
    created_at: isoOrNull(row.createdAt),
    updated_at: isoOrNull(row.updatedAt),
    delivered_at: isoOrNull(row.deliveredAt),
    body: row.body,
  };
}

function settingsBody(req: Request) {
  const parsed = parseQuotaBody(req.body);
  if (parsed.issues) throw new InputError(parsed.issues[0]!.field, parsed.issues.map((issue) => issue.message).join('; '));
  return parsed.settings;
}

function extraBytes(req: Request): bigint {
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw inputError('body', 'The request body must be a JSON object such as {"bytes": 10000000000}');
  const unknown = Object.keys(body).find((key) => key !== 'bytes');
  if (unknown !== undefined) throw inputError(unknown, `\`${unknown.slice(0, 40)}\` is not a field of a traffic block; known: bytes`);
  if (!('bytes' in body)) throw inputError('bytes', '`bytes` is required: the extra bytes for the current cycle');
  const parsed = parseBytes('bytes', (body as Record<string, unknown>).bytes, 1n);
  if (typeof parsed !== 'bigint') throw inputError(parsed.field, parsed.message);
  if (parsed > MAX_BYTES) throw inputError('bytes', `\`bytes\` must be at most ${MAX_BYTES}`);
  return parsed;
}

export function mountQuotaApi(host: Host, quotas: QuotaService): void {
  const { router, auth } = host;
  const actor = (req: Request) => auth.actor(req).name;
  const base = '/api/bandwidth/quotas';

  const subjectOf = async (req: Request) => {
    const subject = await lookupSubject(host, req.params.type, req.params.id);
    return { type: subject.subjectType, id: subject.subjectId };
  };
  const networkOf = async (req: Request): Promise<QuotaTarget> => {
    const id = parseId(req.params.id);
    const network = id === undefined ? undefined : await host.records.network(id);
    if (!network) throw notFound('network', String(req.params.id));
    return { type: 'network', id: String(network.id) };
  };
  const answerSubject = async (res: Response, type: SubjectType, id: string, status = 200) => {
    sendJson(res, quotaStatusJson(type, id, await quotas.own({ type, id }), await quotas.status(type, id)), status);
  };
  const answerTarget = async (res: Response, target: QuotaTarget) => {
    const own = await quotas.own(target);
    sendJson(res, { target: target.type, ...(target.type === 'network' ? { network_id: target.id } : {}), quota: own ? quotaJson(own) : null });
  };

  // The default and networks first: `/quotas/network/7` is not a subject of type `network`.
  router.get(`${base}/default`, auth.api, async (_req, res) => answerTarget(res, { type: 'default', id: '' }));
  router.put(`${base}/default`, auth.api, async (req, res) => {
    const settings = settingsBody(req);
    await quotas.put({ type: 'default', id: '' }, settings, actor(req));
    await answerTarget(res, { type: 'default', id: '' });
  });
  router.delete(`${base}/default`, auth.api, async (req, res) => {
    await quotas.remove({ type: 'default', id: '' }, actor(req));
    res.status(204).end();
  });
  router.get(`${base}/deliveries`, auth.api, async (req, res) => {
    const status = req.query.status;
    if (status !== undefined && status !== 'pending' && status !== 'delivered' && status !== 'failed') throw inputError('status', '`status` must be pending, delivered or failed');
    sendJson(res, { deliveries: (await listDeliveries(host.db, { limit: 100, ...(status ? { status } : {}) })).map(deliveryJson) });
  });
  router.get(`${base}/network/:id`, auth.api, async (req, res) => answerTarget(res, await networkOf(req)));
  router.put(`${base}/network/:id`, auth.api, async (req, res) => {
    const target = await networkOf(req);
    const settings = settingsBody(req);
    await quotas.put(target, settings, actor(req));
    await answerTarget(res, target);
  });
  router.delete(`${base}/network/:id`, auth.api, async (req, res) => {
    await quotas.remove(await networkOf(req), actor(req));
    res.status(204).end();
  });

  router.get(`${base}/:type/:id`, auth.api, async (req, res) => {
    const { type, id } = await subjectOf(req);
    await answerSubject(res, type, id);
  });
  router.put(`${base}/:type/:id`, auth.api, async (req, res) => {
    const { type, id } = await subjectOf(req);
    const settings = settingsBody(req);
    await quotas.put({ type, id }, settings, actor(req));
    await answerSubject(res, type, id);
  });
  router.delete(`${base}/:type/:id`, auth.api, async (req, res) => {
    const { type, id } = await subjectOf(req);
    await quotas.remove({ type, id }, actor(req));
    res.status(204).end();
  });
  router.post(`${base}/:type/:id/reset`, auth.api, async (req, res) => {
    const { type, id } = await subjectOf(req);
    await quotas.reset(type, id, actor(req));
    await answerSubject(res, type, id);
  });
  router.post(`${base}/:type/:id/extra`, auth.api, async (req, res) => {
    const { type, id } = await subjectOf(req);
    const bytes = extraBytes(req);
    // The cycle's blocks are one BIGINT: past 2^63-1 SQLite would store a float and the others fail.
    const held = (await quotas.status(type, id))?.extraBytes ?? 0n;
    if (held + bytes > MAX_BYTES) throw inputError('bytes', `the cycle's traffic blocks would add up to more than ${MAX_BYTES} bytes (it holds ${held})`);
    await quotas.extra(type, id, bytes, actor(req));
    await answerSubject(res, type, id);
  });
}
