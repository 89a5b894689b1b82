import type { Knex } from 'knex';
import type { NetworkRecord } from '../plugin-api.js';
import { getNetworkCapsMany, NO_NETWORK_CAPS, type NetworkCaps } from '../db/network-caps.js';
import { currentRates, type Rate } from '../accounting/rates.js';
import type { CountOptions } from '../accounting/billing.js';
import { networkUse, type NetworkUse } from '../views/network-use.js';

/** A network's caps (0 = none), with when they were last set (null: never). */
export type NetworkCapsView = Pick<NetworkCaps, 'totalUpKbps' | 'totalDownKbps' | 'defaultUpKbps' | 'defaultDownKbps'> & { updatedAt: Date | null };

/** What the overview and the network caps API show of one network. */
export interface NetworkSummary {
  network: NetworkRecord;
  caps: NetworkCapsView;
  /** Peers of the network the plugin knows. */
  peers: number;
  /** The live rate of all its peers together, against its network cap. */
  use: NetworkUse;
}

/**
 * The caps and fullness of these networks: one read of their caps, one of their peers' rows and
 * their live rates (the collector's, or the last stored ones when another process collects).
 */
export async function networkSummaries(
  db: Knex,
  collector: { rates(): ReadonlyMap<string, Rate> } | null,
  counting: CountOptions,
  networks: NetworkRecord[],
): Promise<NetworkSummary[]> {
  const ids = networks.map((network) => String(network.id));
  const caps = await getNetworkCapsMany(db, ids);
  const peersOf = new Map<string, string[]>();
  for (let i = 0; i < ids.length; i += 500) {
    const rows = (await db('bw_limits').where({ subject_type: 'peer' }).whereIn('network_id', ids.slice(i, i + 500)).select('subject_id', 'network_id')) as { subject_id: unknown; network_id: unknown }[];
    for (const row of rows) {
      const list = peersOf.get(String(row.network_id)) ?? [];
      list.push(String(row.subject_id));
      peersOf.set(String(row.network_id), list);
    }
  }
  const keys = [...peersOf.values()].flat().map((subjectId) => ({ subjectType: 'peer', subjectId }));
  const rates = keys.length === 0 ? new Map<string, Rate>() : await currentRates(db, collector, keys, counting);
  return networks.map((network) => {
    const stored = caps.get(String(network.id));
    const view: NetworkCapsView = stored
      ? { totalUpKbps: stored.totalUpKbps, totalDownKbps: stored.totalDownKbps, defaultUpKbps: stored.defaultUpKbps, defaultDownKbps: stored.defaultDownKbps, updatedAt: stored.updatedAt }
      : { ...NO_NETWORK_CAPS, updatedAt: null };
    const peers = peersOf.get(String(network.id)) ?? [];
    const peerRates = peers.flatMap((id) => {
      const rate = rates.get(`peer:${id}`);
      return rate ? [rate] : [];
    });
    return { network, caps: view, peers: peers.length, use: networkUse(view, peerRates) };
  });
}

/** A network's caps and use as the API answers them (field names as in the host's network bodies). */
export function networkCapsJson(summary: NetworkSummary): Record<string, unknown> {
  const { network, caps, use } = summary;
  return {
    network_id: network.id,
    name: network.name,
    node: network.node ?? null,
    interface: network.interface,
    netns: network.netns,
    bandwidth_total_up_kbps: caps.totalUpKbps,
    bandwidth_total_down_kbps: caps.totalDownKbps,
    bandwidth_default_up_kbps: caps.defaultUpKbps,
    bandwidth_default_down_kbps: caps.defaultDownKbps,
    peers: summary.peers,
    current_up_kbps: use.up.kbps,
    current_down_kbps: use.down.kbps,
    use_up_percent: use.up.percent,
    use_down_percent: use.down.percent,
    updated_at: caps.updatedAt?.toISOString() ?? null,
  };
}
