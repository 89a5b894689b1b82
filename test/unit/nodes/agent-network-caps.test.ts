/**
 * The agent keeps what the panel pushed for issue 14 — an interface's network caps and each
 * subject's guarantee and burst — in its state file, so a restart without the panel rebuilds the
 * same tree.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { AgentCore } from '../../../src/nodes/agent/core.js';
import type { InterfaceState } from '../../../src/nodes/protocol.js';
import { RecordingExecutor } from '../../../src/shaping/recording-executor.js';

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

const state: InterfaceState = {
  version: 5, kind: 'wireguard', netns: null, totalUpKbps: 30_000, totalDownKbps: 60_000,
  subjects: [
    { type: 'peer', id: '1', name: 'a', classMinor: 2, addresses: ['10.8.0.1/32'], publicKey: null, upKbps: 5000, downKbps: 0, minKbps: 10_000, burstKbps: 20_000, burstBytes: 4_000_000 },
    { type: 'peer', id: '2', name: 'b', classMinor: 3, addresses: ['10.8.0.2/32'], publicKey: null, upKbps: 0, downKbps: 0 },
  ],
};

test('network caps, guarantees and bursts survive an agent restart, and the tree planned after it is the one planned before', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-agent-'));
  const statePath = join(dir, 'state.sqlite');
  const open = (executor: RecordingExecutor) => AgentCore.open({ node: 'hv1', statePath, executor, mode: 'recording', logger: quiet });
  let core: AgentCore | undefined;
  t.after(async () => {
    await core?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const first = new RecordingExecutor();
  core = await open(first);
  await core.putInterface('wg0', state);
  const planned = first.operations.map((operation) => operation.argv.join(' '));
  assert.ok(planned.length > 0, 'arranged: the dry run planned the tree');
  await core.close();

  const second = new RecordingExecutor();
  core = await open(second);
  assert.deepEqual(await core.interfaceState('wg0', null), state, 'the state file holds every field');
  await core.reconcileAll();
  assert.deepEqual(second.operations.map((operation) => operation.argv.join(' ')), planned, 'the same tree, without the panel');

  const third = new RecordingExecutor();
  await core.close();
  core = await open(third);
  const { totalUpKbps: _up, totalDownKbps: _down, ...uncapped } = state;
  await core.putInterface('wg0', { ...uncapped, version: 6 });
  assert.deepEqual(await core.interfaceState('wg0', null), { ...uncapped, version: 6 }, 'a push without network caps clears them');
});

test('a push that moves only numbers of several subjects (a network default) is class changes, with no read of the kernel', async (t) => {
  const executor = new RecordingExecutor();
  const core = await AgentCore.open({ node: 'hv1', statePath: ':memory:', executor, mode: 'local', logger: quiet });
  t.after(() => core.close());
  const subjects = (downKbps: number) => [1, 2, 3].map((id) => ({
    type: 'peer' as const, id: String(id), name: `p${id}`, classMinor: id + 1, addresses: [`10.8.0.${id}/32`], publicKey: null, upKbps: 0, downKbps: id === 3 ? 7000 : downKbps,
  }));
  await core.putInterface('wg0', { version: 1, kind: 'wireguard', netns: null, subjects: subjects(2000) });
  // As after an apply the kernel took (the recording executor's reads find nothing to compare with).
  await core.db('bw_limits').update({ status: 'applied' });
  const before = executor.calls.length;

  const report = await core.putInterface('wg0', { version: 2, kind: 'wireguard', netns: null, subjects: subjects(3000) });
  assert.equal(report.status, 'applied');
  const calls = executor.calls.slice(before);
  assert.deepEqual(calls.filter((call) => call.kind === 'run'), [], 'nothing read');
  assert.deepEqual(calls.flatMap((call) => (call.kind === 'batch' ? call.operations.map((operation) => operation.argv.slice(0, 8).join(' ')) : [])), [
    'class change dev wg0 parent 1:1 classid 1:2',
    'class change dev wg0 parent 1:1 classid 1:3',
  ]);
});
