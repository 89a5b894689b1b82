/**
 * The panel side of shaping: turns the `bw_limits` rows of one interface into that interface's
 * desired state, pushes it to the node's agent (in process for the panel's own machine, over HTTP
 * for the others), and records each subject's outcome as the agent reports it. The database holds
 * the desired state first: an unreachable node leaves its subjects `pending` with reason
 * `node_unreachable`, and the state is pushed again when the node is back.
 */
import type { Knex } from 'knex';

import { isLimited, limitsOnInterface, setStatus, interfacesWithLimits, type LimitRow, type LimitStatus } from '../../db/limits.js';
import type { InterfaceOutcome } from '../../limits/applier.js';
import { hasNetworkCap, networkCapsOfInterface } from '../../db/network-caps.js';
import { desiredSubject, type InterfaceTotals } from '../../limits/desired.js';
import { isThrottled } from '../../limits/effective.js';
import type { OutcomeReason } from '../../limits/outcome-reason.js';
import type { Logger } from '../../plugin-api.js';
import { KeyedMutex } from '../../shaping/lock.js';
import { NodeRefusedError, NodeUnreachableError, type NodeLink } from '../link.js';
import type { InterfaceReport, InterfaceState } from '../protocol.js';

export interface NodeApplierOptions {
  db: Knex;
  /** The link to a node's agent; undefined when the node is not registered or is disabled. */
  link: (node: string) => NodeLink | undefined;
  /** False when the node is known to be unreachable: its subjects go `pending` without a try. */
  reachable?: (node: string) => boolean;
  logger: Logger;
  /** How the panel machine's own node shapes (for the dry-run notice). */
  mode: 'local' | 'recording';
  /** False: report outcomes without writing statuses (`reconcile --dry-run`). @default true */
  record?: boolean;
  /** Every node a full reconcile visits, rows or not (one whose last subject went must lose its trees). @default the nodes with rows */
  nodes?: () => string[];
  now?: () => number;
}

const keyOf = (node: string, iface: string, netns: string | null) => JSON.stringify([node, iface, netns]);

/**
 * A desired state from an interface's rows (unlimited subjects too: the agent counts them) and its
 * network's caps. The node is sent each subject's effective values (its network's default and a
 * quota's throttle resolved, its burst only while in force): it shapes what it is told and never
 * learns why. Under a network cap every subject is sent with its class.
 */
export function interfaceStateOf(rows: LimitRow[], version: number, netns: string | null, totals?: InterfaceTotals | null): InterfaceState {
  const capped = hasNetworkCap(totals);
  const state: InterfaceState = {
    version,
    kind: rows[0]?.interfaceKind ?? 'wireguard',
    netns,
    subjects: rows.map((row) => {
      const shaped = desiredSubject(row);
      return {
        type: row.subjectType,
        id: row.subjectId,
        name: row.name,
        classMinor: isLimited(row) || capped ? row.classMinor : null,
        addresses: shaped.addresses,
        publicKey: row.publicKey,
        upKbps: shaped.upKbps,
        downKbps: shaped.downKbps,
        ...(shaped.minKbps ? { minKbps: shaped.minKbps } : {}),
        ...(shaped.burst ? { burstKbps: shaped.burst.kbps, burstBytes: shaped.burst.bytes } : {}),
      };
    }),
  };
  if (totals && totals.totalUpKbps > 0) state.totalUpKbps = totals.totalUpKbps;
  if (totals && totals.totalDownKbps > 0) state.totalDownKbps = totals.totalDownKbps;
  return state;
}

export class NodeApplier {
  /** One push per interface at a time in this process: the state read is the state pushed. */
  private readonly locks = new KeyedMutex({ fileLocks: null });
  private lastVersion = 0;

  constructor(private readonly options: NodeApplierOptions) {}

  get mode(): 'local' | 'recording' {
    return this.options.mode;
  }

  /** Versions increase in this process and follow the clock across processes (two panels on one database). */
  private nextVersion(): number {
    this.lastVersion = Math.max((this.options.now ?? Date.now)(), this.lastVersion + 1);
    return this.lastVersion;
  }

  /**
   * Pushes the interface's desired state to its node and records the outcome. (`rateChange` is
   * accepted for the callers' sake; the agent itself sees that one rate moved and takes its fast path.)
   */
  async applyInterface(iface: string, netns: string | null, _rateChange?: unknown, node = 'local'): Promise<InterfaceOutcome> {
    return this.locks.run(keyOf(node, iface, netns), async () => {
      const { db, logger } = this.options;
      const rows = await limitsOnInterface(db, node, iface, netns);
      const outcome: InterfaceOutcome = { node, interface: iface, netns, status: 'applied', operations: [], error: null, reason: null };
      const link = this.options.link(node);
      if (!link || (this.options.reachable && !this.options.reachable(node))) {
        const why = link ? `node ${node} is unreachable; the caps apply when it is back` : `node ${node} is not registered or is disabled; the caps apply when it is added`;
        return this.unreachable(rows, outcome, why);
      }
      try {
        let report: InterfaceReport;
        if (rows.length === 0) {
          report = await link.deleteInterface(iface, netns);
        } else {
          const ref = { node, interface: iface, netns };
          report = await link.putInterface(iface, interfaceStateOf(rows, this.nextVersion(), netns, await networkCapsOfInterface(db, ref, rows)));
          if (report.stale) {
            // The agent holds a later version (another panel's clock ran ahead): what was just read
            // is the database's current state, so it goes with the version after the agent's.
            this.lastVersion = Math.max(this.lastVersion, report.version);
            const fresh = await limitsOnInterface(db, node, iface, netns);
            report = await link.putInterface(iface, interfaceStateOf(fresh, this.nextVersion(), netns, await networkCapsOfInterface(db, ref, fresh)));
          }
        }
        outcome.operations = report.operations;
        outcome.status = report.status;
        outcome.reason = report.reason;
        outcome.error = report.error;
        await this.record(rows, report);
      } catch (error) {
        if (error instanceof NodeUnreachableError) return this.unreachable(rows, outcome, `node ${node} is unreachable: ${error.message}`);
        outcome.status = 'failed';
        outcome.reason = error instanceof NodeRefusedError ? 'plan_invalid' : 'kernel_refused';
        outcome.error = (error as Error).message;
        logger.warn('applying caps failed', { node, interface: iface, netns, error: outcome.error });
        if (this.options.record !== false) await setStatus(db, rows.filter(isLimited), 'failed', outcome.error, outcome.reason);
      }
      return outcome;
    });
  }

