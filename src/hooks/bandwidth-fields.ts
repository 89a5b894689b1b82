import type { ValidationIssue } from '../plugin-api.js';

/** Highest cap accepted: 100 Gbit/s. */
export const MAX_KBPS = 100_000_000;

export const UP_FIELD = 'bandwidth_up_kbps';
export const DOWN_FIELD = 'bandwidth_down_kbps';

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `\`${value.slice(0, 40)}\``;
  if (typeof value === 'number') return `\`${value}\``;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Parses one cap: an integer 0 ≤ n ≤ 100,000,000 kbps (0 = unlimited), or a string of digits as
 * HTML forms send it. Anything else (negative, fractional, `1e3` as text, `"10 mbit"`, null,
 * arrays, objects) is an issue naming the field.
 */
export function parseKbps(field: string, value: unknown): number | ValidationIssue {
  const problem = (): ValidationIssue => ({
    field,
    message: `\`${field}\` must be a whole number of kbps from 0 (unlimited) to ${MAX_KBPS}, got ${describe(value)}`,
  });
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 && value <= MAX_KBPS ? value : problem();
  if (typeof value === 'string' && /^\d{1,9}$/.test(value)) {
    const parsed = Number(value);
    return parsed <= MAX_KBPS ? parsed : problem();
  }
  return problem();
}

const truthy = (value: unknown) => value === true || value === 'on' || value === '1' || value === 'true';

/** The caps an input asks for: `undefined` where it does not mention a direction (keep what is stored). */
export interface BandwidthInput {
  upKbps?: number;
  downKbps?: number;
  issues: ValidationIssue[];
}

/**
 * Reads `bandwidth_up_kbps` / `bandwidth_down_kbps` from a host input. The form's "Unlimited"
 * checkboxes (`bandwidth_up_unlimited`, `bandwidth_down_unlimited`) win over the number beside them.
 */
export function bandwidthInput(input: Record<string, unknown>): BandwidthInput {
  const result: BandwidthInput = { issues: [] };
  for (const [key, field, unlimited] of [
    ['upKbps', UP_FIELD, 'bandwidth_up_unlimited'],
    ['downKbps', DOWN_FIELD, 'bandwidth_down_unlimited'],
  ] as const) {
    if (truthy(input[unlimited])) {
      result[key] = 0;
      continue;
    }
    if (!(field in input)) continue;
    const parsed = parseKbps(field, input[field]);
    if (typeof parsed === 'number') result[key] = parsed;
    else result.issues.push(parsed);
  }
  return result;
}

/** True when an input mentions bandwidth at all. */
export function mentionsBandwidth(input: Record<string, unknown>): boolean {
  return [UP_FIELD, DOWN_FIELD, 'bandwidth_up_unlimited', 'bandwidth_down_unlimited'].some((key) => key in input);
}
