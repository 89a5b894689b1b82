/**
 * The quota enforcer (src/quotas/enforcer.ts) against a model, on every engine, with two panel
 * processes (two knex pools, two enforcers) on one database. fast-check draws the steps: ledger
 * pages for a few subjects, quotas set and removed on subjects, networks and the default, the
 * clock moved (minutes to 40 days, across cycle ends), manual resets, traffic blocks, and passes of
 * either enforcer (or both at once). After every step the model checks each cycle's counters to
 * the byte; after every pass each threshold notified at most once per cycle (across both
 * enforcers), only when crossed, and after a full pass (`sync`) the current cycles, their states,
 * every crossed threshold notified and the throttles in `bw_limits`.
 * The seed is printed; `PBW_SEED=<seed>` replays it (`PBW_RUNS=<n>` for more runs).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import type { Knex } from 'knex';

import { bigintColumn, sumBigint, toBigInt } from '../../src/db/bigint.js';
import { saveLimit, type SubjectLimit } from '../../src/db/limits.js';
import { deleteQuota, putQuota } from '../../src/db/quotas.js';
import { addExtraBytes, resetCycle } from '../../src/db/quota-cycles.js';
import { ingestPage } from '../../src/nodes/panel/ingest.js';
import type { LedgerEntry } from '../../src/nodes/protocol.js';
import { QuotaEnforcer, type QuotaNotice } from '../../src/quotas/enforcer.js';
import type { Counted, QuotaSettings, QuotaTarget } from '../../src/quotas/rules.js';
import { ENGINES, type Engine } from '../support/databases.js';
import { openOwnMigrated } from '../support/own-database.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** How long ended cycles are kept (the enforcer's CYCLE_HISTORY_MS). */
const CYCLE_HISTORY = 400 * DAY;
const T0 = Date.UTC(2026, 0, 1);

interface Subject {
  type: 'peer' | 'vm';
  id: string;
  network: string | null;
  iface: string;
  up: number;
  down: number;
}

/** Two peers of network n1 on wg0, one of n2 on wg1, a VM on its tap. */
const SUBJECTS: Subject[] = [
  { type: 'peer', id: 'p1', network: 'n1', iface: 'wg0', up: 0, down: 0 },
  { type: 'peer', id: 'p2', network: 'n1', iface: 'wg0', up: 2000, down: 800 },
  { type: 'peer', id: 'p3', network: 'n2', iface: 'wg1', up: 0, down: 5000 },
  { type: 'vm', id: 'v1', network: null, iface: 'tap1', up: 300, down: 0 },
];
const TARGETS: QuotaTarget[] = [
  ...SUBJECTS.map((s) => ({ type: s.type, id: s.id })),
  { type: 'network', id: 'n1' },
  { type: 'network', id: 'n2' },
  { type: 'default', id: '' },
];
const ZONES = ['UTC', 'Asia/Kathmandu', 'Asia/Kolkata', 'America/New_York', 'Europe/Berlin', 'Pacific/Chatham'];
const subjectKey = (type: string, id: string) => `${type}:${id}`;
const targetKey = (target: QuotaTarget) => `${target.type}:${target.id}`;

// ---- an oracle for cycles, written apart from src/quotas/cycle.ts (zones without DST at midnight) ----

function wallParts(timeZone: string, at: number): number[] {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)!.value);
  return [get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second')];
}
const offsetAt = (timeZone: string, at: number) => {
  const [y, mo, d, h, mi, s] = wallParts(timeZone, at) as [number, number, number, number, number, number];
  return Date.UTC(y, mo, d, h, mi, s) - Math.floor(at / 1000) * 1000;
};
function startInMonth(cycleDay: number, timeZone: string, year: number, month0: number): number {
  const days = new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
  const wall = Date.UTC(year, month0, Math.min(cycleDay, days));
  let at = wall - offsetAt(timeZone, wall);
  at = wall - offsetAt(timeZone, at);
  return wall - offsetAt(timeZone, at);
}
function referenceCycle(settings: { cycleDay: number; timeZone: string }, at: number): { start: number; end: number } {
  const [year, month0] = wallParts(settings.timeZone, at) as [number, number];
  let index = year * 12 + month0;
  const start = (i: number) => startInMonth(settings.cycleDay, settings.timeZone, Math.floor(i / 12), i % 12);
  if (at < start(index)) index--;
  return { start: start(index), end: start(index + 1) };
}

// ---- the model ----

interface Delta {
  subject: Subject;
  periodEnd: number;
  up: bigint;
  down: bigint;
}

/** What the model knows of one stored cycle (by row id). */
interface ModelCycle {
  id: number;
  subject: string;
  start: number;
  end: number;
  countedFrom: number;
  extra: bigint;
  notified: Set<number>;
  resetTold: boolean;
}

interface StoredCycle {
  id: number;
  subject: string;
  start: number;
  end: number;
  countedFrom: number;
  up: bigint;
  down: bigint;
  extra: bigint;
  fired: number[];
  state: string;
  dirty: boolean;
}

