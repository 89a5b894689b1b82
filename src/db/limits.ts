import type { Knex } from 'knex';
import type { SubjectType } from '../plugin-api.js';

export type LimitStatus = 'pending' | 'applied' | 'failed';

/** A subject's desired caps as stored in `bw_limits` (kbps, 0 = unlimited). */
export interface LimitRow {
  id: number;
  subjectType: SubjectType;
  subjectId: string;
  name: string;
  node: string;
  interface: string;
  netns: string | null;
  interfaceKind: 'wireguard' | 'vm';
  addresses: string[];
  upKbps: number;
  downKbps: number;
  classMinor: number | null;
  status: LimitStatus;
  lastError: string | null;
  appliedAt: Date | null;
  updatedAt: Date;
}

function toLimit(row: Record<string, unknown>): LimitRow {
  return {
    id: Number(row.id),
    subjectType: row.subject_type as SubjectType,
    subjectId: String(row.subject_id),
    name: String(row.name),
    node: String(row.node),
    interface: String(row.interface),
    netns: row.netns ? String(row.netns) : null,
    interfaceKind: row.interface_kind === 'vm' ? 'vm' : 'wireguard',
    addresses: JSON.parse(String(row.addresses)) as string[],
    upKbps: Number(row.up_kbps),
    downKbps: Number(row.down_kbps),
    classMinor: row.class_minor === null ? null : Number(row.class_minor),
    status: row.status as LimitStatus,
    lastError: row.last_error ? String(row.last_error) : null,
    appliedAt: row.applied_at === null ? null : new Date(Number(row.applied_at)),
    updatedAt: new Date(Number(row.updated_at)),
  };
}

/** One page of limits, ordered by subject type and name. */
export async function listLimits(db: Knex, page: { offset: number; limit: number }): Promise<LimitRow[]> {
  const rows = await db('bw_limits').orderBy([{ column: 'subject_type' }, { column: 'name' }, { column: 'id' }]).offset(page.offset).limit(page.limit);
  return rows.map(toLimit);
}

/** How many limits are in each status. */
export async function countLimitsByStatus(db: Knex): Promise<Record<LimitStatus, number> & { total: number }> {
  const rows = (await db('bw_limits').select('status').count({ n: '*' }).groupBy('status')) as { status: string; n: number | string }[];
  const counts = { pending: 0, applied: 0, failed: 0, total: 0 };
  for (const row of rows) {
    if (row.status in counts) counts[row.status as LimitStatus] = Number(row.n);
    counts.total += Number(row.n);
  }
  return counts;
}
