/**
 * The model of the kernel model test: what the panel should hold (networks with their network caps
 * and default caps, peers with their address sets, caps, guarantees and bursts, VMs on their taps
 * with caps and bursts), the commands that change it through the panel's HTTP API (one by one or in
 * concurrent bursts; a request the panel must refuse — a guarantee above the network cap, a burst
 * not above the cap, a default above the network cap — is sent too and must get a 400 naming the
 * field, changing nothing), hand flushes of the kernel and explicit reconciles. Every command ends by
 * comparing the database with the model and the kernel with the database (kernel-model-check.ts).
 */
import fc from 'fast-check';

import { networkShapeIssues, subjectShapeIssues } from '../../src/limits/cap-rules.js';
import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readActual } from '../../src/shaping/read.js';
import { contains, parseCidr, seededRandom } from './kernel-model-addresses.js';
import {
  describeWorld,
  readLimits,
  signatures,
  verify,
  type ExpectedSubject,
  type InterfaceTotals,
  type VerifyContext,
} from './kernel-model-check.js';
import { expectStatus, type ModelLab } from './kernel-model-lab.js';
import type { ApiResponse } from './lab-panel.js';

/** Peer slots (each with two address sets), VM slots and the VMs' taps. */
export const PEER_SLOTS = 22;
export const VM_SLOTS = 3;
export const TAPS = 4;
export const NETWORKS = 2;

/**
 * The allowed IPs of a peer slot in one of its two variants. Slots never overlap each other, so any
 * peer can sit next to any other; together they mix single IPv4 and IPv6 hosts, several addresses,
 * routed /16, /24 and /64 prefixes, and last bytes shared across slots (the u32 hash key).
 */
export function addressesOf(slot: number, variant: number): string[] {
  const h = (n: number) => n.toString(16);
  const v = variant;
  switch (slot % 8) {
    case 0: return [`10.80.${v}.${slot + 10}/32`];
    case 1: return [`fd00:80:${v}::${h(slot + 10)}/128`];
    case 2: return v === 0 ? [`10.82.0.${slot}/32`, `fd00:82::${h(slot)}/128`, `10.82.1.${slot}/32`] : [`10.82.2.${slot}/32`];
    case 3: return v === 0 ? [`10.83.${slot}.0/24`, `10.80.2.${slot + 10}/32`] : [`10.83.${100 + slot}.0/24`];
    case 4: return v === 0 ? [`10.${100 + slot}.0.0/16`] : [`10.${150 + slot}.0.0/16`, `fd00:84::${h(slot)}/128`];
    case 5: return v === 0 ? [`fd00:85:${h(slot)}::/64`, `fd00:80:2::${h(slot)}/128`] : [`fd00:85:${h(slot + 100)}::/64`];
    case 6: return v === 0
      ? [`10.86.${slot}.1/32`, `10.87.${slot}.0/24`, `fd00:86:${h(slot)}::/64`, `fd00:86::${h(slot)}/128`, `10.${200 + slot}.0.0/16`]
      : [`10.86.${slot}.2/32`, `fd00:86:${h(slot)}::1/128`];
    default: return v === 0 ? [`10.89.${slot}.10/32`, `10.89.${slot}.11/32`] : [`10.89.${slot}.12/32`, `fd00:89::${h(slot)}:a/128`];
  }
}

/** Throws when two slots' addresses overlap (the host would refuse the second peer). */
export function assertSlotsDisjoint(): void {
  const all = Array.from({ length: PEER_SLOTS }, (_, slot) => [0, 1].flatMap((v) => addressesOf(slot, v).map((text) => ({ slot, cidr: parseCidr(text) })))).flat();
  for (const a of all) {
    for (const b of all) {
      if (a.slot === b.slot) continue;
      if (contains(a.cidr, b.cidr.family, b.cidr.bytes) || contains(b.cidr, a.cidr.family, a.cidr.bytes)) {
        throw new Error(`slot ${a.slot} ${a.cidr.text} overlaps slot ${b.slot} ${b.cidr.text}`);
      }
    }
  }
}

/** The network slot a peer slot belongs to. */
export const networkOf = (slot: number): number => slot % NETWORKS;

/** A subject's guarantee and burst (kbit/s, bytes; 0 = none). */
export interface Share {
  min: number;
  burstKbps: number;
  burstBytes: number;
}

const NO_SHARE: Share = { min: 0, burstKbps: 0, burstBytes: 0 };

export interface ModelPeer extends Share {
  id: number;
  variant: number;
  up: number;
  down: number;
}

export interface ModelVm extends Share {
  id: number;
  tap: number;
  up: number;
  down: number;
}

/** A network's caps: the network caps (totals) and the default caps of its peers (kbit/s, 0 = none). */
export interface NetCaps {
  totalUp: number;
  totalDown: number;
  defaultUp: number;
  defaultDown: number;
}

const NO_NET_CAPS: NetCaps = { totalUp: 0, totalDown: 0, defaultUp: 0, defaultDown: 0 };

/** What the panel should hold. */
export interface Model {
  /** Network id per network slot, or null when the slot's network does not exist. */
  networks: (number | null)[];
  /** Network caps per network slot. */
  netCaps: NetCaps[];
  peers: Map<number, ModelPeer>;
  vms: Map<number, ModelVm>;
  /** Interfaces flushed by hand since the last reconcile: their kernel state is not checked until then. */
  dirty: Set<string>;
  /** Past this time (epoch ms) no command applies any more: the run ends within the test's time budget. */
  stopAt: number;
}

/** The system under test and the run's bookkeeping. */
export interface Real {
  world: ModelLab;
  /** Seed of this round (the probes derive from it and the step number). */
  seed: number;
  /** Steps executed in this round so far. */
  step: number;
  /** Shared across rounds: steps executed in total, and where the time went (ms). */
  counter: StepCounter;
  /** Each interface's cheap signature after the previous step. */
  signatures: Map<string, string>;
  /** What this run did, one line per step (with the tc commands of hand flushes). */
  trail: string[];
  /** Interfaces a failed check was about (for {@link describeFailure}). */
  involved: string[];
}

export type ModelCommand = fc.AsyncCommand<Model, Real>;

/** Steps run so far and the milliseconds spent acting (API, tc by hand), checking in full, and sweeping. */
export interface StepCounter {
  steps: number;
  actMs: number;
  checkMs: number;
  sweepMs: number;
  /** End of the previous step (or of the run's start). */
  mark: number;
  /** Steps by command (`createPeer`, `burst`, `handFlush` that flushed something, …). */
  kinds: Record<string, number>;
}

/** A counter at zero. */
export const newCounter = (): StepCounter => ({ steps: 0, actMs: 0, checkMs: 0, sweepMs: 0, mark: Date.now(), kinds: {} });

