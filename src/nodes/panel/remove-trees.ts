/**
 * Uninstall's first half: every tree the engine put in a kernel is removed while the tables that
 * say where they are still exist — on the panel's machine (through its in-process agent's state
 * file) and on every registered node (DELETE /v1/interfaces/… on its agent). What cannot be
 * removed (an unreachable node, a token the panel can no longer read) is reported, not hidden:
 * once the tables are gone nothing knows those caps are there.
 */
import type { Knex } from 'knex';

import { interfacesWithLimits } from '../../db/limits.js';
import { migrateDownAll } from '../../db/migrate.js';
import type { Logger } from '../../plugin-api.js';
import type { Executor } from '../../shaping/executor.js';
import { AgentCore } from '../agent/core.js';
import { LocalLink, type NodeLink } from '../link.js';
import { LOCAL_NODE } from '../node-name.js';
import type { InterfaceReport } from '../protocol.js';
import { localStatePath } from './local-state.js';
import { AgentRegistry } from './registry.js';
import { RemoteLink } from './remote-link.js';
import { SecretBox } from './secret.js';

/** One interface of one node. */
export interface TreeRef {
  node: string;
  interface: string;
  netns: string | null;
}

/** An interface whose tree may still be in its kernel, and why. */
export interface TreeLeft extends TreeRef {
  error: string;
}

/** What {@link removeTrees} did. */
export interface TreeRemoval {
  /** Interfaces that carry no tree of the engine now (removed, or there was none, or the device is gone). */
  removed: TreeRef[];
  /** Interfaces that may still be capped: their node was unreachable, or the kernel refused. */
  left: TreeLeft[];
}

