import type { Request } from 'express';
import type { Host, SubjectType } from '../plugin-api.js';
import type { Clock } from '../clock.js';
import { countLimits, getLimit, getLimits, listLimits, type LimitRow, type LimitStatus, type SubjectLimit } from '../db/limits.js';
import { listEvents } from '../db/events.js';
import type { LimitsService } from '../limits/service.js';
import { bandwidthFields } from '../hooks/register-hooks.js';
import {
  bandwidthInput, BURST_BYTES_FIELD, BURST_KBPS_FIELD, DEFAULT_DOWN_FIELD, DEFAULT_UP_FIELD, DOWN_FIELD, MIN_FIELD, networkInput, shareInput,
  TOTAL_DOWN_FIELD, TOTAL_UP_FIELD, UP_FIELD,
} from '../hooks/bandwidth-fields.js';
import { inputError, notFound, pageParams, parseId } from './errors.js';
import { NotFoundError } from '../errors.js';
import type { CollectorView as Collector } from '../accounting/collector.js';
import { currentRates } from '../accounting/rates.js';
import type { CountOptions } from '../accounting/billing.js';
import { utilisation } from '../accounting/utilisation.js';
import { DAY_MS } from '../accounting/buckets.js';
import { totalsBySubject } from '../accounting/queries.js';
import { sendJson } from './json.js';
import { effectiveBurst, effectiveCaps } from '../limits/effective.js';
import { lookupSubject } from './subject-lookup.js';
import { LOCAL_NODE } from '../nodes/node-name.js';
import type { NetworkRecord } from '../plugin-api.js';
import { networkCapsJson, networkSummaries } from './network-summary.js';

/** The fields `PUT /api/bandwidth/limits/:type/:id` takes. */
const SUBJECT_FIELDS = [UP_FIELD, DOWN_FIELD, MIN_FIELD, BURST_KBPS_FIELD, BURST_BYTES_FIELD];
/** The fields `PUT /api/bandwidth/networks/:id` takes, named as in the host's network bodies. */
const NETWORK_FIELDS = [TOTAL_UP_FIELD, TOTAL_DOWN_FIELD, DEFAULT_UP_FIELD, DEFAULT_DOWN_FIELD];

/** Refuses a body with a field outside `fields` (naming it), or with none of them. */
function onlyFields(input: Record<string, unknown>, fields: readonly string[]): void {
  const unknown = Object.keys(input).find((key) => !fields.includes(key));
  if (unknown) throw inputError(unknown, `Unknown field \`${unknown.slice(0, 40)}\`: send any of ${fields.join(', ')}`);
  if (Object.keys(input).length === 0) throw inputError('body', `Send any of ${fields.join(', ')}`);
}

/**
 * The caps the kernel holds for the subject and where each comes from (its own cap, its network's
 * default, a quota's throttle), and whether its burst is in force.
 */
function effectiveFields(row: LimitRow) {
  const caps = effectiveCaps(row);
  return {
    default_up_kbps: row.defaultUpKbps,
    default_down_kbps: row.defaultDownKbps,
    effective_up_kbps: caps.upKbps,
    effective_down_kbps: caps.downKbps,
    effective_source: caps.source,
    burst_active: effectiveBurst(row) !== undefined,
    throttle_up_kbps: row.throttleUpKbps,
    throttle_down_kbps: row.throttleDownKbps,
  };
}

/**
 * A subject's stored fields under the names of the host's bodies (the caps in force are answered as
 * `effective_*` here, not as serialize's `bandwidth_effective_*`).
 */
function subjectFields(row: LimitRow) {
  const fields = bandwidthFields(row);
  return {
    bandwidth_up_kbps: fields.bandwidth_up_kbps,
    bandwidth_down_kbps: fields.bandwidth_down_kbps,
    bandwidth_min_kbps: row.minKbps,
    bandwidth_burst_kbps: row.burstKbps,
    bandwidth_burst_bytes: row.burstBytes,
    bandwidth_status: fields.bandwidth_status,
    bandwidth_error: fields.bandwidth_error,
    bandwidth_reason: fields.bandwidth_reason,
  };
}

function limitJson(row: LimitRow) {
  return {
    subject_type: row.subjectType,
    subject_id: row.subjectId,
    name: row.name,
    network_id: row.networkId,
    node: row.node,
    interface: row.interface,
    netns: row.netns,
    addresses: row.addresses,
    ...subjectFields(row),
    ...effectiveFields(row),
    class_id: row.classMinor === null ? null : `1:${row.classMinor.toString(16)}`,
    applied_at: row.appliedAt?.toISOString() ?? null,
    updated_at: row.updatedAt.toISOString(),
  };
}