  private async unreachable(rows: LimitRow[], outcome: InterfaceOutcome, message: string): Promise<InterfaceOutcome> {
    outcome.status = 'pending';
    outcome.reason = 'node_unreachable';
    outcome.error = message;
    if (this.options.record === false) return outcome;
    await setStatus(this.options.db, rows.filter(isLimited), 'pending', message, 'node_unreachable');
    await setStatus(this.options.db, rows.filter((row) => !isLimited(row)), 'applied', null, null);
    return outcome;
  }

  /** Each row's status as the agent reported it (grouped, so a large interface costs a few updates). */
  private async record(rows: LimitRow[], report: InterfaceReport): Promise<void> {
    if (this.options.record === false) return;
    const reported = new Map(report.subjects.map((s) => [`${s.type}:${s.id}`, s]));
    const groups = new Map<string, { status: LimitStatus; error: string | null; reason: OutcomeReason | null; rows: LimitRow[] }>();
    for (const row of rows) {
      const subject = reported.get(`${row.subjectType}:${row.subjectId}`);
      // Unlimited subjects need nothing from the kernel; one the agent did not report is pending.
      const decided = !isLimited(row)
        ? { status: 'applied' as const, error: null, reason: null }
        : subject
          ? { status: subject.status === 'applied' && isThrottled(row) ? ('throttled' as const) : subject.status, error: subject.error, reason: subject.reason }
          : { status: 'pending' as const, error: 'the node did not report this subject', reason: null };
      const key = JSON.stringify([decided.status, decided.error, decided.reason]);
      const group = groups.get(key) ?? { ...decided, rows: [] };
      group.rows.push(row);
      groups.set(key, group);
    }
    for (const group of groups.values()) await setStatus(this.options.db, group.rows, group.status, group.error, group.reason);
  }

  /** Removes everything the plugin put on an interface of a node (it went away). */
  async removeInterface(iface: string, netns: string | null, node = 'local'): Promise<InterfaceOutcome> {
    return this.locks.run(keyOf(node, iface, netns), async () => {
      const link = this.options.link(node);
      if (!link) return { interface: iface, netns, status: 'pending', operations: [], error: `node ${node} is not registered`, reason: 'node_unreachable' };
      try {
        const report = await link.deleteInterface(iface, netns);
        return { interface: iface, netns, status: report.status, operations: report.operations, error: report.error, reason: report.reason };
      } catch (error) {
        const unreachable = error instanceof NodeUnreachableError;
        return {
          interface: iface, netns, status: unreachable ? 'pending' : 'failed', operations: [], error: (error as Error).message,
          reason: unreachable ? 'node_unreachable' : 'kernel_refused',
        };
      }
    });
  }

  /**
   * Pushes every interface of every node (or of one node: after it reconnected), then removes from
   * each reachable node the interfaces it holds from a panel that the database no longer has (a
   * network or VM deleted or moved away while the node was unreachable). Interfaces a job made
   * (version 0) are the job's: they stay.
   */
  async reconcileAll(node?: string): Promise<InterfaceOutcome[]> {
    const outcomes: InterfaceOutcome[] = [];
    const nodes = new Set(node !== undefined ? [node] : (this.options.nodes?.() ?? []));
    // What the nodes hold is read before the database: an interface pushed meanwhile has its rows
    // stored already, so it is never taken for a stale one (and applyInterface re-reads under its lock).
    const held = new Map<string, { interface: string; netns: string | null }[]>();
    for (const name of nodes) {
      const link = this.options.link(name);
      if (!link || (this.options.reachable && !this.options.reachable(name))) continue;
      try {
        held.set(name, (await link.interfaces()).filter((entry) => entry.version > 0));
      } catch (error) {
        this.options.logger.debug('cannot list the node\u2019s interfaces', { node: name, error: (error as Error).message });
      }
    }
    const refs = await interfacesWithLimits(this.options.db);
    for (const ref of refs) {
      if (node !== undefined && ref.node !== node) continue;
      outcomes.push(await this.applyInterface(ref.interface, ref.netns, undefined, ref.node));
    }
    const known = new Set(refs.map((ref) => keyOf(ref.node, ref.interface, ref.netns)));
    for (const [name, entries] of held) {
      for (const entry of entries) {
        if (known.has(keyOf(name, entry.interface, entry.netns))) continue;
        outcomes.push(await this.applyInterface(entry.interface, entry.netns, undefined, name));
      }
    }
    return outcomes;
  }
}
