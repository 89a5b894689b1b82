/**
 * The cap the kernel enforces for a subject, computed in one place: its own configured caps and,
 * while its quota is exceeded with the `throttle` action, the quota's throttle. The throttle never
 * overwrites the configured caps (they are kept in their own columns), so lifting it restores
 * exactly what the user typed.
 */

/** A subject's configured caps and the throttle in force (kbps; 0 = unlimited; null = not throttled). */
export interface CapInputs {
  upKbps: number;
  downKbps: number;
  throttleUpKbps?: number | null;
  throttleDownKbps?: number | null;
}

/** Where a direction's effective cap comes from. */
export type CapSource = 'own' | 'throttle' | 'none';

export interface EffectiveCaps {
  upKbps: number;
  downKbps: number;
  source: { up: CapSource; down: CapSource };
}

/** min(configured, throttle), where an unlimited (0) configured cap is throttled too, and a throttle of 0 or null throttles nothing. */
function direction(configured: number, throttle: number | null | undefined): { kbps: number; source: CapSource } {
  if (throttle && throttle > 0 && (configured === 0 || throttle < configured)) return { kbps: throttle, source: 'throttle' };
  return { kbps: configured, source: configured > 0 ? 'own' : 'none' };
}

/** The caps the kernel should hold for a subject (see the module comment). */
export function effectiveCaps(caps: CapInputs): EffectiveCaps {
  const up = direction(caps.upKbps, caps.throttleUpKbps);
  const down = direction(caps.downKbps, caps.throttleDownKbps);
  return { upKbps: up.kbps, downKbps: down.kbps, source: { up: up.source, down: down.source } };
}

/** True while a quota throttle is in force for the subject (even where its own cap is lower and stays). */
export const isThrottled = (caps: CapInputs): boolean => (caps.throttleUpKbps ?? 0) > 0 || (caps.throttleDownKbps ?? 0) > 0;
