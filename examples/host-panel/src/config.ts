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
