/**
 * panel-bandwidth: per-peer and per-VM bandwidth caps, accounting and monitoring for
 * Express + knex hosting panels. The host calls `register(host, options)`; see src/plugin-api.ts.
 */
import { join } from 'node:path';
import express from 'express';
import type { Knex } from 'knex';
import type { Host, Logger, PluginInstance } from './plugin-api.js';
import { loadManifest, PLUGIN_ROOT } from './manifest/load.js';
import { satisfies } from './manifest/host-api-range.js';
import { migrateDownAll, migrateLatest, pendingMigrations } from './db/migrate.js';
import { resolveSettings } from './settings.js';
import { mountOverview, PLUGIN_VIEWS } from './routes/admin-overview.js';
import { mountBandwidthApi } from './routes/api-bandwidth.js';
import { registerHooks } from './hooks/register-hooks.js';
import { chooseExecutor } from './limits/executor-choice.js';
import { LimitsService } from './limits/service.js';
import { IntervalLoop } from './interval-loop.js';
import { takeClock } from './clock.js';
import { countOptionsOf } from './accounting/billing.js';
import { enforceRetention } from './accounting/store.js';
import { enforceEventRetention } from './db/events.js';
import { mountUsageApi } from './routes/api-usage.js';
import { createMetrics, metricsAccess, mountMetrics } from './routes/metrics.js';
import { exportCsv } from './routes/export-csv.js';
import { routeErrors } from './routes/errors.js';
import { mountSubjectPage } from './routes/admin-subject.js';
import { RateStream } from './live/rate-stream.js';
import { limitCell } from './views/limit-cell.js';
import { AgentCore } from './nodes/agent/core.js';
import { LocalLink, type NodeLink } from './nodes/link.js';
import { NodeApplier } from './nodes/panel/applier.js';
import { NodeAccounting } from './nodes/panel/accounting.js';
import { localStatePath } from './nodes/panel/local-state.js';
import { ConnectionManager } from './nodes/panel/connections.js';
import { AgentRegistry } from './nodes/panel/registry.js';
import { SecretBox } from './nodes/panel/secret.js';
import { NodeAdmin } from './nodes/panel/node-admin.js';
import { mountAgentsApi } from './routes/api-agents.js';
import { mountNodesPage } from './routes/admin-nodes.js';
import { LOCAL_NODE } from './nodes/node-name.js';
import { removeTrees, type TreeRemoval } from './nodes/panel/remove-trees.js';
import { QuotaEnforcer } from './quotas/enforcer.js';
import { quotaNotifier } from './quotas/notify.js';
import { QuotaService } from './quotas/service.js';
import { WebhookDeliverer } from './quotas/webhooks.js';
import { mountQuotaApi } from './routes/api-quotas.js';
import { recordEvent } from './db/events.js';

export type * from './plugin-api.js';
export { HOST_API_VERSION } from './plugin-api.js';
export type { Settings } from './settings.js';

const manifest = loadManifest();

/** How often the panel reads the node registry again (another panel process may have changed it). */
const REGISTRY_REFRESH_MS = 10_000;

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
  expect(
    ['network', 'peers', 'peer', 'vm', 'networks', 'allPeers', 'vms'].every((name) => typeof (host.records as unknown as Record<string, unknown> | undefined)?.[name] === 'function'),
    'host.records to offer network(), peers(), peer(), vm(), networks(), allPeers() and vms()',
    host.records,
  );
  expect(typeof host.auth?.admin === 'function' && typeof host.auth.api === 'function', 'host.auth to offer admin() and api', host.auth);
  expect(typeof host.logger?.info === 'function', 'host.logger to be a logger', host.logger);
}

/** Runs the plugin's pending migrations (the host calls this when the plugin is enabled). */
export async function migrate(db: Knex): Promise<string[]> {
  return migrateLatest(db);
}

/** What {@link uninstall} did: the trees it removed, the ones that may stay, and the migrations it ran down. */
export interface UninstallReport extends TreeRemoval {
  /** The migrations run down (the plugin's tables are gone). */
  migrations: string[];
  /** One line per interface that may still be capped, for the host to show the admin. */
  warnings: string[];
}

const SILENT: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/**
 * Uninstalls the plugin from a host that is not running it (close() it first): removes the
 * engine's tree from every interface, on the panel's machine and on every registered node, while
 * the tables still say where they are, then runs every plugin migration down (the tables and their
 * data are gone). A node that does not answer does not stop the uninstall: its interfaces are in
 * `left` and `warnings`. `options` are the ones register() is given (the executor, the key file of
 * the nodes' tokens); a host that passes none gets the defaults, as register() would.
 * @example const report = await uninstall(db, pluginOptions, logger); for (const line of report.warnings) flash(line);
 */