function body(req: Request): Record<string, unknown> {
  const value: unknown = req.body;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw inputError('body', 'The request body must be a JSON object');
  return value as Record<string, unknown>;
}

/** The plugin's JSON API, behind the host's bearer token. */
export function mountBandwidthApi(host: Host, service: LimitsService, collector: Collector | null, counting: CountOptions, clock: Clock = Date.now): void {
  const { router, auth, db } = host;
  const actor = (req: Request) => auth.actor(req).name;

  /** Caps, status, current rates and 24 h bytes of subjects of one type, keyed by id. */
  async function bandwidthOf(subjectType: 'peer' | 'vm', ids: string[]) {
    const rows = await getLimits(db, subjectType, ids);
    const now = clock();
    const totals = await totalsBySubject(db, now - DAY_MS, now, { subjectType, subjectIds: ids });
    const rates = await currentRates(db, collector, ids.map((subjectId) => ({ subjectType, subjectId })), counting);
    return (id: string) => {
      const row = rows.get(id);
      const fields = bandwidthFields(row);
      const rate = rates.get(`${subjectType}:${id}`);
      const total = totals.get(`${subjectType}:${id}`);
      const effective = effectiveCaps(row ?? { upKbps: 0, downKbps: 0 });
      const use = utilisation(effective, rate);
      return {
        bandwidth_up_kbps: fields.bandwidth_up_kbps,
        bandwidth_down_kbps: fields.bandwidth_down_kbps,
        bandwidth_min_kbps: row?.minKbps ?? 0,
        bandwidth_burst_kbps: row?.burstKbps ?? 0,
        bandwidth_burst_bytes: row?.burstBytes ?? 0,
        effective_up_kbps: effective.upKbps,
        effective_down_kbps: effective.downKbps,
        effective_source: effective.source,
        current_up_kbps: rate?.upKbps ?? 0,
        current_down_kbps: rate?.downKbps ?? 0,
        class_up_kbps: rate?.classUpKbps ?? null,
        class_down_kbps: rate?.classDownKbps ?? null,
        utilisation_percent: use?.percent ?? null,
        utilisation_basis: use?.basis ?? null,
        up_bytes_24h: total?.upBytes ?? 0n,
        down_bytes_24h: total?.downBytes ?? 0n,
        status: fields.bandwidth_status,
        error: fields.bandwidth_error,
        reason: fields.bandwidth_reason,
      };
    };
  }

  router.get('/api/networks/:id/bandwidth', auth.api, async (req, res) => {
    const id = parseId(req.params.id);
    const network = id === undefined ? undefined : await host.records.network(id);
    if (!network) throw notFound('network', String(req.params.id));
    const peers = await host.records.peers(network.id);
    const of = await bandwidthOf('peer', peers.map((p) => String(p.id)));
    sendJson(res, { network_id: network.id, peers: peers.map((peer) => ({ peer_id: peer.id, name: peer.name, ...of(String(peer.id)) })) });
  });

  router.get('/api/vms/:id/bandwidth', auth.api, async (req, res) => {
    const id = parseId(req.params.id);
    const vm = id === undefined ? undefined : await host.records.vm(id);
    if (!vm) throw notFound('VM', String(req.params.id));
    const of = await bandwidthOf('vm', [String(vm.id)]);
    sendJson(res, { vm_id: vm.id, name: vm.name, interface: vm.interface, ...of(String(vm.id)) });
  });

  router.get('/api/bandwidth/limits', auth.api, async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const type = query.subject_type;
    if (type !== undefined && type !== 'peer' && type !== 'vm') throw inputError('subject_type', '`subject_type` must be `peer` or `vm`');
    const status = query.status;
    if (status !== undefined && !['pending', 'applied', 'failed', 'unlimited'].includes(String(status))) {
      throw inputError('status', '`status` must be one of pending, applied, failed, unlimited');
    }
    const networkId = query.network_id;
    if (networkId !== undefined && parseId(networkId) === undefined) throw inputError('network_id', '`network_id` must be a positive integer');
    const { page, perPage, offset } = pageParams(query);
    const filter = {
      ...(type ? { subjectType: type as SubjectType } : {}),
      ...(networkId ? { networkId: String(networkId) } : {}),
      ...(status ? { status: status as LimitStatus | 'unlimited' } : {}),
    };
    const [rows, total] = await Promise.all([listLimits(db, filter, { offset, limit: perPage }), countLimits(db, filter)]);
    res.json({ limits: rows.map(limitJson), total, page, per_page: perPage });
  });

  router.put('/api/bandwidth/limits/:type/:id', auth.api, async (req, res) => {
    const input = body(req);
    onlyFields(input, SUBJECT_FIELDS);
    const caps = bandwidthInput(input);
    const share = shareInput(input);
    const issue = [...caps.issues, ...share.issues][0];
    if (issue) throw inputError(issue.field, issue.message);
    const subject = await lookupSubject(host, req.params.type, req.params.id);
    const changed = await service.change(subject, {
      upKbps: caps.upKbps, downKbps: caps.downKbps, minKbps: share.minKbps, burstKbps: share.burstKbps, burstBytes: share.burstBytes,
    }, actor(req));
    if (changed.issue) throw inputError(changed.issue.field, changed.issue.message);
    res.json({ limit: limitJson(changed.limit) });
  });

  const networkOf = async (req: Request): Promise<NetworkRecord> => {
    const id = parseId(req.params.id);
    const network = id === undefined ? undefined : await host.records.network(id);
    if (!network) throw notFound('network', String(req.params.id));
    return network;
  };
  const answerNetwork = async (res: Parameters<typeof sendJson>[0], network: NetworkRecord) => {
    const [summary] = await networkSummaries(db, collector, counting, [network]);
    sendJson(res, { network: networkCapsJson(summary!) });
  };

  // A network's caps (totals and defaults per peer), for panels without the server-rendered network form.
  router.get('/api/bandwidth/networks/:id', auth.api, async (req, res) => answerNetwork(res, await networkOf(req)));

  router.put('/api/bandwidth/networks/:id', auth.api, async (req, res) => {
    const input = body(req);
    onlyFields(input, NETWORK_FIELDS);
    const parsed = networkInput(input);
    const issue = parsed.issues[0];
    if (issue) throw inputError(issue.field, issue.message);
    const network = await networkOf(req);
    const changed = await service.changeNetworkCaps(
      { networkId: String(network.id), node: network.node ?? LOCAL_NODE, interface: network.interface, netns: network.netns },
      { totalUpKbps: parsed.totalUpKbps, totalDownKbps: parsed.totalDownKbps, defaultUpKbps: parsed.defaultUpKbps, defaultDownKbps: parsed.defaultDownKbps },
      actor(req),
    );
    if (changed.issue) throw inputError(changed.issue.field, changed.issue.message);
    await answerNetwork(res, network);
  });

  router.delete('/api/bandwidth/limits/:type/:id', auth.api, async (req, res) => {
    let subject: SubjectLimit;
    try {
      subject = await lookupSubject(host, req.params.type, req.params.id);
    } catch (error) {
      // A row whose subject the host no longer has (deleted while the plugin was disabled) is
      // removed, with its classes: nothing else could remove it before the next resync.
      const stored = error instanceof NotFoundError ? await getLimit(db, req.params.type as SubjectType, String(req.params.id)) : undefined;
      if (!stored) throw error;
      await service.remove(stored.subjectType, stored.subjectId, actor(req));
      res.json({ limit: null, removed: limitJson(stored) });
      return;
    }
    const { limit } = await service.set(subject, actor(req));
    res.json({ limit: limitJson(limit) });
  });

  router.post('/api/bandwidth/reconcile', auth.api, async (req, res) => {
    const outcomes = await service.reconcileAll(actor(req));
    res.json({
      changed: outcomes.filter((o) => o.operations.length > 0).length,
      dry_run: service.applier.mode === 'recording',
      interfaces: outcomes,
    });
  });

  router.get('/api/bandwidth/events', auth.api, async (req, res) => {
    const query = req.query as Record<string, unknown>;
    const { page, perPage, offset } = pageParams(query);
    const type = query.subject_type;
    if (type !== undefined && type !== 'peer' && type !== 'vm') throw inputError('subject_type', '`subject_type` must be `peer` or `vm`');
    const subjectId = typeof query.subject_id === 'string' ? query.subject_id : undefined;
    const { events, total } = await listEvents(db, {
      offset, limit: perPage, ...(type ? { subjectType: type as SubjectType } : {}), ...(subjectId ? { subjectId } : {}),
    });
    res.json({
      events: events.map((e) => ({
        id: e.id, at: e.at.toISOString(), actor: e.actor, subject_type: e.subjectType, subject_id: e.subjectId,
        action: e.action, old: e.oldValue, new: e.newValue, result: e.result, message: e.message, reason: e.reason,
        repeat_count: e.repeatCount, last_seen_at: e.lastSeenAt.toISOString(),
      })),
      total, page, per_page: perPage,
    });
  });

}
