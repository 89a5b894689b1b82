/**
 * The VM-side design's job names (`POST /v1/jobs`), for masters written against it. They are
 * translated into the agent's own desired state, never run as commands:
 *
 * - `{"type":"BANDWIDTH_COLLECT"}` → `{"vms":[{"name","id","if","netns","rx_bytes","tx_bytes"}]}`:
 *   every VM the agent holds with its tap's counters now, as the tap counts them (rx: bytes from
 *   the VM, its upload; tx: bytes to the VM, its download). Exact JSON integers (they may pass
 *   2^53); `null` when the tap cannot be read (it is gone, or a dry run inside a namespace).
 * - `{"type":"NET_EGRESS_CAP_SET","name":VM,"mbps":N,"if"?:TAP}`: egress on the tap is traffic to
 *   the VM, so this is the VM's **download** cap, N × 1000 kbit/s; its upload cap is kept. A VM
 *   the agent does not hold is created on `if` (host namespace) when given, else 404.
 * - `{"type":"NET_EGRESS_CAP_CLEAR","name":VM,"if"?:TAP}`: the download cap back to unlimited.
 *
 * A job writes the interface's state with the version the agent holds, so the panel's next push
 * (same or higher version) replaces it: the panel stays the owner of the caps it manages.
 */
import { z } from 'zod';

import { ConflictError, NotFoundError } from '../../errors.js';
import { interfaceNameSchema, parseInterfaceState, type InterfaceReport, type InterfaceState } from '../protocol.js';
import type { AgentCore } from './core.js';

/** A VM's name as the VM-side design sends it (a job-created VM uses it as its id too: ≤ 64). */
const vmName = z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters');

export const jobSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('BANDWIDTH_COLLECT') }),
  z.strictObject({
    type: z.literal('NET_EGRESS_CAP_SET'),
    name: vmName,
    mbps: z.number().min(0.001, 'must be ≥ 0.001 (NET_EGRESS_CAP_CLEAR removes the cap)').max(100_000, 'must be ≤ 100000'),
    if: interfaceNameSchema.optional(),
  }),
  z.strictObject({ type: z.literal('NET_EGRESS_CAP_CLEAR'), name: vmName, if: interfaceNameSchema.optional() }),
]);

export type Job = z.infer<typeof jobSchema>;

/** No VM by that name: 404 naming `name`. */
export class VmNotFoundError extends NotFoundError {
  readonly field = 'name';
}

/** Answer of a cap job. */
export interface CapJobAnswer {
  name: string;
  id: string;
  if: string;
  netns: string | null;
  down_kbps: number;
  up_kbps: number;
  report: InterfaceReport;
}

/**
 * The answer of `BANDWIDTH_COLLECT` as JSON text: counters are written as exact integers, which
 * `JSON.stringify` cannot do for a bigint.
 */
export async function collectJobJson(core: AgentCore): Promise<string> {
  const vms = await core.vms({ counters: true });
  const items = vms.map((vm) => {
    const fields = [
      `"name":${JSON.stringify(vm.name)}`,
      `"id":${JSON.stringify(vm.id)}`,
      `"if":${JSON.stringify(vm.interface)}`,
      `"netns":${JSON.stringify(vm.netns)}`,
      `"rx_bytes":${vm.counters ? vm.counters.rxBytes.toString() : 'null'}`,
      `"tx_bytes":${vm.counters ? vm.counters.txBytes.toString() : 'null'}`,
    ];
    return `{${fields.join(',')}}`;
  });
  return `{"vms":[${items.join(',')}]}`;
}

/** Sets (or with 0 clears) a VM's download cap through the desired state. */
export async function setDownloadCap(core: AgentCore, job: { name: string; if?: string | undefined }, downKbps: number): Promise<CapJobAnswer> {
  const named = (await core.vms()).filter((vm) => vm.name === job.name);
  const matches = named.filter((vm) => job.if === undefined || vm.interface === job.if);
  if (matches.length === 0 && named.length > 0) {
    throw new ConflictError(`VM \`${job.name}\` is on ${named.map((vm) => `\`${vm.interface}\``).join(', ')}, not \`${job.if}\``, 'if');
  }
  if (matches.length > 1) {
    throw new ConflictError(`${matches.length} VMs are named \`${job.name}\` (on ${matches.map((vm) => vm.interface).join(', ')}): give \`if\``, 'name');
  }
  const vm = matches[0];
  let iface: string;
  let state: InterfaceState;
  if (vm) {
    const held = await core.interfaceState(vm.interface, vm.netns);
    if (!held) throw new VmNotFoundError(`VM \`${job.name}\` was removed while the job ran`);
    iface = vm.interface;
    state = {
      ...held,
      // A vm interface holds its VM alone, so minor 2 is free when it had no class yet.
      subjects: held.subjects.map((subject) => (subject.type === 'vm' && subject.id === vm.id ? { ...subject, downKbps, classMinor: subject.classMinor ?? 2 } : subject)),
    };
  } else {
    if (job.if === undefined || downKbps === 0) {
      throw new VmNotFoundError(`No VM named \`${job.name}\` on this node${downKbps === 0 ? '' : ' (give `if`, its tap, to create it)'}`);
    }
    const held = await core.interfaceState(job.if, null);
    const other = held?.subjects[0];
    if (other) throw new ConflictError(`Interface \`${job.if}\` carries ${other.type} \`${other.name}\`, not \`${job.name}\``, 'if');
    iface = job.if;
    state = {
      version: held?.version ?? 0,
      kind: 'vm',
      netns: null,
      subjects: [{ type: 'vm', id: job.name, name: job.name, classMinor: 2, addresses: [], publicKey: null, upKbps: 0, downKbps }],
    };
  }
  const report = await core.putInterface(iface, parseInterfaceState(state));
  if (report.stale) throw new ConflictError(`The panel pushed a newer state of \`${iface}\` while the job ran: send the job again`, 'name');
  const subject = state.subjects.find((s) => s.type === 'vm' && (vm ? s.id === vm.id : s.id === job.name))!;
  return { name: subject.name, id: subject.id, if: iface, netns: state.netns, down_kbps: subject.downKbps, up_kbps: subject.upKbps, report };
}

/** kbit/s of a job's `mbps` (1 Mbit/s = 1000 kbit/s, as tc counts). */
export const mbpsToKbps = (mbps: number): number => Math.max(1, Math.round(mbps * 1000));
