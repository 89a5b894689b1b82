import type { HostRecords, NetworkRecord, PeerRecord, RecordPage, VmRecord } from '../plugin-api.js';

/** Everything the host holds that a limit can belong to, by id. */
export interface HostSubjects {
  networks: Map<number, NetworkRecord>;
  peers: Map<number, PeerRecord>;
  vms: Map<number, VmRecord>;
}

/**
 * Records per page: 10,000 subjects are one query per table on the host's side.
 * @default 10000
 */
export const HOST_PAGE_SIZE = 10_000;

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

/** Reads every page of one listing; a host that pages wrongly fails here instead of looping or dropping rows. */
async function readAll<R extends { id: number }>(
  what: string,
  list: (page: RecordPage) => Promise<R[]>,
  pageSize: number,
): Promise<Map<number, R>> {
  const found = new Map<number, R>();
  let afterId = 0;
  for (;;) {
    const page: unknown = await list({ afterId, limit: pageSize });
    if (!Array.isArray(page)) throw new TypeError(`host.records.${what}() must resolve to an array, got ${describe(page)}`);
    for (const record of page as R[]) {
      if (!Number.isSafeInteger(record?.id) || record.id <= afterId) {
        throw new TypeError(`host.records.${what}({ afterId: ${afterId} }) must return records with ids above ${afterId} in id order, got id \`${String(record?.id)}\``);
      }
      found.set(record.id, record);
      afterId = record.id;
    }
    if (page.length < pageSize) return found;
  }
}

/**
 * Reads the host's networks, peers and VMs through the contract's listings: one call for the
 * networks and one per {@link HOST_PAGE_SIZE} peers or VMs.
 * @throws {TypeError} naming the listing when the host answers something that is not a page in id order.
 */
export async function readHostSubjects(records: HostRecords, pageSize = HOST_PAGE_SIZE): Promise<HostSubjects> {
  const networks: unknown = await records.networks();
  if (!Array.isArray(networks)) throw new TypeError(`host.records.networks() must resolve to an array, got ${describe(networks)}`);
  return {
    networks: new Map((networks as NetworkRecord[]).map((network) => [network.id, network])),
    peers: await readAll('allPeers', (page) => records.allPeers(page), pageSize),
    vms: await readAll('vms', (page) => records.vms(page), pageSize),
  };
}
