/** How a subject's billing cycle is laid out. */
export interface CycleRule {
  /**
   * Day of the month the cycle starts, 1–31; 1 = calendar month. A day past the month's end is
   * clamped to its last day (31 → Feb 28/29, Apr 30).
   */
  cycleDay: number;
  /** IANA time zone the day starts in (midnight local time), e.g. 'Europe/Berlin'. */
  timeZone: string;
}

/** One cycle: [start, end) in epoch ms. */
export interface Cycle {
  /** The first instant of the cycle (inclusive), epoch ms. */
  start: number;
  /** The first instant after it (exclusive): the next cycle's `start`. */
  end: number;
}

const DAY_MS = 86_400_000;

/** Offset strings ('+02:00', '-0530', '+02'): see {@link isTimeZone} for why they are refused. */
const OFFSET_ZONE = /^[+-]\d/;

const formatters = new Map<string, Intl.DateTimeFormat>();

/** One formatter per zone: building one costs tens of microseconds, formatting with it about one. */
function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    // 'h23' because 'en-US' alone gives 24:00 for midnight in some ICU versions; `era` so years
    // before 1 AD still come back as proleptic Gregorian numbers.
    formatter = new Intl.DateTimeFormat('en-US-u-ca-gregory-nu-latn', {
      timeZone,
      hourCycle: 'h23',
      era: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** The wall clock in `timeZone` at instant `at`, as the epoch ms that clock reading would be in UTC. */
function wallClock(timeZone: string, at: number): number {
  let era = '';
  let year = 0;
  let month = 0;
  let day = 0;
  let hour = 0;
  let minute = 0;
  let second = 0;
  for (const part of formatterFor(timeZone).formatToParts(at)) {
    switch (part.type) {
      case 'era': era = part.value; break;
      case 'year': year = Number(part.value); break;
      case 'month': month = Number(part.value); break;
      case 'day': day = Number(part.value); break;
      case 'hour': hour = Number(part.value); break;
      case 'minute': minute = Number(part.value); break;
      case 'second': second = Number(part.value); break;
      default: break;
    }
  }
  if (era === 'BC') year = 1 - year;
  const wall = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0–99 to 1900–1999.
  wall.setUTCFullYear(year, month - 1, day);
  wall.setUTCHours(hour, minute, second, 0);
  // Intl drops the milliseconds; add them back so the wall clock moves with the instant.
  return wall.getTime() + (at - Math.floor(at / 1000) * 1000);
}

/** The zone's offset from UTC at instant `at`, in ms (whole seconds: Intl formats no finer). */
function offsetAt(timeZone: string, at: number): number {
  return wallClock(timeZone, at) - at;
}

/**
 * The first instant whose wall clock in `timeZone` reads `wall` or later: the instant itself when
 * that reading happens once, the first of the two in a fall-back overlap, and the end of the gap
 * when a spring-forward skips it.
 */
function firstInstantAtOrAfter(timeZone: string, wall: number): number {
  // Solve t = wall - offset(t) by iteration. Seeding with the offset in force a day earlier lands
  // before any transition near `wall`: in an overlap the first solution is the one with the older
  // (larger) offset, so starting there picks the first occurrence without having to look for a
  // second one.
  let offset = offsetAt(timeZone, wall - DAY_MS);
  let at = wall - offset;
  const seen: number[] = [];
  for (let step = 0; step < 6; step++) {
    const next = offsetAt(timeZone, at);
    if (next === offset) return at;
    seen.push(at);
    offset = next;
    at = wall - offset;
    // A reading skipped by a spring-forward has no solution: the offset before the change sends
    // the guess past it and the offset after sends it back, so the iteration flips between two
    // instants that bracket the change.
    if (seen.includes(at)) return firstReachingWall(timeZone, wall, Math.min(...seen), Math.max(...seen));
  }
  return firstReachingWall(timeZone, wall, Math.min(...seen), Math.max(...seen));
}

/**
 * Bisects (`low`, `high`] for the first whole second whose wall clock reads `wall` or later. Inside
 * a gap's bracket the wall clock is below `wall` before the change and past it after, so the test is
 * monotonic there; tzdata changes fall on whole seconds, so a second's precision is exact.
 */
function firstReachingWall(timeZone: string, wall: number, low: number, high: number): number {
  let lo = Math.floor(low / 1000);
  let hi = Math.ceil(high / 1000);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (wallClock(timeZone, mid * 1000) >= wall) hi = mid;
    else lo = mid;
  }
  return hi * 1000;
}

/** Days in month `month0` (0–11) of the proleptic Gregorian `year`. */
function daysInMonth(year: number, month0: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month0 + 1, 0);
  return date.getUTCDate();
}

/**
 * Cycle starts already worked out, by zone then `monthIndex * 32 + cycleDay`. A start costs a few
 * `formatToParts` calls and tzdata cannot change under a running process, so each is computed once;
 * a zone's entries are dropped wholesale past {@link MAX_STARTS_PER_ZONE} to bound the memory.
 */
const starts = new Map<string, Map<number, number>>();
const MAX_STARTS_PER_ZONE = 4096;

