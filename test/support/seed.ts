import type { Knex } from 'knex';

/**
 * Seeds a host and the bandwidth plugin's tables straight through the database, in batches inside
 * one transaction: 10,000 subjects take about a second on SQLite, where the panel's API (hooks,
 * one transaction per peer) would take minutes. What is written is what the host and the plugin
 * write themselves: `networks`/`peers`/`vms` rows (so the subject pages find their record), one
 * `bw_limits` row per subject, and hourly/daily roll-ups that agree with each other.
 */

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export type SubjectType = 'peer' | 'vm';
export type SeedStatus = 'applied' | 'pending' | 'failed';

/** Bytes of one roll-up bucket. */
export interface UsageRow {
  subjectType: SubjectType;
  subjectId: string;
  /** Bucket start (epoch ms, UTC). */
  start: number;
  up: bigint;
  down: bigint;
}

/** One seeded peer or VM, as the overview shows it. */
export interface SeededSubject {
  /** 1-based position in the seed (names and caps derive from it). */
  index: number;
  type: SubjectType;
  id: string;
  /** `peer:12` — the key of rows, SSE frames and totals. */
  key: string;
  name: string;
  networkId: string | null;
  interface: string;
  /** A peer's only allowed IP (`10.<network>.<hi>.<lo>/32`); null for a VM. */
  address: string | null;
  upKbps: number;
  downKbps: number;
  status: SeedStatus;
  lastError: string | null;
  /** Hourly and daily roll-up rows of this subject (empty when it has no usage). */
  hourly: UsageRow[];
  daily: UsageRow[];
}

export interface SeedOptions {
  /** How many subjects. */
  count: number;
  /** Every `vmEvery`-th subject is a VM, the others are peers. @default 10 */
  vmEvery?: number;
  /** Peers per WireGuard network (`wg0`, `wg1`, …). @default 1000 */
  peersPerNetwork?: number;
  /** @default `peer-00001` / `vm-00010` */
  name?: (index: number, type: SubjectType) => string;
  /** Caps of a subject. @default every 7th unlimited, others (1..20) × 1 Mbps up and 5 × that down */
  caps?: (index: number) => { upKbps: number; downKbps: number };
  /** Kernel status of a limited subject. @default every 50th (from 1) and 130th (from 30) `failed`, every 15th (from 5) `pending`, else `applied` */
  status?: (index: number) => SeedStatus;
  /** Which subjects have usage rows. @default none */
  usage?: (index: number) => boolean;
  /**
   * Bytes per hour of a subject with usage, in its `hour`-th hour (0 = the oldest seeded hour).
   * @default up = index × 1,000,000 + hour, down = 3 × up
   */
  bytesPerHour?: (index: number, hour: number) => { up: bigint; down: bigint };
  /** The clock the roll-ups are placed against. @default Date.now() */
  now?: number;
}

/** What {@link seedSubjects} wrote. */
export interface Seeded {
  subjects: SeededSubject[];
  /** Subjects by `type:id`. */
  byKey: Map<string, SeededSubject>;
  counts: { subjects: number; peers: number; vms: number; limited: number; unlimited: number } & Record<SeedStatus, number>;
  networkIds: string[];
}

const defaultName = (index: number, type: SubjectType) => `${type}-${String(index).padStart(5, '0')}`;
const defaultCaps = (index: number) => (index % 7 === 0 ? { upKbps: 0, downKbps: 0 } : { upKbps: 1000 * (1 + (index % 20)), downKbps: 5000 * (1 + (index % 20)) });
const defaultStatus = (index: number): SeedStatus => (index % 50 === 1 || index % 130 === 30 ? 'failed' : index % 15 === 5 ? 'pending' : 'applied');
const defaultBytes = (index: number, hour: number) => {
  const up = BigInt(index) * 1_000_000n + BigInt(hour);
  return { up, down: 3n * up };
};

/** A distinct, valid WireGuard public key per index (32 bytes, base64). */
export function seedKey(index: number): string {
  const bytes = Buffer.alloc(32, 0x5a);
  bytes.writeUInt32BE(index);
  return bytes.toString('base64');
}

export const floorTo = (time: number, bucketMs: number) => Math.floor(time / bucketMs) * bucketMs;
export const ceilTo = (time: number, bucketMs: number) => Math.ceil(time / bucketMs) * bucketMs;

/**
 * The hours that carry a subject's traffic: the last 48 whole hours before the current one, and
 * 12:00 UTC of each older day of the last 30 (today included). Every day's daily row is the sum of
 * its hours, as the collector writes them, so any range reads the same bytes from either roll-up.
 */
