import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import express, { type RequestHandler, type Router } from 'express';
import type { Knex } from 'knex';
import type { Host, HostAuth, HostRecords, HostViews, Logger, PeerRecord, PluginInstance, TableColumn } from '../../../src/plugin-api.js';
import { HOST_API_VERSION } from '../../../src/plugin-api.js';
import { loadManifest, type Manifest } from '../../../src/manifest/load.js';
import { satisfies } from '../../../src/manifest/host-api-range.js';
import { HttpError } from './errors.js';
import type { HookRegistry } from './hooks.js';
import { KeyedMutex } from './mutex.js';

/** What a plugin's entry module exports. */
interface PluginModule {
  register(host: Host, options?: Record<string, unknown>): Promise<PluginInstance>;
  migrate?(db: Knex): Promise<unknown>;
  /** Removes what the plugin set up and its tables; gets register()'s options. May answer `{ warnings: string[] }`. */
  uninstall?(db: Knex, options?: Record<string, unknown>, logger?: Logger): Promise<unknown>;
}

/** What an uninstall left for the admin to know (a node the plugin could not reach). */
export interface UninstallOutcome {
  warnings: string[];
}

/** The `warnings` of a plugin's uninstall answer, when it gives any (a plugin may answer anything). */
function warningsOf(answer: unknown): string[] {
  const warnings = (answer as { warnings?: unknown } | null | undefined)?.warnings;
  return Array.isArray(warnings) ? warnings.filter((line): line is string => typeof line === 'string') : [];
}

interface Loaded {
  dir: string;
  manifest: Manifest;
  running?: { instance: PluginInstance; router: Router; release(): void };
  error?: string;
}

/** The host's views, scoped to one plugin: everything it adds is removed by `releaseAll()`. */
function scopedViews(views: HostViews): HostViews & { releaseAll(): void } {
  const removers: (() => void)[] = [];
  const track = (remove: () => void) => {
    removers.push(remove);
    return remove;
  };
  return {
    render: (req, res, template, locals) => views.render(req, res, template, locals),
    flash: (req, message) => views.flash(req, message),
    addPartial: (slot, template) => track(views.addPartial(slot, template)),
    addColumn: ((slot: 'peer.table' | 'vm.table', column: TableColumn<PeerRecord>) =>
      track(views.addColumn(slot as 'peer.table', column))) as unknown as HostViews['addColumn'],
    addNavItem: (item) => track(views.addNavItem(item)),
    releaseAll: () => {
      for (const remove of removers.splice(0).reverse()) remove();
    },
  };
}

export interface PluginSummary {
  id: string;
  name: string;
  version: string;
  description: string;
  enabled: boolean;
  running: boolean;
  error: string | null;
}

interface Deps {
  db: Knex;
  hooks: HookRegistry;
  views: HostViews;
  records: HostRecords;
  auth: HostAuth;
  logger: Logger & { child(area: string): Logger };
  config: Host['config'];
  /** Options passed to each plugin's register(), by plugin id. */
  pluginOptions?: Record<string, Record<string, unknown>>;
}

/** Discovers plugins by their `plugin.json`, enables, disables and uninstalls them. */
export class PluginManager {
  private plugins = new Map<string, Loaded>();
  /**
   * Enable, disable, uninstall and close of one plugin run one at a time: five clicks on Enable
   * while the first register() still runs would otherwise start five instances, of which only the
   * last is kept (and stopped by disable), the others running on with nothing to stop them.
   */
  private readonly lifecycle = new KeyedMutex();
  private closed = false;

  constructor(private readonly deps: Deps) {}

  /** Reads and validates each directory's manifest; a bad manifest fails at once, naming the key. */
  discover(dirs: string[]): void {
    for (const dir of dirs) {
      const manifest = loadManifest(dir);
      if (this.plugins.has(manifest.id)) throw new Error(`Two plugins share the id \`${manifest.id}\` (${dir})`);
      this.plugins.set(manifest.id, { dir, manifest });
    }
  }

  /** Starts every plugin whose stored state is enabled; a plugin never seen before starts enabled. */
  async startEnabled(): Promise<void> {
    for (const [id] of this.plugins) {
      const row = await this.deps.db('panel_plugins').where({ id }).first();
      if (!row) await this.deps.db('panel_plugins').insert({ id, enabled: true, updated_at: Date.now() });
      if (!row || Boolean(row.enabled)) {
        try {
          await this.lifecycle.run(id, () => this.start(id));
        } catch (error) {
          this.deps.logger.error(`plugin ${id} failed to start`, { error: (error as Error).message });
        }
      }
    }
  }

  async list(): Promise<PluginSummary[]> {
    const rows = await this.deps.db('panel_plugins').select('id', 'enabled');
    const enabled = new Map(rows.map((r) => [String(r.id), Boolean(r.enabled)]));
    return [...this.plugins.values()].map(({ manifest, running, error }) => ({
      id: manifest.id,
      name: manifest.name,
      version: manifest.version,
      description: manifest.description ?? '',
      enabled: enabled.get(manifest.id) ?? false,
      running: Boolean(running),
      error: error ?? null,
    }));
  }

