/**
 * The agent's core: the single writer of `tc` and the single reader of counters on its node.
 *
 * Its state is a SQLite file migrated with the plugin's own migrations, so the engine runs here
 * exactly as it always has: `bw_limits` holds the node's desired state (what the panel pushed,
 * with the class minors the panel allocated), the {@link LimitApplier} brings the kernel in line
 * with it, and the {@link Collector} writes each tick's deltas to `bw_usage`, whose autoincrement
 * id is the ledger's sequence number (SQLite's AUTOINCREMENT never reuses one, also after
 * retention deletes rows). Nothing here needs the panel: caps come back after a reboot from the
 * state file, and counting goes on while the panel is away.
 *
 * The panel machine's own node is this class too, run in the panel's process (see LocalLink).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Knex } from 'knex';
import knexFactory from 'knex';

import { knexConfigFromUrl } from '../../db/connect.js';
import { migrateLatest } from '../../db/migrate.js';
import { limitsOnInterface, type LimitRow } from '../../db/limits.js';
import { LimitApplier } from '../../limits/applier.js';
import { appliedNumbers } from '../../limits/desired.js';
import type { RateChange } from '../../shaping/rate-change.js';
import { toOutcomeReason } from '../../limits/outcome-reason.js';
import { Collector, readInterfaceCounters } from '../../accounting/collector.js';
import type { InterfaceCounters } from '../../accounting/sysfs.js';
import type { BillingBytes } from '../../accounting/billing.js';
import type { TickResult } from '../../accounting/store.js';
import { LiveRates } from '../../live/live-rates.js';
import type { Logger } from '../../plugin-api.js';
import type { Executor } from '../../shaping/executor.js';
import { KeyedMutex, interfaceLockKey } from '../../shaping/lock.js';
import type { PlanCapabilities } from '../../shaping/plan.js';
import { probeCapabilities, type Capabilities } from '../../shaping/probe.js';
import { IntervalLoop } from '../../interval-loop.js';
import {
  PROTOCOL_VERSION, subjectKey,
  type InterfaceReport, type InterfaceState, type LedgerEntry, type LedgerPage, type NodeHealth, type NodeRates, type NodeSubject,
} from '../protocol.js';
import { PACKAGE_VERSION } from './version.js';

export interface AgentCoreOptions {
  /** The node's name (what the panel's networks and VMs refer to). */
  node: string;
  /** The state file (`:memory:` for a throwaway state). */
  statePath: string;
  executor: Executor;
  /** `local` runs tc; `recording` is a dry run (nothing runs, nothing is counted). */
  mode: 'local' | 'recording';
  /** Why this executor (for the dry-run status text). */
  modeReason?: string;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
  /** Ledger retention in days. @default 30 */
  ledgerDays?: number;
  billing?: BillingBytes;
  vmSource?: 'sysfs' | 'vnstat';
  ceilingBitsPerSecond?: bigint;
  /** The capabilities a dry run plans with. @default { leaf: 'fq_codel' } */
  dryRunCapabilities?: PlanCapabilities;
}

/** Events the core emits: `ledger` (head after a tick that recorded something), `interface` (a state was applied). */
export interface AgentEvents {
  ledger: [{ head: number }];
  interface: [InterfaceReport];
}

type Row = Record<string, unknown>;

/** Builds the node's `bw_limits` row values of one pushed subject. */
function subjectRow(name: string, state: InterfaceState, subject: NodeSubject, now: number): Row {
  return {
    subject_type: subject.type,
    subject_id: subject.id,
    name: subject.name,
    node: 'local',
    network_id: null,
    interface: name,
    netns: state.netns,
    interface_kind: state.kind,
    addresses: JSON.stringify(subject.addresses),
    public_key: subject.publicKey,
    up_kbps: subject.upKbps,
    down_kbps: subject.downKbps,
    // What the panel sent is what the kernel holds: effective values, a burst only while in force.
    min_kbps: subject.minKbps ?? 0,
    burst_kbps: subject.burstKbps ?? 0,
    burst_bytes: subject.burstBytes ?? 0,
    class_minor: subject.classMinor,
    status: 'pending',
    last_error: null,
    reason: null,
    created_at: now,
    updated_at: now,
  };
}

