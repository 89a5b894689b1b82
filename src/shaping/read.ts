import { z } from 'zod';

import type { ActualInterface, ActualTree } from './actual.js';
import { isNoSuchDevice, KernelError } from './errors.js';
import type { Executor } from './executor.js';
import { ifbNameFor } from './ifb-name.js';
import { parseClassText } from './parse-class-text.js';
import { parseFilterJson, type TcFilter } from './parse-filter-json.js';
import { parseQdiscJson } from './parse-qdisc-json.js';
import { isEngineRoot } from './plan.js';

/**
 * Reads one device's root side: qdiscs (`tc -j`), classes (`tc -s class show`, text: iproute2 6.1
 * has no JSON for HTB classes) and, when the root is the engine's HTB, its filters (`tc -j`).
 *
 * @returns `null` when the device does not exist.
 */
export async function readTree(executor: Executor, device: string, netns?: string): Promise<ActualTree | null> {
  let qdiscText: string;
  try {
    qdiscText = (await executor.run(['tc', '-j', 'qdisc', 'show', 'dev', device], { netns })).stdout;
  } catch (error) {
    if (isNoSuchDevice(error)) return null;
    throw error;
  }
  const qdiscs = parseQdiscJson(qdiscText);
  const root = qdiscs.find((q) => q.root) ?? null;
  const tree: ActualTree = { device, qdiscs, classes: [], filters: [] };
  if (root !== null && root.kind === 'htb') {
    tree.classes = parseClassText((await executor.run(['tc', '-s', 'class', 'show', 'dev', device], { netns })).stdout);
  }
  if (isEngineRoot(root)) {
    tree.filters = parseFilterJson((await executor.run(['tc', '-j', 'filter', 'show', 'dev', device, 'parent', '1:'], { netns })).stdout);
  }
  return tree;
}

const linkSchema = z.array(z.looseObject({ ifname: z.string(), flags: z.array(z.string()).optional() }));

/**
 * Reads what the kernel has for one interface: its root tree, its ingress redirect, its IFB and the
 * IFB's tree. A missing interface is not an error: `exists: false`.
 */
export async function readActual(executor: Executor, ifname: string, netns?: string): Promise<ActualInterface> {
  const ifbName = ifbNameFor(ifname, netns);
  const egress = await readTree(executor, ifname, netns);
  let ingressFilters: TcFilter[] = [];
  if (egress?.qdiscs.some((q) => q.kind === 'ingress')) {
    ingressFilters = parseFilterJson((await executor.run(['tc', '-j', 'filter', 'show', 'dev', ifname, 'parent', 'ffff:'], { netns })).stdout);
  }
  const ifb = await readLink(executor, ifbName, netns);
  const ifbTree = ifb.exists ? await readTree(executor, ifbName, netns) : null;
  const actual: ActualInterface = {
    name: ifname,
    exists: egress !== null,
    egress,
    ingressFilters,
    ifb: { name: ifbName, exists: ifb.exists, up: ifb.up, tree: ifbTree },
  };
  if (netns !== undefined) actual.netns = netns;
  return actual;
}

async function readLink(executor: Executor, name: string, netns?: string): Promise<{ exists: boolean; up: boolean }> {
  try {
    const { stdout } = await executor.run(['ip', '-j', 'link', 'show', 'dev', name], { netns });
    const parsed = linkSchema.safeParse(JSON.parse(stdout.trim() === '' ? '[]' : stdout));
    const link = parsed.success ? parsed.data[0] : undefined;
    if (link === undefined) return { exists: false, up: false };
    return { exists: true, up: link.flags?.includes('UP') === true };
  } catch (error) {
    if (error instanceof KernelError && isNoSuchDevice(error)) return { exists: false, up: false };
    throw error;
  }
}