async function storedCycles(db: Knex): Promise<StoredCycle[]> {
  const rows = (await db('bw_quota_cycles')
    .select('id', 'subject_type', 'subject_id', 'cycle_start', 'cycle_end', 'counted_from', 'fired', 'state', 'dirty', bigintColumn(db, 'up_bytes'), bigintColumn(db, 'down_bytes'), bigintColumn(db, 'extra_bytes'))
    .orderBy('id')) as Record<string, unknown>[];
  return rows.map((row) => ({
    id: Number(row.id), subject: subjectKey(String(row.subject_type), String(row.subject_id)), start: Number(row.cycle_start), end: Number(row.cycle_end),
    countedFrom: Number(row.counted_from), up: toBigInt(row.up_bytes)!, down: toBigInt(row.down_bytes)!, extra: toBigInt(row.extra_bytes)!,
    fired: JSON.parse(String(row.fired)) as number[], state: String(row.state), dirty: Boolean(row.dirty),
  }));
}

type Throttle = { upKbps: number; downKbps: number } | null;

async function storedLimits(db: Knex): Promise<Map<string, { up: number; down: number; throttle: Throttle }>> {
  const rows = (await db('bw_limits').select('subject_type', 'subject_id', 'up_kbps', 'down_kbps', 'throttle_up_kbps', 'throttle_down_kbps')) as Record<string, unknown>[];
  return new Map(rows.map((row) => [subjectKey(String(row.subject_type), String(row.subject_id)), {
    up: Number(row.up_kbps), down: Number(row.down_kbps),
    throttle: row.throttle_up_kbps === null && row.throttle_down_kbps === null ? null : { upKbps: Number(row.throttle_up_kbps ?? 0), downKbps: Number(row.throttle_down_kbps ?? 0) },
  }]));
}

const used = (counted: Counted, up: bigint, down: bigint) => (counted === 'up' ? up : counted === 'down' ? down : up + down);

/** The thresholds crossed and the state, from the model's own arithmetic. */
function judge(settings: QuotaSettings, up: bigint, down: bigint, extra: bigint): { crossed: number[]; state: string } {
  const limit = settings.allowanceBytes + extra;
  const bytes = used(settings.counted, up, down);
  const warnings = settings.warnPercents.filter((p) => p < 100 && bytes * 100n >= limit * BigInt(p));
  const exceeded = bytes >= limit;
  return { crossed: exceeded ? [...warnings, 100] : warnings, state: exceeded ? 'exceeded' : warnings.length > 0 ? 'warning' : 'ok' };
}

const wantThrottle = (settings: QuotaSettings | undefined, state: string): Throttle =>
  settings && settings.action === 'throttle' && state === 'exceeded' && (settings.throttleUpKbps > 0 || settings.throttleDownKbps > 0)
    ? { upKbps: settings.throttleUpKbps, downKbps: settings.throttleDownKbps }
    : null;

// ---- the steps ----

const settingsArb: fc.Arbitrary<QuotaSettings> = fc.record({
  allowanceBytes: fc.constantFrom(2n ** 50n, 2n ** 52n, 2n ** 54n, 2n ** 54n + 12_345n),
  counted: fc.constantFrom<Counted>('up', 'down', 'total'),
  cycleDay: fc.oneof(fc.constantFrom(1, 28, 29, 30, 31), fc.integer({ min: 1, max: 31 })),
  timeZone: fc.constantFrom(...ZONES),
  warnPercents: fc.subarray([25, 50, 80, 90, 100]),
  action: fc.constantFrom('throttle' as const, 'notify' as const),
  throttleUpKbps: fc.constantFrom(0, 500, 1000),
  throttleDownKbps: fc.constantFrom(0, 250, 1000),
});

/** Deltas of a ledger page: `lag` ms before the clock (late ones fall into ended cycles). */
const deltasArb = fc.array(fc.record({
  subject: fc.nat({ max: SUBJECTS.length - 1 }),
  lag: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3 * HOUR }), fc.integer({ min: 0, max: 3 * DAY })),
  up: fc.bigInt(0n, 2n ** 52n),
  down: fc.bigInt(0n, 2n ** 52n),
}), { minLength: 1, maxLength: 6 });

const stepArb = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('ingest' as const), deltas: deltasArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('quota' as const), target: fc.nat({ max: TARGETS.length - 1 }), settings: settingsArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unquota' as const), target: fc.nat({ max: TARGETS.length - 1 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 120 * MINUTE }) }, { weight: 2, arbitrary: fc.integer({ min: HOUR, max: 2 * DAY }) }, { weight: 2, arbitrary: fc.integer({ min: DAY, max: 40 * DAY }) }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const), subject: fc.nat({ max: SUBJECTS.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extra' as const), subject: fc.nat({ max: SUBJECTS.length - 1 }), bytes: fc.constantFrom(2n ** 49n, 2n ** 53n + 1n) }) },
  { weight: 4, arbitrary: fc.record({
    kind: fc.constant('enforce' as const),
    by: fc.constantFrom('a' as const, 'b' as const, 'both' as const),
    pass: fc.constantFrom('afterIngest' as const, 'sync' as const, 'subjects' as const),
    other: fc.constantFrom('afterIngest' as const, 'sync' as const, 'subjects' as const),
    // For `subjects` (syncSubjects, as the API calls after a change).
    subjects: fc.subarray(SUBJECTS.map((_, i) => i), { minLength: 1 }),
  }) },
  // A page ingested by one panel process while the other one's enforcer runs.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('race' as const), deltas: deltasArb, by: fc.constantFrom('a' as const, 'b' as const), pass: fc.constantFrom('afterIngest' as const, 'sync' as const) }) },
);
type Step = typeof stepArb extends fc.Arbitrary<infer S> ? S : never;