export interface RemoveTreesOptions {
  /** The panel's database, its tables still there. */
  db: Knex;
  /** How the panel machine's agent changes its kernel (the executor register() would use). */
  executor: Executor;
  mode: 'local' | 'recording';
  /** The key file of the agents' tokens (the `secret_key_file` setting). */
  secretKeyFile: string;
  logger: Logger;
  /** Of each call to a remote agent. @default 5000 */
  timeoutMs?: number;
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
const refKey = (ref: { interface: string; netns: string | null }) => JSON.stringify([ref.interface, ref.netns]);

/** A device that no longer exists carries no tree: nothing is left there. */
const deviceGone = (report: InterfaceReport) => report.error !== null && /Cannot find device|does not exist|No such device/i.test(report.error);

/** Every interface of `node`: the ones the panel's rows name and the ones the agent holds a panel's state for. */
function union(node: string, fromRows: TreeRef[], held: { interface: string; netns: string | null }[]): TreeRef[] {
  const refs = new Map<string, TreeRef>();
  for (const ref of [...fromRows.filter((row) => row.node === node), ...held]) refs.set(refKey(ref), { node, interface: ref.interface, netns: ref.netns });
  return [...refs.values()];
}

/** Removes the trees of `refs` through `link`, one after another; once the node stops answering, the rest is left. */
async function removeOnNode(link: NodeLink, refs: TreeRef[], result: TreeRemoval): Promise<void> {
  let unreachable: string | null = null;
  for (const ref of refs) {
    if (unreachable !== null) {
      result.left.push({ ...ref, error: unreachable });
      continue;
    }
    try {
      const report = await link.deleteInterface(ref.interface, ref.netns);
      if (report.status === 'failed' && !deviceGone(report)) result.left.push({ ...ref, error: report.error ?? 'the agent could not remove the tree' });
      else result.removed.push(ref);
    } catch (error) {
      if (link.kind === 'remote') unreachable = `node ${ref.node} did not answer: ${messageOf(error)}`;
      result.left.push({ ...ref, error: unreachable ?? messageOf(error) });
    }
  }
}

/** The panel machine's node: its agent's state file says what it holds, the panel's rows what it was sent. */
async function removeLocal(options: RemoveTreesOptions, fromRows: TreeRef[], result: TreeRemoval): Promise<void> {
  const core = await AgentCore.open({ node: LOCAL_NODE, statePath: localStatePath(options.db, options.mode), executor: options.executor, mode: options.mode, logger: options.logger });
  try {
    const before = result.left.length;
    await removeOnNode(new LocalLink(core), union(LOCAL_NODE, fromRows, await core.interfaces()), result);
    // The state's ledger is the plugin's data too: kept, a reinstalled plugin would pull the old
    // usage in again. It stays only while a tree it names stays, so that uninstalling again finds it.
    if (result.left.length === before) await forgetState(core);
  } finally {
    await core.close();
  }
}

/** Empties the local agent's state file: its desired state, its ledger and the ledger's id go. */
async function forgetState(core: AgentCore): Promise<void> {
  await migrateDownAll(core.db);
  for (const table of ['bw_agent_interfaces', 'bw_agent_meta']) await core.db.schema.dropTableIfExists(table);
}

/** Every registered node, at the same time; each agent is asked what it holds, so a state the panel forgot goes too. */
async function removeRemote(options: RemoveTreesOptions, fromRows: TreeRef[], result: TreeRemoval): Promise<void> {
  const { db, logger } = options;
  const names = (await db.schema.hasTable('bw_agents')) ? ((await db('bw_agents').select('name')) as { name: string }[]).map((row) => String(row.name)) : [];
  const registry = new AgentRegistry({ db, secrets: new SecretBox({ keyFile: options.secretKeyFile, logger }), logger });
  const records = names.length > 0 ? await registry.records() : [];
  const nodes = new Set([...names, ...fromRows.map((ref) => ref.node).filter((node) => node !== LOCAL_NODE)]);
  await Promise.all([...nodes].map(async (node) => {
    const record = records.find((candidate) => candidate.name === node);
    const rows = union(node, fromRows, []);
    if (!record) {
      const why = names.includes(node) ? `the panel cannot read node ${node}'s token` : `node ${node} is not registered`;
      for (const ref of rows) result.left.push({ ...ref, error: why });
      return;
    }
    let link: RemoteLink;
    try {
      link = new RemoteLink({ node, url: record.url, token: record.token, tlsFingerprint: record.tlsFingerprint, timeoutMs: options.timeoutMs ?? 5000 });
    } catch (error) {
      for (const ref of rows) result.left.push({ ...ref, error: `node ${node} cannot be reached as registered: ${messageOf(error)}` });
      return;
    }
    try {
      // Version 0: a state made by a job on the node, not by a panel; it is not ours to remove.
      const held = await link.interfaces().then((all) => all.filter((entry) => entry.version > 0));
      await removeOnNode(link, union(node, fromRows, held), result);
    } catch (error) {
      for (const ref of rows) result.left.push({ ...ref, error: `node ${node} did not answer: ${messageOf(error)}` });
    } finally {
      link.close();
    }
  }));
}

/**
 * Removes the engine's tree from every interface of every node the panel knows (see the module
 * comment). Never throws for one node or interface: what stays is in `left`, and logged.
 */
export async function removeTrees(options: RemoveTreesOptions): Promise<TreeRemoval> {
  const result: TreeRemoval = { removed: [], left: [] };
  const fromRows: TreeRef[] = (await options.db.schema.hasTable('bw_limits')) ? await interfacesWithLimits(options.db) : [];
  await Promise.all([
    removeLocal(options, fromRows, result).catch((error: unknown) => {
      for (const ref of fromRows.filter((row) => row.node === LOCAL_NODE)) result.left.push({ ...ref, error: `the local agent's state could not be opened: ${messageOf(error)}` });
    }),
    removeRemote(options, fromRows, result),
  ]);
  for (const left of result.left) options.logger.warn('a tree may stay in the kernel after uninstall', { area: 'shaping', ...left });
  return result;
}