/** Caps in kbit/s: often 0 (unlimited), mostly any rate up to 1 Gbit/s, sometimes a round value. */
export const kbpsArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 1_000_000 }) },
  { weight: 2, arbitrary: fc.constantFrom(1000, 1234, 8000, 100_000) },
);

/** A change of caps naming one direction or both. */
export interface CapChange {
  up?: number;
  down?: number;
}

export const capChangeArb: fc.Arbitrary<CapChange> = fc
  .record({ up: kbpsArb, down: kbpsArb }, { requiredKeys: [] })
  .filter((c) => c.up !== undefined || c.down !== undefined);

const capBody = (c: CapChange): Record<string, number> => ({
  ...(c.up === undefined ? {} : { bandwidth_up_kbps: c.up }),
  ...(c.down === undefined ? {} : { bandwidth_down_kbps: c.down }),
});
const capText = (c: CapChange): string => [c.up === undefined ? '' : `up=${c.up}`, c.down === undefined ? '' : `down=${c.down}`].filter(Boolean).join(' ');
const key = (n: number): string => Buffer.alloc(32, (n % 250) + 1).toString('base64');

/** A change of a subject's guarantee and burst, naming any of them. */
export type ShareChange = Partial<Share>;

const shareBody = (c: ShareChange): Record<string, number> => ({
  ...(c.min === undefined ? {} : { bandwidth_min_kbps: c.min }),
  ...(c.burstKbps === undefined ? {} : { bandwidth_burst_kbps: c.burstKbps }),
  ...(c.burstBytes === undefined ? {} : { bandwidth_burst_bytes: c.burstBytes }),
});
const shareText = (c: ShareChange): string =>
  [c.min === undefined ? '' : `min=${c.min}`, c.burstKbps === undefined ? '' : `burst=${c.burstKbps}`, c.burstBytes === undefined ? '' : `bytes=${c.burstBytes}`].filter(Boolean).join(' ');

const netCapsBody = (c: Partial<NetCaps>): Record<string, number> => ({
  ...(c.totalUp === undefined ? {} : { bandwidth_total_up_kbps: c.totalUp }),
  ...(c.totalDown === undefined ? {} : { bandwidth_total_down_kbps: c.totalDown }),
  ...(c.defaultUp === undefined ? {} : { bandwidth_default_up_kbps: c.defaultUp }),
  ...(c.defaultDown === undefined ? {} : { bandwidth_default_down_kbps: c.defaultDown }),
});
const netCapsText = (c: Partial<NetCaps>): string => Object.entries(c).map(([k, v]) => `${k}=${String(v)}`).join(' ');

/**
 * The field the panel must name when it refuses a subject in this state (its caps, guarantee and
 * burst as they would be stored, under its network's caps), or null when it must accept it. The
 * rules are the plugin's own (src/limits/cap-rules.ts): the test checks that the API applies them
 * and that what it accepts reaches the kernel, not the rules themselves.
 */
function refusalOf(subject: { up: number; down: number } & Share, network: NetCaps | null, before?: { up: number; down: number } & Share): string | null {
  const n = network ?? NO_NET_CAPS;
  const issuesOf = (s: { up: number; down: number } & Share) => subjectShapeIssues(
    { upKbps: s.up, downKbps: s.down, minKbps: s.min, burstKbps: s.burstKbps, burstBytes: s.burstBytes },
    { totalUpKbps: n.totalUp, totalDownKbps: n.totalDown, defaultUpKbps: n.defaultUp, defaultDownKbps: n.defaultDown },
  );
  // A problem the stored subject already had, in a field the edit leaves as it was, is not the
  // edit's: the panel accepts it (LimitsService.validate).
  const stored = new Set(before ? issuesOf(before).map((issue) => issue.field) : []);
  const value = (s: Share, field: string) => (field === 'bandwidth_min_kbps' ? s.min : field === 'bandwidth_burst_kbps' ? s.burstKbps : field === 'bandwidth_burst_bytes' ? s.burstBytes : undefined);
  const issues = issuesOf(subject).filter((issue) => !(before && stored.has(issue.field) && value(subject, issue.field) === value(before, issue.field)));
  return issues[0]?.field ?? null;
}

// ---------------------------------------------------------------- what the world should look like

export function wireguardOf(r: Real, net: number): string {
  return r.world.wireguard[net]!;
}

function expectedSubjects(m: Model, r: Real): ExpectedSubject[] {
  const peers = [...m.peers].map(([slot, p]): ExpectedSubject => {
    const net = m.netCaps[networkOf(slot)] ?? NO_NET_CAPS;
    return {
      type: 'peer', id: p.id, interface: wireguardOf(r, networkOf(slot)), addresses: addressesOf(slot, p.variant), up: p.up, down: p.down,
      min: p.min, burstKbps: p.burstKbps, burstBytes: p.burstBytes, defaultUp: net.defaultUp, defaultDown: net.defaultDown,
    };
  });
  const vms = [...m.vms.values()].map((v): ExpectedSubject => ({
    type: 'vm', id: v.id, interface: r.world.taps[v.tap]!, addresses: [], up: v.up, down: v.down, min: v.min, burstKbps: v.burstKbps, burstBytes: v.burstBytes,
  }));
  return [...peers, ...vms];
}

/** The network caps of each existing network's interface. */
function expectedTotals(m: Model, r: Real): Map<string, InterfaceTotals> {
  const totals = new Map<string, InterfaceTotals>();
  m.networks.forEach((id, net) => {
    const caps = m.netCaps[net] ?? NO_NET_CAPS;
    if (id !== null) totals.set(wireguardOf(r, net), { up: caps.totalUp, down: caps.totalDown });
  });
  return totals;
}

const allInterfaces = (r: Real): { name: string; kind: 'wireguard' | 'vm' }[] => [
  ...r.world.wireguard.map((name) => ({ name, kind: 'wireguard' as const })),
  ...r.world.taps.map((name) => ({ name, kind: 'vm' as const })),
];

/**
 * Ends a step: counts it, then compares. Interfaces the step touched are read in full (unless flushed
 * by hand since the last reconcile); every other one must look exactly as after the previous step.
 */
