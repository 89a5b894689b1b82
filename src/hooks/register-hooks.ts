import { LOCAL_NODE } from '../nodes/node-name.js';
import type { Host, NetworkRecord, ValidationIssue } from '../plugin-api.js';
import { getLimit, getLimits, isLimited, type LimitRow } from '../db/limits.js';
import type { LimitsService } from '../limits/service.js';
import { getNetworkCapsMany, type NetworkCaps } from '../db/network-caps.js';
import { effectiveCaps } from '../limits/effective.js';
import { bandwidthInput, mentionsNetworkCaps, networkInput, shareInput } from './bandwidth-fields.js';
import { networkRef, peerSubject, vmSubject } from './subjects.js';
import { formatPrefix, parseCidr } from '../shaping/addresses.js';
import type { QuotaService, QuotaStatus } from '../quotas/service.js';
import { quotaChange } from '../quotas/input.js';
import type { QuotaRow } from '../db/quotas.js';
import type { SubjectType } from '../plugin-api.js';

/**
 * The fields a host's API responses and tables gain for a subject: its own caps, guarantee and
 * burst as stored, and the caps the kernel holds with where each comes from (`own`, the network's
 * `default`, a quota's `throttle`, or `none`).
 */
export function bandwidthFields(row: LimitRow | undefined): Record<string, unknown> {
  const effective = row ? effectiveCaps(row) : { upKbps: 0, downKbps: 0, source: { up: 'none', down: 'none' } };
  return {
    bandwidth_up_kbps: row?.upKbps ?? 0,
    bandwidth_down_kbps: row?.downKbps ?? 0,
    bandwidth_min_kbps: row?.minKbps ?? 0,
    bandwidth_burst_kbps: row?.burstKbps ?? 0,
    bandwidth_burst_bytes: row?.burstBytes ?? 0,
    bandwidth_effective_up_kbps: effective.upKbps,
    bandwidth_effective_down_kbps: effective.downKbps,
    bandwidth_cap_source_up: effective.source.up,
    bandwidth_cap_source_down: effective.source.down,
    // A throttled subject shows `throttled` even when it has no caps of its own.
    bandwidth_status: !row || !isLimited(row) ? 'unlimited' : row.status,
    bandwidth_error: row && isLimited(row) ? row.lastError : null,
    bandwidth_reason: row && isLimited(row) ? row.reason : null,
  };
}

/**
 * The quota fields a host's API responses and forms gain: the subject's own quota settings (null
 * when it has none of its own) and its effective quota's state in the current cycle.
 */
export function quotaFields(own: QuotaRow | undefined, status: QuotaStatus | undefined): Record<string, unknown> {
  return {
    quota_allowance_bytes: own ? own.allowanceBytes.toString() : null,
    quota_counted: own?.counted ?? null,
    quota_cycle_day: own?.cycleDay ?? null,
    quota_time_zone: own?.timeZone ?? null,
    quota_warn_percents: own?.warnPercents ?? null,
    quota_action: own?.action ?? null,
    quota_throttle_up_kbps: own?.throttleUpKbps ?? null,
    quota_throttle_down_kbps: own?.throttleDownKbps ?? null,
    quota_source: status?.source ?? null,
    quota_state: status?.state ?? null,
    quota_used_bytes: status ? status.usedBytes.toString() : null,
    quota_limit_bytes: status ? status.limitBytes.toString() : null,
    quota_cycle_end: status ? new Date(status.cycleEnd).toISOString() : null,
  };
}

/** The fields a host's API responses, tables and forms gain for a network: its caps (0 = none). */
export function networkFields(caps: NetworkCaps | undefined): Record<string, unknown> {
  return {
    bandwidth_total_up_kbps: caps?.totalUpKbps ?? 0,
    bandwidth_total_down_kbps: caps?.totalDownKbps ?? 0,
    bandwidth_default_up_kbps: caps?.defaultUpKbps ?? 0,
    bandwidth_default_down_kbps: caps?.defaultDownKbps ?? 0,
  };
}

