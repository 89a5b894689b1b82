import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostRecords, NetworkRecord, PeerRecord, RecordPage, VmRecord } from '../../../src/plugin-api.js';
import type { LimitRow } from '../../../src/db/limits.js';
import { planResync, touchedInterfaces } from '../../../src/limits/resync-plan.js';
import { readHostSubjects, type HostSubjects } from '../../../src/limits/host-subjects.js';

const network: NetworkRecord = { id: 1, name: 'office', interface: 'wg0', netns: null };
const peerRecord = (id: number, allowed: string[], extra: Partial<PeerRecord> = {}): PeerRecord => ({
  id, network_id: 1, name: `peer-${id}`, public_key: `key-${id}`, allowed_ips: allowed, ...extra,
});
const vmRecord = (id: number, iface: string): VmRecord => ({ id, name: `vm-${id}`, interface: iface, netns: null });

function host(peers: PeerRecord[], vms: VmRecord[] = [], networks: NetworkRecord[] = [network]): HostSubjects {
  return {
    networks: new Map(networks.map((n) => [n.id, n])),
    peers: new Map(peers.map((p) => [p.id, p])),
    vms: new Map(vms.map((v) => [v.id, v])),
  };
}

let nextRowId = 1;
function peerRow(id: number, addresses: string[], caps = { upKbps: 1000, downKbps: 1000 }, extra: Partial<LimitRow> = {}): LimitRow {
  return {
    id: nextRowId++, subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, node: 'local', networkId: '1', interface: 'wg0', netns: null,
    interfaceKind: 'wireguard', addresses, publicKey: `key-${id}`, ...caps, classMinor: 2, status: 'applied', lastError: null,
    reason: null, appliedAt: null, updatedAt: new Date(1_000), ...extra,
  } as LimitRow;
}
function vmRow(id: number, iface: string, caps = { upKbps: 0, downKbps: 3000 }): LimitRow {
  return { ...peerRow(id, [], caps), subjectType: 'vm', name: `vm-${id}`, networkId: null, interface: iface, interfaceKind: 'vm', publicKey: null };
}

describe('planResync', () => {
  test('a row that matches its host record needs nothing, whatever order the host lists the addresses in', () => {
    const rows = [peerRow(1, ['10.0.0.2/32', 'fd00::2/128']), vmRow(7, 'tap7')];
    assert.deepEqual(planResync(rows, host([peerRecord(1, ['fd00::2/128', '10.0.0.2/32'])], [vmRecord(7, 'tap7')])), { gone: [], stale: [] });
  });

  test('rows whose peer or VM the host no longer has are gone, also ids the host could never have', () => {
    const rows = [peerRow(1, ['10.0.0.2/32']), vmRow(7, 'tap7'), { ...peerRow(3, []), subjectId: 'abc' }, peerRow(2, ['10.0.0.3/32'])];
    const plan = planResync(rows, host([peerRecord(2, ['10.0.0.3/32'])]));
    assert.deepEqual(plan.gone.map((row) => `${row.subjectType}:${row.subjectId}`), ['peer:1', 'vm:7', 'peer:abc']);
    assert.deepEqual(plan.stale, []);
  });

  test('a changed copy lists only what changed, keeps the caps, and says whether the kernel must follow', () => {
    const rows = [peerRow(1, ['10.0.0.2/32']), peerRow(2, ['10.0.0.3/32']), vmRow(7, 'tap7')];
    const plan = planResync(rows, host(
      [peerRecord(1, ['10.0.0.9/32']), peerRecord(2, ['10.0.0.3/32'], { name: 'renamed', public_key: 'new-key' })],
      [{ ...vmRecord(7, 'tap8'), netns: 'vms' }],
    ));
    assert.deepEqual(plan.stale.map((s) => [s.row.subjectId, s.old, s.new, s.shapingChanged, s.subject.upKbps, s.subject.downKbps]), [
      ['1', { addresses: ['10.0.0.2/32'] }, { addresses: ['10.0.0.9/32'] }, true, 1000, 1000],
      ['2', { name: 'peer-2', public_key: 'key-2' }, { name: 'renamed', public_key: 'new-key' }, false, 1000, 1000],
      ['7', { interface: 'tap7', netns: null }, { interface: 'tap8', netns: 'vms' }, true, 0, 3000],
    ]);
  });

  test('a peer moved to another network takes that network\'s interface; a peer whose network the host does not list is left alone', () => {
    const lab: NetworkRecord = { id: 2, name: 'lab', interface: 'wg1', netns: 'lab' };
    const plan = planResync(
      [peerRow(1, ['10.0.0.2/32']), peerRow(2, ['10.0.0.3/32'])],
      host([peerRecord(1, ['10.0.0.2/32'], { network_id: 2 }), peerRecord(2, ['10.0.0.3/32'], { network_id: 9 })], [], [network, lab]),
    );
    assert.deepEqual(plan.gone, []);
    assert.deepEqual(plan.stale.map((s) => [s.row.subjectId, s.new]), [['1', { network_id: '2', interface: 'wg1', netns: 'lab' }]]);
  });
});

