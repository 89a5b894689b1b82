/**
 * Quota settings from outside: the quota API's bodies (`allowance_bytes`, …) and the `quota_*`
 * fields of the host's peer/VM bodies and forms. Each problem names its field; nothing is stored
 * until the whole input is valid.
 */
import { MAX_KBPS } from '../hooks/bandwidth-fields.js';
import type { ValidationIssue } from '../plugin-api.js';
import { isTimeZone } from './cycle.js';
import { QUOTA_DEFAULTS, type Counted, type QuotaAction, type QuotaSettings } from './rules.js';

/** Largest allowance and traffic block: the largest signed 64-bit integer (every engine's BIGINT). */
export const MAX_BYTES = 2n ** 63n - 1n;
const MAX_WARNINGS = 10;

/** The API body's fields, in the order problems are reported. */
export const QUOTA_FIELDS = ['allowance_bytes', 'counted', 'cycle_day', 'time_zone', 'warn_percents', 'action', 'throttle_up_kbps', 'throttle_down_kbps'] as const;
type QuotaField = (typeof QUOTA_FIELDS)[number];

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `\`${value.slice(0, 40)}\``;
  if (typeof value === 'number' || typeof value === 'boolean') return `\`${value}\``;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** A byte count ≥ `min`: a safe integer, or a string of digits (exact past 2^53). */
export function parseBytes(field: string, value: unknown, min: bigint): bigint | ValidationIssue {
  const problem = { field, message: `\`${field}\` must be a whole number of bytes from ${min} to ${MAX_BYTES}, got ${describe(value)}` };
  let parsed: bigint;
  if (typeof value === 'number' && Number.isSafeInteger(value)) parsed = BigInt(value);
  else if (typeof value === 'string' && /^\d{1,19}$/.test(value)) parsed = BigInt(value);
  else return problem;
  return parsed >= min && parsed <= MAX_BYTES ? parsed : problem;
}

/** Decimal gigabytes (10^9 bytes) as a form types them (`12`, `0.5`, `2000`), exactly, in bytes. */
export function parseGigabytes(field: string, value: unknown): bigint | ValidationIssue {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : undefined;
  const shown = text === '' ? 'nothing' : typeof text === 'string' ? `\`${text.slice(0, 20)}\`` : describe(value);
  const match = text === undefined ? null : /^(\d{1,10})(?:\.(\d{1,9}))?$/.exec(text);
  if (!match) return { field, message: `\`${field}\` must be a number of gigabytes such as 12 or 0.5, got ${shown}` };
  const bytes = BigInt(match[1]!) * 1_000_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
  return bytes >= 1n ? bytes : { field, message: `\`${field}\` must be more than 0 gigabytes, got ${shown}` };
}

function parseInteger(field: string, value: unknown, min: number, max: number, unit: string): number | ValidationIssue {
  const parsed = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (Number.isSafeInteger(parsed) && parsed >= min && parsed <= max) return parsed;
  return { field, message: `\`${field}\` must be a whole number${unit} from ${min} to ${max}, got ${describe(value)}` };
}

function parseChoice<T extends string>(field: string, value: unknown, choices: readonly T[]): T | ValidationIssue {
  if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T;
  return { field, message: `\`${field}\` must be one of ${choices.join(', ')}, got ${describe(value)}` };
}

/** Percentages 1–100 as a list, or as the text a form sends (`80, 90, 100`); returned ascending, each once. */
function parsePercents(field: string, value: unknown): number[] | ValidationIssue {
  const items = Array.isArray(value) ? value : typeof value === 'string' ? (value.trim() === '' ? [] : value.split(/[\s,]+/).filter((part) => part !== '')) : null;
  const problem = { field, message: `\`${field}\` must be a list of at most ${MAX_WARNINGS} whole percentages from 1 to 100, got ${describe(value)}` };
  if (!items || items.length > MAX_WARNINGS) return problem;
  const percents = new Set<number>();
  for (const item of items as unknown[]) {
    const parsed = parseInteger(field, item, 1, 100, '');
    if (typeof parsed !== 'number') return problem;
    percents.add(parsed);
  }
  return [...percents].sort((a, b) => a - b);
}

