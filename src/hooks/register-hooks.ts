import { LOCAL_NODE } from '../nodes/node-name.js';
import type { Host, ValidationIssue } from '../plugin-api.js';
import { getLimit, getLimits, isLimited, type LimitRow } from '../db/limits.js';
import type { LimitsService } from '../limits/service.js';
import { bandwidthInput } from './bandwidth-fields.js';
import { peerSubject, vmSubject } from './subjects.js';
import { formatPrefix, parseCidr } from '../shaping/addresses.js';

/** The fields a host's API responses and tables gain for a subject. */
export function bandwidthFields(row: LimitRow | undefined): Record<string, unknown> {
  return {
    bandwidth_up_kbps: row?.upKbps ?? 0,
    bandwidth_down_kbps: row?.downKbps ?? 0,
    bandwidth_status: !row || !isLimited(row) ? 'unlimited' : row.status,
    bandwidth_error: row && isLimited(row) ? row.lastError : null,
    bandwidth_reason: row && isLimited(row) ? row.reason : null,
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

/** Caps from the input, falling back to what is stored for directions the input does not mention. */
function wantedCaps(input: Record<string, unknown>, stored: LimitRow | undefined) {
  const parsed = bandwidthInput(input);
  return {
    issues: parsed.issues,
    caps: { upKbps: parsed.upKbps ?? stored?.upKbps ?? 0, downKbps: parsed.downKbps ?? stored?.downKbps ?? 0 },
  };
}

/**
 * Subscribes the plugin to the host's lifecycle hooks. Every handler is idempotent: running it
 * twice stores the same row and leaves the kernel as it is. A `created`/`updated` handler throws
 * only when the caps could not be stored, and then has written nothing: the host undoes its write
 * and answers an error (docs/integration.md, "When a hook fails"). Caps stored but not applied
 * stay `pending` for the reconcile loop; the handler resolves.
 */
export function registerHooks(host: Host, service: LimitsService): (() => void)[] {
  const { hooks, db } = host;
  const actorName = (actor: { kind: string; name: string }) => (actor.kind === 'api' ? 'api' : actor.name);
  return [
    hooks.on('peer.validate', async ({ input, existing, network }): Promise<ValidationIssue[]> => {
      const stored = existing ? await getLimit(db, 'peer', String(existing.id)) : undefined;
      const { issues, caps } = wantedCaps(input, stored);
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
      await service.set(peerSubject(peer, network, caps), actorName(actor));
    }),
    hooks.on('peer.updated', async ({ peer, network, input, actor }) => {
      const { upKbps, downKbps } = bandwidthInput(input);
      await service.merge(peerSubject(peer, network, { upKbps: 0, downKbps: 0 }), { upKbps, downKbps }, actorName(actor));
    }),
    hooks.on('peer.deleted', async ({ peer, actor }) => {
      await service.remove('peer', String(peer.id), actorName(actor));
    }),
    hooks.on('peer.serialize', async ({ peers }) => {
      const rows = await getLimits(db, 'peer', peers.map((p) => String(p.id)));
      return Object.fromEntries(peers.map((p) => [p.id, bandwidthFields(rows.get(String(p.id)))]));
    }),

    hooks.on('vm.validate', async ({ input, existing }): Promise<ValidationIssue[]> => {
      const stored = existing ? await getLimit(db, 'vm', String(existing.id)) : undefined;
      const { issues, caps } = wantedCaps(input, stored);
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
      await service.set(vmSubject(vm, caps), actorName(actor));
    }),
    hooks.on('vm.updated', async ({ vm, input, actor }) => {
      const { upKbps, downKbps } = bandwidthInput(input);
      await service.merge(vmSubject(vm, { upKbps: 0, downKbps: 0 }), { upKbps, downKbps }, actorName(actor));
    }),
    hooks.on('vm.deleted', async ({ vm, actor }) => {
      await service.remove('vm', String(vm.id), actorName(actor));
    }),
    hooks.on('vm.serialize', async ({ vms }) => {
      const rows = await getLimits(db, 'vm', vms.map((v) => String(v.id)));
      return Object.fromEntries(vms.map((v) => [v.id, bandwidthFields(rows.get(String(v.id)))]));
    }),

    hooks.on('network.created', async ({ network, actor }) => {
      await service.interfaceAppeared(String(network.id), network.interface, network.netns, actorName(actor), network.node ?? LOCAL_NODE);
    }),
    hooks.on('network.deleted', async ({ network, actor }) => {
      await service.interfaceGone(network.interface, network.netns, actorName(actor), network.node ?? LOCAL_NODE);
    }),
  ];
}
