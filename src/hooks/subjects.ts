import type { NetworkRecord, PeerRecord, VmRecord } from '../plugin-api.js';
import type { SubjectLimit } from '../db/limits.js';
import { LOCAL_NODE } from '../nodes/node-name.js';

/** Caps for a subject, with its guarantee and burst where the caller knows them (absent: keep what is stored). */
export type SubjectCaps = Pick<SubjectLimit, 'upKbps' | 'downKbps' | 'minKbps' | 'burstKbps' | 'burstBytes'>;

/** The host record of a network as the network-caps store refers to it. */
export const networkRef = (network: NetworkRecord) => ({ networkId: String(network.id), node: network.node ?? LOCAL_NODE, interface: network.interface, netns: network.netns });

/** A peer as the limits store sees it: matched by its allowed IPs on its network's interface. */
export function peerSubject(peer: PeerRecord, network: NetworkRecord, caps: SubjectCaps): SubjectLimit {
  return {
    subjectType: 'peer',
    subjectId: String(peer.id),
    name: peer.name,
    networkId: String(network.id),
    node: network.node ?? LOCAL_NODE,
    interface: network.interface,
    netns: network.netns,
    interfaceKind: 'wireguard',
    addresses: peer.allowed_ips,
    publicKey: peer.public_key || null,
    ...caps,
  };
}

/** A VM owns its whole tap/veth. */
export function vmSubject(vm: VmRecord, caps: SubjectCaps): SubjectLimit {
  return {
    subjectType: 'vm',
    subjectId: String(vm.id),
    name: vm.name,
    networkId: null,
    node: vm.node ?? LOCAL_NODE,
    interface: vm.interface,
    netns: vm.netns,
    interfaceKind: 'vm',
    addresses: [],
    ...caps,
  };
}
