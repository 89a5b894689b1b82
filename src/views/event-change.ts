/**
 * The audit table's "Subject" and "Change" cells: cap changes as `old → new` caps (with a guarantee
 * and burst where set), a network's caps as what changed of them, quota events as a sentence. Values come from bw_events' JSON columns (byte counts as decimal strings or numbers).
 */
import type { BandwidthEvent } from '../db/events.js';
import { formatCaps, formatKbps } from './format.js';
import { formatDecimalBytes, formatUtc, usageText } from './quota.js';

type Values = Record<string, unknown>;

const record = (value: unknown): Values | null => (typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Values) : null);

/** A byte count stored as a decimal string or a number; null when it is neither. */
function bytesOf(value: unknown): bigint | null {
  if (typeof value === 'string' && /^\d{1,20}$/.test(value)) return BigInt(value);
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  return null;
}

/** A subject's stored values: its caps, with its guarantee and burst where the event carries them. */
function caps(value: Values | null): string {
  if (!value || typeof value.up_kbps !== 'number') return '—';
  const parts = [formatCaps(value.up_kbps, Number(value.down_kbps ?? 0))];
  if (typeof value.min_kbps === 'number' && value.min_kbps > 0) parts.push(`guaranteed ${formatKbps(value.min_kbps)}`);
  const burstBytes = bytesOf(value.burst_bytes);
  if (typeof value.burst_kbps === 'number' && value.burst_kbps > 0) parts.push(`burst ${formatKbps(value.burst_kbps)}${burstBytes === null ? '' : ` for ${formatDecimalBytes(burstBytes)}`}`);
  return parts.join(', ');
}

/** What changed of a network's caps: `cap Unlimited → 30 / 60 Mbps; default per peer Unlimited → 5 Mbps / Unlimited`. */
function networkCapsChange(before: Values | null, after: Values | null): string {
  const pair = (value: Values | null, up: string, down: string) => formatCaps(Number(value?.[up] ?? 0), Number(value?.[down] ?? 0));
  const parts: string[] = [];
  for (const [label, up, down] of [['cap', 'total_up_kbps', 'total_down_kbps'], ['default per peer', 'default_up_kbps', 'default_down_kbps']] as const) {
    const old = pair(before, up, down);
    const now = pair(after, up, down);
    if (old !== now) parts.push(`${label} ${old} → ${now}`);
  }
  return parts.join('; ');
}

/** A quota's settings in one line: `12 GB total a month from day 1 (UTC), warn at 80, 90, 100 %, then throttle to 1 Mbps`. */
function settingsText(value: Values | null): string {
  if (!value) return '—';
  const allowance = bytesOf(value.allowance_bytes);
  const warn = Array.isArray(value.warn_percents) && value.warn_percents.length > 0 ? `, warn at ${value.warn_percents.join(', ')} %` : '';
  const then = value.action === 'throttle'
    ? `, then throttle to ${formatCaps(Number(value.throttle_up_kbps ?? 0), Number(value.throttle_down_kbps ?? 0))}`
    : ', then notify only';
  return `${allowance === null ? '?' : formatDecimalBytes(allowance)} ${String(value.counted ?? 'total')} a month from day ${String(value.cycle_day ?? 1)} (${String(value.time_zone ?? 'UTC')})${warn}${then}`;
}

/** What a quota setting was set on, when it is not the event's own subject. */
function targetText(value: Values | null): string | null {
  const target = record(value?.target);
  if (!target) return null;
  if (target.type === 'default') return 'every subject (plugin-wide default)';
  if (target.type === 'network') return `network ${String(target.id)}`;
  return null;
}

/** The usage a quota notice reports: `9.6 of 12 GB (80 %)`. */
function noticeUsage(value: Values | null): string {
  const used = bytesOf(value?.used_bytes);
  const limit = bytesOf(value?.limit_bytes);
  return used !== null && limit !== null ? usageText(used, limit) : '';
}

/** The text of the "Change" cell. */
export function eventChange(event: Pick<BandwidthEvent, 'action' | 'oldValue' | 'newValue'>): string {
  const before = record(event.oldValue);
  const after = record(event.newValue);
  if (event.action.startsWith('limit') || event.action === 'subject.deleted') return `${caps(before)} → ${caps(after)}`;
  switch (event.action) {
    case 'quota.set':
      return before ? `${settingsText(before)} → ${settingsText(after)}` : `set: ${settingsText(after)}`;
    case 'quota.removed':
      return `removed (was ${settingsText(before)})`;
    case 'quota.warning':
      return `${String(after?.percent ?? '?')} % of the allowance reached: ${noticeUsage(after)}`;
    case 'quota.exceeded':
      return `allowance used up: ${noticeUsage(after)}${after?.throttled === true ? '; throttled' : ''}`;
    case 'quota.reset': {
      const start = typeof after?.cycle_start === 'string' ? Date.parse(after.cycle_start) : NaN;
      return after?.reason === 'manual'
        ? 'counting again from 0 after a manual reset'
        : `a new cycle began${Number.isNaN(start) ? '' : ` ${formatUtc(start)} UTC`}; counting from 0`;
    }
    case 'quota.manual_reset': {
      const used = bytesOf(before?.used_bytes);
      return `reset by hand: ${used === null ? '?' : formatDecimalBytes(used)}${typeof before?.state === 'string' ? ` (${before.state})` : ''} → 0 B`;
    }
    case 'quota.extra': {
      const added = bytesOf(after?.added_bytes);
      const total = bytesOf(after?.extra_bytes);
      return `traffic block of ${added === null ? '?' : formatDecimalBytes(added)} for this cycle${total === null ? '' : ` (extra now ${formatDecimalBytes(total)})`}`;
    }
    case 'quota.throttled':
      return `throttled to ${caps(after)} (quota exceeded)`;
    case 'quota.restored':
      return 'quota throttle lifted: its own caps apply again';
    case 'network.caps':
      return networkCapsChange(before, after);
    default:
      return '';
  }
}

/** The text of the "Subject" cell. */
export function eventSubject(event: Pick<BandwidthEvent, 'action' | 'subjectType' | 'subjectId' | 'oldValue' | 'newValue'>): string {
  if (event.subjectType) return `${event.subjectType} ${event.subjectId ?? ''}`;
  const before = record(event.oldValue);
  const after = record(event.newValue);
  if (event.action.startsWith('node.')) {
    const node = after?.node ?? before?.node;
    if (node) return `node ${String(node)}`;
  }
  if (event.action === 'network.caps') {
    const network = after?.network_id ?? before?.network_id;
    if (network !== undefined && network !== null) return `network ${String(network)}`;
  }
  if (event.action.startsWith('quota.')) {
    const target = targetText(after) ?? targetText(before);
    if (target) return target;
  }
  const iface = after?.interface ?? before?.interface;
  return iface ? String(iface) : '—';
}
