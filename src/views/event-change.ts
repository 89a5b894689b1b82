/**
 * The audit table's "Subject" and "Change" cells: cap changes as `old → new` caps, quota events as
 * a sentence. Values come from bw_events' JSON columns (byte counts as decimal strings or numbers).
 */
import type { BandwidthEvent } from '../db/events.js';
import { formatCaps } from './format.js';
import { formatDecimalBytes, formatUtc, usageText } from './quota.js';

type Values = Record<string, unknown>;

const record = (value: unknown): Values | null => (typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Values) : null);

/** A byte count stored as a decimal string or a number; null when it is neither. */
function bytesOf(value: unknown): bigint | null {
  if (typeof value === 'string' && /^\d{1,20}$/.test(value)) return BigInt(value);
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  return null;
}

const caps = (value: Values | null) => (value && typeof value.up_kbps === 'number' ? formatCaps(value.up_kbps, Number(value.down_kbps ?? 0)) : '—');

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
  if (event.action.startsWith('quota.')) {
    const target = targetText(after) ?? targetText(before);
    if (target) return target;
  }
  const iface = after?.interface ?? before?.interface;
  return iface ? String(iface) : '—';
}