/** Reads one field into `settings`, or pushes its problem. */
function readField(settings: Partial<QuotaSettings>, issues: ValidationIssue[], field: QuotaField, name: string, value: unknown): void {
  const take = <T>(parsed: T | ValidationIssue, set: (value: T) => void) => {
    if (typeof parsed === 'object' && parsed !== null && 'field' in parsed && 'message' in parsed) issues.push(parsed);
    else set(parsed as T);
  };
  switch (field) {
    case 'allowance_bytes':
      return take(parseBytes(name, value, 1n), (v) => (settings.allowanceBytes = v));
    case 'counted':
      return take(parseChoice<Counted>(name, value, ['up', 'down', 'total']), (v) => (settings.counted = v));
    case 'cycle_day':
      return take(parseInteger(name, value, 1, 31, ' (day of the month)'), (v) => (settings.cycleDay = v));
    case 'time_zone':
      // Stored as typed: ICU's own names are the legacy ones (`Asia/Katmandu`), not what users write.
      if (typeof value === 'string' && isTimeZone(value)) settings.timeZone = value;
      else issues.push({ field: name, message: `\`${name}\` must be an IANA time zone such as Europe/Berlin or UTC, got ${describe(value)}` });
      return;
    case 'warn_percents':
      return take(parsePercents(name, value), (v) => (settings.warnPercents = v));
    case 'action':
      return take(parseChoice<QuotaAction>(name, value, ['throttle', 'notify']), (v) => (settings.action = v));
    case 'throttle_up_kbps':
      return take(parseInteger(name, value, 0, MAX_KBPS, ' of kbps'), (v) => (settings.throttleUpKbps = v));
    case 'throttle_down_kbps':
      return take(parseInteger(name, value, 0, MAX_KBPS, ' of kbps'), (v) => (settings.throttleDownKbps = v));
  }
}

/** The default of an optional field, as a form would send it. */
function formDefault(field: Exclude<QuotaField, 'allowance_bytes'>): unknown {
  switch (field) {
    case 'counted': return QUOTA_DEFAULTS.counted;
    case 'cycle_day': return QUOTA_DEFAULTS.cycleDay;
    case 'time_zone': return QUOTA_DEFAULTS.timeZone;
    case 'warn_percents': return QUOTA_DEFAULTS.warnPercents;
    case 'action': return QUOTA_DEFAULTS.action;
    case 'throttle_up_kbps': return QUOTA_DEFAULTS.throttleUpKbps;
    case 'throttle_down_kbps': return QUOTA_DEFAULTS.throttleDownKbps;
  }
}

/** The whole-settings check that no single field can make: a throttle that throttles something. */
function checkWhole(settings: QuotaSettings, prefix: string): ValidationIssue[] {
  if (settings.action === 'throttle' && settings.throttleUpKbps === 0 && settings.throttleDownKbps === 0) {
    return [{ field: `${prefix}throttle_down_kbps`, message: `\`${prefix}throttle_up_kbps\` and \`${prefix}throttle_down_kbps\` cannot both be 0 with the action \`throttle\` (use \`notify\`)` }];
  }
  return [];
}

/**
 * A quota API body (`PUT /api/bandwidth/quotas/…`): `allowance_bytes` is required, every other
 * field falls back to {@link QUOTA_DEFAULTS}; an unknown field is a problem too (a typo would
 * otherwise be silently ignored).
 */
export function parseQuotaBody(body: unknown): { settings: QuotaSettings; issues?: never } | { issues: ValidationIssue[]; settings?: never } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { issues: [{ field: 'body', message: `the body must be a JSON object, got ${describe(body)}` }] };
  const input = body as Record<string, unknown>;
  const issues: ValidationIssue[] = [];
  for (const key of Object.keys(input)) {
    if (!(QUOTA_FIELDS as readonly string[]).includes(key)) issues.push({ field: key, message: `\`${key}\` is not a quota field; known: ${QUOTA_FIELDS.join(', ')}` });
  }
  const settings: Partial<QuotaSettings> = { ...QUOTA_DEFAULTS, warnPercents: [...QUOTA_DEFAULTS.warnPercents] };
  if (!('allowance_bytes' in input)) issues.push({ field: 'allowance_bytes', message: '`allowance_bytes` is required: the bytes allowed per cycle' });
  for (const field of QUOTA_FIELDS) if (field in input) readField(settings, issues, field, field, input[field]);
  if (issues.length > 0) return { issues };
  const whole = checkWhole(settings as QuotaSettings, '');
  return whole.length > 0 ? { issues: whole } : { settings: settings as QuotaSettings };
}