export async function settle(m: Model, r: Real, what: string, touched: string[]): Promise<void> {
  const t0 = Date.now();
  r.step += 1;
  r.counter.steps += 1;
  r.counter.actMs += t0 - r.counter.mark;
  const kind = /^[a-zA-Z]+/.exec(what)?.[0] ?? '?';
  const flushed = kind === 'handFlush' && !what.includes('nothing to flush') && what.includes(' ok');
  const label = kind === 'handFlush' ? (flushed ? 'handFlush' : 'handFlush(no-op)') : `${kind}${what.includes(' refused (') ? '(refused)' : ''}`;
  r.counter.kinds[label] = (r.counter.kinds[label] ?? 0) + 1;
  r.trail.push(`#${r.step} ${what}`);
  const interfaces = allInterfaces(r);
  const deep = interfaces.filter((i) => touched.includes(i.name) && !m.dirty.has(i.name));
  const ctx: VerifyContext = {
    panel: r.world.panel, executor: r.world.lab.executor, netns: r.world.ns,
    interfaces: deep, expected: expectedSubjects(m, r), totals: expectedTotals(m, r), next: seededRandom(r.seed * 7919 + r.step),
  };
  const { problems } = await verify(ctx);
  const t1 = Date.now();
  r.counter.checkMs += t1 - t0;
  const now = await signatures(r.world.lab.executor, r.world.ns, interfaces.map((i) => i.name));
  for (const { name } of interfaces) {
    if (touched.includes(name) || m.dirty.has(name)) continue;
    const before = r.signatures.get(name);
    if (before !== undefined && before !== now.get(name)) problems.push(`kernel: ${name} changed although step #${r.step} did not touch it:\n    before ${before}\n    after  ${now.get(name)}`);
  }
  r.signatures = now;
  // How often a burst was in force somewhere (a tbf leaf), for the run's summary.
  if ([...now.values()].some((signature) => signature.includes('tbf '))) r.counter.kinds['(a tbf leaf in the kernel)'] = (r.counter.kinds['(a tbf leaf in the kernel)'] ?? 0) + 1;
  r.counter.sweepMs += Date.now() - t1;
  r.counter.mark = Date.now();
  if (problems.length > 0) {
    const shown = problems.slice(0, 40).map((p) => (p.length > 600 ? `${p.slice(0, 600)}…` : p));
    r.involved = [...new Set([...touched, ...problems.flatMap((p) => interfaces.filter((i) => p.includes(i.name)).map((i) => i.name))])];
    throw new Error(`step #${r.step} (${what}) left the panel and the kernel out of step:\n  ${shown.join('\n  ')}${problems.length > 40 ? `\n  … ${problems.length - 40} more` : ''}`);
  }
}

/**
 * The whole state after a failed step, for the message of the final replay: the run's steps, then
 * expectations, stored limits, recent events, the kernel (tc as text), the engine's plan and the
 * panel's last log lines. Slow (it starts the CLI), so not done while shrinking.
 */
export async function describeFailure(m: Model, r: Real): Promise<string> {
  const interfaces = allInterfaces(r);
  const ctx: VerifyContext = {
    panel: r.world.panel, executor: r.world.lab.executor, netns: r.world.ns, interfaces, expected: expectedSubjects(m, r), totals: expectedTotals(m, r), next: seededRandom(1),
  };
  const limits = await readLimits(r.world.panel, 0);
  const involved = r.involved.length > 0 ? r.involved : interfaces.map((i) => i.name);
  return `=== this run's steps\n${r.trail.join('\n')}\n=== hand-flushed since the last reconcile: ${[...m.dirty].join(', ') || 'none'}\n${await describeWorld(ctx, limits, involved)}`;
}

/**
 * Asserts an answer's status and, for a subject, that the panel does not report it failed.
 * @param field - for a refusal (400), the field its message must name.
 */
function expectAnswer(response: ApiResponse, status: number, what: string, field?: string | null): void {
  expectStatus(response, status, what);
  if (status === 400 && field && !response.text.includes(field)) throw new Error(`${what}: refused without naming \`${field}\`: ${response.text.slice(0, 400)}`);
  const subject = response.body?.peer ?? response.body?.vm ?? response.body?.limit;
  if (subject && subject.bandwidth_status === 'failed') throw new Error(`${what}: answered failed: ${String(subject.bandwidth_error)}`);
}

// ---------------------------------------------------------------- reset between runs

/**
 * Deletes every VM and network through the API and checks that nothing of the engine's is left. A
 * leftover here is a finding of its own (returned, not thrown: the run that fails next would be
 * blamed for it); the kernel is then cleaned by hand so the next run starts from nothing.
 */
export async function resetWorld(world: ModelLab): Promise<string[]> {
  const { panel } = world;
  const findings: string[] = [];
  const vms = (await panel.get('/api/vms')).body.vms as { id: number }[];
  const networks = (await panel.get('/api/networks')).body.networks as { id: number }[];
  // Each on its own interface: in parallel.
  await Promise.all([
    ...vms.map(async (vm) => expectStatus(await panel.delete(`/api/vms/${vm.id}`), 204, `reset: DELETE /api/vms/${vm.id}`)),
    ...networks.map(async (n) => expectStatus(await panel.delete(`/api/networks/${n.id}`), 204, `reset: DELETE /api/networks/${n.id}`)),
  ]);
  const limits = await readLimits(panel);
  if (limits.length > 0) findings.push(`reset: limit rows outlive their subjects: ${JSON.stringify(limits.map((l) => `${l.subject_type}:${l.subject_id}`))}`);
  // One look at every interface at once: an engine root, an ingress qdisc or an IFB is a leftover.
  const executor = world.lab.executor;
  const interfaces = [...world.wireguard, ...world.taps];
  const now = await signatures(executor, world.ns, interfaces);
  for (const ifname of interfaces) {
    const signature = now.get(ifname) ?? '';
    if (!/htb 1: root|ingress ffff:|ifb ifb-[0-9a-f]+[+-]/.test(signature)) continue;
    findings.push(`reset: after deleting every network and VM, ${signature}`);
    await executor.run(['tc', 'qdisc', 'del', 'dev', ifname, 'root'], { netns: world.ns }).catch(() => undefined);
    await executor.run(['tc', 'qdisc', 'del', 'dev', ifname, 'ingress'], { netns: world.ns }).catch(() => undefined);
    await executor.run(['ip', 'link', 'del', 'dev', ifbNameFor(ifname, world.ns)], { netns: world.ns }).catch(() => undefined);
  }
  return findings;
}

// ---------------------------------------------------------------- networks

class CreateNetwork implements ModelCommand {
  constructor(readonly net: number) {}
  check = (m: Readonly<Model>) => m.networks[this.net] === null;
  async run(m: Model, r: Real): Promise<void> {
    const ifname = wireguardOf(r, this.net);
    const response = await r.world.panel.post('/api/networks', { name: `net-${this.net}`, interface: ifname, netns: r.world.ns });
    expectAnswer(response, 201, this.toString());
    m.networks[this.net] = response.body.network.id as number;
    m.netCaps[this.net] = { ...NO_NET_CAPS };
    await settle(m, r, this.toString(), [ifname]);
  }
  toString = () => `createNetwork(n${this.net})`;
}

