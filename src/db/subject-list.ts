import type { Knex } from 'knex';
import type { LimitRow } from './limits.js';
import { applyFilter, toLimitRow, type LimitFilter } from './limits.js';

export const SORT_KEYS = ['name', 'type', 'node', 'interface', 'up', 'down', 'status', 'rate', 'usage_24h', 'usage_30d', 'utilisation'] as const;
export type SortKey = (typeof SORT_KEYS)[number];
/** Sort keys the database can order by; the rest need live rates or totals and are sorted in memory. */
const SQL_SORTS: Partial<Record<SortKey, string[]>> = {
  name: ['name', 'id'],
  type: ['subject_type', 'name', 'id'],
  node: ['node', 'name', 'id'],
  interface: ['interface', 'name', 'id'],
  up: ['up_kbps', 'name', 'id'],
  down: ['down_kbps', 'name', 'id'],
  status: ['status', 'name', 'id'],
};

/** The quota filter values of the subject list. */
export const QUOTA_FILTERS = ['over_warning'] as const;
export type QuotaFilter = (typeof QUOTA_FILTERS)[number];

/** The limits filter plus a node, a search text, a quota filter and an order. */
export interface SubjectQuery extends LimitFilter {
  /** Only subjects on this node (`local`: the panel's machine). */
  node?: string;
  search?: string;
  /** `over_warning`: subjects whose current quota cycle is in warning or exceeded. */
  quota?: QuotaFilter;
  /** The instant that picks each subject's current cycle for `quota` (epoch ms). @default Date.now() */
  at?: number;
  sort: SortKey;
  order: 'asc' | 'desc';
}

/** `LIKE` with `!` as the escape character, the same on SQLite, MariaDB and PostgreSQL. */
function likePattern(text: string): string {
  return `%${text.replace(/[!%_]/g, (c) => `!${c}`)}%`;
}

function filtered(db: Knex, query: SubjectQuery): Knex.QueryBuilder {
  const builder = applyFilter(db('bw_limits'), query);
  if (query.node) builder.where({ node: query.node });
  if (query.search) {
    const pattern = likePattern(query.search.toLowerCase());
    builder.andWhere((q) =>
      q
        .whereRaw("LOWER(name) LIKE ? ESCAPE '!'", [pattern])
        .orWhereRaw("LOWER(addresses) LIKE ? ESCAPE '!'", [pattern])
        .orWhereRaw("LOWER(interface) LIKE ? ESCAPE '!'", [pattern]),
    );
  }
  if (query.quota === 'over_warning') overQuotaWarning(db, builder, query.at ?? Date.now());
  return builder;
}

/**
 * Keeps subjects whose cycle at `at` was evaluated as warning or exceeded, and to which a quota
 * still applies (its own, its network's for a peer, or the default): a cycle keeps its last state
 * after its quota is removed. One EXISTS per fact, so the database filters before any paging.
 */
function overQuotaWarning(db: Knex, builder: Knex.QueryBuilder, at: number): void {
  builder.whereExists((cycle) => {
    cycle.select(db.raw('1')).from('bw_quota_cycles as qc')
      .where('qc.subject_type', db.ref('bw_limits.subject_type')).where('qc.subject_id', db.ref('bw_limits.subject_id'))
      .whereIn('qc.state', ['warning', 'exceeded']).where('qc.cycle_start', '<=', at).where('qc.cycle_end', '>', at);
  });
  builder.andWhere((applies) => {
    applies
      .whereExists((own) => {
        own.select(db.raw('1')).from('bw_quotas as qo').where('qo.subject_type', db.ref('bw_limits.subject_type')).where('qo.subject_id', db.ref('bw_limits.subject_id'));
      })
      .orWhereExists((network) => {
        network.select(db.raw('1')).from('bw_quotas as qn').where('qn.subject_type', 'network').where('qn.subject_id', db.ref('bw_limits.network_id'))
          .where('bw_limits.subject_type', 'peer');
      })
      .orWhereExists((fallback) => {
        fallback.select(db.raw('1')).from('bw_quotas as qd').where('qd.subject_type', 'default');
      });
  });
}

export async function countSubjects(db: Knex, query: SubjectQuery): Promise<number> {
  const [row] = await filtered(db, query).count({ n: '*' });
  return Number(row?.n ?? 0);
}

/**
 * One page of subjects. Orders the database can do are paginated there; orders by live rate,
 * totals or utilisation load the matching rows' keys, rank them with `rank` and page in memory.
 */
export async function listSubjects(
  db: Knex,
  query: SubjectQuery,
  page: { offset: number; limit: number },
  rank: (rows: LimitRow[]) => Promise<Map<string, number>>,
): Promise<LimitRow[]> {
  const columns = SQL_SORTS[query.sort];
  if (columns) {
    const rows = await filtered(db, query)
      .orderBy(columns.map((column, i) => ({ column, order: i === 0 ? query.order : 'asc' })))
      .offset(page.offset)
      .limit(page.limit);
    return rows.map(toLimitRow);
  }
  const all = ((await filtered(db, query)) as Record<string, unknown>[]).map(toLimitRow);
  const ranks = await rank(all);
  const sign = query.order === 'asc' ? 1 : -1;
  all.sort((a, b) => {
    const diff = (ranks.get(`${a.subjectType}:${a.subjectId}`) ?? 0) - (ranks.get(`${b.subjectType}:${b.subjectId}`) ?? 0);
    return diff !== 0 ? sign * diff : a.name.localeCompare(b.name) || a.id - b.id;
  });
  return all.slice(page.offset, page.offset + page.limit);
}