  private get(id: string): Loaded {
    const plugin = this.plugins.get(id);
    if (!plugin) throw new HttpError(404, 'not_found', `No plugin with id \`${id.slice(0, 40)}\``);
    return plugin;
  }

  private async load(plugin: Loaded): Promise<PluginModule> {
    const module = (await import(pathToFileURL(join(plugin.dir, plugin.manifest.entry)).href)) as Partial<PluginModule>;
    if (typeof module.register !== 'function') {
      throw new TypeError(`Plugin \`${plugin.manifest.id}\` entry ${plugin.manifest.entry} exports no register function`);
    }
    return module as PluginModule;
  }

  private async start(id: string): Promise<void> {
    const plugin = this.get(id);
    if (plugin.running) return;
    if (this.closed) throw new HttpError(503, 'shutting_down', `The panel is shutting down: plugin \`${id}\` is not started`);
    if (!satisfies(HOST_API_VERSION, plugin.manifest.hostApi)) {
      plugin.error = `needs host API ${plugin.manifest.hostApi}, this panel offers ${HOST_API_VERSION}`;
      throw new HttpError(409, 'incompatible', `Plugin \`${id}\` ${plugin.error}`);
    }
    const hooks = this.deps.hooks.forPlugin(id, plugin.manifest.hooks, plugin.manifest.events);
    const views = scopedViews(this.deps.views);
    try {
      const module = await this.load(plugin);
      await module.migrate?.(this.deps.db);
      const router = express.Router();
      const instance = await module.register({
        apiVersion: HOST_API_VERSION,
        db: this.deps.db,
        router,
        hooks,
        views,
        records: this.deps.records,
        auth: this.deps.auth,
        logger: this.deps.logger.child(id),
        config: this.deps.config,
      }, this.deps.pluginOptions?.[id] ?? {});
      plugin.running = {
        instance,
        router,
        release: () => {
          hooks.removeAll();
          views.releaseAll();
        },
      };
      plugin.error = undefined;
      this.deps.logger.info(`plugin ${id} enabled`);
    } catch (error) {
      // Whatever register() added before it threw goes with it: no orphan hooks or links.
      hooks.removeAll();
      views.releaseAll();
      plugin.error = (error as Error).message;
      throw error instanceof HttpError ? error : new HttpError(500, 'plugin_failed', `Plugin \`${id}\` failed to start: ${plugin.error}`);
    }
  }

  private async stop(plugin: Loaded): Promise<void> {
    if (!plugin.running) return;
    const { instance, release } = plugin.running;
    plugin.running = undefined;
    release();
    await instance.close();
  }

  /** Runs the plugin's migrations and registers it; enabling a running plugin changes nothing. */
  async enable(id: string): Promise<void> {
    this.get(id);
    await this.lifecycle.run(id, async () => {
      await this.start(id);
      await this.deps.db('panel_plugins').where({ id }).update({ enabled: true, updated_at: Date.now() });
    });
  }

  /** Unregisters the plugin: routes, hooks and views go, and everything it runs stops; its tables stay. */
  async disable(id: string): Promise<void> {
    const plugin = this.get(id);
    await this.lifecycle.run(id, async () => {
      await this.stop(plugin);
      await this.deps.db('panel_plugins').where({ id }).update({ enabled: false, updated_at: Date.now() });
      this.deps.logger.info(`plugin ${id} disabled`);
    });
  }

  /**
   * Disables the plugin, then lets it remove what it set up (the bandwidth plugin: its caps in every
   * kernel it reached) and run its migrations down: its tables and data are gone. The warnings say
   * what it could not remove.
   */
  async uninstall(id: string): Promise<UninstallOutcome> {
    const plugin = this.get(id);
    return this.lifecycle.run(id, async () => {
      await this.stop(plugin);
      const module = await this.load(plugin);
      const answer = await module.uninstall?.(this.deps.db, this.deps.pluginOptions?.[id] ?? {}, this.deps.logger.child(id));
      await this.deps.db('panel_plugins').where({ id }).update({ enabled: false, updated_at: Date.now() });
      const warnings = warningsOf(answer);
      this.deps.logger.info(`plugin ${id} uninstalled`, warnings.length > 0 ? { warnings } : {});
      return { warnings };
    });
  }

  /** Dispatches requests to the routers of running plugins, in discovery order. */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const routers = [...this.plugins.values()].flatMap((p) => (p.running ? [p.running.router] : []));
      const step = (index: number, error?: unknown): void => {
        if (error !== undefined && error !== 'route' && error !== 'router') return next(error);
        const router = routers[index];
        if (!router) return next();
        router(req, res, (err?: unknown) => step(index + 1, err));
      };
      step(0);
    };
  }

  /** Stops every plugin, each after the enable or disable it is in the middle of. */
  async close(): Promise<void> {
    this.closed = true;
    for (const [id, plugin] of this.plugins) await this.lifecycle.run(id, () => this.stop(plugin));
  }
}
