/**
 * The plugin's lifecycle through the host's API and forms: enable and disable are serialised and
 * idempotent (issue 12, item 3), disable leaves nothing of the plugin running, and uninstall removes
 * the engine's trees from every interface, on the panel's machine and on every node, before the
 * tables go (item 4). The kernel half of item 4 is test/kernel/uninstall.test.ts.
 */
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';

import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { dryRunExecutor } from '../../src/limits/executor-choice.js';
import { AgentCore } from '../../src/nodes/agent/core.js';
import { createAgentServer } from '../../src/nodes/agent/server.js';
import { AgentRegistry } from '../../src/nodes/panel/registry.js';
import type { Operation } from '../../src/shaping/operations.js';
import { RecordingExecutor } from '../../src/shaping/recording-executor.js';
import type { RunOptions, RunResult } from '../../src/shaping/executor.js';
import { ENGINES } from '../support/databases.js';
import { waitFor } from '../support/lab.js';
import { ownDatabase } from '../support/own-database.js';
import { created, startPanel, watchExecutor, wgKey, type TestPanel } from '../support/panel.js';

process.env.PANEL_BANDWIDTH_SECRET_KEY ??= randomBytes(32).toString('hex');

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const PLUGIN_SOURCES = join(REPO_ROOT, 'src') + '/';
/** The shortest reconcile interval the plugin accepts (plugin.json). */
const RECONCILE_S = 5;

/**
 * Timers created by the plugin's own code (a frame of src/ on the stack when they were set) that
 * are still pending. Unlike `process.getActiveResourcesInfo()`, this also sees unref'd timers: the
 * plugin unrefs its loops' timers, so a leaked loop would never keep a process alive, only run on.
 */