class DeleteNetwork implements ModelCommand {
  /** `replant`: create it again at once and put its peers back, concurrently. */
  constructor(readonly net: number, readonly replant: boolean) {}
  check = (m: Readonly<Model>) => m.networks[this.net] !== null;
  async run(m: Model, r: Real): Promise<void> {
    const ifname = wireguardOf(r, this.net);
    const { panel } = r.world;
    expectAnswer(await panel.delete(`/api/networks/${m.networks[this.net]!}`), 204, this.toString());
    const former = [...m.peers].filter(([slot]) => networkOf(slot) === this.net);
    for (const [slot] of former) m.peers.delete(slot);
    m.networks[this.net] = null;
    m.netCaps[this.net] = { ...NO_NET_CAPS };
    m.dirty.delete(ifname);
    if (this.replant) {
      const created = await panel.post('/api/networks', { name: `net-${this.net}`, interface: ifname, netns: r.world.ns });
      expectAnswer(created, 201, `${this.toString()}: POST /api/networks`);
      const id = created.body.network.id as number;
      m.networks[this.net] = id;
      const answers = await Promise.all(former.map(([slot, p]) =>
        panel.post(`/api/networks/${id}/peers`, {
          name: `peer-${slot}`, public_key: key(slot), allowed_ips: addressesOf(slot, p.variant), bandwidth_up_kbps: p.up, bandwidth_down_kbps: p.down,
        })));
      answers.forEach((answer, i) => {
        const [slot, p] = former[i]!;
        expectAnswer(answer, 201, `${this.toString()}: POST peer s${slot}`);
        // Put back with its caps only: a new peer has no guarantee or burst.
        m.peers.set(slot, { ...p, ...NO_SHARE, id: answer.body.peer.id as number });
      });
    }
    await settle(m, r, this.toString(), [ifname]);
  }
  toString = () => `${this.replant ? 'recreateNetwork' : 'deleteNetwork'}(n${this.net})`;
}

/** `PUT /api/bandwidth/networks/:id`: network caps and defaults; a default above the network cap is refused. */
class SetNetworkCaps implements ModelCommand {
  constructor(readonly net: number, readonly caps: Partial<NetCaps>) {}
  check = (m: Readonly<Model>) => m.networks[this.net] !== null;
  async run(m: Model, r: Real): Promise<void> {
    const ifname = wireguardOf(r, this.net);
    const merged: NetCaps = { ...(m.netCaps[this.net] ?? NO_NET_CAPS), ...this.caps };
    const refused = networkShapeIssues({ totalUpKbps: merged.totalUp, totalDownKbps: merged.totalDown, defaultUpKbps: merged.defaultUp, defaultDownKbps: merged.defaultDown })[0]?.field ?? null;
    const response = await r.world.panel.put(`/api/bandwidth/networks/${m.networks[this.net]!}`, netCapsBody(this.caps));
    expectAnswer(response, refused ? 400 : 200, this.toString(), refused);
    if (!refused) m.netCaps[this.net] = merged;
    await settle(m, r, `${this.toString()}${refused ? ` refused (${refused})` : ''}`, [ifname]);
  }
  toString = () => `setNetworkCaps(n${this.net} ${netCapsText(this.caps)})`;
}

// ---------------------------------------------------------------- peers

/** One change of one peer, as a request: the model is updated only once the answer is checked. */
interface PeerRequest {
  what: string;
  send: () => Promise<ApiResponse>;
  status: number;
  /** For a refusal (400): the field it must name. */
  field?: string | null;
  apply: (response: ApiResponse) => void;
}

type PeerAction =
  | { kind: 'create'; variant: number; up: number; down: number }
  | { kind: 'caps'; caps: CapChange; via: 'peer' | 'limits' }
  | { kind: 'share'; share: ShareChange; via: 'peer' | 'limits' }
  | { kind: 'clear' }
  | { kind: 'addresses'; variant: number; caps: CapChange | null }
  | { kind: 'delete' };

function peerRequest(m: Model, r: Real, slot: number, action: PeerAction): PeerRequest {
  const { panel } = r.world;
  const networkId = m.networks[networkOf(slot)]!;
  const peer = m.peers.get(slot);
  const path = peer ? `/api/networks/${networkId}/peers/${peer.id}` : '';
  const network = m.netCaps[networkOf(slot)] ?? NO_NET_CAPS;
  /** The answer an edit of the stored peer gets: refused (the field), or accepted. */
  const judged = (after: ModelPeer, ok: number) => {
    const field = refusalOf(after, network, peer);
    return { status: field ? 400 : ok, field, note: field ? ` refused (${field})` : '' };
  };
  switch (action.kind) {
    case 'create': {
      const body = {
        name: `peer-${slot}`, public_key: key(slot), allowed_ips: addressesOf(slot, action.variant), bandwidth_up_kbps: action.up, bandwidth_down_kbps: action.down,
      };
      return {
        what: `createPeer(s${slot} v${action.variant} [${body.allowed_ips.join(' ')}] up=${action.up} down=${action.down})`,
        send: () => panel.post(`/api/networks/${networkId}/peers`, body),
        status: 201,
        apply: (response) => m.peers.set(slot, { id: response.body.peer.id as number, variant: action.variant, up: action.up, down: action.down, ...NO_SHARE }),
      };
    }
    case 'caps': {
      const target = action.via === 'peer' ? path : `/api/bandwidth/limits/peer/${peer!.id}`;
      const after = { ...peer!, up: action.caps.up ?? peer!.up, down: action.caps.down ?? peer!.down };
      const answer = judged(after, 200);
      return {
        what: `setPeerCaps(s${slot} ${capText(action.caps)} via ${action.via === 'peer' ? 'PUT peer' : 'PUT limits'})${answer.note}`,
        send: () => panel.put(target, capBody(action.caps)),
        status: answer.status,
        field: answer.field,
        apply: () => m.peers.set(slot, after),
      };
    }
    case 'share': {
      const target = action.via === 'peer' ? path : `/api/bandwidth/limits/peer/${peer!.id}`;
      const after = { ...peer!, ...action.share };
      const answer = judged(after, 200);
      return {
        what: `setPeerShare(s${slot} ${shareText(action.share)} via ${action.via === 'peer' ? 'PUT peer' : 'PUT limits'})${answer.note}`,
        send: () => panel.put(target, shareBody(action.share)),
        status: answer.status,
        field: answer.field,
        apply: () => m.peers.set(slot, after),
      };
    }
    case 'clear':
      return {
        what: `clearPeer(s${slot})`,
        send: () => panel.delete(`/api/bandwidth/limits/peer/${peer!.id}`),
        status: 200,
        // Clearing drops the caps; the guarantee and burst stay stored.
        apply: () => m.peers.set(slot, { ...peer!, up: 0, down: 0 }),
      };
    case 'addresses': {
      const allowed = addressesOf(slot, action.variant);
      const caps = action.caps ?? {};
      const after = { ...peer!, variant: action.variant, up: caps.up ?? peer!.up, down: caps.down ?? peer!.down };
      // The host checks the peer as it would be stored, except problems it already had in fields the edit leaves alone.
      const answer = judged(after, 200);
      return {
        what: `changeAddresses(s${slot} v${action.variant} [${allowed.join(' ')}]${action.caps ? ` ${capText(action.caps)}` : ''})${answer.note}`,
        send: () => panel.put(path, { allowed_ips: allowed, ...capBody(caps) }),
        status: answer.status,
        field: answer.field,
        apply: () => m.peers.set(slot, after),
      };
    }
    case 'delete':
      return { what: `deletePeer(s${slot})`, send: () => panel.delete(path), status: 204, apply: () => m.peers.delete(slot) };
  }
}

