/**
 * The cap the kernel enforces for a subject, computed in one place: its own configured caps, else
 * its network's default caps (materialized on its row), and, while its quota is exceeded with the
 * `throttle` action, the quota's throttle. Neither the default nor the throttle ever overwrites the
 * configured caps (each has its own columns), so removing them restores exactly what the user typed.
 */

/**
 * A subject's configured caps, its network's defaults and the throttle in force (kbps; 0 = none;
 * a null throttle = not throttled).
 */
export interface CapInputs {
  upKbps: number;
  downKbps: number;
  /** The network's default caps, for a direction the subject has no cap of its own in. @default 0 */
  defaultUpKbps?: number;
  defaultDownKbps?: number;
  throttleUpKbps?: number | null;
  throttleDownKbps?: number | null;
}

/** Where a direction's effective cap comes from. */
export type CapSource = 'own' | 'default' | 'throttle' | 'none';

export interface EffectiveCaps {
  upKbps: number;
  downKbps: number;
  source: { up: CapSource; down: CapSource };
}

/** The own cap, else the default; then min(that, throttle), where an uncapped (0) direction is throttled too and a throttle of 0 or null throttles nothing. */
function direction(own: number, fallback: number | undefined, throttle: number | null | undefined): { kbps: number; source: CapSource } {
  const configured = own > 0 ? { kbps: own, source: 'own' as const } : (fallback ?? 0) > 0 ? { kbps: fallback as number, source: 'default' as const } : { kbps: 0, source: 'none' as const };
  if (throttle && throttle > 0 && (configured.kbps === 0 || throttle < configured.kbps)) return { kbps: throttle, source: 'throttle' };
  return configured;
}

/** The caps the kernel should hold for a subject (see the module comment). */
export function effectiveCaps(caps: CapInputs): EffectiveCaps {
  const up = direction(caps.upKbps, caps.defaultUpKbps, caps.throttleUpKbps);
  const down = direction(caps.downKbps, caps.defaultDownKbps, caps.throttleDownKbps);
  return { upKbps: up.kbps, downKbps: down.kbps, source: { up: up.source, down: down.source } };
}

/** True while a quota throttle is in force for the subject (even where its own cap is lower and stays). */
export const isThrottled = (caps: CapInputs): boolean => (caps.throttleUpKbps ?? 0) > 0 || (caps.throttleDownKbps ?? 0) > 0;

/** A subject's configured burst (kbit/s and bytes; 0 = none) beside its caps. */
export interface BurstInputs extends CapInputs {
  burstKbps?: number;
  burstBytes?: number;
}

/**
 * The burst the kernel should allow, or undefined: only with both a rate and a size, while no quota
 * throttle is in force (a subject over its quota does not get a speed boost), and for a subject that
 * has an effective cap to burst above. The planner bursts a direction only where the rate is above
 * that direction's cap.
 */
export function effectiveBurst(caps: BurstInputs): { kbps: number; bytes: number } | undefined {
  const kbps = caps.burstKbps ?? 0;
  const bytes = caps.burstBytes ?? 0;
  if (kbps <= 0 || bytes <= 0 || isThrottled(caps)) return undefined;
  const effective = effectiveCaps(caps);
  return effective.upKbps > 0 || effective.downKbps > 0 ? { kbps, bytes } : undefined;
}
