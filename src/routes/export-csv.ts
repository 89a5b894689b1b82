import { once } from 'node:events';
import type { Request, RequestHandler, Response } from 'express';
import type { Host } from '../plugin-api.js';
import type { Clock } from '../clock.js';
import { bigintColumn, toBigInt } from '../db/bigint.js';
import { DAY_MS, HOUR_MS } from '../accounting/buckets.js';
import { inputError } from './errors.js';
import { parseTime } from './time-params.js';
import type { SubjectType } from '../plugin-api.js';
import type { QuotaService, QuotaStatus } from '../quotas/service.js';

const CHUNK = 2000;
const HEADER = 'subject_type,subject_id,name,period_start,period_end,up_bytes,down_bytes';
/** Each subject's current quota cycle (at the time of the export), empty when no quota applies. */
const QUOTA_HEADER = 'quota_source,quota_state,cycle_start,cycle_end,quota_used_bytes,quota_limit_bytes';
const NO_QUOTA = ',,,,,';

/** What a spreadsheet reads as a formula when a cell starts with it (some trim spaces and opening quotes first). */
const FORMULA_START = /^[ "]*[=+\-@\t\r]/;
/** Where a spreadsheet may split a field into cells when it reads the file with another separator than ours. */
const SEPARATOR = /([,;\t|\r\n])/;
/** What makes a field need quotes: a separator, a line break or a quote. */
const NEEDS_QUOTES = /[",;\t|\r\n]/;

/**
 * One CSV field, safe to open in a spreadsheet (OWASP "CSV injection"): a cell that would start
 * with `=` `+` `-` `@` tab or CR, at the field's start or after any separator inside it, gets a
 * `'` before it so it is read as text, and such a field, or one with a separator, line break or
 * quote, is quoted.
 * @example csvField('x;=1+2;@SUM(1)') // `"x;'=1+2;'@SUM(1)"`
 */
export function csvField(value: string): string {
  // split() with a capturing group: cells at even indexes, the separators between them at odd ones.
  const cells = value.split(SEPARATOR).map((cell, index) => (index > 0 && index % 2 === 0 && FORMULA_START.test(cell) ? `'${cell}` : cell));
  const safe = (FORMULA_START.test(value) ? "'" : '') + cells.join('');
  return safe !== value || NEEDS_QUOTES.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** Writes, and when the socket's buffer is full waits for it to drain — or for the client to go. */
async function write(res: Response, text: string): Promise<void> {
  // A client that already went away gets nothing more, and no 'drain' or 'close' will come.
  if (res.destroyed || res.closed) return;
  if (res.write(text) || res.destroyed || res.closed) return;
  const stop = new AbortController();
  const drained = once(res, 'drain', { signal: stop.signal }).catch(() => undefined);
  const closed = once(res, 'close', { signal: stop.signal }).catch(() => undefined);
  await Promise.race([drained, closed]);
  stop.abort();
}

/** The quota columns of one subject: its current cycle's source, state, bounds, used and limit bytes. */
function quotaFields(status: QuotaStatus | undefined): string {
  if (!status) return NO_QUOTA;
  return [
    status.source, status.state, new Date(status.cycleStart).toISOString(), new Date(status.cycleEnd).toISOString(),
    status.usedBytes.toString(), status.limitBytes.toString(),
  ].join(',');
}

/**
 * Streams usage per subject and period as CSV, reading the roll-up in keyset-paginated chunks
 * and waiting for the socket to drain, so a year of hourly rows for thousands of subjects never
 * sits in memory. A client that goes away stops the query loop.
 * With `quotas`, each row also carries its subject's current quota cycle ({@link QUOTA_HEADER}),
 * read once per subject per export, a chunk's new subjects at a time.
 */
export function exportCsv(host: Host, clock: Clock = Date.now, quotas?: QuotaService): RequestHandler {
  return async (req: Request, res: Response) => {
    const query = req.query as Record<string, unknown>;
    const step = query.step ?? 'day';
    if (step !== 'hour' && step !== 'day') throw inputError('step', '`step` must be `hour` or `day`');
    const now = clock();
    const to = parseTime('to', query.to, now);
    const from = parseTime('from', query.from, to - 30 * DAY_MS);
    if (from >= to) throw inputError('from', '`from` must be before `to`');
    const [table, column, bucketMs] = step === 'hour' ? (['bw_usage_hourly', 'hour_start', HOUR_MS] as const) : (['bw_usage_daily', 'day_start', DAY_MS] as const);
    const db = host.db;
    const page = async (after: { bucket: number; id: number } | null): Promise<Record<string, unknown>[]> => {
      const chunk = db(`${table} as u`)
        .leftJoin('bw_limits as l', function join() {
          this.on('l.subject_type', '=', 'u.subject_type').andOn('l.subject_id', '=', 'u.subject_id');
        })
        .select('u.id', 'u.subject_type', 'u.subject_id', `u.${column} as bucket`, 'l.name', bigintColumn(db, 'u.up_bytes', 'up'), bigintColumn(db, 'u.down_bytes', 'down'))
        .where(`u.${column}`, '>=', Math.floor(from / bucketMs) * bucketMs)
        .andWhere(`u.${column}`, '<', to)
        .orderBy([{ column: `u.${column}` }, { column: 'u.id' }])
        .limit(CHUNK);
      if (after) {
        const { bucket, id } = after;
        // The plain `>=` lets the index start at the last bucket; the OR then skips what was sent.
        chunk.andWhere(`u.${column}`, '>=', bucket);
        chunk.andWhere((q) => q.where(`u.${column}`, '>', bucket).orWhere((q2) => q2.where(`u.${column}`, '=', bucket).andWhere('u.id', '>', id)));
      }
      return (await chunk) as Record<string, unknown>[];
    };
    // The first page is read before anything is sent: a database that fails is then an error
    // status from the error middleware, not a 200 with the header row alone.
    let closed = false;
    res.on('close', () => (closed = true));
    let rows = await page(null);
    res.status(200).set({
      'Content-Type': 'text/csv; charset=utf-8',
      'Content-Disposition': `attachment; filename="bandwidth-${step}-${new Date(from).toISOString().slice(0, 10)}-${new Date(to).toISOString().slice(0, 10)}.csv"`,
      'Cache-Control': 'no-store',
    });
    await write(res, `${HEADER}${quotas ? `,${QUOTA_HEADER}` : ''}\n`);
    // The quota columns of each subject seen so far (one line of text each, not the status objects).
    const quotaColumns = new Map<string, string>();
    const readQuotas = async (chunk: Record<string, unknown>[]) => {
      if (!quotas) return;
      for (const type of ['peer', 'vm'] as const satisfies readonly SubjectType[]) {
        const ids = [...new Set(chunk.filter((row) => row.subject_type === type).map((row) => String(row.subject_id)))].filter((id) => !quotaColumns.has(`${type}:${id}`));
        // A client that went away gets no more reads on its behalf.
        if (ids.length === 0 || closed) continue;
        const statuses = await quotas.statuses(type, ids);
        for (const id of ids) quotaColumns.set(`${type}:${id}`, quotaFields(statuses.get(`${type}:${id}`)));
      }
    };
    for (;;) {
      await readQuotas(rows);
      if (closed) break;
      let text = '';
      for (const row of rows) {
        const start = Number(row.bucket);
        text += [
          String(row.subject_type),
          csvField(String(row.subject_id)),
          csvField(row.name === null || row.name === undefined ? '' : String(row.name)),
          new Date(start).toISOString(),
          new Date(start + bucketMs).toISOString(),
          String(toBigInt(row.up)),
          String(toBigInt(row.down)),
        ].join(',');
        if (quotas) text += `,${quotaColumns.get(`${String(row.subject_type)}:${String(row.subject_id)}`) ?? NO_QUOTA}`;
        text += '\n';
      }
      if (text !== '') await write(res, text);
      if (closed || rows.length < CHUNK) break;
      const last = rows[rows.length - 1]!;
      // A later page that fails reaches the error middleware with the headers sent: it cuts the
      // connection, so the client sees a broken download rather than a short file that looks whole.
      rows = await page({ bucket: Number(last.bucket), id: Number(last.id) });
    }
    res.end();
  };
}
