/**
 * Billing cycles: local midnight on a clamped day of the month, in an IANA zone. Expected days and
 * wall clocks are worked out here independently (Date.UTC month lengths, a separate Intl formatter).
 *
 * The random parts print their seed; replay with PBW_SEED=<seed> (PBW_RUNS=<n> for a longer soak).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';

import fc from 'fast-check';

import { checkCycleRule, cycleAt, isTimeZone, nextCycle, type Cycle, type CycleRule } from '../../../src/quotas/cycle.js';
import { seededRandom } from '../../support/seeded-random.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function seedFromEnv(): number {
  const text = process.env.PBW_SEED;
  if (text !== undefined && text !== '') {
    const seed = Number(text);
    if (!Number.isInteger(seed)) throw new TypeError(`Expected PBW_SEED to be an integer, got ${JSON.stringify(text)}`);
    return seed;
  }
  return (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
}

const SEED = seedFromEnv();

const SEED_NOTE = `seed ${SEED} (replay: PBW_SEED=${SEED} node --import tsx --test test/unit/quotas/cycle.test.ts)`;
console.log(SEED_NOTE);
const announceSeed = (t: TestContext): void => t.diagnostic(SEED_NOTE);

const walls = new Map<string, Intl.DateTimeFormat>();

/** The wall clock in `timeZone` at `at`, as 'YYYY-MM-DD HH:mm:ss' (Swedish dates are ISO-shaped). */
function wall(timeZone: string, at: number): string {
  let format = walls.get(timeZone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat('sv-SE', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    walls.set(timeZone, format);
  }
  return format.format(at);
}

const pad = (n: number): string => String(n).padStart(2, '0');
/** 'YYYY-MM-DD 00:00:00' for month `month0` (0–11). */
const midnightText = (year: number, month0: number, day: number): string => `${year}-${pad(month0 + 1)}-${pad(day)} 00:00:00`;
const daysIn = (year: number, month0: number): number => new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
const hours = (cycle: Cycle): number => (cycle.end - cycle.start) / HOUR;
const iso = (at: number): string => new Date(at).toISOString();

// ---- every day of the month, four years, two zones ----

for (const timeZone of ['UTC', 'Europe/Berlin']) {
  test(`in ${timeZone}, every cycle day 1–31 from 2024 to 2027 starts at local midnight on the clamped day and the cycles tile the time line`, (t) => {
    announceSeed(t);
    const random = seededRandom(SEED);
    let checked = 0;
    for (let cycleDay = 1; cycleDay <= 31; cycleDay++) {
      const rule: CycleRule = { cycleDay, timeZone };
      // The cycle holding the 15th of December 2023 is either December's or November's: start from it.
      let cycle = cycleAt(rule, Date.UTC(2023, 11, 15, 12));
      if (cycleDay > 15) cycle = nextCycle(rule, cycle);
      assert.equal(wall(timeZone, cycle.start), midnightText(2023, 11, cycleDay), `day ${cycleDay}: first cycle`);
      for (let year = 2024; year <= 2027; year++) {
        for (let month0 = 0; month0 < 12; month0++) {
          const next = nextCycle(rule, cycle);
          const label = `day ${cycleDay}, ${year}-${pad(month0 + 1)}`;
          assert.equal(next.start, cycle.end, `${label}: starts where the previous cycle ended`);
          assert.equal(wall(timeZone, next.start), midnightText(year, month0, Math.min(cycleDay, daysIn(year, month0))), label);
          assert.ok(next.end > next.start, label);
          const inside = next.start + Math.floor(random() * (next.end - next.start));
          assert.deepEqual(cycleAt(rule, next.start), next, `${label}: the start is inside`);
          assert.deepEqual(cycleAt(rule, next.end - 1), next, `${label}: the last millisecond is inside`);
          assert.deepEqual(cycleAt(rule, inside), next, `${label}: ${iso(inside)} is inside`);
          assert.deepEqual(cycleAt(rule, next.end), nextCycle(rule, next), `${label}: the end is the next cycle's`);
          cycle = next;
          checked++;
        }
      }
    }
    assert.equal(checked, 31 * 48);
  });
}

// ---- clamping to the month's last day ----

test('the 31st resets on Feb 28 in 2025, on Feb 29 in the 2024 leap year, and on April 30', () => {
  const rule: CycleRule = { cycleDay: 31, timeZone: 'UTC' };
  assert.deepEqual(cycleAt(rule, Date.UTC(2025, 1, 10)), { start: Date.UTC(2025, 0, 31), end: Date.UTC(2025, 1, 28) });
  assert.deepEqual(cycleAt(rule, Date.UTC(2025, 2, 1)), { start: Date.UTC(2025, 1, 28), end: Date.UTC(2025, 2, 31) });
  assert.deepEqual(cycleAt(rule, Date.UTC(2024, 1, 29, 12)), { start: Date.UTC(2024, 1, 29), end: Date.UTC(2024, 2, 31) });
  assert.deepEqual(cycleAt(rule, Date.UTC(2024, 1, 28, 23, 59)), { start: Date.UTC(2024, 0, 31), end: Date.UTC(2024, 1, 29) });
  assert.deepEqual(cycleAt(rule, Date.UTC(2025, 3, 30)), { start: Date.UTC(2025, 3, 30), end: Date.UTC(2025, 4, 31) });
  // The clamp is per month, not carried on: March is back on the 31st after February's 28th.
  assert.deepEqual(cycleAt(rule, Date.UTC(2025, 3, 29)), { start: Date.UTC(2025, 2, 31), end: Date.UTC(2025, 3, 30) });
});

test('the 30th moves to Feb 28 and back to Mar 30; day 1 is the calendar month', () => {
  const day30: CycleRule = { cycleDay: 30, timeZone: 'UTC' };
  const jan = cycleAt(day30, Date.UTC(2025, 1, 1));
  assert.deepEqual(jan, { start: Date.UTC(2025, 0, 30), end: Date.UTC(2025, 1, 28) });
  assert.deepEqual(nextCycle(day30, jan), { start: Date.UTC(2025, 1, 28), end: Date.UTC(2025, 2, 30) });
  assert.deepEqual(cycleAt({ cycleDay: 1, timeZone: 'UTC' }, Date.UTC(2026, 5, 17, 8)), { start: Date.UTC(2026, 5, 1), end: Date.UTC(2026, 6, 1) });
});

// ---- DST ----

test('Europe/Berlin: the March cycle is an hour short and the October one an hour long, each still starting at local midnight', () => {
  const day1: CycleRule = { cycleDay: 1, timeZone: 'Europe/Berlin' };
  const march = cycleAt(day1, Date.UTC(2026, 2, 29, 12));
  assert.deepEqual(march, { start: Date.UTC(2026, 1, 28, 23), end: Date.UTC(2026, 2, 31, 22) });
  assert.equal(hours(march), 31 * 24 - 1);
  assert.equal(wall('Europe/Berlin', march.end), '2026-04-01 00:00:00');
  const october = cycleAt(day1, Date.UTC(2026, 9, 25, 12));
  assert.deepEqual(october, { start: Date.UTC(2026, 8, 30, 22), end: Date.UTC(2026, 9, 31, 23) });
  assert.equal(hours(october), 31 * 24 + 1);

  // The change days themselves (2026-03-29, 2026-10-25) start the cycle on day 29 / 25 at a midnight
  // before the change, so the change falls in the cycle that starts that day.
  const day29: CycleRule = { cycleDay: 29, timeZone: 'Europe/Berlin' };
  // Feb 28 (2026 is no leap year) to Mar 29 00:00, before that morning's change: 29 plain days.
  assert.equal(hours(cycleAt(day29, Date.UTC(2026, 2, 28, 12))), 29 * 24);
  assert.equal(hours(cycleAt(day29, Date.UTC(2026, 2, 29, 12))), 31 * 24 - 1);
  const day25: CycleRule = { cycleDay: 25, timeZone: 'Europe/Berlin' };
  assert.equal(hours(cycleAt(day25, Date.UTC(2026, 9, 24, 12))), 30 * 24);
  assert.equal(hours(cycleAt(day25, Date.UTC(2026, 9, 25, 12))), 31 * 24 + 1);
  assert.equal(cycleAt(day25, Date.UTC(2026, 9, 25, 12)).start, Date.UTC(2026, 9, 24, 22));
});

test('America/New_York: March 2026 is 743 hours; the November cycle holds the fall-back of Nov 1 and is 721', () => {
  const day1: CycleRule = { cycleDay: 1, timeZone: 'America/New_York' };
  const march = cycleAt(day1, Date.UTC(2026, 2, 8, 12));
  assert.deepEqual(march, { start: Date.UTC(2026, 2, 1, 5), end: Date.UTC(2026, 3, 1, 4) });
  assert.equal(hours(march), 31 * 24 - 1);
  // Midnight of Nov 1 is still daylight time (the change is at 02:00), so October is a plain 31 days.
  const october = cycleAt(day1, Date.UTC(2026, 9, 15));
  assert.deepEqual(october, { start: Date.UTC(2026, 9, 1, 4), end: Date.UTC(2026, 10, 1, 4) });
  assert.equal(hours(october), 31 * 24);
  const november = nextCycle(day1, october);
  assert.deepEqual(november, { start: Date.UTC(2026, 10, 1, 4), end: Date.UTC(2026, 11, 1, 5) });
  assert.equal(hours(november), 30 * 24 + 1);
  const day8: CycleRule = { cycleDay: 8, timeZone: 'America/New_York' };
  assert.equal(hours(cycleAt(day8, Date.UTC(2026, 2, 8, 12))), 31 * 24 - 1);
});

test('a midnight skipped by a spring-forward (America/Sao_Paulo, 2018-11-04 00:00 → 01:00) starts the cycle at the end of the gap', () => {
  // Intl really has this gap: the second before the change reads Nov 3, the change reads 01:00 on Nov 4.
  assert.equal(wall('America/Sao_Paulo', Date.UTC(2018, 10, 4, 2, 59, 59)), '2018-11-03 23:59:59');
  assert.equal(wall('America/Sao_Paulo', Date.UTC(2018, 10, 4, 3)), '2018-11-04 01:00:00');
  const rule: CycleRule = { cycleDay: 4, timeZone: 'America/Sao_Paulo' };
  const cycle = cycleAt(rule, Date.UTC(2018, 10, 20));
  assert.deepEqual(cycle, { start: Date.UTC(2018, 10, 4, 3), end: Date.UTC(2018, 11, 4, 2) });
  assert.deepEqual(cycleAt(rule, Date.UTC(2018, 10, 4, 3) - 1).end, cycle.start);
  // 01:00 summer time is the instant 00:00 winter time would have been, so October keeps its 31
  // full days and the hour comes out of November, the cycle that runs in summer time.
  assert.equal(hours(cycleAt(rule, Date.UTC(2018, 10, 1))), 31 * 24);
  assert.equal(hours(cycle), 30 * 24 - 1);
});

test('Asia/Beirut: a skipped midnight in spring starts the cycle at 01:00, and the autumn hour repeated before midnight stays in the old cycle', () => {
  assert.equal(wall('Asia/Beirut', Date.UTC(2026, 2, 28, 21, 59, 59)), '2026-03-28 23:59:59');
  assert.equal(wall('Asia/Beirut', Date.UTC(2026, 2, 28, 22)), '2026-03-29 01:00:00');
  assert.equal(cycleAt({ cycleDay: 29, timeZone: 'Asia/Beirut' }, Date.UTC(2026, 3, 1)).start, Date.UTC(2026, 2, 28, 22));

  // 2026-10-25 00:00 summer time turns back to 23:00 on the 24th: that midnight never shows, the
  // one an hour later (winter time) is the only one.
  assert.equal(wall('Asia/Beirut', Date.UTC(2026, 9, 24, 20, 59, 59)), '2026-10-24 23:59:59');
  assert.equal(wall('Asia/Beirut', Date.UTC(2026, 9, 24, 21)), '2026-10-24 23:00:00');
  const day25: CycleRule = { cycleDay: 25, timeZone: 'Asia/Beirut' };
  const cycle = cycleAt(day25, Date.UTC(2026, 9, 24, 22));
  assert.equal(cycle.start, Date.UTC(2026, 9, 24, 22));
  assert.equal(cycleAt(day25, Date.UTC(2026, 9, 24, 21, 30)).end, cycle.start);
});

test('a midnight that happens twice (America/Havana, 2026-11-01 01:00 → 00:00) starts the cycle at the first one', () => {
  assert.equal(wall('America/Havana', Date.UTC(2026, 10, 1, 4)), '2026-11-01 00:00:00');
  assert.equal(wall('America/Havana', Date.UTC(2026, 10, 1, 5)), '2026-11-01 00:00:00');
  const rule: CycleRule = { cycleDay: 1, timeZone: 'America/Havana' };
  const november = cycleAt(rule, Date.UTC(2026, 10, 1, 5, 30));
  assert.deepEqual(november, { start: Date.UTC(2026, 10, 1, 4), end: Date.UTC(2026, 11, 1, 5) });
  assert.deepEqual(cycleAt(rule, Date.UTC(2026, 10, 1, 4, 30)), november);
  assert.equal(cycleAt(rule, Date.UTC(2026, 10, 1, 4) - 1).end, november.start);
});

test('a day Pacific/Apia skipped (2011-12-30) starts its cycle at the first instant after it, Dec 31 00:00', () => {
  assert.equal(wall('Pacific/Apia', Date.UTC(2011, 11, 30, 9, 59, 59)), '2011-12-29 23:59:59');
  assert.equal(wall('Pacific/Apia', Date.UTC(2011, 11, 30, 10)), '2011-12-31 00:00:00');
  const day30 = cycleAt({ cycleDay: 30, timeZone: 'Pacific/Apia' }, Date.UTC(2012, 0, 5));
  assert.equal(day30.start, Date.UTC(2011, 11, 30, 10));
  assert.equal(cycleAt({ cycleDay: 31, timeZone: 'Pacific/Apia' }, Date.UTC(2012, 0, 5)).start, day30.start);
});

// ---- offsets off the UTC hour ----

test('Asia/Kathmandu (+05:45) starts at 18:15 UTC the day before, Asia/Kolkata (+05:30) at 18:30, UTC at 00:00', () => {
  assert.deepEqual(cycleAt({ cycleDay: 1, timeZone: 'Asia/Kathmandu' }, Date.UTC(2026, 0, 10)), {
    start: Date.UTC(2025, 11, 31, 18, 15),
    end: Date.UTC(2026, 0, 31, 18, 15),
  });
  assert.deepEqual(cycleAt({ cycleDay: 15, timeZone: 'Asia/Kolkata' }, Date.UTC(2026, 6, 1)), {
    start: Date.UTC(2026, 5, 14, 18, 30),
    end: Date.UTC(2026, 6, 14, 18, 30),
  });
  // Kathmandu's 18:15 is exclusive on the old side: 18:14:59.999 still belongs to December.
  assert.equal(cycleAt({ cycleDay: 1, timeZone: 'Asia/Kathmandu' }, Date.UTC(2025, 11, 31, 18, 15) - 1).end, Date.UTC(2025, 11, 31, 18, 15));
  assert.deepEqual(cycleAt({ cycleDay: 1, timeZone: 'UTC' }, Date.UTC(2026, 0, 31, 23, 59, 59, 999)), { start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 1, 1) });
});

