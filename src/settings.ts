import type { Manifest } from './manifest/load.js';
import { checkSetting } from './manifest/load.js';

/** The plugin's resolved settings (manifest defaults, overridden by `register` options). */
export interface Settings {
  /** Subjects per page on /admin/bandwidth. @default 50 */
  page_size: number;
  /** Seconds between reconcile runs (retry pending/failed limits, repair drift). @default 60 */
  reconcile_interval_s: number;
  /** `local` runs tc, `recording` runs nothing (dry run), `auto` picks local with CAP_NET_ADMIN. @default 'auto' */
  executor: 'auto' | 'local' | 'recording';
  /** Seconds between collector ticks. @default 60 */
  collect_interval_s: number;
  /** Days raw usage rows are kept. @default 7 */
  retention_raw_days: number;
  /** Days hourly roll-ups are kept. @default 90 */
  retention_hourly_days: number;
  /** Days daily roll-ups are kept. @default 730 */
  retention_daily_days: number;
  /** Days audit events are kept after they were last seen. @default 365 */
  retention_events_days: number;
  /** Deltas faster than this many Mbit/s are discarded as impossible. @default 100000 */
  ceiling_mbps: number;
  /** Bearer token for /metrics; empty = generated on the first start, printed once, kept hashed. @default '' */
  metrics_token: string;
  /** Serve /metrics without a token (cannot be combined with `metrics_token`). @default false */
  metrics_open: boolean;
  /** VMs' byte source: `sysfs` or `vnstat` (hosts running vnstatd). @default 'sysfs' */
  vm_counter_source: 'sysfs' | 'vnstat';
  /**
   * Which bytes a peer's bill counts (totals, usage API, CSV): `wire`, WireGuard's counters (what the
   * tunnel carries, the same source for every peer); `inner`, the bytes through its HTB class (what
   * its cap governs), WireGuard's counters in a direction without a class. VMs count their tap either
   * way. Utilisation always compares the class bytes with the cap. @default 'wire'
   */
  billing_bytes: 'wire' | 'inner';
  /**
   * The key file that encrypts nodes' agent tokens at rest, created (mode 0600) the first time a key
   * is needed; `PANEL_BANDWIDTH_SECRET_KEY` wins when set. @default '/var/lib/panel-bandwidth/secret.key'
   */
  secret_key_file: string;
  /** Seconds of silence on a node's event stream before it is unreachable (agents beat every 5 s). @default 15 */
  node_read_deadline_s: number;
  /** Where quota notifications are POSTed as signed JSON (http or https); empty: no webhooks. @default '' */
  quota_webhook_url: string;
  /** The HMAC-SHA256 key that signs each webhook (≥ 16 characters; required with a URL). @default '' */
  quota_webhook_secret: string;
}

/**
 * Merges options over the manifest's defaults; an unknown key or a bad value throws a TypeError
 * naming the key, e.g. ``Expected `page_size` to be an integer from 10 to 500, got `5` (number)``.
 */
export function resolveSettings(manifest: Manifest, options: unknown): Settings {
  if (options === undefined) options = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`panel-bandwidth expects options to be an object, instead got a '${options === null ? 'null' : Array.isArray(options) ? 'array' : typeof options}'`);
  }
  const resolved: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(manifest.settings)) resolved[key] = spec.default;
  for (const [key, value] of Object.entries(options)) {
    const spec = manifest.settings[key];
    if (!spec) throw new TypeError(`Unknown panel-bandwidth option \`${key}\`; known: ${Object.keys(manifest.settings).join(', ')}`);
    const problem = checkSetting(key, spec, value);
    if (problem) throw new TypeError(problem);
    resolved[key] = value;
  }
  if (resolved.metrics_open === true && resolved.metrics_token !== '') {
    throw new TypeError('Expected either `metrics_open: true` or a `metrics_token`, got both');
  }
  const url = String(resolved.quota_webhook_url);
  if (url !== '') {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      // reported below
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new TypeError(`Expected \`quota_webhook_url\` to be an http or https URL, got \`${url.slice(0, 80)}\``);
    }
    if (String(resolved.quota_webhook_secret).length < 16) {
      throw new TypeError('Expected `quota_webhook_secret` to be at least 16 characters with a `quota_webhook_url` (it signs every delivery)');
    }
  }
  return resolved as unknown as Settings;
}