/** True when the pushed numbers (caps, guarantee, burst) are the ones stored for the subject. */
const sameNumbers = (before: LimitRow, after: NodeSubject): boolean =>
  before.upKbps === after.upKbps && before.downKbps === after.downKbps && before.minKbps === (after.minKbps ?? 0) &&
  before.burstKbps === (after.burstKbps ?? 0) && before.burstBytes === (after.burstBytes ?? 0);

/** True when the kernel needs nothing new for this subject: same numbers, class and addresses as applied. */
const unchanged = (before: LimitRow, after: NodeSubject): boolean =>
  sameNumbers(before, after) && before.classMinor === after.classMinor &&
  before.addresses.join() === after.addresses.join() && before.publicKey === after.publicKey && before.name === after.name;

/** The network caps the agent holds for an interface (pushed by the panel beside its subjects). */
const totalsOf = (row: Row | undefined) => ({ totalUpKbps: Number(row?.total_up_kbps ?? 0), totalDownKbps: Number(row?.total_down_kbps ?? 0) });

export class AgentCore extends EventEmitter<AgentEvents> {
  readonly node: string;
  private readonly started: number;
  private readonly applier: LimitApplier;
  readonly collector: Collector | null;
  private readonly live: LiveRates | null;
  private readonly putLocks = new KeyedMutex({ fileLocks: null });
  private loops: IntervalLoop[] = [];
  private collectLoop: IntervalLoop | null = null;
  private probed: Promise<Capabilities> | null = null;

  private constructor(
    readonly db: Knex,
    readonly ledgerId: string,
    private readonly options: AgentCoreOptions,
  ) {
    super();
    this.node = options.node;
    this.started = (options.now ?? Date.now)();
    this.applier = new LimitApplier({
      db,
      executor: options.executor,
      mode: options.mode,
      reason: options.modeReason ?? options.mode,
      capabilities: async () => (options.mode === 'recording' ? (options.dryRunCapabilities ?? { leaf: 'fq_codel' }) : { leaf: (await this.capabilities()).leaf }),
      logger: options.logger,
      networkCaps: async (ref) => totalsOf((await db('bw_agent_interfaces').where({ interface: ref.interface, netns: ref.netns ?? '' }).first()) as Row | undefined),
    });
    this.collector = options.mode === 'local'
      ? new Collector({
        db,
        executor: options.executor,
        logger: options.logger,
        retention: { rawDays: options.ledgerDays ?? 30, hourlyDays: options.ledgerDays ?? 30, dailyDays: options.ledgerDays ?? 30 },
        ...(options.ceilingBitsPerSecond ? { ceilingBitsPerSecond: options.ceilingBitsPerSecond } : {}),
        ...(options.vmSource ? { vmSource: options.vmSource } : {}),
        ...(options.billing ? { billing: options.billing } : {}),
        ...(options.now ? { now: options.now } : {}),
      })
      : null;
    const collector = this.collector;
    this.live = collector ? new LiveRates(() => collector.sample(), collector.counting) : null;
  }

  /** Opens (creating and migrating if needed) the state file and returns the core. */
  static async open(options: AgentCoreOptions): Promise<AgentCore> {
    const db = knexFactory(knexConfigFromUrl(`sqlite:${options.statePath}`));
    try {
      await migrateLatest(db);
      if (!(await db.schema.hasTable('bw_agent_meta'))) {
        await db.schema.createTable('bw_agent_meta', (table) => {
          table.string('key', 32).primary();
          table.text('value').notNullable();
        });
      }
      if (!(await db.schema.hasTable('bw_agent_interfaces'))) {
        await db.schema.createTable('bw_agent_interfaces', (table) => {
          table.string('interface', 15).notNullable();
          table.string('netns', 64).notNullable().defaultTo('');
          table.string('kind', 16).notNullable();
          table.bigInteger('version').notNullable();
          table.bigInteger('updated_at').notNullable();
          table.primary(['interface', 'netns']);
        });
      }
      // The interface's network caps (issue 14), kept so a restart without the panel rebuilds the same tree.
      for (const column of ['total_up_kbps', 'total_down_kbps']) {
        if (!(await db.schema.hasColumn('bw_agent_interfaces', column))) {
          await db.schema.alterTable('bw_agent_interfaces', (table) => table.integer(column).notNullable().defaultTo(0));
        }
      }
      await db('bw_agent_meta').insert({ key: 'ledger_id', value: randomUUID() }).onConflict('key').ignore();
      const ledgerId = String((await db('bw_agent_meta').where({ key: 'ledger_id' }).first()).value);
      return new AgentCore(db, ledgerId, options);
    } catch (error) {
      await db.destroy();
      throw error;
    }
  }