/** The start of the cycle that begins in month `monthIndex` (year * 12 + month0). */
function startInMonth(rule: CycleRule, monthIndex: number): number {
  let known = starts.get(rule.timeZone);
  if (known === undefined) starts.set(rule.timeZone, (known = new Map()));
  const key = monthIndex * 32 + rule.cycleDay;
  let start = known.get(key);
  if (start === undefined) {
    if (known.size >= MAX_STARTS_PER_ZONE) known.clear();
    start = computeStartInMonth(rule, monthIndex);
    known.set(key, start);
  }
  return start;
}

function computeStartInMonth(rule: CycleRule, monthIndex: number): number {
  const year = Math.floor(monthIndex / 12);
  const month0 = monthIndex - year * 12;
  const midnight = new Date(0);
  midnight.setUTCFullYear(year, month0, Math.min(rule.cycleDay, daysInMonth(year, month0)));
  return firstInstantAtOrAfter(rule.timeZone, midnight.getTime());
}

/**
 * The cycle that contains instant `at`. It starts at local midnight of day
 * `min(cycleDay, days in that month)` in `timeZone` and ends where the next one starts, so a cycle
 * spanning a DST change is an hour shorter or longer than its days. When that midnight does not
 * exist (a spring-forward at midnight, as in America/Sao_Paulo until 2018) the cycle starts at the
 * first instant of the local date; when it happens twice (a fall-back at 01:00 to 00:00, as in
 * America/Havana), at the first of the two. Precisely: the start is the first instant whose local
 * wall clock reads that midnight or later.
 * @throws RangeError for an invalid rule (see {@link checkCycleRule}) or an `at` that is not a
 * finite number of epoch milliseconds.
 * @example cycleAt({ cycleDay: 31, timeZone: 'UTC' }, Date.UTC(2025, 1, 10)) // { start: Date.UTC(2025, 0, 31), end: Date.UTC(2025, 1, 28) }
 */
export function cycleAt(rule: CycleRule, at: number): Cycle {
  checkCycleRule(rule);
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new RangeError(`Expected \`at\` to be finite epoch milliseconds, got \`${String(at)}\` (${typeof at})`);
  }
  const local = new Date(wallClock(rule.timeZone, at));
  let monthIndex = local.getUTCFullYear() * 12 + local.getUTCMonth();
  let start = startInMonth(rule, monthIndex);
  // Usually once at most (before the start day of the local month). The loops also cover a
  // fall-back that crosses the start midnight: its repeated hour reads the day before but comes
  // after the start.
  while (at < start) start = startInMonth(rule, --monthIndex);
  let end = startInMonth(rule, monthIndex + 1);
  while (at >= end) {
    start = end;
    end = startInMonth(rule, ++monthIndex + 1);
  }
  return { start, end };
}

/**
 * The cycle right after `cycle` (its start is `cycle.end`). `cycle` is one that {@link cycleAt} or
 * `nextCycle` returned for the same rule.
 * @example nextCycle(rule, cycleAt(rule, now)) // the cycle after the current one
 */
export function nextCycle(rule: CycleRule, cycle: Cycle): Cycle {
  return cycleAt(rule, cycle.end);
}

/**
 * True when `timeZone` is an IANA zone Intl knows: 'Europe/Berlin', links such as 'Asia/Calcutta',
 * 'UTC' and 'Etc/GMT-2', in any case Intl accepts ('europe/berlin'). Offset strings ('+02:00') are
 * refused even where Intl accepts them (newer engines do): a fixed offset has no DST to follow,
 * 'Etc/GMT-2' says the same, and a stored rule must not change meaning with the Node version.
 * @example isTimeZone('Asia/Kathmandu') // true
 * @example isTimeZone('Mars/Base') // false
 */
export function isTimeZone(timeZone: string): boolean {
  if (typeof timeZone !== 'string' || timeZone === '' || OFFSET_ZONE.test(timeZone)) return false;
  if (formatters.has(timeZone)) return true;
  try {
    formatterFor(timeZone);
    return true;
  } catch (error) {
    if (error instanceof RangeError) return false;
    throw error;
  }
}

/**
 * Checks a rule, throwing a RangeError naming the field: `cycle_day` (integer 1–31) or `time_zone`
 * (see {@link isTimeZone}).
 * @example checkCycleRule({ cycleDay: 32, timeZone: 'UTC' }) // RangeError: Expected `cycle_day` to be an integer from 1 to 31, got `32` (number)
 */
export function checkCycleRule(rule: CycleRule): void {
  const { cycleDay, timeZone } = rule;
  if (typeof cycleDay !== 'number' || !Number.isInteger(cycleDay) || cycleDay < 1 || cycleDay > 31) {
    throw new RangeError(`Expected \`cycle_day\` to be an integer from 1 to 31, got \`${String(cycleDay)}\` (${typeof cycleDay})`);
  }
  if (!isTimeZone(timeZone)) {
    throw new RangeError(`Expected \`time_zone\` to be an IANA time zone such as 'Europe/Berlin', got \`${String(timeZone)}\` (${typeof timeZone})`);
  }
}
