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

/** The limits filter plus a node, a search text and an order. */
export interface SubjectQuery extends LimitFilter {
  /** Only subjects on this node (`local`: the panel's machine). */
  node?: string;
  search?: string;
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
  return builder;
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
