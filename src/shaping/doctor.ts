import type { Capabilities } from './probe.js';

const yes = (value: boolean): string => (value ? 'yes' : 'no');

/**
 * Human text for `panel-bandwidth doctor`: what the kernel offers and what the planner will use, and why.
 */
export function formatDoctor(caps: Capabilities): string {
  const lines: string[] = [];
  lines.push(`iproute2: ${caps.iproute2Version ?? 'not found'}`);
  lines.push(`permission: root ${yes(caps.permission.root)}, CAP_NET_ADMIN ${yes(caps.permission.capNetAdmin)}`);
  if (!caps.probed) {
    lines.push(`probe: could not run (${caps.probeError ?? 'unknown reason'}) — run as root or with CAP_NET_ADMIN and CAP_SYS_ADMIN`);
    lines.push('shaping: unavailable');
    return lines.join('\n');
  }
  lines.push(`qdiscs: htb ${yes(caps.qdiscs.htb)}, ingress ${yes(caps.qdiscs.ingress)}, clsact ${yes(caps.qdiscs.clsact)}`);
  lines.push(`leaf qdiscs: fq_codel ${yes(caps.leafQdiscs.fq_codel)}, sfq ${yes(caps.leafQdiscs.sfq)}, pfifo ${yes(caps.leafQdiscs.pfifo)}`);
  lines.push(
    `classifiers: u32 ${yes(caps.classifiers.u32)}, flower ${yes(caps.classifiers.flower)}, matchall ${yes(caps.classifiers.matchall)}, bpf ${yes(caps.classifiers.bpf)}`,
  );
  lines.push(`actions: mirred ${yes(caps.actions.mirred)}; ifb devices ${yes(caps.ifb)}`);
  lines.push(`wireguard: kernel module ${yes(caps.wireguard.kernelModule)}, wireguard-go ${yes(caps.wireguard.wireguardGo)}`);
  lines.push('');
  const leafWhy =
    caps.leaf === 'fq_codel'
      ? 'fq_codel is available: per-flow fairness and low queueing delay inside each cap'
      : caps.leaf === 'sfq'
        ? 'fq_codel is missing; sfq still shares a cap fairly between flows'
        : 'fq_codel and sfq are missing; pfifo (200 packets) is the fallback — one bulk flow can add delay to the others of the same subject';
  lines.push(`leaf qdisc: ${caps.leaf} (${leafWhy})`);
  lines.push(
    `classifier: u32 hash tables keyed on the last address byte (O(1) per packet${caps.classifiers.flower ? '; flower is present but u32 is used everywhere for one code path' : '; flower is not available here'})`,
  );
  const upOk = caps.qdiscs.ingress && caps.actions.mirred && caps.ifb;
  lines.push(`down caps (egress): ${caps.canShape ? 'yes' : 'NO (needs htb, u32 and pfifo)'}`);
  lines.push(`up caps (ingress → IFB): ${caps.canShape && upOk ? 'yes' : 'NO (needs the ingress qdisc, act_mirred and ifb)'}`);
  return lines.join('\n');
}