export function usageHours(now: number): number[] {
  const currentHour = floorTo(now, HOUR_MS);
  const recent = Array.from({ length: 48 }, (_, i) => currentHour - (48 - i) * HOUR_MS);
  const today = floorTo(now, DAY_MS);
  const noons: number[] = [];
  for (let day = today - 29 * DAY_MS; day <= today; day += DAY_MS) {
    const noon = day + 12 * HOUR_MS;
    if (noon < recent[0]!) noons.push(noon);
  }
  return [...noons, ...recent];
}

/** Rows per bucket, summing rows of the same subject and bucket. */
function dailyOf(hourly: UsageRow[]): UsageRow[] {
  const days = new Map<number, UsageRow>();
  for (const row of hourly) {
    const start = floorTo(row.start, DAY_MS);
    const day = days.get(start) ?? { subjectType: row.subjectType, subjectId: row.subjectId, start, up: 0n, down: 0n };
    day.up += row.up;
    day.down += row.down;
    days.set(start, day);
  }
  return [...days.values()];
}

async function insertAll(trx: Knex.Transaction, table: string, rows: Record<string, unknown>[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) await trx(table).insert(rows.slice(i, i + 500));
}

async function nextId(db: Knex, table: string): Promise<number> {
  const [row] = (await db(table).max({ id: 'id' })) as { id: number | null }[];
  return Number(row?.id ?? 0) + 1;
}

/**
 * Seeds `count` subjects (peers on `wg<n>` networks, every `vmEvery`-th a VM on its own tap) with
 * their caps and statuses, and usage roll-ups for the subjects `usage` picks.
 * @example const seeded = await seedSubjects(host.db, { count: 10_000, usage: (i) => i % 100 === 7 });
 */
export async function seedSubjects(db: Knex, options: SeedOptions): Promise<Seeded> {
  const vmEvery = options.vmEvery ?? 10;
  const peersPerNetwork = options.peersPerNetwork ?? 1000;
  const name = options.name ?? defaultName;
  const caps = options.caps ?? defaultCaps;
  const status = options.status ?? defaultStatus;
  const bytes = options.bytesPerHour ?? defaultBytes;
  const now = options.now ?? Date.now();
  const hours = usageHours(now);

  const firstNetwork = await nextId(db, 'networks');
  const firstPeer = await nextId(db, 'peers');
  const firstVm = await nextId(db, 'vms');
  const networks: Record<string, unknown>[] = [];
  const peers: Record<string, unknown>[] = [];
  const vms: Record<string, unknown>[] = [];
  const limits: Record<string, unknown>[] = [];
  const hourlyRows: Record<string, unknown>[] = [];
  const dailyRows: Record<string, unknown>[] = [];
  const subjects: SeededSubject[] = [];
  const minors = new Map<string, number>();
  let peerCount = 0;
  let vmCount = 0;

  for (let index = 1; index <= options.count; index++) {
    const type: SubjectType = index % vmEvery === 0 ? 'vm' : 'peer';
    const subjectName = name(index, type);
    const cap = caps(index);
    const limited = cap.upKbps > 0 || cap.downKbps > 0;
    const subjectStatus = limited ? status(index) : 'applied';
    let id: string;
    let networkId: string | null = null;
    let iface: string;
    let address: string | null = null;
    if (type === 'peer') {
      const ordinal = peerCount++;
      const network = firstNetwork + Math.floor(ordinal / peersPerNetwork);
      const host = (ordinal % peersPerNetwork) + 2;
      networkId = String(network);
      iface = `wg${network - firstNetwork}`;
      address = `10.${network - firstNetwork}.${Math.floor(host / 256)}.${host % 256}/32`;
      if (ordinal % peersPerNetwork === 0) networks.push({ id: network, name: `net-${network}`, interface: iface, netns: '', created_at: now, updated_at: now });
      id = String(firstPeer + ordinal);
      peers.push({
        id: Number(id), network_id: network, name: subjectName, public_key: seedKey(index),
        allowed_ips: JSON.stringify([address]), created_at: now, updated_at: now,
      });
    } else {
      id = String(firstVm + vmCount++);
      iface = `tap-v${id}`;
      vms.push({ id: Number(id), name: subjectName, interface: iface, netns: '', created_at: now, updated_at: now });
    }
    let classMinor: number | null = null;
    if (limited) {
      classMinor = (minors.get(iface) ?? 1) + 1;
      minors.set(iface, classMinor);
    }
    const lastError = subjectStatus === 'failed' ? 'RTNETLINK answers: No such device' : null;
    limits.push({
      subject_type: type, subject_id: id, name: subjectName, node: 'local', network_id: networkId, interface: iface, netns: null,
      interface_kind: type === 'vm' ? 'vm' : 'wireguard', addresses: JSON.stringify(address ? [address] : []),
      public_key: type === 'peer' ? seedKey(index) : null, up_kbps: cap.upKbps, down_kbps: cap.downKbps, class_minor: classMinor,
      status: subjectStatus, last_error: lastError, applied_at: subjectStatus === 'applied' ? now : null, created_at: now, updated_at: now,
    });
    const hourly: UsageRow[] = options.usage?.(index)
      ? hours.map((start, hour) => ({ subjectType: type, subjectId: id, start, ...bytes(index, hour) }))
      : [];
    const daily = dailyOf(hourly);
    for (const [rows, column, list] of [[hourlyRows, 'hour_start', hourly], [dailyRows, 'day_start', daily]] as const) {
      for (const row of list) {
        rows.push({ subject_type: type, subject_id: id, [column]: row.start, up_bytes: row.up.toString(), down_bytes: row.down.toString() });
      }
    }
    subjects.push({
      index, type, id, key: `${type}:${id}`, name: subjectName, networkId, interface: iface, address,
      upKbps: cap.upKbps, downKbps: cap.downKbps, status: subjectStatus, lastError, hourly, daily,
    });
  }

  await db.transaction(async (trx) => {
    await insertAll(trx, 'networks', networks);
    await insertAll(trx, 'peers', peers);
    await insertAll(trx, 'vms', vms);
    await insertAll(trx, 'bw_limits', limits);
    await insertAll(trx, 'bw_usage_hourly', hourlyRows);
    await insertAll(trx, 'bw_usage_daily', dailyRows);
    // The all-time totals the collector keeps beside its roll-ups (/metrics reads them).
    await insertAll(trx, 'bw_usage_totals', subjects.filter((s) => s.daily.length > 0).map((s) => ({
      subject_type: s.type, subject_id: s.id,
      up_bytes: s.daily.reduce((sum, row) => sum + row.up, 0n).toString(), down_bytes: s.daily.reduce((sum, row) => sum + row.down, 0n).toString(),
    })));
  });

  const limitedSubjects = subjects.filter((s) => s.upKbps > 0 || s.downKbps > 0);
  return {
    subjects,
    byKey: new Map(subjects.map((s) => [s.key, s])),
    counts: {
      subjects: subjects.length,
      peers: peerCount,
      vms: vmCount,
      limited: limitedSubjects.length,
      unlimited: subjects.length - limitedSubjects.length,
      applied: limitedSubjects.filter((s) => s.status === 'applied').length,
      pending: limitedSubjects.filter((s) => s.status === 'pending').length,
      failed: limitedSubjects.filter((s) => s.status === 'failed').length,
    },
    networkIds: networks.map((n) => String(n.id)),
  };
}