function seedFromEnv(): number {
  const text = process.env.PBW_SEED;
  if (text === undefined || text === '') return Math.floor(Math.random() * 2 ** 31);
  const seed = Number(text);
  if (!Number.isInteger(seed)) throw new TypeError(`Expected PBW_SEED to be an integer, got ${JSON.stringify(text)}`);
  return seed;
}

const silent = { debug() {}, info() {} };

/**
 * One run of steps on a database both pools share (emptied first). Returns after checking the
 * model after every step; throws an AssertionError at the first difference.
 */
async function runSteps(pools: [Knex, Knex], start: number, steps: Step[], stats: Map<string, number>): Promise<void> {
  const count = (what: string, n = 1) => void stats.set(what, (stats.get(what) ?? 0) + n);
  const [a, b] = pools;
  for (const table of ['bw_quota_cycles', 'bw_quotas', 'bw_limits', 'bw_usage', 'bw_usage_hourly', 'bw_usage_daily', 'bw_usage_totals', 'bw_node_cursors', 'bw_events']) await a(table).delete();
  let now = start;
  const warnings: string[] = [];
  const notices: { by: string; notice: QuotaNotice }[] = [];
  const applied: string[] = [];
  const enforcer = (db: Knex, name: string) => new QuotaEnforcer({
    db, now: () => now,
    logger: { ...silent, warn: (message, fields) => void warnings.push(`${name}: ${message} ${JSON.stringify(fields)}`), error: (message, fields) => void warnings.push(`${name}: ${message} ${JSON.stringify(fields)}`) },
    applyInterface: (iface, _netns, node) => {
      applied.push(`${node}/${iface}`);
      return Promise.resolve();
    },
    notify: (notice) => {
      notices.push({ by: name, notice });
      return Promise.resolve();
    },
  });
  const enforcers = { a: enforcer(a, 'a'), b: enforcer(b, 'b') };

  for (const s of SUBJECTS) {
    const limit: SubjectLimit = {
      subjectType: s.type, subjectId: s.id, name: `${s.type} ${s.id}`, networkId: s.network, interface: s.iface, netns: null,
      interfaceKind: s.type === 'vm' ? 'vm' : 'wireguard', addresses: [], upKbps: s.up, downKbps: s.down,
    };
    await saveLimit(a, limit, now);
  }
  const quotas = new Map<string, QuotaSettings>();
  const effective = (s: Subject): QuotaSettings | undefined =>
    quotas.get(subjectKey(s.type, s.id)) ?? (s.network ? quotas.get(`network:${s.network}`) : undefined) ?? quotas.get('default:');
  const deltas: Delta[] = [];
  const model = new Map<number, ModelCycle>();
  const ledger: LedgerEntry[] = [];
  const bySubject = new Map(SUBJECTS.map((s) => [subjectKey(s.type, s.id), s]));
  const current = (cycles: StoredCycle[], s: Subject) => cycles.find((c) => c.subject === subjectKey(s.type, s.id) && c.start <= now && now < c.end);

  const ingest = async (specs: { subject: number; lag: number; up: bigint; down: bigint }[], db: Knex) => {
    // One entry per series and instant, as an agent’s ledger holds them.
    const batch = specs.map((d, i) => ({ subject: SUBJECTS[d.subject]!, periodEnd: now - d.lag - i, up: d.up, down: d.down }));
    const first = ledger.length;
    for (const d of batch) {
      ledger.push({
        seq: ledger.length + 1, subjectType: d.subject.type, subjectId: d.subject.id, source: d.subject.type === 'vm' ? 'sysfs' : 'wireguard', interface: d.subject.iface,
        periodStart: d.periodEnd - MINUTE, periodEnd: d.periodEnd, upBytes: d.up.toString(), downBytes: d.down.toString(),
      });
    }
    deltas.push(...batch);
    await ingestPage(db, 'hv1', { node: 'hv1', ledgerId: 'L', head: ledger.length, oldest: 1, entries: ledger.slice(first) }, { now });
  };
  const run = (e: QuotaEnforcer, which: 'afterIngest' | 'sync' | 'subjects', subjects: number[] = []) =>
    which === 'sync' ? e.sync() : which === 'subjects' ? e.syncSubjects(subjects.map((i) => ({ type: SUBJECTS[i]!.type, id: SUBJECTS[i]!.id }))) : e.afterIngest();

  for (const [index, step] of steps.entries()) {
    const where = `step ${index} (${JSON.stringify(step, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}) at ${new Date(now).toISOString()}`;
    let pass: { full: boolean; synced: Set<string>; notices: number; applied: number; throttles: Map<string, Throttle>; dirty: Set<string> } | undefined;
    const before = await storedCycles(a);
    switch (step.kind) {
      case 'ingest':
        await ingest(step.deltas, index % 2 === 0 ? a : b);
        break;
      case 'quota':
        await putQuota(a, TARGETS[step.target]!, step.settings, now);
        quotas.set(targetKey(TARGETS[step.target]!), step.settings);
        break;
      case 'unquota':
        await deleteQuota(b, TARGETS[step.target]!);
        quotas.delete(targetKey(TARGETS[step.target]!));
        break;
      case 'advance':
        now += step.ms;
        break;
      case 'reset':
      case 'extra': {
        const s = SUBJECTS[step.subject]!;
        const cycle = current(before, s);
        if (!cycle || !effective(s)) break;
        if (step.kind === 'reset') {
          await resetCycle(a, cycle.id, now);
          const m = model.get(cycle.id)!;
          m.countedFrom = now;
          m.notified.clear();
        } else {
          await addExtraBytes(b, cycle.id, step.bytes, now);
          model.get(cycle.id)!.extra += step.bytes;
        }
        break;
      }
      case 'enforce': {
        const throttles = new Map([...(await storedLimits(a))].map(([key, row]) => [key, row.throttle]));
        // A pass after ingestion evaluates at least the subjects with a cycle written to since it was evaluated.
        const passes = step.by === 'both' ? [step.pass, step.other] : [step.pass];
        const dirty = new Set(passes.includes('afterIngest') ? before.filter((c) => c.dirty).map((c) => c.subject) : []);
        const synced = new Set(passes.includes('subjects') ? step.subjects.map((i) => subjectKey(SUBJECTS[i]!.type, SUBJECTS[i]!.id)) : []);
        pass = { full: passes.includes('sync'), synced, notices: notices.length, applied: applied.length, throttles, dirty };
        if (step.by === 'both') await Promise.all([run(enforcers.a, step.pass, step.subjects), run(enforcers.b, step.other, step.subjects)]);
        else await run(enforcers[step.by], step.pass, step.subjects);
        break;
      }
      case 'race': {
        // What the pass saw is before or after the page: thresholds it notifies must be crossed after it; nothing must be done.
        const throttles = new Map([...(await storedLimits(a))].map(([key, row]) => [key, row.throttle]));
        pass = { full: false, synced: new Set(), notices: notices.length, applied: applied.length, throttles, dirty: new Set() };
        await Promise.all([run(enforcers[step.by], step.pass), ingest(step.deltas, step.by === 'a' ? b : a)]);
        break;
      }
    }

    const cycles = await storedCycles(b);
    const stored = new Map(cycles.map((c) => [c.id, c]));
    // Notices of a pass: each threshold once per cycle (a moved cycle carries what was notified), only when crossed, saying what the model says.
    const hear = (notice: QuotaNotice) => {
      const key = subjectKey(notice.subject.type, notice.subject.id);
      // A cycle evaluated by one enforcer may be replaced by the other's pass at the same time (its rule changed): the notice was true when made.
      const row = [...model.values()].find((c) => c.subject === key && c.start === notice.cycle.start && c.end === notice.cycle.end);
      assert.ok(row, `${where}: ${notice.name} of ${key} names a cycle never stored`);
      const m = row;
      if (notice.name === 'bandwidth.quota.reset') {
        assert.ok(!m.resetTold, `${where}: the new cycle of ${key} was announced twice`);
        m.resetTold = true;
        return;
      }
      assert.ok(row.start <= now && now < row.end, `${where}: ${notice.name} of ${key} for a cycle that is not current`);
      assert.ok(!m.notified.has(notice.percent!), `${where}: ${notice.percent}% of ${key} notified twice in cycle ${row.id}`);
      m.notified.add(notice.percent!);
      const settings = effective(bySubject.get(key)!);
      assert.ok(settings, `${where}: ${notice.name} of ${key} without a quota`);
      const modelUp = sumOf(deltas, key, m.countedFrom, m.end, 'up');
      const modelDown = sumOf(deltas, key, m.countedFrom, m.end, 'down');
      const judged = judge(settings, modelUp, modelDown, m.extra);
      assert.ok(judged.crossed.includes(notice.percent!), `${where}: ${notice.percent}% of ${key} notified but not crossed`);
      if (step.kind === 'race') return; // the pass saw the bytes before or after the page
      const s = bySubject.get(key)!;
      const source = quotas.has(key) ? 'subject' : s.network && quotas.has(`network:${s.network}`) ? 'network' : 'default';
      assert.deepEqual(
        { used: notice.usedBytes, limit: notice.limitBytes, throttled: notice.throttled, source: notice.source },
        { used: used(settings.counted, modelUp, modelDown), limit: settings.allowanceBytes + m.extra, throttled: wantThrottle(settings, judged.state) !== null, source },
        `${where}: what the ${notice.percent}% notice of ${key} says`,
      );
    };
    const heard = pass ? notices.slice(pass.notices).map(({ notice }) => notice) : [];
    const names = (notice: QuotaNotice, m: ModelCycle) => m.subject === subjectKey(notice.subject.type, notice.subject.id) && m.start === notice.cycle.start && m.end === notice.cycle.end;
    const early = heard.filter((notice) => [...model.values()].some((m) => names(notice, m)));
    for (const notice of early) hear(notice);
    // Rows that appeared: opened by a pass, for a subject with a quota, as the current cycle of its rule. A cycle
    // that replaces overlapping ones (its rule changed) keeps their traffic blocks, notified thresholds and a reset inside it.
    const vanished = [...model.values()].filter((m) => !stored.has(m.id));
    for (const c of cycles) {
      if (model.has(c.id)) continue;
      assert.ok(pass, `${where}: cycle ${c.id} of ${c.subject} appeared outside an enforcer pass`);
      const settings = effective(bySubject.get(c.subject)!);
      assert.ok(settings, `${where}: cycle ${c.id} opened for ${c.subject}, which has no quota`);
      const carry = { countedFrom: c.start, extra: 0n, notified: new Set<number>() };
      for (const old of vanished.filter((m) => m.subject === c.subject && m.start < c.end && c.start < m.end)) {
        carry.extra += old.extra;
        for (const percent of old.notified) carry.notified.add(percent);
        if (old.countedFrom > old.start && old.countedFrom > carry.countedFrom && old.countedFrom < c.end) carry.countedFrom = old.countedFrom;
      }
      assert.deepEqual([c.start, c.end, c.countedFrom, c.extra], [...Object.values(referenceCycle(settings, now)), carry.countedFrom, carry.extra],
        `${where}: new cycle ${c.id} of ${c.subject} is the rule's current one, counting from its start (or a reset it carries), with the blocks it carries`);
      model.set(c.id, { id: c.id, subject: c.subject, start: c.start, end: c.end, ...carry, resetTold: false });
    }
    for (const notice of heard) if (!early.includes(notice)) hear(notice);
    // Rows that went: replaced by a cycle of a changed rule that overlaps them, or past the history kept.
    for (const [id, m] of model) {
      if (stored.has(id)) continue;
      assert.ok(pass, `${where}: cycle ${id} of ${m.subject} vanished outside an enforcer pass`);
      const replaced = cycles.some((c) => c.subject === m.subject && c.start < m.end && m.start < c.end);
      assert.ok(replaced || m.end < now - CYCLE_HISTORY, `${where}: cycle ${id} of ${m.subject} [${new Date(m.start).toISOString()}, ${new Date(m.end).toISOString()}) was deleted`);
      model.delete(id);
    }
    // Every cycle's counters are exactly its deltas since it counts; its blocks, reset and notified thresholds are the model's.
    for (const c of cycles) {
      const m = model.get(c.id)!;
      const want = { up: sumOf(deltas, c.subject, m.countedFrom, c.end, 'up'), down: sumOf(deltas, c.subject, m.countedFrom, c.end, 'down') };
      assert.deepEqual({ up: c.up, down: c.down }, want, `${where}: bytes of cycle ${c.id} of ${c.subject} [${new Date(c.start).toISOString()}, ${new Date(c.end).toISOString()})`);
      assert.deepEqual([c.countedFrom, c.extra], [m.countedFrom, m.extra], `${where}: counted_from and extra bytes of cycle ${c.id} of ${c.subject}`);
      assert.deepEqual(c.fired, [...m.notified].sort((x, y) => x - y), `${where}: thresholds recorded as notified in cycle ${c.id} of ${c.subject}`);
    }
    if (step.kind === 'enforce') {
      // Every cycle written to was evaluated (or, ended, settled): the next pass after ingestion starts from nothing.
      // syncSubjects alone answers for its subjects only.
      const everyone = step.pass !== 'subjects' || (step.by === 'both' && step.other !== 'subjects');
      const left = cycles.filter((c) => c.dirty && (everyone || pass!.synced.has(c.subject)));
      assert.deepEqual(left.map((c) => `${c.id} ${c.subject}`), [], `${where}: cycles left dirty`);
    }
    const limits = await storedLimits(a);
    for (const s of SUBJECTS) {
      const row = limits.get(subjectKey(s.type, s.id))!;
      assert.deepEqual([row.up, row.down], [s.up, s.down], `${where}: the configured caps of ${s.id} are never overwritten`);
    }
    if (pass) {
      // A throttle put in force or lifted reaches its interface; nothing else is applied.
      const changed = SUBJECTS.filter((s) => JSON.stringify(limits.get(subjectKey(s.type, s.id))!.throttle) !== JSON.stringify(pass.throttles.get(subjectKey(s.type, s.id))));
      assert.deepEqual([...new Set(applied.slice(pass.applied))].sort(), [...new Set(changed.map((s) => `local/${s.iface}`))].sort(), `${where}: interfaces applied`);
    }
    if (pass) {
      for (const s of SUBJECTS) {
        const key = subjectKey(s.type, s.id);
        const settings = effective(s);
        const fully = pass.full || pass.synced.has(key);
        if (!fully && !(pass.dirty.has(key) && settings && current(cycles, s))) continue;
        let state = 'ok';
        if (settings) {
          const c = current(cycles, s);
          assert.ok(c, `${where}: after its pass ${key} has a current cycle`);
          if (fully) assert.deepEqual([c.start, c.end], Object.values(referenceCycle(settings, now)), `${where}: the current cycle of ${key} follows its rule`);
          const m = model.get(c.id)!;
          const judged = judge(settings, c.up, c.down, m.extra);
          state = judged.state;
          assert.equal(c.state, judged.state, `${where}: state of ${key}`);
          for (const percent of judged.crossed) assert.ok(m.notified.has(percent), `${where}: ${percent}% of ${key} crossed but never notified`);
        }
        assert.deepEqual(limits.get(key)!.throttle, wantThrottle(settings, state), `${where}: throttle of ${key}`);
      }
    }
    assert.deepEqual(warnings, [], `${where}: the enforcers logged no warning`);
    count(step.kind === 'enforce' || step.kind === 'race' ? `${step.kind} ${step.by} ${step.pass}` : step.kind);
    if (pass) {
      for (const { notice } of notices.slice(pass.notices)) count(`notice ${notice.name.split('.').pop()!}`);
      count('interfaces applied', applied.length - pass.applied);
    }
  }
  count('cycles', model.size);
  count('throttled at the end', [...(await storedLimits(a)).values()].filter((row) => row.throttle !== null).length);
}

