import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, where the bandwidth plugin's plugin.json lives. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface PanelConfig {
  port: number;
  host: string;
  databaseUrl: string;
  apiToken: string | undefined;
  adminUser: string | undefined;
  adminPassword: string | undefined;
  sessionSecret: string | undefined;
  demo: boolean;
  pluginDirs: string[];
  /** Options for each plugin's register(), by plugin id (`PANEL_PLUGIN_OPTIONS`, JSON). */
  pluginOptions?: Record<string, Record<string, unknown>>;
  /**
   * Express's `trust proxy` (`PANEL_TRUST_PROXY`): which proxies may set `X-Forwarded-For` and
   * `X-Forwarded-Proto`, so the panel sees the client's address (login rate limits) and whether
   * the browser used TLS (`Secure` cookies). `false` trusts none, a number that many hops, a list of
   * addresses, subnets or `loopback`/`linklocal`/`uniquelocal`.
   * @default false
   * @example ['loopback'] // nginx on the same machine
   */
  trustProxy?: TrustProxy;
  /**
   * When cookies get `Secure` (`PANEL_COOKIE_SECURE`): `'auto'` when the request came over TLS
   * (directly, or through a trusted proxy that says `X-Forwarded-Proto: https`), `true` always
   * (the panel then sets no cookie on a plain-HTTP request), `false` never.
   * @default 'auto'
   */
  cookieSecure?: CookieSecure;
}

export type TrustProxy = boolean | number | string[];
export type CookieSecure = 'auto' | boolean;

const PROXY_KEYWORDS = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** One entry of `PANEL_TRUST_PROXY`: an address, a subnet (`10.0.0.0/8`) or a keyword. */
function isProxyEntry(entry: string): boolean {
  if (PROXY_KEYWORDS.has(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * `PANEL_TRUST_PROXY`: unset, `false` or `0` → trust no proxy; `true` → trust every hop (only
 * when nothing can reach the panel except through the proxy); a number → that many hops; else a
 * comma-separated list of addresses, subnets and `loopback`/`linklocal`/`uniquelocal`.
 */
export function parseTrustProxy(value: string | undefined): TrustProxy {
  const text = (value ?? '').trim();
  if (text === '' || text === 'false' || text === '0') return false;
  if (text === 'true') return true;
  if (/^\d+$/.test(text)) return Number(text);
  const entries = text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  const bad = entries.find((entry) => !isProxyEntry(entry));
  if (bad !== undefined || entries.length === 0) {
    fail('PANEL_TRUST_PROXY', 'false, true, a hop count or a comma-separated list of addresses, subnets and loopback/linklocal/uniquelocal', bad ?? text);
  }
  return entries;
}

/** `PANEL_COOKIE_SECURE`: `auto` (default), `true` or `false`. */
export function parseCookieSecure(value: string | undefined): CookieSecure {
  const text = (value ?? '').trim();
  if (text === '' || text === 'auto') return 'auto';
  if (text === 'true') return true;
  if (text === 'false') return false;
  fail('PANEL_COOKIE_SECURE', 'auto, true or false', text);
}

function fail(name: string, expected: string, got: string): never {
  throw new TypeError(`Expected \`${name}\` to be ${expected}, got \`${got}\``);
}

/** Reads the panel's configuration from the environment, failing at once on a bad value. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): PanelConfig {
  const port = env.PORT === undefined || env.PORT === '' ? 3000 : Number(env.PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('PORT', 'a port number from 0 to 65535', String(env.PORT));
  const demo = env.PANEL_DEMO ?? '1';
  if (demo !== '0' && demo !== '1') fail('PANEL_DEMO', '0 or 1', demo);
  if (env.PANEL_API_TOKEN !== undefined && env.PANEL_API_TOKEN.length > 0 && env.PANEL_API_TOKEN.length < 16) {
    fail('PANEL_API_TOKEN', 'at least 16 characters', `${env.PANEL_API_TOKEN.length} characters`);
  }
  if ((env.PANEL_ADMIN_USER ? 1 : 0) + (env.PANEL_ADMIN_PASSWORD ? 1 : 0) === 1) {
    throw new TypeError('Set both `PANEL_ADMIN_USER` and `PANEL_ADMIN_PASSWORD`, or neither (a password is then generated)');
  }
  let pluginOptions: Record<string, Record<string, unknown>> | undefined;
  if (env.PANEL_PLUGIN_OPTIONS) {
    try {
      pluginOptions = JSON.parse(env.PANEL_PLUGIN_OPTIONS) as Record<string, Record<string, unknown>>;
    } catch {
      fail('PANEL_PLUGIN_OPTIONS', 'JSON like {"bandwidth":{"executor":"recording"}}', env.PANEL_PLUGIN_OPTIONS);
    }
    if (typeof pluginOptions !== 'object' || pluginOptions === null || Array.isArray(pluginOptions)) {
      fail('PANEL_PLUGIN_OPTIONS', 'a JSON object keyed by plugin id', env.PANEL_PLUGIN_OPTIONS);
    }
  }
  return {
    pluginOptions,
    trustProxy: parseTrustProxy(env.PANEL_TRUST_PROXY),
    cookieSecure: parseCookieSecure(env.PANEL_COOKIE_SECURE),
    port,
    host: env.HOST || '127.0.0.1',
    databaseUrl: env.DATABASE_URL || 'sqlite:./data/panel.sqlite',
    apiToken: env.PANEL_API_TOKEN || undefined,
    adminUser: env.PANEL_ADMIN_USER || undefined,
    adminPassword: env.PANEL_ADMIN_PASSWORD || undefined,
    sessionSecret: env.PANEL_SESSION_SECRET || undefined,
    demo: demo === '1',
    pluginDirs: env.PANEL_PLUGIN_DIRS ? env.PANEL_PLUGIN_DIRS.split(':').map((dir) => resolve(dir)) : [join(REPO_ROOT)],
  };
}