function watchPluginTimers(t: TestContext, ignore: (frame: string) => boolean = () => false): { pending(): string[] } {
  const live = new Map<number, string>();
  const hook = createHook({
    init(asyncId, type) {
      if (type !== 'Timeout') return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 30;
      const stack = new Error().stack ?? '';
      Error.stackTraceLimit = limit;
      const frame = stack.split('\n').find((line) => line.includes(PLUGIN_SOURCES));
      if (frame && !ignore(frame)) live.set(asyncId, frame.trim());
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  t.after(() => hook.disable());
  return { pending: () => [...live.values()] };
}

async function seedCaps(host: TestPanel): Promise<void> {
  const network = await created(host.api.post('/api/networks').send({ name: 'office', interface: 'wg0' }), 'network');
  await created(host.api.post(`/api/networks/${network.id}/peers`).send({
    name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'], bandwidth_up_kbps: 2000, bandwidth_down_kbps: 4000,
  }), 'peer');
  await created(host.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', bandwidth_up_kbps: 2000, bandwidth_down_kbps: 4000 }), 'vm');
}

const TOKEN = 'node-lifecycle-token-0123456789abcdef012345';

/** A real agent on loopback (its core a dry run), registered with the panel as `name`. */
async function registeredAgent(t: TestContext, host: TestPanel, name: string) {
  const core = await AgentCore.open({ node: name, statePath: ':memory:', executor: dryRunExecutor(null), mode: 'recording', logger: silent });
  const server = createAgentServer({ core, token: TOKEN, logger: silent, heartbeatMs: 200 });
  const { port } = await server.listen('127.0.0.1', 0);
  t.after(async () => {
    await server.close();
    await core.close();
  });
  const registered = await host.api.post('/api/bandwidth/agents').send({ name, url: `http://127.0.0.1:${port}`, token: TOKEN });
  assert.equal(registered.status, 201, registered.text);
  const id = registered.body.agent.id as number;
  await waitFor(`node ${name} to connect`, async () => (await host.api.get(`/api/bandwidth/agents/${id}/status`)).body.status.state === 'connected', 10_000);
  return { core, stop: () => server.close() };
}

/** A capped peer on a new network `wg-<node>` on `node`. */
async function capOnNode(host: TestPanel, node: string, seed: number): Promise<void> {
  const network = await created(host.api.post('/api/networks').send({ name: `gw-${node}`, interface: `wg-${node}`, node }), 'network');
  await created(host.api.post(`/api/networks/${network.id}/peers`).send({
    name: `peer-${node}`, public_key: wgKey(seed), allowed_ips: [`10.9.${seed}.2/32`], bandwidth_up_kbps: 1000, bandwidth_down_kbps: 1000,
  }), 'peer');
}

test('five enables at once start the plugin once; after disable no tc runs for two reconcile intervals and no timer of the plugin is left', { timeout: 60_000 }, async (t) => {
  // The test's own agent (a node the panel follows) keeps its timers: only the panel's count.
  const timers = watchPluginTimers(t, (frame) => frame.includes(join(PLUGIN_SOURCES, 'nodes', 'agent') + '/'));
  const host = await startPanel(t, { pluginOptions: { bandwidth: { executor: 'recording', reconcile_interval_s: RECONCILE_S } } });
  await seedCaps(host);
  await registeredAgent(t, host, 'hv1');
  await capOnNode(host, 'hv1', 1);
  await host.api.post('/api/plugins/bandwidth/disable').expect(200);
  const opened = t.mock.method(AgentCore, 'open');

  const answers = await Promise.all(Array.from({ length: 5 }, () => host.api.post('/api/plugins/bandwidth/enable')));

  assert.deepEqual(answers.map((answer) => [answer.status, answer.body.plugin?.running]), Array.from({ length: 5 }, () => [200, true]));
  assert.equal(opened.mock.callCount(), 1, 'one instance: one local agent core');
  assert.ok(timers.pending().length > 0, 'arranged: the running plugin has its loops');

  await host.api.post('/api/plugins/bandwidth/disable').expect(200);
  await host.api.post('/api/plugins/bandwidth/disable').expect(200); // a second click changes nothing
  const kernel = watchExecutor(t);

  await waitFor('every timer of the plugin to be cleared', async () => timers.pending().length === 0, 2000).catch(() => {
    assert.deepEqual(timers.pending(), [], 'timers of the plugin still pending after disable');
  });
  // Nothing to wait for: an instance left running would reconcile (and read tc) within one interval.
  await new Promise((resolve) => setTimeout(resolve, 2 * RECONCILE_S * 1000 + 500));
  assert.equal(kernel.calls(), 0, 'no tc ran while the plugin was disabled');
  assert.equal((await host.api.get('/api/plugins').expect(200)).body.plugins[0].running, false);
});

for (const engine of ENGINES) {
  // The host keeps which plugins are enabled in its database: the same clicks on every engine.
  test(`enable and disable clicked together end in the state of the last click, with one instance at most (${engine.id})`, { timeout: 60_000 }, async (t) => {
  const own = await ownDatabase(t, engine, 'lifecycle');
  if (!own) return;
  const host = await startPanel(t, { databaseUrl: own.url });
  own.closeFirst(() => host.close());
  const opened = t.mock.method(AgentCore, 'open');
  const timers = watchPluginTimers(t);

  const clicks = ['disable', 'enable', 'disable', 'enable', 'disable'] as const;
  const answers = await Promise.all(clicks.map((action) => host.api.post(`/api/plugins/bandwidth/${action}`)));

  assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200, 200, 200]);
  assert.equal((await host.api.get('/api/plugins')).body.plugins[0].running, false);
  assert.equal(opened.mock.callCount(), 2, 'each enable after a disable starts one instance');
  await waitFor('every timer of the plugin to be cleared', async () => timers.pending().length === 0, 2000).catch(() => {
    assert.deepEqual(timers.pending(), [], 'timers of the plugin still pending after the last disable');
  });
});
}

test('an enable that fails part-way leaves nothing of the plugin running', async (t) => {
  const host = await startPanel(t);
  await host.api.post('/api/plugins/bandwidth/disable').expect(200);
  const timers = watchPluginTimers(t);
  const opened = t.mock.method(AgentCore, 'open');
  const closed = t.mock.method(AgentCore.prototype, 'close');
  // After the local agent core and the connection manager have started.
  t.mock.method(AgentRegistry.prototype, 'records', () => Promise.reject(new Error('the registry cannot be read')));

  const enabled = await host.api.post('/api/plugins/bandwidth/enable');

  assert.equal(enabled.status, 500);
  assert.match(enabled.body.error.message, /failed to start: the registry cannot be read/);
  assert.equal((await host.api.get('/api/plugins')).body.plugins[0].running, false);
  assert.deepEqual([opened.mock.callCount(), closed.mock.callCount()], [1, 1], 'the local agent core it opened is closed');
  await waitFor('every timer of the plugin to be cleared', async () => timers.pending().length === 0, 2000).catch(() => {
    assert.deepEqual(timers.pending(), [], 'timers of the plugin still pending after the failed enable');
  });
});

/** The engine's root qdisc as `tc -j qdisc show` prints it (the engine removes only a root it recognises as its own). */
const ENGINE_ROOT = '[{"kind":"htb","handle":"1:","root":true,"refcnt":3,"options":{"r2q":10,"default":"0xffff","direct_packets_stat":0,"direct_qlen":1000}}]';

/**
 * From now on every dry-run read of a root qdisc answers an HTB root (as a capped interface has),
 * so removing a tree is a plan with deletions; each batch is recorded with whether the plugin's
 * tables still existed when it ran.
 */
function kernelWithTrees(t: TestContext, host: TestPanel): { removals: () => { device: string; tablesThere: boolean }[] } {
  const run = RecordingExecutor.prototype.run;
  const batch = RecordingExecutor.prototype.batch;
  const removals: { device: string; tablesThere: boolean }[] = [];
  t.mock.method(RecordingExecutor.prototype, 'run', function (this: RecordingExecutor, argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    const [tool, json, object, verb] = argv;
    if (tool === 'tc' && json === '-j' && object === 'qdisc' && verb === 'show') {
      return Promise.resolve({ stdout: ENGINE_ROOT, stderr: '' });
    }
    return run.call(this, argv, options);
  });
  t.mock.method(RecordingExecutor.prototype, 'batch', async function (this: RecordingExecutor, operations: readonly Operation[], netns?: string): Promise<void> {
    const tablesThere = await host.db.schema.hasTable('bw_limits');
    for (const operation of operations) {
      const [object, verb, dev, device] = operation.argv;
      if (object === 'qdisc' && verb === 'del' && dev === 'dev' && device) removals.push({ device, tablesThere });
    }
    return batch.call(this, operations, netns);
  });
  return { removals: () => removals };
}

test('uninstall removes the trees of every interface, here and on every node that answers, before the tables go, and names the node that does not', { timeout: 60_000 }, async (t) => {
  const host = await startPanel(t);
  await seedCaps(host);
  const hv1 = await registeredAgent(t, host, 'hv1');
  const hv2 = await registeredAgent(t, host, 'hv2');
  await capOnNode(host, 'hv1', 1);
  await capOnNode(host, 'hv2', 2);
  assert.deepEqual((await hv1.core.interfaces()).map((held) => held.interface), ['wg-hv1'], 'arranged: hv1 holds its interface');
  await hv2.stop();
  const kernel = kernelWithTrees(t, host);

  const uninstalled = await host.api.post('/api/plugins/bandwidth/uninstall');

  assert.equal(uninstalled.status, 200, uninstalled.text);
  const removedFrom = [...new Set(kernel.removals().map((removal) => removal.device))].sort();
  assert.deepEqual(removedFrom, ['tap-web01', 'wg-hv1', 'wg0']);
  assert.ok(kernel.removals().every((removal) => removal.tablesThere), 'every tree went while the tables still existed');
  assert.deepEqual(await hv1.core.interfaces(), [], 'hv1 holds nothing any more');
  assert.equal(uninstalled.body.plugin.running, false);
  assert.equal(uninstalled.body.warnings.length, 1, JSON.stringify(uninstalled.body.warnings));
  assert.match(uninstalled.body.warnings[0], /^wg-hv2 on node hv2 may still be capped: node hv2 did not answer/);
  assert.equal(await host.db.schema.hasTable('bw_limits'), false, 'the tables went after');
});

test('the uninstall form warns that caps are removed first, and its confirmation names a node that did not answer', { timeout: 60_000 }, async (t) => {
  const host = await startPanel(t);
  const admin = await host.login();
  const hv3 = await registeredAgent(t, host, 'hv3');
  await capOnNode(host, 'hv3', 3);
  await hv3.stop();
  await admin.form('/admin/plugins/bandwidth/disable').expect(303);

  const page = await admin.agent.get('/admin/plugins').expect(200);
  const confirm = /action="\/admin\/plugins\/bandwidth\/uninstall" data-confirm="([^"]+)"/.exec(page.text)?.[1] ?? '';
  assert.match(confirm, /first removes .*caps on every interface, on this machine and on every node/);
  assert.match(confirm, /then the plugin's tables and all their data/);

  await admin.form('/admin/plugins/bandwidth/uninstall').expect(303);

  const after = await admin.agent.get('/admin/plugins').expect(200);
  const flash = /<p class="flash" role="status">([^<]*)<\/p>/.exec(after.text)?.[1] ?? '';
  assert.match(flash, /^Plugin bandwidth uninstalled\. It could not undo everything: wg-hv3 on node hv3 may still be capped: node hv3 did not answer/);
});

test('uninstall(db, options) called by a host reports the interfaces it cleared and drops the tables', async (t) => {
  const host = await startPanel(t);
  await seedCaps(host);
  await host.api.post('/api/plugins/bandwidth/disable').expect(200);
  const { uninstall } = await import('../../src/index.js');
  const report = await uninstall(host.db, { executor: 'recording' });
  assert.deepEqual(report.removed.map((ref) => ref.interface).sort(), ['tap-web01', 'wg0']);
  assert.deepEqual(report.left, []);
  assert.equal(await host.db.schema.hasTable('bw_limits'), false);
});