export async function uninstall(db: Knex, options: Record<string, unknown> = {}, logger: Logger = SILENT): Promise<UninstallReport> {
  const { settings: settingOptions } = takeClock(options);
  const settings = resolveSettings(manifest, settingOptions);
  const choice = chooseExecutor(settings.executor);
  const trees = await removeTrees({ db, executor: choice.executor, mode: choice.mode, secretKeyFile: settings.secret_key_file, logger });
  const warnings = trees.left.map((left) => `${left.interface}${left.netns ? ` (netns ${left.netns})` : ''} on node ${left.node} may still be capped: ${left.error}`);
  return { ...trees, migrations: await migrateDownAll(db), warnings };
}

/**
 * Registers the plugin with a host panel: checks the host and options, makes sure the plugin's
 * tables are migrated, subscribes to the peer/VM/network hooks, mounts its pages and API, and
 * starts the reconcile loop.
 * Options are plugin.json's settings, and `now`: the wall clock the plugin dates usage and picks
 * ranges by (a {@link Clock}; tests fix it). @default Date.now
 * @example const bandwidth = await register(host, { executor: 'recording' }); … await bandwidth.close();
 */
export async function register(host: Host, options: Record<string, unknown> = {}): Promise<PluginInstance> {
  checkHost(host);
  const stops: Stop[] = [];
  try {
    return await start(host, options, stops);
  } catch (error) {
    // A register() that fails part-way stops what it had started: a failed enable leaves nothing running.
    await stopAll(stops).catch((failure: unknown) => host.logger.error('stopping after a failed register failed', { error: (failure as Error).message }));
    throw error;
  }
}

/** Stops one part of a running plugin (a loop, a stream, a connection manager, the local agent core). */
type Stop = () => Promise<void> | void;