  get mode(): 'local' | 'recording' {
    return this.options.mode;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** The probe's result (once per core). A dry run reports what it plans with instead of probing. */
  capabilities(): Promise<Capabilities> {
    this.probed ??= probeCapabilities(this.options.executor);
    return this.probed;
  }

  async health(): Promise<NodeHealth> {
    let capabilities: Record<string, unknown>;
    if (this.options.mode === 'recording') {
      capabilities = { dryRun: true, leaf: (this.options.dryRunCapabilities ?? { leaf: 'fq_codel' }).leaf };
    } else {
      const probe = await this.capabilities();
      capabilities = { leaf: probe.leaf, classifier: probe.classifier, canShape: probe.canShape, ifb: probe.ifb, clsact: probe.qdiscs.clsact, iproute2: probe.iproute2Version };
    }
    return {
      node: this.node,
      version: PACKAGE_VERSION,
      protocol: PROTOCOL_VERSION,
      uptimeS: Math.floor((this.now() - this.started) / 1000),
      capabilities,
      ledgerId: this.ledgerId,
      ledgerHead: await this.ledgerHead(),
      mode: this.options.mode,
    };
  }

  /** The highest sequence number ever given (SQLite keeps it in sqlite_sequence, also after deletes). */
  async ledgerHead(): Promise<number> {
    const row = (await this.db('sqlite_sequence').where({ name: 'bw_usage' }).first()) as Row | undefined;
    return row ? Number(row.seq) : 0;
  }

  /**
   * Takes the full desired state of one interface, stores it, brings the kernel in line and answers
   * with each subject's outcome. A state older than the one held changes nothing (`stale`).
   * A push that only moves one capped subject's rate takes the engine's fast path.
   */
  async putInterface(name: string, state: InterfaceState): Promise<InterfaceReport> {
    return this.putLocks.run(interfaceLockKey(name, state.netns ?? undefined), async () => {
      const heldRow = (await this.db('bw_agent_interfaces').where({ interface: name, netns: state.netns ?? '' }).first()) as Row | undefined;
      const held = heldRow ? Number(heldRow.version) : null;
      if (held !== null && state.version < held) return { ...(await this.report(name, state.netns, held, [])), stale: true };
      const totalsBefore = totalsOf(heldRow);
      const totals = { totalUpKbps: state.totalUpKbps ?? 0, totalDownKbps: state.totalDownKbps ?? 0 };
      const before = await limitsOnInterface(this.db, 'local', name, state.netns);
      const beforeById = new Map(before.map((row) => [subjectKey(row.subjectType, row.subjectId), row]));
      const now = this.now();
      // Subjects that lived on another interface of this node: that one is reconciled afterwards.
      const movedFrom = new Map<string, { interface: string; netns: string | null }>();
      await this.db.transaction(async (trx) => {
        // Subjects that now arrive here but were held on another interface (one query per 500).
        const arriving = state.subjects.filter((subject) => !beforeById.has(subjectKey(subject.type, subject.id)));
        for (let i = 0; i < arriving.length; i += 500) {
          const chunk = arriving.slice(i, i + 500);
          const elsewhere = (await trx('bw_limits').whereIn(['subject_type', 'subject_id'], chunk.map((s) => [s.type, s.id]))) as Row[];
          for (const row of elsewhere) {
            const ref = { interface: String(row.interface), netns: row.netns ? String(row.netns) : null };
            movedFrom.set(JSON.stringify(ref), ref);
            await trx('bw_limits').where({ id: row.id }).delete();
          }
        }
        // Only what changed is written: unchanged subjects keep their rows (ids, statuses), so a
        // push of a large interface that moves one rate costs one row, not all of them.
        const wanted = new Set(state.subjects.map((subject) => subjectKey(subject.type, subject.id)));
        const gone = before.filter((row) => !wanted.has(subjectKey(row.subjectType, row.subjectId))).map((row) => row.id);
        for (let i = 0; i < gone.length; i += 500) await trx('bw_limits').whereIn('id', gone.slice(i, i + 500)).delete();
        const changed = state.subjects.flatMap((subject) => {
          const previous = beforeById.get(subjectKey(subject.type, subject.id));
          return previous && !unchanged(previous, subject) ? [{ previous, subject }] : [];
        });
        // A class minor may move between two subjects in one push: free the moving ones first.
        const moving = changed.filter(({ previous, subject }) => previous.classMinor !== subject.classMinor).map(({ previous }) => previous.id);
        for (let i = 0; i < moving.length; i += 500) await trx('bw_limits').whereIn('id', moving.slice(i, i + 500)).update({ class_minor: null });
        for (const { previous, subject } of changed) {
          const { created_at: _created, subject_type: _type, subject_id: _id, ...values } = subjectRow(name, state, subject, now);
          await trx('bw_limits').where({ id: previous.id }).update(values);
        }
        const added = state.subjects.filter((subject) => !beforeById.has(subjectKey(subject.type, subject.id))).map((subject) => subjectRow(name, state, subject, now));
        for (let i = 0; i < added.length; i += 200) await trx('bw_limits').insert(added.slice(i, i + 200));
        await trx('bw_agent_interfaces')
          .insert({
            interface: name, netns: state.netns ?? '', kind: state.kind, version: state.version, updated_at: now,
            total_up_kbps: totals.totalUpKbps, total_down_kbps: totals.totalDownKbps,
          })
          .onConflict(['interface', 'netns'])
          .merge();
      });
      // New network caps change every class's share: a normal reconcile (its diff is class changes only).
      const sameTotals = totalsBefore.totalUpKbps === totals.totalUpKbps && totalsBefore.totalDownKbps === totals.totalDownKbps;
      const outcome = await this.applier.applyInterface(name, state.netns, sameTotals ? this.rateChangesOf(before, state) : undefined);
      for (const ref of movedFrom.values()) await this.applier.applyInterface(ref.interface, ref.netns);
      const report = await this.report(name, state.netns, state.version, outcome.operations, outcome);
      this.emit('interface', report);
      return report;
    });
  }

  /**
   * The subjects whose numbers alone changed (one subject's caps, or a network default's on every
   * subject it applies to; classes, addresses and everything else as applied), for the engine's
   * fast path; undefined when anything else changed.
   */
  private rateChangesOf(before: LimitRow[], state: InterfaceState): RateChange[] | undefined {
    if (before.length !== state.subjects.length) return undefined;
    const byId = new Map(before.map((row) => [subjectKey(row.subjectType, row.subjectId), row]));
    const changes: RateChange[] = [];
    for (const subject of state.subjects) {
      const previous = byId.get(subjectKey(subject.type, subject.id));
      if (!previous || previous.status !== 'applied' || previous.interfaceKind !== state.kind) return undefined;
      if (unchanged(previous, subject)) continue;
      const onlyNumbers = previous.classMinor !== null && previous.classMinor === subject.classMinor && previous.addresses.join() === subject.addresses.join() && previous.publicKey === subject.publicKey;
      if (!onlyNumbers || sameNumbers(previous, subject)) return undefined;
      changes.push({ subjectId: subject.id, previous: appliedNumbers(previous) });
    }
    return changes.length > 0 ? changes : undefined;
  }

  private async heldVersion(name: string, netns: string | null): Promise<number | null> {
    const row = (await this.db('bw_agent_interfaces').where({ interface: name, netns: netns ?? '' }).first()) as Row | undefined;
    return row ? Number(row.version) : null;
  }

  private async report(
    name: string,
    netns: string | null,
    version: number,
    operations: string[],
    outcome?: { status: InterfaceReport['status']; reason: InterfaceReport['reason']; error: string | null },
  ): Promise<InterfaceReport> {
    // Only the columns a report carries: a large interface is read often (every push answers with it).
    const query = this.db('bw_limits').where({ node: 'local', interface: name }).orderBy('id').select('subject_type', 'subject_id', 'status', 'last_error', 'reason');
    if (netns === null) query.whereNull('netns');
    else query.where({ netns });
    const subjects = ((await query) as Row[]).map((row) => ({
      type: row.subject_type === 'vm' ? 'vm' as const : 'peer' as const,
      id: String(row.subject_id),
      status: row.status as InterfaceReport['status'],
      reason: toOutcomeReason(row.reason),
      error: row.last_error ? String(row.last_error) : null,
    }));
    const worst = subjects.find((subject) => subject.status === 'failed') ?? subjects.find((subject) => subject.status === 'pending');
    return {
      interface: name,
      netns,
      version,
      stale: false,
      status: outcome?.status ?? worst?.status ?? 'applied',
      reason: outcome?.reason ?? worst?.reason ?? null,
      error: outcome?.error ?? worst?.error ?? null,
      operations,
      subjects,
    };
  }

  /** The state the agent holds for one interface (null when it holds none). */
  async interfaceState(name: string, netns: string | null): Promise<InterfaceState | null> {
    const held = (await this.db('bw_agent_interfaces').where({ interface: name, netns: netns ?? '' }).first()) as Row | undefined;
    if (!held) return null;
    const rows = await limitsOnInterface(this.db, 'local', name, netns);
    const totals = totalsOf(held);
    return {
      version: Number(held.version),
      kind: held.kind === 'vm' ? 'vm' : 'wireguard',
      netns,
      subjects: rows.map((row) => ({
        type: row.subjectType, id: row.subjectId, name: row.name, classMinor: row.classMinor, addresses: row.addresses,
        publicKey: row.publicKey, upKbps: row.upKbps, downKbps: row.downKbps,
        ...(row.minKbps > 0 ? { minKbps: row.minKbps } : {}),
        ...(row.burstKbps > 0 ? { burstKbps: row.burstKbps, burstBytes: row.burstBytes } : {}),
      })),
      ...(totals.totalUpKbps > 0 ? { totalUpKbps: totals.totalUpKbps } : {}),
      ...(totals.totalDownKbps > 0 ? { totalDownKbps: totals.totalDownKbps } : {}),
    };
  }

  /** Every interface the agent holds a state for. */
  async interfaces(): Promise<{ interface: string; netns: string | null; kind: 'wireguard' | 'vm'; version: number }[]> {
    const rows = (await this.db('bw_agent_interfaces').orderBy(['interface', 'netns'])) as Row[];
    return rows.map((row) => ({ interface: String(row.interface), netns: row.netns ? String(row.netns) : null, kind: row.kind === 'vm' ? 'vm' : 'wireguard', version: Number(row.version) }));
  }

  /**
   * Every VM the agent holds, by name; with `counters`, its tap's byte counters now (sysfs, read
   * through the executor inside a namespace; null when unreadable: the tap is gone, or a dry run
   * inside a namespace). For the VM-side design's jobs (`BANDWIDTH_COLLECT`, `NET_EGRESS_CAP_SET`).
   */
  async vms(options: { counters?: boolean } = {}): Promise<{ id: string; name: string; interface: string; netns: string | null; counters: InterfaceCounters | null }[]> {
    const rows = (await this.db('bw_limits').where({ node: 'local', subject_type: 'vm' }).orderBy(['name', 'subject_id'])) as Row[];
    const vms = rows.map((row) => ({ id: String(row.subject_id), name: String(row.name), interface: String(row.interface), netns: row.netns ? String(row.netns) : null, counters: null as InterfaceCounters | null }));
    // A few reads at a time: inside a namespace each one is a process.
    for (let i = 0; options.counters && i < vms.length; i += 32) {
      await Promise.all(vms.slice(i, i + 32).map(async (vm) => {
        vm.counters = await readInterfaceCounters(this.options.executor, vm.interface, vm.netns).catch(() => null);
      }));
    }
    return vms;
  }

  /** Forgets an interface's state and removes the engine's tree from it. */
  async deleteInterface(name: string, netns: string | null): Promise<InterfaceReport> {
    return this.putLocks.run(interfaceLockKey(name, netns ?? undefined), async () => {
      const held = (await this.heldVersion(name, netns)) ?? 0;
      await this.db.transaction(async (trx) => {
        const onInterface = trx('bw_limits').where({ node: 'local', interface: name });
        if (netns === null) onInterface.whereNull('netns');
        else onInterface.where({ netns });
        await onInterface.delete();
        await trx('bw_agent_interfaces').where({ interface: name, netns: netns ?? '' }).delete();
      });
      const outcome = await this.applier.removeInterface(name, netns);
      return { ...(await this.report(name, netns, held, outcome.operations, outcome)), subjects: [] };
    });
  }

  /** Reconciles every interface the state holds (at start: caps come back after a reboot). */
  async reconcileAll(): Promise<InterfaceReport[]> {
    const reports: InterfaceReport[] = [];
    for (const held of await this.interfaces()) {
      await this.putLocks.run(interfaceLockKey(held.interface, held.netns ?? undefined), async () => {
        const outcome = await this.applier.applyInterface(held.interface, held.netns);
        reports.push(await this.report(held.interface, held.netns, held.version, outcome.operations, outcome));
      });
    }
    return reports;
  }

  /** One collector tick into the ledger; emits `ledger` when the head moved. Null in a dry run. */
  async collect(): Promise<{ head: number; recorded: number; tick: TickResult } | null> {
    if (!this.collector) return null;
    const before = await this.ledgerHead();
    const result = await this.collector.tick();
    const head = await this.ledgerHead();
    if (head !== before) this.emit('ledger', { head });
    return { head, recorded: result.usageRows, tick: result };
  }

  /** Ledger entries after `after`, oldest first, at most `limit`. */
  async ledger(after: number, limit: number): Promise<LedgerPage> {
    const rows = (await this.db('bw_usage').where('id', '>', after).orderBy('id').limit(limit)) as Row[];
    const oldest = (await this.db('bw_usage').min({ id: 'id' }).first()) as Row | undefined;
    const entries: LedgerEntry[] = rows.map((row) => ({
      seq: Number(row.id),
      subjectType: row.subject_type === 'vm' ? 'vm' : 'peer',
      subjectId: String(row.subject_id),
      source: String(row.source),
      interface: String(row.interface),
      periodStart: Number(row.period_start),
      periodEnd: Number(row.period_end),
      upBytes: String(row.up_bytes),
      downBytes: String(row.down_bytes),
    }));
    return {
      node: this.node,
      ledgerId: this.ledgerId,
      head: await this.ledgerHead(),
      oldest: oldest?.id === null || oldest?.id === undefined ? null : Number(oldest.id),
      entries,
    };
  }

  /** Rates of the last collector tick per subject. */
  tickRates(): NodeRates {
    const rates: NodeRates = {};
    for (const [key, rate] of this.collector?.rates() ?? []) rates[key] = { ...rate };
    return rates;
  }

  /** Rates since the previous call (per second while a live page listens). */
  async liveRates(): Promise<NodeRates> {
    const rates: NodeRates = {};
    if (!this.live) return rates;
    const at = this.now();
    for (const [key, rate] of await this.live.next()) {
      rates[key] = { upKbps: rate.upKbps, downKbps: rate.downKbps, classUpKbps: rate.classUpKbps ?? null, classDownKbps: rate.classDownKbps ?? null, at };
    }
    return rates;
  }

  /** Forget the live baseline (nobody listens). */
  resetLive(): void {
    this.live?.reset();
  }

  /**
   * Runs the agent's own loops: reconcile now (caps come back after a reboot without the panel),
   * then every `reconcileIntervalS`; collect every `collectIntervalS`.
   */
  start(intervals: { collectIntervalS: number; reconcileIntervalS: number | null }): void {
    if (this.loops.length > 0) return;
    const { logger } = this.options;
    // In the panel's process the panel's own reconcile loop pushes this node's state: no second one.
    if (intervals.reconcileIntervalS !== null) {
      this.loops.push(new IntervalLoop('agent reconcile', () => this.reconcileAll(), intervals.reconcileIntervalS * 1000, logger));
    }
    if (this.collector) {
      this.collectLoop = new IntervalLoop('agent collect', () => this.collect(), intervals.collectIntervalS * 1000, logger);
      this.loops.push(this.collectLoop);
    }
    for (const loop of this.loops) loop.start();
  }

  /** Runs one collect now (or waits for the one in progress). */
  async collectNow(): Promise<void> {
    if (this.collectLoop) await this.collectLoop.runOnce();
    else await this.collect();
  }

  /** Stops the loops and closes the state file. */
  async close(): Promise<void> {
    await Promise.all(this.loops.map((loop) => loop.stop()));
    this.loops = [];
    this.collectLoop = null;
    this.removeAllListeners();
    await this.db.destroy();
  }
}
