/**
 * The node protocol: what the panel and a node's agent say to each other (DESIGN.md "Nodes").
 * Domain terms only: the desired state of an interface, the agent's ledger of counted bytes, rates
 * and health. There is no way to send a command line: a remote shell is not a protocol.
 *
 * Byte counts travel as decimal strings (they exceed 2^53 over a node's life).
 */
import { z } from 'zod';

import { MAX_BURST_BYTES } from '../shaping/model.js';

import type { OutcomeReason } from '../limits/outcome-reason.js';
import type { KernelStatus } from '../db/limits.js';

/** Bumped when a message changes shape incompatibly; the panel refuses an agent with another. */
export const PROTOCOL_VERSION = 1;

/** One subject of an interface's desired state: its caps, its class and how traffic finds it. */
export interface NodeSubject {
  type: 'peer' | 'vm';
  /** The panel's id (opaque string). */
  id: string;
  name: string;
  /**
   * HTB class minor the panel allocated; null for a subject the node does not shape (an unlimited
   * one on an interface without a network cap: counted, not shaped).
   */
  classMinor: number | null;
  /** A peer's allowed IPs (CIDRs); a VM owns its interface: []. */
  addresses: string[];
  /** A peer's WireGuard public key (accounting matches `wg show dump` lines by it). */
  publicKey: string | null;
  /**
   * EFFECTIVE caps in kbit/s, 0 = unlimited; directions from the subject's point of view. The panel
   * resolves its network's default and a quota's throttle: the node shapes what it is told.
   */
  upKbps: number;
  downKbps: number;
  /** Guaranteed rate (kbit/s, each direction) under a network cap; absent or 0: an equal share. Since issue 14. */
  minKbps?: number;
  /** Burst rate (kbit/s) and size (bytes), both or neither; absent: no burst (the panel sends one only while it is in force). */
  burstKbps?: number;
  burstBytes?: number;
}

/** Body of `PUT /v1/interfaces/:name`: the full desired state of one interface. */
export interface InterfaceState {
  /**
   * Increases with every state the panel computes for this interface; an agent ignores a state
   * older than the one it holds (answers with `stale: true`), so a late push cannot undo a newer one.
   */
  version: number;
  kind: 'wireguard' | 'vm';
  netns: string | null;
  subjects: NodeSubject[];
  /** Network caps of the interface (kbit/s); absent or 0: none. With one, every subject has a class minor. */
  totalUpKbps?: number;
  totalDownKbps?: number;
}

/** What the kernel answered for one subject. */
export interface SubjectOutcome {
  type: 'peer' | 'vm';
  id: string;
  status: KernelStatus;
  reason: OutcomeReason | null;
  error: string | null;
}

/** Answer of a PUT or DELETE of an interface. */
export interface InterfaceReport {
  interface: string;
  netns: string | null;
  /** The version the agent holds after the call. */
  version: number;
  /** True when the pushed version was older than the agent's: nothing was changed. */
  stale: boolean;
  status: KernelStatus;
  reason: OutcomeReason | null;
  error: string | null;
  /** tc commands run (or recorded by a dry run). */
  operations: string[];
  subjects: SubjectOutcome[];
}

/** One counted delta of one subject: a row of the agent's ledger. */
export interface LedgerEntry {
  /** Per-node sequence number, increasing, never reused (exactly-once ingestion keys on it). */
  seq: number;
  subjectType: 'peer' | 'vm';
  subjectId: string;
  source: string;
  interface: string;
  periodStart: number;
  periodEnd: number;
  upBytes: string;
  downBytes: string;
}

/** Answer of `GET /v1/ledger?after=SEQ&limit=N`. */
export interface LedgerPage {
  node: string;
  /**
   * Identity of the agent's ledger (made with its state file). A new id means a new ledger (the
   * state file was replaced): the panel's cursor starts over from 0.
   */
  ledgerId: string;
  /** The highest sequence number recorded so far (0 when none). */
  head: number;
  /** The lowest sequence number still kept (retention deletes older ones); null when empty. */
  oldest: number | null;
  entries: LedgerEntry[];
}

/** Answer of `GET /v1/health` (no subject appears in it). */
export interface NodeHealth {
  node: string;
  version: string;
  protocol: number;
  uptimeS: number;
  /** The capability probe's choices (leaf qdisc, classifier, ingress path). */
  capabilities: Record<string, unknown>;
  ledgerId: string;
  ledgerHead: number;
  /** `local` (tc runs) or `recording` (a dry run). */
  mode: 'local' | 'recording';
}

/** A subject's rate (kbit/s) as a node reports it; `class*` are through its HTB class (null: none). */
export interface NodeRate {
  upKbps: number;
  downKbps: number;
  classUpKbps: number | null;
  classDownKbps: number | null;
  at: number;
}

/** Subject key (`peer:12`) → rate. */
export type NodeRates = Record<string, NodeRate>;