/** Runs every stop, newest first, each even when an earlier one failed; throws the failures together. */
async function stopAll(stops: Stop[]): Promise<void> {
  const failures: unknown[] = [];
  for (const stop of stops.splice(0).reverse()) {
    try {
      await stop();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `panel-bandwidth: ${failures.length} part(s) failed to stop`);
}

/** register()'s work; everything it starts is pushed on `stops`, which close() runs. */
async function start(host: Host, options: Record<string, unknown>, stops: Stop[]): Promise<PluginInstance> {
  const { now, settings: settingOptions } = takeClock(options);
  const settings = resolveSettings(manifest, settingOptions);
  const pending = await pendingMigrations(host.db);
  if (pending.length > 0) {
    host.logger.info('running migrations', { migrations: pending });
    await migrateLatest(host.db);
  }

  const retention = { rawDays: settings.retention_raw_days, hourlyDays: settings.retention_hourly_days, dailyDays: settings.retention_daily_days };
  const choice = chooseExecutor(settings.executor);
  if (choice.mode === 'recording') host.logger.warn(`shaping runs the recording executor (dry run): ${choice.reason}`);
  else host.logger.info(`shaping runs the local executor: ${choice.reason}`);
  // The panel's own machine is a node like the others: its agent runs in this process (one code path).
  const localCore = await AgentCore.open({
    node: 'local',
    statePath: localStatePath(host.db, choice.mode),
    executor: choice.executor,
    mode: choice.mode,
    modeReason: choice.reason,
    logger: host.logger,
    now,
    ledgerDays: settings.retention_raw_days,
    ceilingBitsPerSecond: BigInt(settings.ceiling_mbps) * 1_000_000n,
    vmSource: settings.vm_counter_source,
    billing: settings.billing_bytes,
  });
  stops.push(() => localCore.close());
  const local = new LocalLink(localCore);
  // Every node, the panel machine's included, is reached through one connection manager: it pushes a
  // node's desired state when the node (re)connects and pulls its ledger on every new head.
  const nodesOf: { manager?: ConnectionManager } = {};
  const linkOf = (node: string): NodeLink | undefined => (node === LOCAL_NODE ? local : nodesOf.manager?.link(node));
  const applier = new NodeApplier({
    db: host.db, link: linkOf, reachable: (node) => node === LOCAL_NODE || (nodesOf.manager?.reachable(node) ?? false), logger: host.logger, mode: choice.mode, now,
    nodes: () => nodesOf.manager?.statuses().map((status) => status.node) ?? [LOCAL_NODE],
  });
  const accounting = new NodeAccounting({
    db: host.db, local: localCore, link: linkOf, nodes: () => nodesOf.manager?.statuses().map((status) => status.node) ?? [LOCAL_NODE], logger: host.logger, now,
  });
  const service = new LimitsService(host.db, applier, host.logger, host.records);

  // Quotas: evaluated after every ledger ingestion (the local collector's ticks included) and in
  // full on the reconcile loop; notices go to the audit log, the webhook and the host's bus.
  const webhook = settings.quota_webhook_url ? { url: settings.quota_webhook_url } : null;
  const deliverer = webhook ? new WebhookDeliverer({ db: host.db, url: webhook.url, secret: settings.quota_webhook_secret, logger: host.logger, now }) : null;
  if (deliverer) {
    deliverer.start(Math.min(30, settings.collect_interval_s) * 1000);
    stops.push(() => deliverer.close());
  }
  const notifier = quotaNotifier({ db: host.db, hooks: host.hooks, logger: host.logger, now, webhook, deliverer });
  const enforcer = new QuotaEnforcer({
    db: host.db, logger: host.logger, now,
    // Thresholds are stored with their evaluation (record), then told (notify); resets are both at once.
    record: notifier.record,
    notify: async (notice) => (notice.name === 'bandwidth.quota.reset' ? notifier.notify(notice) : notifier.announce(notice)),
    applyInterface: (iface, netns, node) => applier.applyInterface(iface, netns, undefined, node),
    throttled: async (change) => {
      await recordEvent(host.db, {
        actor: 'quota', subjectType: change.subject.type, subjectId: change.subject.id, action: change.throttle ? 'quota.throttled' : 'quota.restored',
        newValue: change.throttle ? { up_kbps: change.throttle.upKbps, down_kbps: change.throttle.downKbps } : null, result: 'ok',
      }, now());
    },
  });
  stops.push(() => enforcer.idle());
  const quotas = new QuotaService({ db: host.db, enforcer, notify: notifier.notify, now, logger: host.logger });

  const registry = new AgentRegistry({ db: host.db, secrets: new SecretBox({ keyFile: settings.secret_key_file, logger: host.logger }), logger: host.logger, now });
  const connections = new ConnectionManager({
    local,
    logger: host.logger,
    now,
    readDeadlineMs: settings.node_read_deadline_s * 1000,
    // A node that (re)connects gets its whole desired state again: caps typed while it was away apply now.
    onConnected: async (node) => {
      if (node === LOCAL_NODE) return;
      await registry.recordHealth(node, { status: 'connected', lastSeenAt: now(), lastError: null, version: nodesOf.manager?.status(node)?.version ?? null });
      await applier.reconcileAll(node);
    },
    // Its subjects show `pending` (`node_unreachable`) until it is back; the agent keeps enforcing them.
    onUnreachable: async (node) => {
      await registry.recordHealth(node, { status: 'unreachable', lastError: nodesOf.manager?.status(node)?.lastError ?? null });
      await applier.reconcileAll(node);
    },
    onLedger: async (node) => {
      await accounting.pull(node);
      // Right after the bytes are in: a subject that used up its allowance is throttled within the tick.
      await enforcer.afterIngest().catch((error: unknown) => host.logger.warn('evaluating quotas failed', { area: 'quotas', error: (error as Error).message }));
    },
  });
  nodesOf.manager = connections;
  stops.push(() => connections.close());
  connections.setAgents(await registry.records());
  // Work started without being awaited (a reconcile after a node change) is awaited by close().
  const inFlight = new Set<Promise<unknown>>();
  const background = (task: Promise<unknown>) => {
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));
  };
  stops.push(async () => {
    await Promise.allSettled([...inFlight]);
  });

  const nodes = new NodeAdmin({ db: host.db, registry, connections, logger: host.logger, now, onChange: async () => {
    connections.setAgents(await registry.records());
    // A node stopped, disabled or removed leaves its subjects pending now, not at the next reconcile.
    background(applier.reconcileAll().catch((error: unknown) => host.logger.warn('reconcile after a node change failed', { error: (error as Error).message })));
  } });

  const releases: (() => void)[] = [];
  stops.push(() => {
    for (const release of releases.splice(0).reverse()) release();
  });
  releases.push(...registerHooks(host, service, quotas));
  for (const adminPage of manifest.adminPages) releases.push(host.views.addNavItem(adminPage));
  releases.push(host.views.addPartial('peer.form', join(PLUGIN_VIEWS, 'partials', 'peer-bandwidth-fields.ejs')));
  releases.push(host.views.addPartial('vm.form', join(PLUGIN_VIEWS, 'partials', 'vm-bandwidth-fields.ejs')));
  // The network form slot is new in 1.4.0: an older host keeps network caps in the plugin's API and pages.
  if (satisfies(host.apiVersion, '^1.4.0')) releases.push(host.views.addPartial('network.form', join(PLUGIN_VIEWS, 'partials', 'network-fields.ejs')));
  const limitColumn = { header: 'Limit', render: limitCell };
  releases.push(host.views.addColumn('peer.table', limitColumn));
  releases.push(host.views.addColumn('vm.table', limitColumn));

  host.router.use('/bandwidth/static', express.static(join(PLUGIN_ROOT, 'public'), { maxAge: '1h' }));
  // Accounting reads kernel counters: a dry run has none (pages say so).
  const collector = choice.mode === 'local' ? accounting : null;
  const counting = countOptionsOf(settings);
  if (!collector) host.logger.warn('accounting is off: the collector reads kernel counters and this is a dry run');
  mountBandwidthApi(host, service, collector, counting, now);
  mountUsageApi(host, now, quotas);
  mountAgentsApi(host, nodes, { now });
  mountQuotaApi(host, quotas);
  mountMetrics(host, createMetrics(host.db, collector, quotas), await metricsAccess(host.db, settings, host.logger, now()));
  const overview = manifest.adminPages.find((adminPage) => adminPage.path === '/admin/bandwidth');
  // Live rates read the class counters too (two tc processes per limited interface, only while a
  // page listens): utilisation compares the bytes a cap governs with the cap.
  const stream = new RateStream({ sample: () => accounting.live(), onIdle: () => accounting.resetLive(), logger: host.logger });
  stops.push(() => stream.close());
  if (overview) {
    host.router.get(`${overview.path}/events`, host.auth.admin(overview.minRole), (req, res) => stream.attach(req, res));
    host.router.get(`${overview.path}/export.csv`, host.auth.admin(overview.minRole), exportCsv(host, now, quotas));
    mountOverview(host, settings, service, quotas, collector, { mode: choice.mode, reason: choice.reason }, overview, now);
    mountSubjectPage(host, overview.path, overview.minRole, quotas, collector, counting, now);
  }

  const nodesPage = manifest.adminPages.find((adminPage) => adminPage.path === '/admin/bandwidth/nodes');
  if (nodesPage) mountNodesPage(host, nodes, nodesPage);

  host.router.use(routeErrors);

  // Hooks are missed while the plugin is disabled: copies of host data that went stale meanwhile
  // (a peer deleted or re-addressed) are dropped or refreshed before anything is reconciled.
  await service.resync('register').catch((error: unknown) => host.logger.warn('resync with the host failed', { error: (error as Error).message }));
  let resyncNext = false; // register() has just resynced: the loop's first run (now) only reconciles
  const reconcile = async () => {
    await service.reconcileAll('reconcile', { resync: resyncNext });
    resyncNext = true;
    // Cycles that ended, quotas another panel process changed, subjects added meanwhile.
    await enforcer.sync().catch((error: unknown) => host.logger.warn('evaluating quotas failed', { area: 'quotas', error: (error as Error).message }));
    // A safety net beside the nodes' event streams: every connected node's ledger is pulled.
    await Promise.all(connections.statuses().map((status) => connections.poll(status.node)));
    // The panel's usage tables keep what the retention settings say (each agent keeps its own ledger).
    await enforceRetention(host.db, now(), retention);
    await enforceEventRetention(host.db, now(), settings.retention_events_days);
  };
  const loops = [
    new IntervalLoop('reconcile', reconcile, settings.reconcile_interval_s * 1000, host.logger),
    // Another panel process on this database may register, change or remove nodes: read the
    // registry again now and then (setAgents leaves unchanged records alone).
    new IntervalLoop('node registry', async () => connections.setAgents(await registry.records()), REGISTRY_REFRESH_MS, host.logger),
  ];
  stops.push(async () => {
    await Promise.all(loops.map((loop) => loop.stop()));
  });
  for (const loop of loops) loop.start();
  localCore.start({ collectIntervalS: settings.collect_interval_s, reconcileIntervalS: null });

  // close() may be called again, also while a first call runs: every caller waits for the one stop.
  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= stopAll(stops);
      return closing;
    },
  };
}