async function runPeerRequests(m: Model, r: Real, requests: PeerRequest[]): Promise<void> {
  const answers = await Promise.all(requests.map((request) => request.send()));
  answers.forEach((answer, i) => expectAnswer(answer, requests[i]!.status, requests[i]!.what, requests[i]!.field));
  answers.forEach((answer, i) => {
    if (requests[i]!.status !== 400) requests[i]!.apply(answer);
  });
}

class PeerCommand implements ModelCommand {
  constructor(readonly slot: number, readonly action: PeerAction) {}
  check(m: Readonly<Model>): boolean {
    if (m.networks[networkOf(this.slot)] === null) return false;
    return this.action.kind === 'create' ? !m.peers.has(this.slot) : m.peers.has(this.slot);
  }
  async run(m: Model, r: Real): Promise<void> {
    const request = peerRequest(m, r, this.slot, this.action);
    await runPeerRequests(m, r, [request]);
    await settle(m, r, request.what, [wireguardOf(r, networkOf(this.slot))]);
  }
  toString(): string {
    const a = this.action;
    switch (a.kind) {
      case 'create': return `createPeer(s${this.slot} v${a.variant} up=${a.up} down=${a.down})`;
      case 'caps': return `setPeerCaps(s${this.slot} ${capText(a.caps)} via ${a.via})`;
      case 'share': return `setPeerShare(s${this.slot} ${shareText(a.share)} via ${a.via})`;
      case 'clear': return `clearPeer(s${this.slot})`;
      case 'addresses': return `changeAddresses(s${this.slot} v${a.variant}${a.caps ? ` ${capText(a.caps)}` : ''})`;
      case 'delete': return `deletePeer(s${this.slot})`;
    }
  }
}

/** One edit of a burst, resolved against the model when the burst runs (absent peers are created). */
interface BurstEdit {
  /** Index among the network's slots. */
  index: number;
  choice: number;
  variant: number;
  caps: CapChange;
  up: number;
  down: number;
}

/**
 * Concurrent edits of one network's peers, with a VM's caps and the network's own caps beside them.
 * The network's caps join only while none of its peers has a guarantee or a burst: then no peer edit
 * can be refused whichever lands first, and the end state is the same in any order.
 */
class Burst implements ModelCommand {
  constructor(
    readonly net: number,
    readonly edits: BurstEdit[],
    readonly vmCaps: { vm: number; caps: CapChange } | null,
    readonly netCaps: Partial<NetCaps> | null = null,
  ) {}
  check = (m: Readonly<Model>) => m.networks[this.net] !== null;
  async run(m: Model, r: Real): Promise<void> {
    const slots = new Set<number>();
    const requests: PeerRequest[] = [];
    for (const edit of this.edits) {
      const slot = edit.index * NETWORKS + this.net;
      if (slot >= PEER_SLOTS || slots.has(slot)) continue;
      slots.add(slot);
      const peer = m.peers.get(slot);
      const actions: PeerAction[] = [
        { kind: 'caps', caps: edit.caps, via: 'peer' },
        { kind: 'caps', caps: edit.caps, via: 'limits' },
        { kind: 'caps', caps: edit.caps, via: 'limits' },
        { kind: 'clear' },
        { kind: 'addresses', variant: peer ? 1 - peer.variant : 0, caps: edit.choice % 2 === 0 ? edit.caps : null },
        { kind: 'delete' },
      ];
      const action: PeerAction = peer ? actions[edit.choice % actions.length]! : { kind: 'create', variant: edit.variant, up: edit.up, down: edit.down };
      requests.push(peerRequest(m, r, slot, action));
    }
    const touched = [wireguardOf(r, this.net)];
    const vm = this.vmCaps ? m.vms.get(this.vmCaps.vm) : undefined;
    const vmAfter = vm && this.vmCaps ? { ...vm, up: this.vmCaps.caps.up ?? vm.up, down: this.vmCaps.caps.down ?? vm.down } : undefined;
    const vmRefused = vmAfter ? refusalOf(vmAfter, null, vm) : null;
    let vmAnswer: Promise<ApiResponse> | undefined;
    if (vm && this.vmCaps) {
      vmAnswer = r.world.panel.put(`/api/bandwidth/limits/vm/${vm.id}`, capBody(this.vmCaps.caps));
      touched.push(r.world.taps[vm.tap]!);
    }
    const shareless = [...m.peers].every(([slot, p]) => networkOf(slot) !== this.net || (p.min === 0 && p.burstKbps === 0 && p.burstBytes === 0));
    const netChange = this.netCaps && shareless ? this.netCaps : null;
    const netAfter: NetCaps = { ...(m.netCaps[this.net] ?? NO_NET_CAPS), ...(netChange ?? {}) };
    const netRefused = netChange
      ? networkShapeIssues({ totalUpKbps: netAfter.totalUp, totalDownKbps: netAfter.totalDown, defaultUpKbps: netAfter.defaultUp, defaultDownKbps: netAfter.defaultDown })[0]?.field ?? null
      : null;
    const netAnswer = netChange ? r.world.panel.put(`/api/bandwidth/networks/${m.networks[this.net]!}`, netCapsBody(netChange)) : undefined;
    const what = `burst(n${this.net}: ${[
      ...requests.map((q) => q.what),
      ...(vm && this.vmCaps ? [`setVmCaps(v${this.vmCaps.vm} ${capText(this.vmCaps.caps)})`] : []),
      ...(netChange ? [`setNetworkCaps(${netCapsText(netChange)})${netRefused ? ` refused (${netRefused})` : ''}`] : []),
    ].join(' | ')})`;
    const [answer, netResponse] = await Promise.all([vmAnswer, netAnswer, runPeerRequests(m, r, requests)]);
    if (answer && vmAfter && this.vmCaps) {
      expectAnswer(answer, vmRefused ? 400 : 200, what, vmRefused);
      if (!vmRefused) m.vms.set(this.vmCaps.vm, vmAfter);
    }
    if (netResponse) {
      expectAnswer(netResponse, netRefused ? 400 : 200, what, netRefused);
      if (!netRefused) m.netCaps[this.net] = netAfter;
    }
    await settle(m, r, what, touched);
  }
  toString = () =>
    `burst(n${this.net}: ${this.edits.map((e) => `#${e.index}/${e.choice} v${e.variant} ${capText(e.caps)} new ${e.up}/${e.down}`).join(', ')}${this.vmCaps ? `; vm v${this.vmCaps.vm} ${capText(this.vmCaps.caps)}` : ''}${this.netCaps ? `; network ${netCapsText(this.netCaps)}` : ''})`;
}