// ---------------------------------------------------------------------------------------------
// Validation at the edge (the agent's routes; the panel checks what agents answer the same way).

const ifname = z.string().regex(/^[A-Za-z0-9_.@-]{1,15}$/, 'must be 1-15 characters of letters, digits, `_`, `.`, `@` or `-`');
const netns = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of letters, digits, `_`, `.` or `-`');
const kbps = z.number().int('must be a whole number of kbit/s').min(0, 'must be ≥ 0').max(100_000_000, 'must be ≤ 100000000');

export const interfaceNameSchema = ifname;
export const netnsSchema = netns.nullable();

export const nodeSubjectSchema = z.strictObject({
  type: z.enum(['peer', 'vm']),
  id: z.string().min(1).max(64),
  name: z.string().max(128),
  classMinor: z.number().int().min(2).max(0xfffe).nullable(),
  addresses: z.array(z.string().min(1).max(64)).max(4096),
  publicKey: z.string().max(64).nullable(),
  upKbps: kbps,
  downKbps: kbps,
  minKbps: kbps.optional(),
  burstKbps: kbps.optional(),
  burstBytes: z.number().int('must be a whole number of bytes').min(0, 'must be ≥ 0').max(MAX_BURST_BYTES, `must be ≤ ${MAX_BURST_BYTES}`).optional(),
});

export const interfaceStateSchema = z.strictObject({
  version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  kind: z.enum(['wireguard', 'vm']),
  netns: netnsSchema,
  subjects: z.array(nodeSubjectSchema).max(100_000),
  totalUpKbps: kbps.optional(),
  totalDownKbps: kbps.optional(),
});

/** Thrown for a malformed message; `field` names the offending value (`subjects.3.upKbps`). */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

/** Parses with a zod schema; the first problem becomes a {@link ProtocolError} naming its field. */
export function parseWith<T>(schema: z.ZodType<T>, input: unknown, prefix = ''): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  // An unknown key is named by the key itself (zod puts it beside the path, not in it).
  const unknownKey = issue?.code === 'unrecognized_keys' ? (issue as { keys?: string[] }).keys?.[0] : undefined;
  const path = [prefix, ...(issue?.path ?? []).map(String), ...(unknownKey ? [unknownKey] : [])].filter((part) => part !== '').join('.');
  const field = path || (prefix || 'body');
  throw new ProtocolError(`${field}: ${issue?.message ?? 'invalid'}`, field);
}

/** Validates a pushed interface state, with cross-field rules (unique class minors, VM shape). */
export function parseInterfaceState(input: unknown): InterfaceState {
  const state = parseWith(interfaceStateSchema, input);
  const minors = new Set<number>();
  const ids = new Set<string>();
  const networkCapped = (state.totalUpKbps ?? 0) > 0 || (state.totalDownKbps ?? 0) > 0;
  state.subjects.forEach((subject, index) => {
    const key = `${subject.type}:${subject.id}`;
    if (ids.has(key)) throw new ProtocolError(`subjects.${index}.id: ${key} appears twice`, `subjects.${index}.id`);
    ids.add(key);
    if (subject.classMinor !== null) {
      if (minors.has(subject.classMinor)) throw new ProtocolError(`subjects.${index}.classMinor: ${subject.classMinor} is used twice`, `subjects.${index}.classMinor`);
      minors.add(subject.classMinor);
    }
    const limited = subject.upKbps > 0 || subject.downKbps > 0;
    if (limited && subject.classMinor === null) throw new ProtocolError(`subjects.${index}.classMinor: a capped subject needs a class minor`, `subjects.${index}.classMinor`);
    if (networkCapped && subject.classMinor === null) {
      throw new ProtocolError(`subjects.${index}.classMinor: under a network cap every subject needs a class minor`, `subjects.${index}.classMinor`);
    }
    if ((subject.burstKbps ?? 0) > 0 !== (subject.burstBytes ?? 0) > 0) {
      const field = (subject.burstKbps ?? 0) > 0 ? 'burstBytes' : 'burstKbps';
      throw new ProtocolError(`subjects.${index}.${field}: a burst needs both burstKbps and burstBytes`, `subjects.${index}.${field}`);
    }
    if (state.kind === 'vm' && subject.type !== 'vm') throw new ProtocolError(`subjects.${index}.type: a vm interface holds only its VM`, `subjects.${index}.type`);
    if (state.kind === 'wireguard' && subject.type !== 'peer') throw new ProtocolError(`subjects.${index}.type: a wireguard interface holds peers`, `subjects.${index}.type`);
  });
  if (state.kind === 'vm' && state.subjects.length > 1) throw new ProtocolError('subjects: a vm interface holds one VM', 'subjects');
  return state;
}

/** Key of a subject in rate maps and ledgers: `peer:12`. */
export const subjectKey = (type: string, id: string): string => `${type}:${id}`;
