import type { TableCell } from '../plugin-api.js';
import { formatCaps } from './format.js';
import { formatDecimalBytes } from './quota.js';

const DIRECTIONS = [['up', 'upload'], ['down', 'download']] as const;

/**
 * The Limit cell of a host's peer/VM table, from a serialized record: the configured caps (its own,
 * else its network's default, marked as such), with a badge when they are not simply applied. A
 * quota's throttle is shown beside the caps, never over them.
 */
export function limitCell(row: Record<string, unknown>): TableCell {
  const fromDefault = DIRECTIONS.filter(([direction]) => row[`bandwidth_cap_source_${direction}`] === 'default');
  const cap = (direction: 'up' | 'down') =>
    Number((fromDefault.some(([d]) => d === direction) ? row[`bandwidth_effective_${direction}_kbps`] : row[`bandwidth_${direction}_kbps`]) ?? 0);
  const caps = formatCaps(cap('up'), cap('down'));
  const text = fromDefault.length === 0 ? caps : `${caps} (${fromDefault.length === 2 ? '' : `${fromDefault[0]![1]}: `}network default)`;
  const status = row.bandwidth_status;
  if (status === 'throttled') {
    const used = typeof row.quota_used_bytes === 'string' && /^\d+$/.test(row.quota_used_bytes) ? ` (${formatDecimalBytes(BigInt(row.quota_used_bytes))} used this cycle)` : '';
    return { text, badge: { label: 'throttled', tone: 'off' }, title: `Quota exceeded${used}: throttled until the cycle ends or the quota is reset` };
  }
  if (status !== 'pending' && status !== 'failed') return text;
  return { text, badge: { label: status, tone: status }, title: String(row.bandwidth_error ?? '') };
}