/**
 * Several cap edits of one subject at once (through the subject's own PUT and the limits API, mixed).
 * A direction only one edit names must end with that value; one several edits name, with one of
 * theirs (the stored one is then taken into the model): nothing may be lost.
 */
class SameSubjectEdits implements ModelCommand {
  constructor(readonly type: 'peer' | 'vm', readonly slot: number, readonly edits: { caps: CapChange; viaLimits: boolean }[]) {}
  check(m: Readonly<Model>): boolean {
    // Only a subject without guarantee and burst: then no cap edit can be refused, whatever the order.
    const subject = this.type === 'vm' ? m.vms.get(this.slot) : m.peers.get(this.slot);
    if (!subject || subject.min > 0 || subject.burstKbps > 0 || subject.burstBytes > 0) return false;
    return this.type === 'vm' || m.networks[networkOf(this.slot)] !== null;
  }
  async run(m: Model, r: Real): Promise<void> {
    const { panel, taps } = r.world;
    const peer = this.type === 'peer' ? m.peers.get(this.slot)! : undefined;
    const vm = this.type === 'vm' ? m.vms.get(this.slot)! : undefined;
    const id = (peer ?? vm)!.id;
    const own = peer ? `/api/networks/${m.networks[networkOf(this.slot)]!}/peers/${id}` : `/api/vms/${id}`;
    const answers = await Promise.all(this.edits.map((e) => panel.put(e.viaLimits ? `/api/bandwidth/limits/${this.type}/${id}` : own, capBody(e.caps))));
    answers.forEach((answer) => expectAnswer(answer, 200, this.toString()));
    const stored = (await panel.get(own)).body[this.type] as Record<string, number>;
    const before = (peer ?? vm)!;
    const settled: Record<'up' | 'down', number> = { up: before.up, down: before.down };
    for (const direction of ['up', 'down'] as const) {
      const sent = [...new Set(this.edits.flatMap((e) => (e.caps[direction] === undefined ? [] : [e.caps[direction]!])))];
      if (sent.length === 0) continue;
      const got = stored[`bandwidth_${direction}_kbps`]!;
      if (!sent.includes(got)) throw new Error(`${this.toString()}: ${direction} is stored as ${got}, but the edits sent ${sent.join(' or ')}: an update was lost`);
      settled[direction] = got;
    }
    if (peer) m.peers.set(this.slot, { ...peer, ...settled });
    if (vm) m.vms.set(this.slot, { ...vm, ...settled });
    await settle(m, r, this.toString(), [peer ? wireguardOf(r, networkOf(this.slot)) : taps[vm!.tap]!]);
  }
  toString = () => `sameSubjectEdits(${this.type === 'peer' ? 's' : 'v'}${this.slot}: ${this.edits.map((e) => `${capText(e.caps)} via ${e.viaLimits ? 'limits' : this.type}`).join(' | ')})`;
}

// ---------------------------------------------------------------- VMs

type VmAction =
  | { kind: 'create'; tap: number; up: number; down: number }
  | { kind: 'caps'; caps: CapChange; via: 'vm' | 'limits' }
  | { kind: 'share'; share: ShareChange; via: 'vm' | 'limits' }
  | { kind: 'clear' }
  | { kind: 'move'; tap: number; caps: CapChange | null }
  | { kind: 'delete' };

const tapFree = (m: Readonly<Model>, tap: number): boolean => ![...m.vms.values()].some((v) => v.tap === tap);

class VmCommand implements ModelCommand {
  constructor(readonly vm: number, readonly action: VmAction) {}
  check(m: Readonly<Model>): boolean {
    const a = this.action;
    if (a.kind === 'create') return !m.vms.has(this.vm) && tapFree(m, a.tap);
    if (!m.vms.has(this.vm)) return false;
    return a.kind !== 'move' || tapFree(m, a.tap);
  }
  async run(m: Model, r: Real): Promise<void> {
    const { panel, taps, ns } = r.world;
    const a = this.action;
    const vm = m.vms.get(this.vm);
    const touched = vm ? [taps[vm.tap]!] : [];
    switch (a.kind) {
      case 'create': {
        const response = await panel.post('/api/vms', { name: `vm-${this.vm}`, interface: taps[a.tap], netns: ns, bandwidth_up_kbps: a.up, bandwidth_down_kbps: a.down });
        expectAnswer(response, 201, this.toString());
        m.vms.set(this.vm, { id: response.body.vm.id as number, tap: a.tap, up: a.up, down: a.down, ...NO_SHARE });
        touched.push(taps[a.tap]!);
        break;
      }
      case 'caps':
      case 'share': {
        const after = a.kind === 'caps' ? { ...vm!, up: a.caps.up ?? vm!.up, down: a.caps.down ?? vm!.down } : { ...vm!, ...a.share };
        const refused = refusalOf(after, null, vm);
        const response = await panel.put(a.via === 'vm' ? `/api/vms/${vm!.id}` : `/api/bandwidth/limits/vm/${vm!.id}`, a.kind === 'caps' ? capBody(a.caps) : shareBody(a.share));
        expectAnswer(response, refused ? 400 : 200, this.toString(), refused);
        if (!refused) m.vms.set(this.vm, after);
        break;
      }
      case 'clear':
        expectAnswer(await panel.delete(`/api/bandwidth/limits/vm/${vm!.id}`), 200, this.toString());
        m.vms.set(this.vm, { ...vm!, up: 0, down: 0 });
        break;
      case 'move': {
        const caps = a.caps ?? {};
        const after = { ...vm!, tap: a.tap, up: caps.up ?? vm!.up, down: caps.down ?? vm!.down };
        const refused = refusalOf(after, null, vm);
        expectAnswer(await panel.put(`/api/vms/${vm!.id}`, { interface: taps[a.tap], netns: ns, ...capBody(caps) }), refused ? 400 : 200, this.toString(), refused);
        if (!refused) {
          m.vms.set(this.vm, after);
          touched.push(taps[a.tap]!);
        }
        break;
      }
      case 'delete':
        expectAnswer(await panel.delete(`/api/vms/${vm!.id}`), 204, this.toString());
        m.vms.delete(this.vm);
        break;
    }
    await settle(m, r, this.toString(), touched);
  }
  toString(): string {
    const a = this.action;
    switch (a.kind) {
      case 'create': return `createVm(v${this.vm} on t${a.tap} up=${a.up} down=${a.down})`;
      case 'caps': return `setVmCaps(v${this.vm} ${capText(a.caps)} via ${a.via})`;
      case 'share': return `setVmShare(v${this.vm} ${shareText(a.share)} via ${a.via})`;
      case 'clear': return `clearVm(v${this.vm})`;
      case 'move': return `moveVm(v${this.vm} to t${a.tap}${a.caps ? ` ${capText(a.caps)}` : ''})`;
      case 'delete': return `deleteVm(v${this.vm})`;
    }
  }
}

