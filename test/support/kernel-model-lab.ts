/**
 * The world of the kernel model test: one namespace holding wireguard-go interfaces (networks) and
 * veth host ends (VM taps), and the reference panel as a real process on the local executor. No
 * traffic flows: the test reads the kernel back after every step instead of measuring.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

import { Lab, waitFor } from './lab.js';
import { startPanelProcess, type ApiResponse, type PanelProcess } from './lab-panel.js';

/** Interfaces and panel of a model lab. */
export interface ModelLab {
  lab: Lab;
  /** The namespace every interface lives in. */
  ns: string;
  /** wireguard-go interfaces, one per network slot. */
  wireguard: string[];
  /** Host ends of veth pairs, the VMs' taps. */
  taps: string[];
  panel: PanelProcess;
}

/** Options of {@link createModelLab}. */
export interface ModelLabOptions {
  /** @default 2 */
  wireguard?: number;
  /** @default 0 */
  taps?: number;
}

async function startWireguardGo(lab: Lab, ns: string, name: string): Promise<void> {
  lab.removeOnClose(`/var/run/wireguard/${name}.sock`);
  lab.spawn(ns, ['wireguard-go', '-f', name]);
  await waitFor(`wireguard-go interface ${name}`, async () => (await lab.ip(ns, ['link', 'show', 'dev', name]).catch(() => '')) !== '', 10_000);
  await lab.ip(ns, ['link', 'set', name, 'up']);
}

/**
 * Builds the namespace, its interfaces and a panel (reconcile loop and collector effectively off: the
 * test reconciles explicitly, so a repair always has a known cause). All of it is released in
 * `t.after`, also when the test fails.
 */
export async function createModelLab(t: Pick<TestContext, 'after'>, options: ModelLabOptions = {}): Promise<ModelLab> {
  const lab = new Lab();
  t.after(() => lab.close());
  const wireguard = Array.from({ length: options.wireguard ?? 2 }, (_, i) => `pw${lab.id}m${i}`);
  const taps = Array.from({ length: options.taps ?? 0 }, (_, i) => `pv${lab.id}t${i}`);
  const build = async (): Promise<string> => {
    const ns = await lab.namespace('model');
    await Promise.all(wireguard.map((name) => startWireguardGo(lab, ns, name)));
    for (const tap of taps) {
      await lab.ip(ns, ['link', 'add', tap, 'type', 'veth', 'peer', 'name', `${tap}p`]);
      await lab.ip(ns, ['link', 'set', tap, 'up']);
      await lab.ip(ns, ['link', 'set', `${tap}p`, 'up']);
    }
    return ns;
  };
  const [ns, panel] = await Promise.all([
    build(),
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 86_400, collect_interval_s: 86_400 } }),
  ]);
  return { lab, ns, wireguard, taps, panel };
}

/** Asserts an API answer's status, naming the request and quoting the body on a mismatch. */
export function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 600)}`);
}
