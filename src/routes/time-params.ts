import { DAY_MS, HOUR_MS } from '../accounting/buckets.js';
import { inputError } from './errors.js';

/** An ISO-8601 time from a query parameter (`2026-11-01` or `2026-11-01T10:00:00Z`), or `fallback`. */
export function parseTime(field: string, value: unknown, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?)?$/.test(value)) {
    throw inputError(field, `\`${field}\` must be an ISO-8601 time such as 2026-11-01T00:00:00Z`);
  }
  // A time without a zone is UTC, like every time this plugin stores.
  const hasZone = /(Z|[+-]\d{2}:\d{2})$/.test(value);
  const time = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : hasZone ? value : `${value}Z`);
  // Date.parse rolls 2026-02-30 over to March: a date that does not exist is refused instead.
  const [year, month, day] = value.slice(0, 10).split('-').map(Number);
  const check = new Date(Date.UTC(year!, month! - 1, day!));
  if (Number.isNaN(time) || check.getUTCMonth() !== month! - 1 || check.getUTCDate() !== day) {
    throw inputError(field, `\`${field}\` is not a valid time`);
  }
  return time;
}

/** The most points one series may hold (hours in 400 days). */
export const MAX_POINTS = 24 * 400;

/**
 * A series' `step` (`hour`, the default, or `day`) and its range from `from`/`to` (ISO-8601; `to`
 * defaults to now, `from` to a day before for hours and 30 days before for days), checked.
 */
export function parseRange(query: Record<string, unknown>, now: number): { step: 'hour' | 'day'; from: number; to: number } {
  const step = query.step ?? 'hour';
  if (step !== 'hour' && step !== 'day') throw inputError('step', '`step` must be `hour` or `day`');
  const to = parseTime('to', query.to, now);
  const from = parseTime('from', query.from, to - (step === 'hour' ? DAY_MS : 30 * DAY_MS));
  if (from >= to) throw inputError('from', '`from` must be before `to`');
  if ((to - from) / (step === 'hour' ? HOUR_MS : DAY_MS) > MAX_POINTS) {
    throw inputError('from', `The range holds more than ${MAX_POINTS} ${step}s: use a shorter range or step=day`);
  }
  return { step, from, to };
}