// ---------------------------------------------------------------- the kernel, by hand

type FlushKind = 'root' | 'ifb-root' | 'ingress' | 'ifb-link' | 'class' | 'filter-prio' | 'filter-entry';
const FLUSH_KINDS: FlushKind[] = ['root', 'ifb-root', 'ingress', 'ifb-link', 'class', 'filter-prio', 'filter-entry'];

class HandFlush implements ModelCommand {
  constructor(readonly target: number, readonly kind: FlushKind, readonly pick: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    // An interface that carries something of the engine's (as of the last step), if any does.
    const interfaces = allInterfaces(r);
    const shaped = interfaces.filter((i) => /htb 1: root|ingress ffff:|ifb ifb-/.test(r.signatures.get(i.name) ?? ''));
    const pool = shaped.length > 0 ? shaped : interfaces;
    const ifname = pool[this.target % pool.length]!.name;
    const { executor } = r.world.lab;
    const netns = r.world.ns;
    const actual = await readActual(executor, ifname, netns);
    const ifb = actual.ifb.name;
    const trees = [actual.egress, actual.ifb.tree].filter((tree) => tree !== null && tree.qdiscs.some((q) => q.root && q.kind === 'htb'));
    const planFor = (kind: FlushKind): string[][] => {
      switch (kind) {
        case 'root':
          return actual.egress?.qdiscs.some((q) => q.root && q.kind === 'htb') ? [['tc', 'qdisc', 'del', 'dev', ifname, 'root']] : [];
        case 'ifb-root':
          return actual.ifb.tree?.qdiscs.some((q) => q.root && q.kind === 'htb') ? [['tc', 'qdisc', 'del', 'dev', ifb, 'root']] : [];
        case 'ingress':
          return actual.egress?.qdiscs.some((q) => q.kind === 'ingress') ? [['tc', 'qdisc', 'del', 'dev', ifname, 'ingress']] : [];
        case 'ifb-link':
          return actual.ifb.exists ? [['ip', 'link', 'del', 'dev', ifb]] : [];
        case 'class': {
          const classes = trees.flatMap((tree) => tree!.classes.filter((c) => c.kind === 'htb' && c.minor !== 0xffff).map((c) => ({ device: tree!.device, c })));
          const chosen = classes[this.pick % Math.max(1, classes.length)];
          if (!chosen) return [];
          // An admin removing a class: its leaf first; HTB may refuse the class itself while filters point at it.
          return [
            ...(chosen.c.leaf ? [['tc', 'qdisc', 'del', 'dev', chosen.device, 'parent', chosen.c.classid]] : []),
            ['tc', 'class', 'del', 'dev', chosen.device, 'classid', chosen.c.classid],
          ];
        }
        case 'filter-prio': {
          const prios = trees.flatMap((tree) => [...new Set(tree!.filters.map((f) => `${f.prio}`))].map((prio) => ({ device: tree!.device, prio })));
          const chosen = prios[this.pick % Math.max(1, prios.length)];
          return chosen ? [['tc', 'filter', 'del', 'dev', chosen.device, 'parent', '1:', 'prio', chosen.prio]] : [];
        }
        case 'filter-entry': {
          const entries = trees.flatMap((tree) => tree!.filters.filter((f) => f.flowidMinor !== undefined && f.handle !== undefined).map((f) => ({ device: tree!.device, f })));
          const chosen = entries[this.pick % Math.max(1, entries.length)];
          return chosen
            ? [['tc', 'filter', 'del', 'dev', chosen.device, 'parent', '1:', 'prio', String(chosen.f.prio), 'handle', chosen.f.handle!, 'protocol', chosen.f.protocol, 'u32']]
            : [];
        }
      }
    };
    // The chosen kind of damage, or the next one that applies to this interface.
    const first = FLUSH_KINDS.indexOf(this.kind);
    let commands: string[][] = [];
    for (let i = 0; i < FLUSH_KINDS.length && commands.length === 0; i += 1) commands = planFor(FLUSH_KINDS[(first + i) % FLUSH_KINDS.length]!);
    const done: string[] = [];
    for (const argv of commands) {
      const result = await executor.run(argv, { netns }).then(() => 'ok', (error: Error) => `refused: ${error.message.split('\n')[0]}`);
      done.push(`${argv.join(' ')} → ${result}`);
    }
    if (done.some((line) => line.endsWith('ok'))) m.dirty.add(ifname);
    await settle(m, r, `${this.toString()} on ${ifname}: ${done.length === 0 ? 'nothing to flush' : done.join('; ')}`, []);
  }
  toString = () => `handFlush(#${this.target} ${this.kind} pick ${this.pick})`;
}

class Reconcile implements ModelCommand {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const response = await r.world.panel.post('/api/bandwidth/reconcile');
    expectStatus(response, 200, 'POST /api/bandwidth/reconcile');
    const bad = (response.body.interfaces as { interface: string; status: string; error: string | null }[]).filter((o) => o.status !== 'applied');
    if (bad.length > 0) throw new Error(`reconcile: ${bad.map((o) => `${o.interface} ${o.status}: ${o.error}`).join('; ')}`);
    m.dirty.clear();
    await settle(m, r, this.toString(), allInterfaces(r).map((i) => i.name));
  }
  toString = () => 'reconcile()';
}

// ---------------------------------------------------------------- arbitraries

const peerSlot = fc.integer({ min: 0, max: PEER_SLOTS - 1 });
const vmSlot = fc.integer({ min: 0, max: VM_SLOTS - 1 });
const tap = fc.integer({ min: 0, max: TAPS - 1 });
const net = fc.integer({ min: 0, max: NETWORKS - 1 });
const variant = fc.integer({ min: 0, max: 1 });

/** Network caps and defaults: often none, round figures, any rate; a change names one field or several. */
const netKbpsArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.constantFrom(1000, 5000, 30_000, 100_000, 1_000_000) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 1_000_000 }) },
);
const netCapsArb: fc.Arbitrary<Partial<NetCaps>> = fc
  .record({ totalUp: netKbpsArb, totalDown: netKbpsArb, defaultUp: netKbpsArb, defaultDown: netKbpsArb }, { requiredKeys: [] })
  .filter((c) => Object.keys(c).length > 0);
