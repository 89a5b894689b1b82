/**
 * panel-bandwidth: per-peer and per-VM bandwidth caps, accounting and monitoring for
 * Express + knex hosting panels. The host calls `register(host, options)`; see src/plugin-api.ts.
 */
import type { Knex } from 'knex';
import type { Host, PluginInstance } from './plugin-api.js';
import { loadManifest } from './manifest/load.js';
import { satisfies } from './manifest/host-api-range.js';
import { migrateDownAll, migrateLatest, pendingMigrations } from './db/migrate.js';
import { resolveSettings } from './settings.js';
import { mountOverview } from './routes/admin-overview.js';

export type { Host, PluginInstance } from './plugin-api.js';
export type { Settings } from './settings.js';

const manifest = loadManifest();

function expect(condition: boolean, what: string, got: unknown): void {
  if (!condition) {
    const type = got === null ? 'null' : Array.isArray(got) ? 'array' : typeof got;
    throw new TypeError(`panel-bandwidth expects ${what}, instead got a '${type}'`);
  }
}

function checkHost(host: Host): void {
  expect(typeof host === 'object' && host !== null, 'a host object', host);
  expect(typeof host.apiVersion === 'string', 'host.apiVersion to be a string', host.apiVersion);
  if (!satisfies(host.apiVersion, manifest.hostApi)) {
    throw new TypeError(`panel-bandwidth needs host API ${manifest.hostApi}, the host offers ${host.apiVersion}`);
  }
  expect(typeof host.db === 'function' && typeof host.db.schema === 'object', 'host.db to be a knex instance', host.db);
  expect(typeof host.router === 'function' && typeof host.router.get === 'function', 'host.router to be an Express router', host.router);
  expect(typeof host.hooks?.on === 'function', 'host.hooks to be a hook bus', host.hooks);
  expect(typeof host.views?.render === 'function', 'host.views to offer render()', host.views);
  expect(typeof host.auth?.admin === 'function' && typeof host.auth.api === 'function', 'host.auth to offer admin() and api', host.auth);
  expect(typeof host.logger?.info === 'function', 'host.logger to be a logger', host.logger);
}

/** Runs the plugin's pending migrations (the host calls this when the plugin is enabled). */
export async function migrate(db: Knex): Promise<string[]> {
  return migrateLatest(db);
}

/** Runs every plugin migration down: the plugin's tables and data are removed. */
export async function uninstall(db: Knex): Promise<string[]> {
  return migrateDownAll(db);
}

/**
 * Registers the plugin with a host panel: checks the host and options, makes sure the plugin's
 * tables are migrated, and mounts its admin pages.
 * @example const bandwidth = await register(host, { page_size: 100 }); … await bandwidth.close();
 */
export async function register(host: Host, options: Record<string, unknown> = {}): Promise<PluginInstance> {
  checkHost(host);
  const settings = resolveSettings(manifest, options);
  const pending = await pendingMigrations(host.db);
  if (pending.length > 0) {
    host.logger.info('running migrations', { migrations: pending });
    await migrateLatest(host.db);
  }

  const releases: (() => void)[] = [];
  for (const page of manifest.adminPages) {
    releases.push(host.views.addNavItem(page));
  }
  const overview = manifest.adminPages.find((page) => page.path === '/admin/bandwidth');
  if (overview) mountOverview(host, settings, overview.path, overview.minRole);

  let closed = false;
  return {
    async close() {
      if (closed) return;
      closed = true;
      for (const release of releases.reverse()) release();
    },
  };
}