// ---- checking rules ----

test('a cycle day that is not an integer from 1 to 31 is refused, naming `cycle_day`', () => {
  for (const cycleDay of [0, 32, 1.5, Number.NaN, -1, Number.POSITIVE_INFINITY]) {
    assert.throws(() => checkCycleRule({ cycleDay, timeZone: 'UTC' }), { name: 'RangeError', message: /`cycle_day`.*got `(0|32|1\.5|NaN|-1|Infinity)` \(number\)$/ }, String(cycleDay));
  }
  assert.throws(() => checkCycleRule({ cycleDay: '5' as unknown as number, timeZone: 'UTC' }), /`cycle_day`.*got `5` \(string\)$/);
  assert.throws(() => cycleAt({ cycleDay: 0, timeZone: 'UTC' }, 0), /`cycle_day`/);
});

test('a time zone Intl does not know is refused, naming `time_zone`', () => {
  for (const timeZone of ['', 'Mars/Base', 'not a zone', '+02:00']) {
    assert.throws(() => checkCycleRule({ cycleDay: 1, timeZone }), { name: 'RangeError', message: /^Expected `time_zone` to be an IANA time zone/ }, timeZone);
  }
  assert.throws(() => cycleAt({ cycleDay: 1, timeZone: 'Mars/Base' }, 0), /`time_zone`/);
  assert.doesNotThrow(() => checkCycleRule({ cycleDay: 31, timeZone: 'Asia/Kathmandu' }));
});

