import type { ValidationIssue } from '../plugin-api.js';
import { MAX_BURST_BYTES } from '../shaping/model.js';

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
  return [UP_FIELD, DOWN_FIELD, 'bandwidth_up_unlimited', 'bandwidth_down_unlimited', 'bandwidth_min_kbps', 'bandwidth_burst_kbps', 'bandwidth_burst_bytes'].some((key) => key in input);
}

export const MIN_FIELD = 'bandwidth_min_kbps';
export const BURST_KBPS_FIELD = 'bandwidth_burst_kbps';
export const BURST_BYTES_FIELD = 'bandwidth_burst_bytes';

/**
 * Parses a burst size: a whole number of bytes 0 ≤ n ≤ {@link MAX_BURST_BYTES} (0 = no burst), or a
 * string of digits as HTML forms send it; anything else is an issue naming the field.
 */
export function parseBurstBytes(field: string, value: unknown): number | ValidationIssue {
  const problem = (): ValidationIssue => ({
    field,
    message: `\`${field}\` must be a whole number of bytes from 0 (no burst) to ${MAX_BURST_BYTES}, got ${describe(value)}`,
  });
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 && value <= MAX_BURST_BYTES ? value : problem();
  if (typeof value === 'string' && /^\d{1,10}$/.test(value)) {
    const parsed = Number(value);
    return parsed <= MAX_BURST_BYTES ? parsed : problem();
  }
  return problem();
}

/** A subject's share and burst as an input asks for them: `undefined` where it does not mention a field (keep what is stored). */
export interface ShareInput {
  minKbps?: number;
  burstKbps?: number;
  burstBytes?: number;
  issues: ValidationIssue[];
}

/** Reads `bandwidth_min_kbps`, `bandwidth_burst_kbps` and `bandwidth_burst_bytes` from a host input (each checked on its own; see src/limits/cap-rules.ts for how they fit the caps). */
export function shareInput(input: Record<string, unknown>): ShareInput {
  const result: ShareInput = { issues: [] };
  for (const [key, field] of [['minKbps', MIN_FIELD], ['burstKbps', BURST_KBPS_FIELD]] as const) {
    if (!(field in input)) continue;
    const parsed = parseKbps(field, input[field]);
    if (typeof parsed === 'number') result[key] = parsed;
    else result.issues.push(parsed);
  }
  if (BURST_BYTES_FIELD in input) {
    const parsed = parseBurstBytes(BURST_BYTES_FIELD, input[BURST_BYTES_FIELD]);
    if (typeof parsed === 'number') result.burstBytes = parsed;
    else result.issues.push(parsed);
  }
  return result;
}

export const TOTAL_UP_FIELD = 'bandwidth_total_up_kbps';
export const TOTAL_DOWN_FIELD = 'bandwidth_total_down_kbps';
export const DEFAULT_UP_FIELD = 'bandwidth_default_up_kbps';
export const DEFAULT_DOWN_FIELD = 'bandwidth_default_down_kbps';

/** A network's caps as an input asks for them: `undefined` where it does not mention a field (keep what is stored). */
export interface NetworkInput {
  totalUpKbps?: number;
  totalDownKbps?: number;
  defaultUpKbps?: number;
  defaultDownKbps?: number;
  issues: ValidationIssue[];
}

/** Reads a network's `bandwidth_total_up/down_kbps` and `bandwidth_default_up/down_kbps` from a host input. */
export function networkInput(input: Record<string, unknown>): NetworkInput {
  const result: NetworkInput = { issues: [] };
  for (const [key, field] of [
    ['totalUpKbps', TOTAL_UP_FIELD],
    ['totalDownKbps', TOTAL_DOWN_FIELD],
    ['defaultUpKbps', DEFAULT_UP_FIELD],
    ['defaultDownKbps', DEFAULT_DOWN_FIELD],
  ] as const) {
    if (!(field in input)) continue;
    const parsed = parseKbps(field, input[field]);
    if (typeof parsed === 'number') result[key] = parsed;
    else result.issues.push(parsed);
  }
  return result;
}

/** True when an input mentions a network's caps at all. */
export const mentionsNetworkCaps = (input: Record<string, unknown>): boolean =>
  [TOTAL_UP_FIELD, TOTAL_DOWN_FIELD, DEFAULT_UP_FIELD, DEFAULT_DOWN_FIELD].some((key) => key in input);
