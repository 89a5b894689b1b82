import assert from 'node:assert/strict';
import { chownSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { execa } from 'execa';

import type { DesiredInterface } from '../../src/shaping/model.js';
import { probeCapabilities } from '../../src/shaping/probe.js';
import { readActual } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { Lab, labRequirements, onPath } from '../support/lab.js';

const READER = join(import.meta.dirname, '..', 'support', 'dry-run-reader.ts');
const NOBODY = 65534;
const lab = labRequirements();
const available = lab.available && onPath('setpriv');
const reason = onPath('setpriv') ? lab.reason : 'needs setpriv (util-linux)';

describe('a dry run without CAP_NET_ADMIN plans against the real kernel', { concurrency: false }, () => {
  const labs = new Lab();
  let ns: string;
  let leaf: string;
  let scratch: string;
  let desired: DesiredInterface;

  before(async () => {
    if (!available) return;
    leaf = (await probeCapabilities(labs.executor)).leaf;
    ns = await labs.namespace('dry');
    const peerNs = await labs.namespace('dryp');
    const dev = `pd${labs.id}h`;
    await labs.veth({ ns, name: dev, addresses: ['10.78.0.1/24'] }, { ns: peerNs, name: `pd${labs.id}g`, addresses: ['10.78.0.2/24'] });
    desired = {
      name: dev,
      kind: 'wireguard',
      subjects: [
        { type: 'peer', id: 'a', classMinor: 2, addresses: ['10.78.0.2/32'], downKbps: 8000, upKbps: 4000 },
        { type: 'peer', id: 'b', classMinor: 3, addresses: ['10.78.0.3/32'], downKbps: 2000, upKbps: 1000 },
      ],
    };
    // The unprivileged process's temporary directory (tsx's cache, the per-user lock directory).
    scratch = mkdtempSync(join(tmpdir(), 'pbw-nobody-'));
    chownSync(scratch, NOBODY, NOBODY);
    const built = await reconcileInNamespace('root', 'local', desired);
    assert.ok(built.operations.length > 10, 'root built the tree');
  });
  after(async () => {
    await labs.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  /**
   * Runs test/support/dry-run-reader.ts inside the lab's namespace (so the interface has no
   * namespace in its name, as for a panel running there): as root, or as `nobody` without any
   * capability.
   */
  async function reconcileInNamespace(user: 'root' | 'nobody', setting: 'auto' | 'recording' | 'local', interfaceState: DesiredInterface) {
    const drop = user === 'nobody' ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'] : [];
    const result = await execa(
      'ip',
      ['netns', 'exec', ns, ...drop, process.execPath, '--import', 'tsx', READER, setting, leaf, JSON.stringify(interfaceState)],
      { timeout: 60_000, env: user === 'nobody' ? { TMPDIR: scratch, HOME: scratch, XDG_RUNTIME_DIR: '', PANEL_BANDWIDTH_LOCK_DIR: '' } : {} },
    );
    return { ...(JSON.parse(result.stdout) as { mode: string; operations: string[] }), stderr: result.stderr };
  }
  const dryRunAsNobody = (setting: 'auto' | 'recording', interfaceState: DesiredInterface) => reconcileInNamespace('nobody', setting, interfaceState);

  test('in step with the kernel, it plans nothing; one changed cap is one class change, left unapplied', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const inStep = await dryRunAsNobody('auto', desired);
    assert.equal(inStep.mode, 'recording', 'no CAP_NET_ADMIN: a dry run');
    assert.deepEqual(inStep.operations, [], 'it read the tree the kernel has');

    const changed = { ...desired, subjects: desired.subjects.map((s) => (s.id === 'a' ? { ...s, downKbps: 9000 } : s)) };
    const plan = await dryRunAsNobody('auto', changed);
    assert.equal(plan.operations.length, 1, plan.operations.join('\n'));
    assert.match(plan.operations[0]!, new RegExp(`^tc class change dev ${desired.name} parent 1:1 classid 1:2 htb rate 9000kbit ceil 9000kbit `));
    const actual = await readActual(labs.executor, desired.name, ns);
    assert.equal(actual.egress?.classes.find((c) => c.minor === 2)?.rateBits, 8_000_000, 'the kernel still has the old cap');

    // Not root: the lock file went to the per-user directory, and the process said so.
    assert.match(inStep.stderr, /interface locks are in \S+\/panel-bandwidth-65534 /);
    const locks = join(scratch, 'panel-bandwidth-65534');
    assert.equal(statSync(locks).uid, NOBODY);
    assert.equal(statSync(locks).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(locks), [`${encodeURIComponent(`/${desired.name}`)}.lock`]);
  });

  test('the `recording` setting stays hermetic: it reads nothing and plans the whole tree', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const plan = await dryRunAsNobody('recording', desired);
    assert.ok(plan.operations.length > 10, `a full build: ${plan.operations.length} operations`);
    assert.ok(plan.operations.some((line) => line.startsWith(`tc qdisc add dev ${desired.name} root handle 1: htb`)));
  });
});
