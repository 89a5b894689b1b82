import type { Knex } from 'knex';
import type { HostRecords } from '../../../src/plugin-api.js';
import { findNetwork, toPeer, toVm } from './db/records.js';

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
  };
}