test('isTimeZone takes IANA names and links in any case Intl accepts, and refuses offsets', () => {
  for (const zone of ['UTC', 'Europe/Berlin', 'europe/berlin', 'Asia/Calcutta', 'Etc/GMT-2', 'America/Sao_Paulo']) assert.equal(isTimeZone(zone), true, zone);
  // Offsets are refused even where Intl would take them (newer engines): a stored rule must not
  // change meaning with the Node version, and 'Etc/GMT-2' says the same.
  for (const zone of ['', 'Mars/Base', 'not a zone', '+02:00', '-0530', '+02', 'Z']) assert.equal(isTimeZone(zone), false, zone);
});

test('an instant that is not a finite number is refused, naming `at`', () => {
  assert.throws(() => cycleAt({ cycleDay: 1, timeZone: 'UTC' }, Number.NaN), { name: 'RangeError', message: /`at`.*got `NaN` \(number\)$/ });
});

// ---- random rules and instants ----

const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Asia/Kolkata',
  'Asia/Kathmandu',
  'America/Sao_Paulo',
  'Asia/Beirut',
  'America/Havana',
  'America/Santiago',
  'Australia/Lord_Howe',
  'Pacific/Apia',
  'Africa/Cairo',
] as const;

/** 'YYYY-MM-DD HH:mm:ss' read as if it were UTC, so wall clocks compare and subtract as numbers. */
const wallMs = (text: string): number => Date.parse(`${text.replace(' ', 'T')}Z`);

