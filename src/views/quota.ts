/**
 * How the admin pages write quotas. Allowances are typed in decimal gigabytes (the quota forms and
 * the traffic-block form take GB = 10^9 bytes), so quota amounts are shown in decimal units, while
 * usage totals elsewhere stay in binary ones (formatBytes).
 */

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'] as const;

/** The decimal unit a byte count reads best in: the largest whose value is at least 1. */
function unitOf(bytes: bigint): number {
  let unit = 0;
  let scale = 1000n;
  while (unit < DECIMAL_UNITS.length - 1 && bytes >= scale) {
    unit++;
    scale *= 1000n;
  }
  return unit;
}

/** `bytes` in decimal unit `unit`, at most one decimal (trailing `.0` dropped). */
function inUnit(bytes: bigint, unit: number): string {
  if (unit === 0) return bytes.toString();
  const tenths = (bytes * 10n) / 1000n ** BigInt(unit);
  const whole = tenths / 10n;
  const rest = tenths % 10n;
  return rest === 0n ? whole.toString() : `${whole}.${rest}`;
}

/**
 * Bytes in decimal units, rounded down to a tenth: `0 B`, `950 B`, `7.2 GB`, `12 GB`.
 * @example formatDecimalBytes(12_000_000_000n) // '12 GB'
 */
export function formatDecimalBytes(bytes: bigint): string {
  const unit = unitOf(bytes);
  return `${inUnit(bytes, unit)} ${DECIMAL_UNITS[unit]}`;
}

/** Whole percent of used / limit, rounded down (so 100 % means reached). */
export function usedPercent(used: bigint, limit: bigint): number {
  return limit > 0n ? Number((used * 100n) / limit) : 0;
}

/**
 * Usage of an allowance in the limit's unit: `7.2 of 12 GB (60 %)`.
 * @example usageText(7_200_000_000n, 12_000_000_000n) // '7.2 of 12 GB (60 %)'
 */
export function usageText(used: bigint, limit: bigint): string {
  const unit = unitOf(limit);
  return `${inUnit(used, unit)} of ${inUnit(limit, unit)} ${DECIMAL_UNITS[unit]} (${usedPercent(used, limit)} %)`;
}

const zoned = new Map<string, Intl.DateTimeFormat>();

/**
 * An instant as `YYYY-MM-DD HH:MM` on the wall clock of `timeZone` (an IANA zone the quota
 * settings were validated with).
 * @example formatInZone(Date.UTC(2026, 2, 31, 22), 'Europe/Berlin') // '2026-04-01 00:00'
 */
export function formatInZone(at: number, timeZone: string): string {
  let format = zoned.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US-u-ca-gregory-nu-latn', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    });
    zoned.set(timeZone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(at).map((part) => [part.type, part.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

/** An instant as `YYYY-MM-DD HH:MM` UTC (no zone suffix). */
export const formatUtc = (at: number): string => new Date(at).toISOString().slice(0, 16).replace('T', ' ');