describe('touchedInterfaces', () => {
  test('the interfaces of dropped limited rows and both ends of a limited move; unlimited rows and renames touch nothing', () => {
    const gone = [peerRow(1, ['10.0.0.2/32']), { ...peerRow(2, ['10.0.0.3/32'], { upKbps: 0, downKbps: 0 }), interface: 'wg5' }];
    const plan = planResync([vmRow(7, 'tap7'), peerRow(3, ['10.0.0.4/32']), peerRow(4, ['10.0.0.5/32'], { upKbps: 0, downKbps: 0 })], host(
      [peerRecord(3, ['10.0.0.4/32'], { name: 'renamed' }), peerRecord(4, ['10.0.0.6/32'])],
      [vmRecord(7, 'tap8')],
    ));
    assert.deepEqual(touchedInterfaces(gone, plan.stale).map((ref) => ref.interface), ['wg0', 'tap7', 'tap8']);
  });
});

/** A host whose listings page over arrays, as a real one pages over its tables. */
function pagedRecords(peers: PeerRecord[], vms: VmRecord[], calls: RecordPage[] = []): HostRecords {
  const page = <R extends { id: number }>(all: R[], { afterId, limit }: RecordPage) => all.filter((r) => r.id > afterId).slice(0, limit);
  return {
    network: async () => undefined, peers: async () => [], peer: async () => undefined, vm: async () => undefined,
    networks: async () => [network],
    allPeers: async (p) => {
      calls.push(p);
      return page(peers, p);
    },
    vms: async (p) => page(vms, p),
  };
}

describe('readHostSubjects', () => {
  test('walks every page in id order and stops at the first short one', async () => {
    const peers = Array.from({ length: 5 }, (_, i) => peerRecord(i * 3 + 1, [`10.0.0.${i + 2}/32`]));
    const calls: RecordPage[] = [];
    const read = await readHostSubjects(pagedRecords(peers, [vmRecord(4, 'tap4')], calls), 2);
    assert.deepEqual([...read.peers.keys()], [1, 4, 7, 10, 13]);
    assert.deepEqual(calls, [{ afterId: 0, limit: 2 }, { afterId: 4, limit: 2 }, { afterId: 10, limit: 2 }]);
    assert.deepEqual([...read.vms.keys()], [4]);
    assert.deepEqual([...read.networks.keys()], [1]);
  });

  test('a listing that is not an array, or pages out of id order, fails naming it instead of dropping limits', async () => {
    const records = pagedRecords([], []);
    await assert.rejects(
      readHostSubjects({ ...records, allPeers: async () => [peerRecord(5, []), peerRecord(3, [])] }),
      /host\.records\.allPeers\(\{ afterId: 5 \}\) must return records with ids above 5 in id order, got id `3`/,
    );
    await assert.rejects(
      readHostSubjects({ ...records, allPeers: async (p) => (p.afterId === 0 ? [peerRecord(1, []), peerRecord(2, [])] : [peerRecord(2, [])]) }, 2),
      /ids above 2 in id order, got id `2`/,
      'a host that ignores afterId would loop forever',
    );
    await assert.rejects(readHostSubjects({ ...records, vms: async () => undefined as unknown as VmRecord[] }), /host\.records\.vms\(\) must resolve to an array, got undefined/);
    await assert.rejects(readHostSubjects({ ...records, networks: async () => null as unknown as NetworkRecord[] }), /host\.records\.networks\(\) must resolve to an array, got null/);
  });
});