/**
 * A guarantee and a burst: mostly a burst rate above any cap drawn here with a size, or none, so that
 * most edits are accepted; sometimes one field alone or a burst below the caps, which must be refused.
 */
const shareArb: fc.Arbitrary<ShareChange> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ min: fc.constantFrom(0, 8, 1000, 12_000, 100_000, 2_000_000) }) },
  {
    weight: 4,
    arbitrary: fc.record({ burstKbps: fc.constantFrom(1_500_000, 2_000_000, 50_000_000), burstBytes: fc.constantFrom(100_000, 2_000_000, 50_000_000) }),
  },
  { weight: 2, arbitrary: fc.constant({ burstKbps: 0, burstBytes: 0 }) },
  {
    weight: 1,
    arbitrary: fc.record(
      { min: fc.constantFrom(0, 5000), burstKbps: fc.constantFrom(0, 2000, 2_000_000), burstBytes: fc.constantFrom(0, 3028, 500_000) },
      { requiredKeys: [] },
    ).filter((c) => Object.keys(c).length > 0),
  },
);

/** A command that no longer applies once the run's time is up (see {@link Model.stopAt}). */
class Timed implements ModelCommand {
  constructor(readonly inner: ModelCommand) {}
  check = (m: Readonly<Model>) => Date.now() < m.stopAt && (this.inner.check(m) as boolean);
  run = (m: Model, r: Real) => this.inner.run(m, r);
  toString = () => this.inner.toString();
}

/** Every command, weighted: mostly peer edits, some VM edits, bursts, hand flushes and reconciles. */
export const commandArbs: fc.Arbitrary<ModelCommand>[] = [
  fc.oneof(
    { weight: 7, arbitrary: fc.tuple(peerSlot, variant, kbpsArb, kbpsArb).map(([s, v, up, down]) => new PeerCommand(s, { kind: 'create', variant: v, up, down })) },
    { weight: 8, arbitrary: fc.tuple(peerSlot, capChangeArb, fc.constantFrom('peer' as const, 'limits' as const)).map(([s, caps, via]) => new PeerCommand(s, { kind: 'caps', caps, via })) },
    { weight: 2, arbitrary: peerSlot.map((s) => new PeerCommand(s, { kind: 'clear' })) },
    { weight: 5, arbitrary: fc.tuple(peerSlot, shareArb, fc.constantFrom('peer' as const, 'limits' as const)).map(([s, share, via]) => new PeerCommand(s, { kind: 'share', share, via })) },
    { weight: 4, arbitrary: fc.tuple(net, netCapsArb).map(([n, caps]) => new SetNetworkCaps(n, caps)) },
    { weight: 1, arbitrary: fc.tuple(vmSlot, shareArb, fc.constantFrom('vm' as const, 'limits' as const)).map(([v, share, via]) => new VmCommand(v, { kind: 'share', share, via })) },
    { weight: 3, arbitrary: fc.tuple(peerSlot, variant, fc.option(capChangeArb, { nil: null })).map(([s, v, caps]) => new PeerCommand(s, { kind: 'addresses', variant: v, caps })) },
    { weight: 3, arbitrary: peerSlot.map((s) => new PeerCommand(s, { kind: 'delete' })) },
    { weight: 2, arbitrary: fc.tuple(vmSlot, tap, kbpsArb, kbpsArb).map(([v, t, up, down]) => new VmCommand(v, { kind: 'create', tap: t, up, down })) },
    { weight: 3, arbitrary: fc.tuple(vmSlot, capChangeArb, fc.constantFrom('vm' as const, 'limits' as const)).map(([v, caps, via]) => new VmCommand(v, { kind: 'caps', caps, via })) },
    { weight: 1, arbitrary: vmSlot.map((v) => new VmCommand(v, { kind: 'clear' })) },
    { weight: 2, arbitrary: fc.tuple(vmSlot, tap, fc.option(capChangeArb, { nil: null })).map(([v, t, caps]) => new VmCommand(v, { kind: 'move', tap: t, caps })) },
    { weight: 1, arbitrary: vmSlot.map((v) => new VmCommand(v, { kind: 'delete' })) },
    { weight: 1, arbitrary: net.map((n) => new CreateNetwork(n)) },
    { weight: 1, arbitrary: fc.tuple(net, fc.boolean()).map(([n, replant]) => new DeleteNetwork(n, replant)) },
    {
      weight: 4,
      arbitrary: fc
        .tuple(
          net,
          fc.array(
            fc.record({
              index: fc.integer({ min: 0, max: Math.ceil(PEER_SLOTS / NETWORKS) - 1 }),
              choice: fc.nat({ max: 11 }),
              variant,
              caps: capChangeArb,
              up: kbpsArb,
              down: kbpsArb,
            }),
            { minLength: 2, maxLength: 6 },
          ),
          fc.option(fc.record({ vm: vmSlot, caps: capChangeArb }), { nil: null }),
          fc.option(netCapsArb, { nil: null, freq: 2 }),
        )
        .map(([n, edits, vm, netCaps]) => new Burst(n, edits, vm, netCaps)),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.boolean(), peerSlot, fc.array(fc.record({ caps: capChangeArb, viaLimits: fc.boolean() }), { minLength: 2, maxLength: 3 }))
        .map(([isVm, s, edits]) => new SameSubjectEdits(isVm ? 'vm' : 'peer', isVm ? s % VM_SLOTS : s, edits)),
    },
    { weight: 2, arbitrary: fc.tuple(fc.nat({ max: 15 }), fc.constantFrom(...FLUSH_KINDS), fc.nat({ max: 31 })).map(([t, k, p]) => new HandFlush(t, k, p)) },
    { weight: 2, arbitrary: fc.constant(null).map(() => new Reconcile()) },
  ).map((command): ModelCommand => new Timed(command)),
];

/** A fresh model with both networks created (by {@link startRun}). */
export async function startRun(world: ModelLab, seed: number, counter: StepCounter, stopAt = Infinity): Promise<{ model: Model; real: Real }> {
  const model: Model = {
    networks: Array.from({ length: NETWORKS }, () => null), netCaps: Array.from({ length: NETWORKS }, () => ({ ...NO_NET_CAPS })), peers: new Map(), vms: new Map(), dirty: new Set(), stopAt,
  };
  const real: Real = { world, seed, step: 0, counter, signatures: new Map(), trail: [], involved: [] };
  for (let n = 0; n < NETWORKS; n += 1) {
    const ifname = world.wireguard[n]!;
    const response = await world.panel.post('/api/networks', { name: `net-${n}`, interface: ifname, netns: world.ns });
    expectStatus(response, 201, 'start: POST /api/networks');
    model.networks[n] = response.body.network.id as number;
  }
  real.signatures = await signatures(world.lab.executor, world.ns, [...world.wireguard, ...world.taps]);
  counter.mark = Date.now();
  return { model, real };
}
