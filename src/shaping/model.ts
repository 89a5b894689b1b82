import { z } from 'zod';

import { parseCidr } from './addresses.js';

/** What a limit belongs to. A `vm` owns its whole interface; a `peer` is identified by its allowed IPs. */
export type SubjectType = 'peer' | 'vm';

/** Kind of interface the subjects sit behind; decides how traffic is classified. */
export type InterfaceKind = 'wireguard' | 'vm';

/**
 * One subject's desired caps on one interface.
 * Directions are **from the subject's point of view**: `up` = subject → world, `down` = world → subject.
 */
export interface DesiredSubject {
  type: SubjectType;
  /** The panel's id of the peer or VM (only used in messages and plan comments). */
  id: string;
  /** Stable HTB class minor (see {@link nextClassMinor}); persisted by the caller. */
  classMinor: number;
  /** CIDRs (IPv4 or IPv6). A VM owns its whole interface: `[]`. */
  addresses: string[];
  /** Upload cap in kbit/s (1 kbit = 1000 bit). `0` = unlimited. */
  upKbps: number;
  /** Download cap in kbit/s. `0` = unlimited. */
  downKbps: number;
  /**
   * Guaranteed rate (kbit/s, each direction) while the interface has a network cap; `0` or absent:
   * an equal share of what the other subjects' guarantees leave. Ignored without a network cap.
   */
  minKbps?: number;
  /**
   * After an idle period the subject may send up to `bytes` at up to `kbps`, then its cap holds
   * again. A direction bursts only where `kbps` is above its cap and the cap is not 0.
   */
  burst?: { kbps: number; bytes: number };
}

/** Desired shaping state of one interface. */
export interface DesiredInterface {
  /** Interface name (`wg0`, `tap101`, `veth-vm1`). */
  name: string;
  /** Network namespace the interface lives in; absent = the current one. */
  netns?: string;
  kind: InterfaceKind;
  subjects: DesiredSubject[];
  /**
   * Network caps (kbit/s; `0` or absent = none): all traffic of the interface stays under them. On a
   * side with a network cap every subject gets a class with a guaranteed share and borrows idle
   * capacity up to its own cap (or the network cap when it has none).
   */
  totalUpKbps?: number;
  totalDownKbps?: number;
}

/** Linux refuses names over 15 bytes, and with `/`, `:` or white space; we also keep them shell- and batch-safe. */
const ifnameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.@-]{1,15}$/, 'must be 1-15 characters of letters, digits, `_`, `.`, `@` or `-`');
const netnsSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of letters, digits, `_`, `.` or `-`');
const kbpsSchema = z.number().int().min(0).max(100_000_000);
/** Largest burst a subject may have: 4 GiB (a tbf bucket's depth is kept in 32-bit time units at the cap). */
export const MAX_BURST_BYTES = 4 * 1024 ** 3;

const subjectSchema = z.object({
  type: z.enum(['peer', 'vm']),
  id: z.string().min(1).max(200),
  classMinor: z.number().int().min(2).max(0xfffe),
  addresses: z.array(z.string().min(1)),
  upKbps: kbpsSchema,
  downKbps: kbpsSchema,
  minKbps: kbpsSchema.optional(),
  burst: z.object({ kbps: kbpsSchema.min(1), bytes: z.number().int().min(1).max(MAX_BURST_BYTES) }).optional(),
});

/** zod schema of {@link DesiredInterface}; cross-field rules are checked by {@link parseDesiredInterface}. */
export const desiredInterfaceSchema = z.object({
  name: ifnameSchema,
  netns: netnsSchema.optional(),
  kind: z.enum(['wireguard', 'vm']),
  subjects: z.array(subjectSchema),
  totalUpKbps: kbpsSchema.optional(),
  totalDownKbps: kbpsSchema.optional(),
});

/**
 * Validates only what a rate change of some subjects touches: the interface's name, namespace,
 * kind and network caps, and those subjects (their class minors, caps, guarantee and burst). The
 * full checks of {@link parseDesiredInterface} are O(subjects); a `class change` of existing classes
 * needs none of them, and anything that is not a plain rate change goes through a full reconcile,
 * which runs them. One pass over the subjects, whatever the number of changed ones.
 *
 * @returns the subjects in the order of `subjectIds`, or undefined when the interface lacks one.
 * @throws {DesiredStateError} like {@link parseDesiredInterface}, naming the subject's index in `input`.
 */
