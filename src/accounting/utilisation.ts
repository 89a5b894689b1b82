import type { Rate } from './rates.js';

/**
 * Where a utilisation comes from: `class`, the subject's HTB class counters (the bytes its cap
 * governs, like with like); `counted`, its billed counters, because a capped direction had no class
 * counted over the interval (cap pending or failed, class just created, no tick yet).
 */
export type UtilisationBasis = 'class' | 'counted';

/** Current rate vs cap of one direction. */
export interface DirectionUtilisation {
  /** rate / cap (1 = at the cap). */
  ratio: number;
  basis: UtilisationBasis;
}

/** Current rate vs cap, in percent of the fuller capped direction. */
export interface Utilisation {
  percent: number;
  basis: UtilisationBasis;
}

/** One direction's rate vs its cap; `null` for an unlimited direction (there is nothing to fill). */
export function directionUtilisation(capKbps: number, rate: Rate | undefined, direction: 'up' | 'down'): DirectionUtilisation | null {
  if (!(capKbps > 0)) return null;
  const classKbps = direction === 'up' ? rate?.classUpKbps : rate?.classDownKbps;
  if (classKbps !== null && classKbps !== undefined) return { ratio: classKbps / capKbps, basis: 'class' };
  return { ratio: ((direction === 'up' ? rate?.upKbps : rate?.downKbps) ?? 0) / capKbps, basis: 'counted' };
}

/**
 * A subject's utilisation: the fuller of its capped directions, from its class counters where the
 * last interval counted them. `null` for an unlimited subject. The basis is `class` only when every
 * capped direction had its class counted.
 */
export function utilisation(limit: { upKbps: number; downKbps: number }, rate: Rate | undefined): Utilisation | null {
  const parts = [directionUtilisation(limit.upKbps, rate, 'up'), directionUtilisation(limit.downKbps, rate, 'down')].filter(
    (part): part is DirectionUtilisation => part !== null,
  );
  if (parts.length === 0) return null;
  return {
    percent: Math.round(Math.max(...parts.map((p) => p.ratio)) * 100),
    basis: parts.every((p) => p.basis === 'class') ? 'class' : 'counted',
  };
}