/**
 * The bytes a subject moved over [from, to) by its seeded hours: the hours that start at or after
 * `from` (rounded up to the hour) and before `to` (rounded down). Raw rows would cover the partial
 * hours at either end; the seed writes none, so this is what every range query must answer.
 */
export function seededTotal(subject: Pick<SeededSubject, 'hourly'>, from: number, to: number): { up: bigint; down: bigint } {
  const first = ceilTo(from, HOUR_MS);
  const last = floorTo(to, HOUR_MS);
  let up = 0n;
  let down = 0n;
  for (const row of subject.hourly) {
    if (row.start >= first && row.start < last) {
      up += row.up;
      down += row.down;
    }
  }
  return { up, down };
}

/**
 * One daily row per subject and day for the last `days` days (today included), written in SQL in
 * one statement: `up_bytes` = subject id × 1000 + day number, `down_bytes` = 2 × that. For exports
 * of hundreds of thousands of rows, which would take seconds to build and insert from JavaScript.
 * SQLite only (a recursive CTE feeding an INSERT).
 * @returns how many rows were written.
 */
export async function seedDailyForAll(db: Knex, days: number, now = Date.now()): Promise<number> {
  const firstDay = floorTo(now, DAY_MS) - (days - 1) * DAY_MS;
  await db.raw(
    `WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < ?)
     INSERT INTO bw_usage_daily (subject_type, subject_id, day_start, up_bytes, down_bytes)
     SELECT l.subject_type, l.subject_id, ? + d.n * ?, CAST(l.subject_id AS INTEGER) * 1000 + d.n, 2 * (CAST(l.subject_id AS INTEGER) * 1000 + d.n)
     FROM bw_limits l CROSS JOIN d`,
    [days - 1, firstDay, DAY_MS],
  );
  const [row] = (await db('bw_usage_daily').count({ n: '*' })) as { n: number | string }[];
  return Number(row?.n ?? 0);
}