export function parseSubjectsOf(input: DesiredInterface, subjectIds: readonly string[]): DesiredSubject[] | undefined {
  const indexOf = new Map<string, number>();
  input.subjects.forEach((subject, index) => {
    if (!indexOf.has(subject.id)) indexOf.set(subject.id, index);
  });
  const indexes = subjectIds.map((id) => indexOf.get(id));
  if (indexes.some((index) => index === undefined)) return undefined;
  const picked = (indexes as number[]).map((index) => input.subjects[index]);
  const parsed = desiredInterfaceSchema.safeParse({ ...input, subjects: picked });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue ? issue.path.map((part, at) => (at === 1 && issue.path[0] === 'subjects' ? indexes[part as number] : part)).join('.') : '';
    throw new DesiredStateError(`Invalid desired interface: ${path || '(root)'} ${issue?.message ?? ''}`.trim(), path);
  }
  return parsed.data.subjects as DesiredSubject[];
}

/** {@link parseSubjectsOf} for one subject. */
export function parseSubjectOf(input: DesiredInterface, subjectId: string): DesiredSubject | undefined {
  return parseSubjectsOf(input, [subjectId])?.[0];
}

/** Thrown when a desired state is malformed; `field` points at the offending value. */
export class DesiredStateError extends Error {
  override name = 'DesiredStateError';
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

/**
 * Validates a desired interface once, at the edge: names, caps, unique class minors, a VM interface
 * holding only its VM (with no addresses), peers with valid CIDRs owned by one subject only.
 *
 * @throws {DesiredStateError} with the field path and a readable message.
 */
export function parseDesiredInterface(input: unknown): DesiredInterface {
  const parsed = desiredInterfaceSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue ? issue.path.join('.') : '';
    throw new DesiredStateError(`Invalid desired interface: ${field || '(root)'} ${issue?.message ?? ''}`.trim(), field);
  }
  const value = parsed.data as DesiredInterface;
  const minors = new Map<number, string>();
  const owners = new Map<string, string>();
  value.subjects.forEach((subject, index) => {
    const field = `subjects.${index}`;
    const other = minors.get(subject.classMinor);
    if (other !== undefined) {
      throw new DesiredStateError(
        `Class minor 0x${subject.classMinor.toString(16)} of ${subject.type} ${subject.id} is already used by ${other}`,
        `${field}.classMinor`,
      );
    }
    minors.set(subject.classMinor, `${subject.type} ${subject.id}`);
    if (value.kind === 'vm') {
      if (subject.type !== 'vm') throw new DesiredStateError(`A vm interface holds only its VM, got a ${subject.type}`, `${field}.type`);
      if (subject.addresses.length > 0) {
        throw new DesiredStateError('A VM owns its whole interface: addresses must be []', `${field}.addresses`);
      }
    } else if (subject.type !== 'peer') {
      throw new DesiredStateError(`A wireguard interface holds peers, got a ${subject.type}`, `${field}.type`);
    }
    subject.addresses.forEach((cidr, i) => {
      const key = canonicalCidrKey(cidr, `${field}.addresses.${i}`);
      const owner = owners.get(key);
      if (owner !== undefined) throw new DesiredStateError(`Address ${cidr} is already owned by ${owner}`, `${field}.addresses.${i}`);
      owners.set(key, `${subject.type} ${subject.id}`);
    });
  });
  if (value.kind === 'vm' && value.subjects.length > 1) {
    throw new DesiredStateError(`A vm interface holds one VM, got ${value.subjects.length}`, 'subjects');
  }
  return value;
}

function canonicalCidrKey(cidr: string, field: string): string {
  try {
    const prefix = parseCidr(cidr);
    return `${prefix.family}/${prefix.bytes.join('.')}/${prefix.length}`;
  } catch (error) {
    throw new DesiredStateError(`Invalid address ${JSON.stringify(cidr)}: ${(error as Error).message}`, field);
  }
}
