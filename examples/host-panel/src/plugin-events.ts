import type { Logger, QuotaEventPayload } from '../../../src/plugin-api.js';
import { PLUGIN_EVENT_NAMES } from '../../../src/manifest/load.js';
import type { HookRegistry } from './hooks.js';

/** Decimal gigabytes with up to two decimals, from a byte count as a decimal string. */
function gigabytes(bytes: string): string {
  return `${Number((Number(bytes) / 1e9).toFixed(2))} GB`;
}

/** One line an operator reads: what happened to which subject, and how far into its allowance. */
export function describeQuotaEvent(name: string, payload: QuotaEventPayload): string {
  const what = name.replace(/^bandwidth\.quota\./, '');
  const subject = `${payload.subject_type} ${payload.subject_name} (${payload.subject_id})`;
  if (what === 'reset') return `quota reset for ${subject}: ${payload.reason === 'manual' ? `reset by ${payload.actor}` : 'a new cycle began'}`;
  const usage = `${gigabytes(payload.used_bytes)} of ${gigabytes(payload.limit_bytes)} used (${payload.percent ?? '?'}%)`;
  return `quota ${what} for ${subject}: ${usage}${payload.throttled ? ', throttled' : ''}`;
}

/**
 * The reference host's own listeners: every quota event a plugin emits is logged (info) with its
 * payload, so an operator sees warnings, exceeded allowances and resets in the panel's log.
 * @returns a function that stops logging them
 */
export function logPluginEvents(hooks: HookRegistry, logger: Logger): () => void {
  const stops = PLUGIN_EVENT_NAMES.map((name) =>
    hooks.onPluginEvent(name, (payload, { pluginId }) => logger.info(describeQuotaEvent(name, payload), { plugin: pluginId, event: name, ...payload })));
  return () => {
    for (const stop of stops) stop();
  };
}
