import type { Knex } from 'knex';
import type { HostRecords } from '../../../src/plugin-api.js';
import { findNetwork, toNetwork, toPeer, toVm } from './db/records.js';

/** The host's records as the plugin contract reads them. */
export function createRecords(db: Knex): HostRecords {
  return {
    network: (id) => findNetwork(db, id),
    async peers(networkId) {
      return (await db('peers').where({ network_id: networkId }).orderBy('id')).map(toPeer);
    },
    async peer(id) {
      const row = await db('peers').where({ id }).first();
      if (!row) return undefined;
      const network = await findNetwork(db, Number(row.network_id));
      return network ? { peer: toPeer(row), network } : undefined;
    },
    async vm(id) {
      const row = await db('vms').where({ id }).first();
      return row ? toVm(row) : undefined;
    },
    async networks() {
      return (await db('networks').orderBy('id')).map(toNetwork);
    },
    // Keyset pages: `id > afterId` walks the primary key, whatever the page.
    async allPeers({ afterId, limit }) {
      return (await db('peers').where('id', '>', afterId).orderBy('id').limit(limit)).map(toPeer);
    },
    async vms({ afterId, limit }) {
      return (await db('vms').where('id', '>', afterId).orderBy('id').limit(limit)).map(toVm);
    },
  };
}