/** What a peer/VM body asks of the subject's own quota. */
export type QuotaChange =
  /** The body does not mention a quota: keep what is stored. */
  | { kind: 'keep' }
  /** Remove the subject's own quota (it inherits its network's or the default again). */
  | { kind: 'remove' }
  | { kind: 'set'; settings: QuotaSettings };

/** True when a host body mentions any quota field. */
export const mentionsQuota = (input: Record<string, unknown>): boolean => Object.keys(input).some((key) => key.startsWith('quota_'));

/**
 * The `quota_*` fields of a host's peer/VM body or form: `quota_allowance_bytes` (API) or
 * `quota_allowance_gb` (forms); empty, null or 0 removes the subject's own quota. The other
 * `quota_*` fields change what is stored (or the defaults) and need an allowance to apply to.
 */
export function quotaChange(input: Record<string, unknown>, stored: QuotaSettings | undefined): { change: QuotaChange; issues: ValidationIssue[] } {
  if (!mentionsQuota(input)) return { change: { kind: 'keep' }, issues: [] };
  const issues: ValidationIssue[] = [];
  const settings: Partial<QuotaSettings> = stored ? { ...stored, warnPercents: [...stored.warnPercents] } : { ...QUOTA_DEFAULTS, warnPercents: [...QUOTA_DEFAULTS.warnPercents] };
  const known = new Set(['quota_allowance_bytes', 'quota_allowance_gb', ...QUOTA_FIELDS.filter((field) => field !== 'allowance_bytes').map((field) => `quota_${field}`)]);
  for (const key of Object.keys(input)) {
    if (key.startsWith('quota_') && !known.has(key)) issues.push({ field: key, message: `\`${key}\` is not a quota field; known: ${[...known].join(', ')}` });
  }
  const raw = 'quota_allowance_bytes' in input ? input.quota_allowance_bytes : 'quota_allowance_gb' in input ? input.quota_allowance_gb : undefined;
  const allowanceField = 'quota_allowance_bytes' in input ? 'quota_allowance_bytes' : 'quota_allowance_gb';
  if (raw === null || raw === 0 || (typeof raw === 'string' && (raw.trim() === '' || raw.trim() === '0'))) {
    return issues.length > 0 ? { change: { kind: 'keep' }, issues } : { change: { kind: 'remove' }, issues: [] };
  }
  if (raw !== undefined) {
    const parsed = allowanceField === 'quota_allowance_gb' ? parseGigabytes(allowanceField, raw) : parseBytes(allowanceField, raw, 1n);
    if (typeof parsed === 'bigint') settings.allowanceBytes = parsed;
    else issues.push(parsed);
  }
  for (const field of QUOTA_FIELDS) {
    if (field === 'allowance_bytes') continue;
    const name = `quota_${field}`;
    if (!(name in input)) continue; // not mentioned: what is stored (or the default) stays
    // A form's emptied optional field goes back to the default its placeholder shows.
    if (typeof input[name] === 'string' && input[name].trim() === '') readField(settings, issues, field, name, formDefault(field));
    else readField(settings, issues, field, name, input[name]);
  }
  if (issues.length > 0) return { change: { kind: 'keep' }, issues };
  if (settings.allowanceBytes === undefined) {
    return { change: { kind: 'keep' }, issues: [{ field: 'quota_allowance_bytes', message: 'a quota needs `quota_allowance_bytes` (or `quota_allowance_gb` in a form): the bytes allowed per cycle' }] };
  }
  const whole = checkWhole(settings as QuotaSettings, 'quota_');
  return whole.length > 0 ? { change: { kind: 'keep' }, issues: whole } : { change: { kind: 'set', settings: settings as QuotaSettings }, issues: [] };
}
