import type { TableCell } from '../plugin-api.js';
import { formatCaps } from './format.js';
import { formatDecimalBytes } from './quota.js';

/**
 * The Limit cell of a host's peer/VM table, from a serialized record: the configured caps, with a
 * badge when they are not simply applied. A quota's throttle is shown beside the caps, never over them.
 */
export function limitCell(row: Record<string, unknown>): TableCell {
  const text = formatCaps(Number(row.bandwidth_up_kbps ?? 0), Number(row.bandwidth_down_kbps ?? 0));
  const status = row.bandwidth_status;
  if (status === 'throttled') {
    const used = typeof row.quota_used_bytes === 'string' && /^\d+$/.test(row.quota_used_bytes) ? ` (${formatDecimalBytes(BigInt(row.quota_used_bytes))} used this cycle)` : '';
    return { text, badge: { label: 'throttled', tone: 'off' }, title: `Quota exceeded${used}: throttled until the cycle ends or the quota is reset` };
  }
  if (status !== 'pending' && status !== 'failed') return text;
  return { text, badge: { label: status, tone: status }, title: String(row.bandwidth_error ?? '') };
}
