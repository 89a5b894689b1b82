import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';

import knex from 'knex';

import { knexConfigFromUrl } from '../../src/db/connect.js';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readActual } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { Lab, labRequirements } from '../support/lab.js';
import { startPanelProcess, type ApiResponse } from '../support/lab-panel.js';

const { available, reason } = labRequirements();

function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

test('issue 12 (4) in the kernel: after uninstall with the local executor the VM\'s tap keeps no HTB root and no IFB', { timeout: 60_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  const [hostNs, vmNs, panel] = await Promise.all([
    lab.namespace('hv'),
    lab.namespace('vm'),
    // Long intervals: only the uninstall itself may take the tree away.
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 3600, collect_interval_s: 3600 } }),
  ]);
  const tap = `pu${lab.id}h`;
  await lab.veth({ ns: hostNs, name: tap, addresses: ['10.78.0.1/24'] }, { ns: vmNs, name: `pu${lab.id}g`, addresses: ['10.78.0.2/24'] });
  const kernel = async () => {
    const actual = await readActual(lab.executor, tap, hostNs);
    return { root: actual.egress?.qdiscs.find((qdisc) => qdisc.root)?.kind ?? null, ifb: actual.ifb.exists };
  };

  const vm = await panel.post('/api/vms', { name: 'web-01', interface: tap, netns: hostNs, bandwidth_up_kbps: 2000, bandwidth_down_kbps: 4000 });
  expectStatus(vm, 201, 'POST /api/vms');
  assert.equal(vm.body.vm.bandwidth_status, 'applied', JSON.stringify(vm.body.vm));
  assert.deepEqual(await kernel(), { root: 'htb', ifb: true }, 'arranged: the VM is capped in the kernel');
  // The panel machine's agent keeps its state (and ledger) beside the panel's SQLite file.
  const state = knex(knexConfigFromUrl(`sqlite:${join(dirname(panel.databaseUrl.slice('sqlite:'.length)), 'panel-bandwidth-local-agent.sqlite')}`));
  t.after(() => state.destroy());
  assert.equal(await state.schema.hasTable('bw_usage'), true, 'arranged: the local agent has a ledger');

  const uninstalled = await panel.post('/api/plugins/bandwidth/uninstall');

  expectStatus(uninstalled, 200, 'uninstall');
  assert.equal(uninstalled.body.warnings, undefined, 'nothing was left behind');
  const after = await kernel();
  assert.notEqual(after.root, 'htb', `the tap's root is ${after.root}`);
  assert.equal(after.ifb, false, `${ifbNameFor(tap, hostNs)} is gone`);
  expectStatus(await panel.get('/api/bandwidth/limits'), 404, 'the plugin is gone');
  // Its ledger went too: a reinstalled plugin does not pull the old usage in again.
  assert.deepEqual(await Promise.all(['bw_limits', 'bw_usage', 'bw_agent_meta'].map((table) => state.schema.hasTable(table))), [false, false, false]);
});