function sumOf(deltas: Delta[], subject: string, from: number, end: number, direction: 'up' | 'down'): bigint {
  let sum = 0n;
  for (const d of deltas) if (subjectKey(d.subject.type, d.subject.id) === subject && d.periodEnd > from && d.periodEnd <= end) sum += d[direction];
  return sum;
}

async function openPools(t: Parameters<typeof openOwnMigrated>[0], engine: Engine): Promise<[Knex, Knex] | undefined> {
  const pools = await openOwnMigrated(t, engine, 'qenforce', 2);
  return pools ? [pools[0]!, pools[1]!] : undefined;
}

for (const engine of ENGINES) {
  describe(`quota enforcer on ${engine.id}`, () => {
    test('model-based: two enforcers on one database keep counters exact, notify each threshold once per cycle and throttle exactly the exceeded', { timeout: 240_000 }, async (t) => {
      const pools = await openPools(t, engine);
      if (!pools) return;
      const seed = seedFromEnv();
      const numRuns = Number(process.env.PBW_RUNS ?? (engine.id === 'sqlite' ? 25 : 12));
      t.diagnostic(`seed ${seed} (replay: PBW_SEED=${seed} node --import tsx --test test/db/quota-enforcer.test.ts)`);
      console.log(`quota-enforcer model-based on ${engine.id}: seed ${seed}, ${numRuns} runs`);
      const stats = new Map<string, number>();
      let failedOnce = false;
      const details = await fc.check(
        fc.asyncProperty(fc.integer({ min: 0, max: 400 * DAY }), fc.array(stepArb, { minLength: 5, maxLength: 25, size: 'max' }), async (offset, steps) => {
          try {
            await runSteps(pools, T0 + offset, steps, stats);
          } catch (error) {
            // The first failure at once (shrinking a long sequence on a server takes minutes).
            if (!failedOnce) console.log(`first failure: start T0 + ${offset} ms: ${inspect(error)}\nsteps ${JSON.stringify(steps, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`);
            failedOnce = true;
            throw error;
          }
        }),
        { seed, numRuns },
      );
      t.diagnostic(`steps and outcomes: ${[...stats].sort().map(([what, n]) => `${what} ${n}`).join(', ')}`);
      if (details.failed) {
        const [offset, steps] = details.counterexample!;
        // The shrunk sequence, as a regression test below takes it, and the model's complaint about it.
        t.diagnostic(`minimal failing run: start T0 + ${offset} ms, steps ${JSON.stringify(steps, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`);
        throw details.errorInstance;
      }
    });

    test('regression: a pass after ingestion rolls a cycle over at its end when the cycle was opened after the last full pass (by syncSubjects)', async (t) => {
      const pools = await openPools(t, engine);
      if (!pools) return;
      const [db] = pools;
      let now = Date.UTC(2026, 2, 10, 12);
      const notices: QuotaNotice[] = [];
      const applied: string[] = [];
      const enforcer = new QuotaEnforcer({
        db, now: () => now, logger: { ...silent, warn() {}, error() {} },
        applyInterface: (iface) => Promise.resolve(void applied.push(iface)),
        notify: (notice) => Promise.resolve(void notices.push(notice)),
      });
      const p1 = SUBJECTS[0]!;
      await saveLimit(db, { subjectType: 'peer', subjectId: p1.id, name: 'p1', networkId: p1.network, interface: p1.iface, netns: null, interfaceKind: 'wireguard', addresses: [], upKbps: 0, downKbps: 0 }, now);
      // The reconcile loop's full pass finds no quota (nothing to roll over); then the API sets one and syncs the subject.
      await enforcer.sync();
      const settings: QuotaSettings = { allowanceBytes: 1000n, counted: 'total', cycleDay: 1, timeZone: 'UTC', warnPercents: [100], action: 'throttle', throttleUpKbps: 100, throttleDownKbps: 100 };
      await putQuota(db, { type: 'peer', id: p1.id }, settings, now);
      await enforcer.syncSubjects([{ type: 'peer', id: p1.id }]);
      let seq = 0;
      const page = (bytes: bigint) => ({ node: 'hv1', ledgerId: 'L', head: ++seq, oldest: 1, entries: [{
        seq, subjectType: 'peer' as const, subjectId: p1.id, source: 'wireguard', interface: p1.iface, periodStart: now - MINUTE, periodEnd: now, upBytes: bytes.toString(), downBytes: '0',
      }] });
      await ingestPage(db, 'hv1', page(5000n), { now });
      await enforcer.afterIngest();
      assert.deepEqual((await storedLimits(db)).get('peer:p1')!.throttle, { upKbps: 100, downKbps: 100 }, 'exceeded: throttled');
      // The cycle ends (1 April); the next ingestion's pass opens the next cycle and lifts the throttle.
      now = Date.UTC(2026, 3, 1, 0, 5);
      await ingestPage(db, 'hv1', page(1n), { now });
      await enforcer.afterIngest();
      assert.deepEqual((await storedLimits(db)).get('peer:p1')!.throttle, null, 'a new cycle: the throttle is lifted');
      assert.deepEqual(notices.map((n) => [n.name, new Date(n.cycle.start).toISOString()]), [
        ['bandwidth.quota.exceeded', '2026-03-01T00:00:00.000Z'],
        ['bandwidth.quota.reset', '2026-04-01T00:00:00.000Z'],
      ]);
      assert.deepEqual(applied, ['wg0', 'wg0']);
    });

    test('regression: a late delta into an ended cycle leaves no cycle dirty, so later passes after ingestion do not evaluate its subject again and again', async (t) => {
      const pools = await openPools(t, engine);
      if (!pools) return;
      const [db] = pools;
      let now = Date.UTC(2026, 2, 31, 23, 59, 0);
      const enforcer = new QuotaEnforcer({ db, now: () => now, logger: { ...silent, warn() {}, error() {} }, applyInterface: () => Promise.resolve(), notify: () => Promise.resolve() });
      for (const s of SUBJECTS) {
        await saveLimit(db, { subjectType: s.type, subjectId: s.id, name: s.id, networkId: s.network, interface: s.iface, netns: null, interfaceKind: s.type === 'vm' ? 'vm' : 'wireguard', addresses: [], upKbps: 0, downKbps: 0 }, now);
      }
      await putQuota(db, { type: 'default', id: '' }, { allowanceBytes: 2n ** 40n, counted: 'total', cycleDay: 1, timeZone: 'UTC', warnPercents: [80, 100], action: 'throttle', throttleUpKbps: 100, throttleDownKbps: 100 }, now);
      await enforcer.sync();
      // The first pull after midnight brings the deltas of 23:59:30: they belong to March.
      now = Date.UTC(2026, 3, 1, 0, 0, 5);
      const entries = SUBJECTS.map((s, i) => ({
        seq: i + 1, subjectType: s.type, subjectId: s.id, source: 'wireguard', interface: s.iface,
        periodStart: Date.UTC(2026, 2, 31, 23, 58, 30), periodEnd: Date.UTC(2026, 2, 31, 23, 59, 30), upBytes: '1000', downBytes: '1000',
      }));
      await ingestPage(db, 'hv1', { node: 'hv1', ledgerId: 'L', head: entries.length, oldest: 1, entries }, { now });
      await enforcer.afterIngest();
      const march = (await storedCycles(db)).filter((c) => c.start === Date.UTC(2026, 2, 1));
      assert.deepEqual(march.map((c) => c.up), SUBJECTS.map(() => 1000n), 'the late deltas counted in March');
      assert.deepEqual((await storedCycles(db)).filter((c) => c.dirty).map((c) => `${c.subject} ${new Date(c.start).toISOString()}`), [], 'no cycle is left dirty');
    });

    test('regression: a pass after ingestion judges a subject by the cycle its rule gives, not by a cycle of the rule before (throttled on bytes of another cycle)', async (t) => {
      const pools = await openPools(t, engine);
      if (!pools) return;
      const [db] = pools;
      let now = Date.UTC(2026, 2, 5, 12);
      const enforcer = new QuotaEnforcer({ db, now: () => now, logger: { ...silent, warn() {}, error() {} }, applyInterface: () => Promise.resolve(), notify: () => Promise.resolve() });
      const p1 = SUBJECTS[0]!;
      await saveLimit(db, { subjectType: 'peer', subjectId: p1.id, name: 'p1', networkId: p1.network, interface: p1.iface, netns: null, interfaceKind: 'wireguard', addresses: [], upKbps: 0, downKbps: 0 }, now);
      const settings: QuotaSettings = { allowanceBytes: 2n ** 40n, counted: 'total', cycleDay: 1, timeZone: 'UTC', warnPercents: [100], action: 'throttle', throttleUpKbps: 100, throttleDownKbps: 100 };
      await putQuota(db, { type: 'peer', id: p1.id }, settings, now);
      await enforcer.sync();
      let seq = 0;
      const page = (bytes: bigint) => ({ node: 'hv1', ledgerId: 'L', head: ++seq, oldest: 1, entries: [{
        seq, subjectType: 'peer' as const, subjectId: p1.id, source: 'wireguard', interface: p1.iface, periodStart: now - MINUTE, periodEnd: now, upBytes: bytes.toString(), downBytes: '0',
      }] });
      await ingestPage(db, 'hv1', page(5000n), { now });
      // On the 25th the quota moves to cycles from the 20th, of 1000 bytes (another process changed it; its sync has not run yet).
      now = Date.UTC(2026, 2, 25, 12);
      await putQuota(db, { type: 'peer', id: p1.id }, { ...settings, cycleDay: 20, allowanceBytes: 1000n }, now);
      await ingestPage(db, 'hv1', page(1n), { now });
      await enforcer.afterIngest();
      // The cycle from 20 March holds 1 byte: not exceeded. The cycle from 1 March (5001 bytes) is not the subject's any more.
      assert.equal((await storedLimits(db)).get('peer:p1')!.throttle, null);
    });

    test('two panels evaluating while a third pool ingests the same subjects, tick after tick, never deadlock', { timeout: 120_000 }, async (t) => {
      const own = await openOwnMigrated(t, engine, 'qenforce', 3);
      if (!own) return;
      const [a, b, c] = own as [Knex, Knex, Knex];
      let now = Date.UTC(2026, 4, 31, 23, 0);
      const enforcer = (db: Knex) => new QuotaEnforcer({ db, now: () => now, logger: { ...silent, warn() {}, error() {} }, applyInterface: () => Promise.resolve(), notify: () => Promise.resolve() });
      const [first, second] = [enforcer(a), enforcer(b)];
      for (const s of SUBJECTS) {
        await saveLimit(a, { subjectType: s.type, subjectId: s.id, name: s.id, networkId: s.network, interface: s.iface, netns: null, interfaceKind: s.type === 'vm' ? 'vm' : 'wireguard', addresses: [], upKbps: 0, downKbps: 0 }, now);
      }
      await putQuota(a, { type: 'default', id: '' }, { allowanceBytes: 2n ** 60n, counted: 'total', cycleDay: 1, timeZone: 'UTC', warnPercents: [80, 100], action: 'throttle', throttleUpKbps: 100, throttleDownKbps: 100 }, now);
      await first.sync();
      let seq = 0;
      const ticks = engine.id === 'sqlite' ? 60 : 150;
      for (let tick = 0; tick < ticks; tick++) {
        // Across a cycle's end: late deltas land in the ended cycles while the passes open the next ones.
        now += 53_000;
        const entries = SUBJECTS.flatMap((s) => [now - 90_000, now].map((end) => ({
          seq: ++seq, subjectType: s.type, subjectId: s.id, source: 'wireguard', interface: s.iface, periodStart: end - MINUTE, periodEnd: end, upBytes: '1000', downBytes: '10',
        })));
        await Promise.all([
          ingestPage(c, 'hv1', { node: 'hv1', ledgerId: 'L', head: seq, oldest: 1, entries }, { now }),
          first.afterIngest(),
          tick % 10 === 0 ? second.sync() : second.afterIngest(),
        ]);
      }
      await first.sync();
      const [total] = (await a('bw_quota_cycles').select(sumBigint(a, 'up_bytes', 'up'))) as Record<string, unknown>[];
      assert.equal(toBigInt(total!.up), BigInt(ticks * 2 * SUBJECTS.length * 1000), 'every delta counted once, in one cycle or the next');
    });

    // PBW_STEPS='<the steps a failure printed>' [PBW_START=<ms after T0>] replays one run without fast-check.
    if (process.env.PBW_STEPS) {
      test('replay of PBW_STEPS', async (t) => {
        const pools = await openPools(t, engine);
        if (!pools) return;
        const steps = JSON.parse(process.env.PBW_STEPS!, (_k, v: unknown) => (typeof v === 'string' && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as Step[];
        await runSteps(pools, T0 + Number(process.env.PBW_START ?? 0), steps, new Map());
      });
    }
  });
}