/** Trimmed, canonical and de-duplicated CIDRs (a bare address is a host route); unparsable ones stay for the check to name. */
function canonicalAddresses(raw: string[]): string[] {
  const result: string[] = [];
  for (const text of raw.map((value) => value.trim()).filter((value) => value !== '')) {
    let canonical = text;
    try {
      const withPrefix = text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`;
      canonical = formatPrefix(parseCidr(withPrefix));
    } catch {
      // left as typed: the shaping check reports it
    }
    if (!result.includes(canonical)) result.push(canonical);
  }
  return result;
}

/** Caps, guarantee and burst from the input, falling back to what is stored for fields the input does not mention. */
function wantedCaps(input: Record<string, unknown>, stored: LimitRow | undefined) {
  const parsed = bandwidthInput(input);
  const share = shareInput(input);
  return {
    issues: [...parsed.issues, ...share.issues],
    caps: {
      upKbps: parsed.upKbps ?? stored?.upKbps ?? 0,
      downKbps: parsed.downKbps ?? stored?.downKbps ?? 0,
      minKbps: share.minKbps ?? stored?.minKbps ?? 0,
      burstKbps: share.burstKbps ?? stored?.burstKbps ?? 0,
      burstBytes: share.burstBytes ?? stored?.burstBytes ?? 0,
    },
  };
}

/** The fields of an update body: only those it mentions (the others keep their stored values). */
function mentioned(input: Record<string, unknown>) {
  const { upKbps, downKbps } = bandwidthInput(input);
  const { minKbps, burstKbps, burstBytes } = shareInput(input);
  return { upKbps, downKbps, minKbps, burstKbps, burstBytes };
}

/**
 * Subscribes the plugin to the host's lifecycle hooks. Every handler is idempotent: running it
 * twice stores the same row and leaves the kernel as it is. A `created`/`updated` handler throws
 * only when the caps could not be stored, and then has written nothing: the host undoes its write
 * and answers an error (docs/integration.md, "When a hook fails"). Caps stored but not applied
 * stay `pending` for the reconcile loop; the handler resolves.
 */
export function registerHooks(host: Host, service: LimitsService, quotas: QuotaService): (() => void)[] {
  const { hooks, db } = host;
  const actorName = (actor: { kind: string; name: string }) => (actor.kind === 'api' ? 'api' : actor.name);
  /** The quota problems of a body, checked against the subject's own stored quota. */
  const quotaIssues = async (type: SubjectType, id: number | undefined, input: Record<string, unknown>) => {
    const stored = id === undefined ? undefined : await quotas.own({ type, id: String(id) });
    return quotaChange(input, stored).issues;
  };
  /** Stores what a body asks of the subject's own quota (validate has run: the body is valid). */
  const followQuota = async (type: SubjectType, id: number, input: Record<string, unknown>, actor: string) => {
    const target = { type, id: String(id) };
    const { change } = quotaChange(input, await quotas.own(target));
    if (change.kind === 'set') await quotas.put(target, change.settings, actor);
    else if (change.kind === 'remove') await quotas.remove(target, actor);
  };
  /** Stores what a network body asks of its caps (validate has run); throws, writing nothing, when they no longer fit. */
  const followNetworkCaps = async (network: NetworkRecord, input: Record<string, unknown>, actor: string) => {
    const { issues, ...caps } = networkInput(input);
    const result = issues.length > 0 ? { issue: issues[0]! } : await service.changeNetworkCaps(networkRef(network), caps, actor);
    if (result.issue) throw new Error(`the network's caps were not stored: ${result.issue.message}`);
  };
  const serialized = async (type: SubjectType, ids: string[]) => {
    const rows = await getLimits(db, type, ids);
    const statuses = await quotas.statuses(type, ids);
    const own = await quotas.ownOf(type, ids);
    return (id: string) => ({ ...bandwidthFields(rows.get(id)), ...quotaFields(own.get(id), statuses.get(`${type}:${id}`)) });
  };
  return [
    hooks.on('peer.validate', async ({ input, existing, network }): Promise<ValidationIssue[]> => {
      const stored = existing ? await getLimit(db, 'peer', String(existing.id)) : undefined;
      const { issues, caps } = wantedCaps(input, stored);
      issues.push(...(await quotaIssues('peer', existing?.id, input)));
      if (issues.length > 0) return issues;
      // Hosts pass the raw body: a form sends allowed IPs as one comma/space separated string, and
      // a list may hold padding or the same address twice, which the host cleans up before storing.
      const raw = Array.isArray(input.allowed_ips)
        ? (input.allowed_ips as unknown[]).map((value) => String(value))
        : typeof input.allowed_ips === 'string'
          ? input.allowed_ips.split(/[\s,]+/)
          : (existing?.allowed_ips ?? []);
      const allowed = canonicalAddresses(raw);
      const peer = { id: existing?.id ?? 0, network_id: network.id, name: String(input.name ?? existing?.name ?? ''), public_key: '', allowed_ips: allowed };
      return service.validate(peerSubject(peer, network, caps));
    }),
    hooks.on('peer.created', async ({ peer, network, input, actor }) => {
      const { caps } = wantedCaps(input, undefined);
      // The quota first: a failure to store it throws before the caps are written (the host undoes its write).
      await followQuota('peer', peer.id, input, actorName(actor));
      await service.set(peerSubject(peer, network, caps), actorName(actor));
      await quotas.followSubject('peer', String(peer.id), actorName(actor));
    }),
    hooks.on('peer.updated', async ({ peer, network, input, actor }) => {
      await followQuota('peer', peer.id, input, actorName(actor));
      await service.merge(peerSubject(peer, network, { upKbps: 0, downKbps: 0 }), mentioned(input), actorName(actor));
      // A peer moved to another network may inherit another quota.
      await quotas.followSubject('peer', String(peer.id), actorName(actor));
    }),
    hooks.on('peer.deleted', async ({ peer, actor }) => {
      await service.remove('peer', String(peer.id), actorName(actor));
      await quotas.remove({ type: 'peer', id: String(peer.id) }, actorName(actor));
    }),
    hooks.on('peer.serialize', async ({ peers }) => {
      const fields = await serialized('peer', peers.map((p) => String(p.id)));
      return Object.fromEntries(peers.map((p) => [p.id, fields(String(p.id))]));
    }),

    hooks.on('vm.validate', async ({ input, existing }): Promise<ValidationIssue[]> => {
      const stored = existing ? await getLimit(db, 'vm', String(existing.id)) : undefined;
      const { issues, caps } = wantedCaps(input, stored);
      issues.push(...(await quotaIssues('vm', existing?.id, input)));
      if (issues.length > 0) return issues;
      const vm = {
        id: existing?.id ?? -1,
        name: String(input.name ?? existing?.name ?? ''),
        interface: String(input.interface ?? existing?.interface ?? ''),
        netns: (input.netns === undefined ? existing?.netns : (input.netns as string | null) || null) ?? null,
      };
      return service.validate(vmSubject(vm, caps));
    }),
    hooks.on('vm.created', async ({ vm, input, actor }) => {
      const { caps } = wantedCaps(input, undefined);
      await followQuota('vm', vm.id, input, actorName(actor));
      await service.set(vmSubject(vm, caps), actorName(actor));
      await quotas.followSubject('vm', String(vm.id), actorName(actor));
    }),
    hooks.on('vm.updated', async ({ vm, input, actor }) => {
      await followQuota('vm', vm.id, input, actorName(actor));
      await service.merge(vmSubject(vm, { upKbps: 0, downKbps: 0 }), mentioned(input), actorName(actor));
    }),
    hooks.on('vm.deleted', async ({ vm, actor }) => {
      await service.remove('vm', String(vm.id), actorName(actor));
      await quotas.remove({ type: 'vm', id: String(vm.id) }, actorName(actor));
    }),
    hooks.on('vm.serialize', async ({ vms }) => {
      const fields = await serialized('vm', vms.map((v) => String(v.id)));
      return Object.fromEntries(vms.map((v) => [v.id, fields(String(v.id))]));
    }),

    hooks.on('network.validate', async ({ input, existing }): Promise<ValidationIssue[]> => {
      const parsed = networkInput(input);
      if (parsed.issues.length > 0) return parsed.issues;
      const { issues: _none, ...caps } = parsed;
      return service.validateNetworkCaps(existing ? String(existing.id) : null, caps);
    }),
    hooks.on('network.created', async ({ network, input, actor }) => {
      await service.interfaceAppeared(String(network.id), network.interface, network.netns, actorName(actor), network.node ?? LOCAL_NODE);
      if (input && mentionsNetworkCaps(input)) await followNetworkCaps(network, input, actorName(actor));
    }),
    hooks.on('network.updated', async ({ network, input, actor }) => {
      // A moved interface was announced as network.deleted + network.created before this hook.
      if (mentionsNetworkCaps(input)) await followNetworkCaps(network, input, actorName(actor));
    }),
    hooks.on('network.serialize', async ({ networks }) => {
      const caps = await getNetworkCapsMany(db, networks.map((n) => String(n.id)));
      return Object.fromEntries(networks.map((n) => [n.id, networkFields(caps.get(String(n.id)))]));
    }),
    hooks.on('network.deleted', async ({ network, actor }) => {
      await service.interfaceGone(network.interface, network.netns, actorName(actor), network.node ?? LOCAL_NODE);
      // A moved interface is announced as deleted + created: the network's caps go only with the network.
      if (!(await host.records.network(network.id))) await service.forgetNetworkCaps(String(network.id), actorName(actor));
    }),
  ];
}