/**
 * Asserts `cycle` starts at midnight of the clamped day in its month or, when no such midnight
 * exists, at the first instant past it: the second before reads earlier and the clock jumped at the
 * start. Returns whether it was a jump.
 */
function assertStartsAtMidnight(rule: CycleRule, cycle: Cycle): 'midnight' | 'gap' {
  const { cycleDay, timeZone } = rule;
  const startWall = wall(timeZone, cycle.start);
  const year = Number(startWall.slice(0, 4));
  const month0 = Number(startWall.slice(5, 7)) - 1;
  const midnight = wallMs(midnightText(year, month0, Math.min(cycleDay, daysIn(year, month0))));
  const before = wallMs(wall(timeZone, cycle.start - 1000));
  assert.ok(before < midnight, `${timeZone} day ${cycleDay}: the second before ${iso(cycle.start)} reads ${wall(timeZone, cycle.start - 1000)}`);
  if (wallMs(startWall) === midnight) return 'midnight';
  assert.ok(wallMs(startWall) > midnight && wallMs(startWall) - before > 1000, `${timeZone} day ${cycleDay}: ${iso(cycle.start)} reads ${startWall}, not midnight, with no gap`);
  return 'gap';
}

test('in zones that change clocks at midnight, every cycle day from 2015 to 2018 starts at midnight or at the end of its gap', () => {
  let gaps = 0;
  for (const timeZone of ['America/Sao_Paulo', 'Asia/Beirut', 'America/Havana', 'America/Santiago']) {
    for (let cycleDay = 1; cycleDay <= 31; cycleDay++) {
      const rule: CycleRule = { cycleDay, timeZone };
      let cycle = cycleAt(rule, Date.UTC(2015, 0, 1));
      while (cycle.start < Date.UTC(2019, 0, 1)) {
        if (assertStartsAtMidnight(rule, cycle) === 'gap') gaps++;
        const next = nextCycle(rule, cycle);
        assert.equal(next.start, cycle.end);
        cycle = next;
      }
    }
  }
  // One per zone and spring-forward (15 with tzdata 2025c: Santiago kept summer time through 2015),
  // each met by the cycle day of its date: the sweep did cross the gaps.
  assert.ok(gaps >= 12, `only ${gaps} gap starts`);
});

test('random rules and instants from 1990 to 2100: the cycle holds the instant, chains to the next, starts at the first instant of local midnight and lasts 27–32 days', (t) => {
  announceSeed(t);
  const numRuns = Number(process.env.PBW_RUNS ?? 3000);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 31 }),
      fc.constantFrom(...ZONES),
      fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2100, 0, 1) }),
      (cycleDay, timeZone, at) => {
        const rule: CycleRule = { cycleDay, timeZone };
        const cycle = cycleAt(rule, at);
        assert.ok(cycle.start <= at && at < cycle.end, `${iso(at)} in [${iso(cycle.start)}, ${iso(cycle.end)})`);
        assert.equal(nextCycle(rule, cycle).start, cycle.end);
        assert.deepEqual(cycleAt(rule, cycle.start), cycle);
        assert.deepEqual(cycleAt(rule, cycle.end - 1), cycle);

        assertStartsAtMidnight(rule, cycle);

        const days = (cycle.end - cycle.start) / DAY;
        assert.ok(days >= 27 && days <= 32, `${timeZone} day ${cycleDay}: ${days} days from ${iso(cycle.start)}`);
      },
    ),
    { seed: SEED, numRuns },
  );
});
