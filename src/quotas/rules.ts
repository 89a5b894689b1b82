/**
 * What a quota is and how its state follows from the bytes used: pure functions on plain data.
 * The enforcer (src/quotas/enforcer.ts) feeds them the stored settings and cycle counters.
 */
import type { SubjectType } from '../plugin-api.js';

/** Which bytes a quota counts, from the subject's side. */
export type Counted = 'up' | 'down' | 'total';
/** What happens when the allowance is used up. */
export type QuotaAction = 'throttle' | 'notify';
export type QuotaState = 'ok' | 'warning' | 'exceeded';
/** What a quota is set on: one subject, every peer of a network, or every subject (the plugin-wide default). */
export type QuotaTargetType = SubjectType | 'network' | 'default';
/** Where a subject's effective quota comes from. */
export type QuotaSource = 'subject' | 'network' | 'default';

export interface QuotaTarget {
  type: QuotaTargetType;
  /** The subject's or network's id; '' for the default. */
  id: string;
}

/** A quota's settings as stored in `bw_quotas`. */
export interface QuotaSettings {
  allowanceBytes: bigint;
  counted: Counted;
  /** 1–31; a day past the month's end is its last day. */
  cycleDay: number;
  timeZone: string;
  /** Ascending percentages of the allowance that notify once per cycle (100 = exceeded). */
  warnPercents: number[];
  action: QuotaAction;
  /** kbps; 0 leaves that direction unthrottled. */
  throttleUpKbps: number;
  throttleDownKbps: number;
}

export const QUOTA_DEFAULTS: Omit<QuotaSettings, 'allowanceBytes'> = {
  counted: 'total',
  cycleDay: 1,
  timeZone: 'UTC',
  warnPercents: [80, 90, 100],
  action: 'throttle',
  throttleUpKbps: 1000,
  throttleDownKbps: 1000,
};

/** The bytes a quota counts of a cycle's up and down bytes. */
export function usedBytes(counted: Counted, up: bigint, down: bigint): bigint {
  return counted === 'up' ? up : counted === 'down' ? down : up + down;
}

/**
 * A subject's effective quota: its own, else its network's (peers), else the plugin-wide default.
 * @returns null when none applies.
 */
export function effectiveQuota(
  own: QuotaSettings | undefined,
  network: QuotaSettings | undefined,
  fallback: QuotaSettings | undefined,
): { settings: QuotaSettings; source: QuotaSource } | null {
  if (own) return { settings: own, source: 'subject' };
  if (network) return { settings: network, source: 'network' };
  if (fallback) return { settings: fallback, source: 'default' };
  return null;
}

/** What a cycle's counters mean under its quota. */
export interface Assessment {
  state: QuotaState;
  /** Allowance plus the cycle's traffic blocks. */
  limitBytes: bigint;
  used: bigint;
  remaining: bigint;
  /** used / limit (0 when the limit is 0). */
  ratio: number;
  /** Thresholds crossed now that were not notified yet in this cycle, ascending; 100 means exceeded. */
  toFire: number[];
}

/**
 * The state of a cycle and the thresholds to notify: each warning percentage below 100 once it is
 * reached, and 100 (exceeded) once the used bytes reach the allowance plus the cycle's extra bytes.
 * A threshold notified in a cycle is not notified again in it (only a manual reset re-arms them),
 * even when a traffic block takes the usage back below it.
 */
export function assess(input: { allowanceBytes: bigint; extraBytes: bigint; used: bigint; warnPercents: readonly number[]; fired: readonly number[] }): Assessment {
  const limitBytes = input.allowanceBytes + input.extraBytes;
  const used = input.used;
  const reached = (percent: number) => used * 100n >= limitBytes * BigInt(percent);
  const exceeded = used >= limitBytes;
  const warnings = input.warnPercents.filter((percent) => percent < 100 && reached(percent));
  const crossed = exceeded ? [...warnings, 100] : warnings;
  const fired = new Set(input.fired);
  return {
    state: exceeded ? 'exceeded' : warnings.length > 0 ? 'warning' : 'ok',
    limitBytes,
    used,
    remaining: used >= limitBytes ? 0n : limitBytes - used,
    ratio: limitBytes > 0n ? Number((used * 1_000_000n) / limitBytes) / 1_000_000 : 0,
    toFire: crossed.filter((percent) => !fired.has(percent)),
  };
}

/** The throttle a quota puts in force in a state (null: none). */
export function throttleFor(settings: QuotaSettings | null, state: QuotaState): { upKbps: number; downKbps: number } | null {
  if (!settings || settings.action !== 'throttle' || state !== 'exceeded') return null;
  if (settings.throttleUpKbps <= 0 && settings.throttleDownKbps <= 0) return null;
  return { upKbps: settings.throttleUpKbps, downKbps: settings.throttleDownKbps };
}

/**
 * The bytes the cycle will have used at its end if the subject goes on at its average rate since
 * the cycle (or its last reset) began; null before any time has passed.
 */
export function projectedBytes(used: bigint, countedFrom: number, end: number, now: number): bigint | null {
  const elapsed = Math.min(now, end) - countedFrom;
  if (elapsed <= 0) return null;
  return (used * BigInt(end - countedFrom)) / BigInt(elapsed);
}
