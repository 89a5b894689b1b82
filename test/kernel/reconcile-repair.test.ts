/**
 * Reconcile converges from a corrupted kernel state in ONE pass, or refuses with a message naming
 * what it will not touch (issue 9). Each case builds the engine's tree on a veth in its own namespace,
 * corrupts it with plain tc/ip, reconciles once, and then checks that a fresh plan is empty and that
 * every class and entry is the desired one. No traffic: the shaping itself is covered by
 * shaping-wireguard and shaping-vm.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import type { DesiredInterface } from '../../src/shaping/model.js';
import { PlanError } from '../../src/shaping/plan.js';
import { readActual } from '../../src/shaping/read.js';
import { planFromKernel, reconcileInterface } from '../../src/shaping/reconcile.js';
import { requireOrSkip } from '../support/layer.js';
import { Lab, labRequirements } from '../support/lab.js';
import { ROOT_CLASS_MINOR } from '../../src/shaping/tree-shape.js';

const { available, reason } = labRequirements();
const caps = { leaf: 'pfifo' } as const;

describe('reconcile repairs a corrupted tree in one pass', { concurrency: false }, () => {
  const lab = new Lab();
  let ns: string;
  let index = 0;

  before(async () => {
    if (!available) return;
    ns = await lab.namespace('rep');
  });
  after(() => lab.close());

  /** A fresh veth (its own IFB name) with the engine's tree for three peers of mixed families. */
  async function shaped(): Promise<{ desired: DesiredInterface; dev: string; ifb: string }> {
    index += 1;
    const dev = `rp${lab.id}${index}`;
    await lab.ip(ns, ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}x`]);
    await lab.ip(ns, ['link', 'set', dev, 'up']);
    const desired: DesiredInterface = {
      name: dev,
      netns: ns,
      kind: 'wireguard',
      subjects: [
        { type: 'peer', id: 'c1', classMinor: 2, addresses: ['fd77::d0/128', 'fd77:1::/64'], upKbps: 100_000, downKbps: 1000 },
        { type: 'peer', id: 'c2', classMinor: 3, addresses: ['10.77.1.113/32', '10.78.0.0/16'], upKbps: 20_000, downKbps: 8000 },
        { type: 'peer', id: 'c3', classMinor: 4, addresses: ['10.77.2.0/24', 'fd77::12f/128'], upKbps: 1000, downKbps: 5000 },
      ],
    };
    await reconcileInterface(desired, lab.executor, caps);
    return { desired, dev, ifb: ifbNameFor(dev, ns) };
  }

  const tc = (args: string[]): Promise<string> => lab.tc(ns, args);

  /** One reconcile, then: the kernel matches (empty plan) and holds exactly the desired classes and entries. */
  async function assertConverges(desired: DesiredInterface): Promise<string | undefined> {
    const result = await reconcileInterface(desired, lab.executor, caps);
    assert.deepEqual(await planFromKernel(desired, lab.executor, caps), [], 'one reconcile is enough: a second plan is empty');
    const actual = await readActual(lab.executor, desired.name, ns);
    for (const [tree, direction] of [[actual.egress, 'down'], [actual.ifb.tree, 'up']] as const) {
      assert.ok(tree, `${direction} tree exists`);
      const capped = desired.subjects.filter((s) => (direction === 'down' ? s.downKbps : s.upKbps) > 0);
      assert.deepEqual(
        tree.classes.filter((c) => c.major === 1).map((c) => c.minor).sort((a, b) => a - b),
        [ROOT_CLASS_MINOR, ...capped.map((s) => s.classMinor), 0xffff].sort((a, b) => a - b),
        `${direction}: 1:1, one class per capped subject and 1:ffff, nothing else`,
      );
      const entries = tree.filters.filter((f) => f.flowidMinor !== undefined);
      assert.equal(entries.length, capped.reduce((n, s) => n + s.addresses.length, 0), `${direction}: one entry per address`);
      assert.ok(tree.filters.every((f) => f.prio === 5), `${direction}: only the engine's priority`);
    }
    return result.repaired;
  }

  test('orphan filters at other priorities (one of them holding a table) are removed, keys before classes', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev } = await shaped();
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '7', 'protocol', 'ip', 'u32', 'match', 'ip', 'dst', '10.99.0.1/32', 'flowid', '1:3']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '8', 'protocol', 'ip', 'u32']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '8', 'protocol', 'ip', 'handle', '9:', 'u32', 'divisor', '1']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '8', 'protocol', 'ip', 'handle', '9::1', 'u32', 'ht', '9:', 'match', 'ip', 'dst', '10.99.0.2/32', 'flowid', '1:4']);
    // c3 loses its down cap in the same pass: its class must go although a hidden table pointed at it.
    desired.subjects[2]!.downKbps = 0;
    assert.equal(await assertConverges(desired), undefined, 'no rebuild was needed');
  });

  test('orphan classes and leaves are removed; a class changed by hand gets its rate back', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev, ifb } = await shaped();
    await tc(['class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:77', 'htb', 'rate', '1mbit']);
    await tc(['qdisc', 'add', 'dev', dev, 'parent', '1:77', 'handle', '77:', 'pfifo']);
    await tc(['class', 'add', 'dev', ifb, 'parent', '1:', 'classid', '1:78', 'htb', 'rate', '1mbit']);
    await tc(['class', 'change', 'dev', dev, 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '3mbit']);
    assert.equal(await assertConverges(desired), undefined);
  });

  test('a half-applied batch (the first half of a build) is completed', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev } = await shaped();
    await tc(['qdisc', 'del', 'dev', dev, 'root']);
    const plan = await planFromKernel(desired, lab.executor, caps);
    await lab.executor.batch(plan.slice(0, Math.floor(plan.length / 2)), ns);
    await assertConverges(desired);
  });

  test('a hand-edited tree: entries, a dispatch link and the root link deleted, a stray entry added', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev } = await shaped();
    const before = await readActual(lab.executor, dev, ns);
    const entry = before.egress?.filters.find((f) => f.flowidMinor === 3);
    const dispatch = before.egress?.filters.find((f) => f.htid === 0x3ff && f.link !== undefined);
    assert.ok(entry?.handle && dispatch?.handle);
    await tc(['filter', 'del', 'dev', dev, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', entry.handle, 'u32']);
    await tc(['filter', 'del', 'dev', dev, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', dispatch.handle, 'u32']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '320:9:7', 'u32', 'ht', '320:9:', 'match', 'ip', 'dst', '10.1.1.9/32', 'flowid', '1:2']);
    assert.equal(await assertConverges(desired), undefined, 'repaired incrementally');
    // The root link gone: the layout is not the engine's any more, the tree is rebuilt.
    const root = (await readActual(lab.executor, dev, ns)).egress?.filters.find((f) => f.link === 0x3ff);
    assert.ok(root?.handle);
    await tc(['filter', 'del', 'dev', dev, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', root.handle, 'u32']);
    await assertConverges(desired);
  });

  test('a missing IFB is re-created, and the redirect that pointed at the deleted one is replaced', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev, ifb } = await shaped();
    await lab.ip(ns, ['link', 'del', 'dev', ifb]);
    await assertConverges(desired);
    const actual = await readActual(lab.executor, dev, ns);
    assert.deepEqual(actual.ingressFilters.filter((f) => f.hasMirred).map((f) => f.mirredTo), [ifb]);
    assert.equal(actual.ifb.up, true);
  });

  test('a table orphaned by the old layout (the issue-9 wedge) is cleared by a rebuild in the same pass', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev } = await shaped();
    // What the planner before issue 9 left behind: a hash table made at a priority that was then
    // deleted while another u32 priority lived. Invisible to `tc filter show`, holding class 1:3.
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '10', 'protocol', 'ip', 'u32']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '10', 'protocol', 'ip', 'handle', '10:', 'u32', 'divisor', '256']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '10', 'protocol', 'ip', 'handle', '10:71:1', 'u32', 'ht', '10:71:', 'match', 'ip', 'dst', '10.77.1.113/32', 'flowid', '1:3']);
    await tc(['filter', 'del', 'dev', dev, 'parent', '1:', 'prio', '10']);
    assert.ok(!(await tc(['filter', 'show', 'dev', dev, 'parent', '1:'])).includes('10:71:1'), 'the orphan is invisible');
    // c2 stops being capped down: deleting its class meets the invisible key.
    desired.subjects[1]!.downKbps = 0;
    const repaired = await assertConverges(desired);
    assert.match(repaired ?? '', /class del dev \S+ classid 1:3: .*in use/i, 'the refusal that triggered the rebuild is reported');
  });

  test('an orphaned table whose id the engine needs (File exists) is cleared by a rebuild', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { desired, dev } = await shaped();
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '9', 'protocol', 'ip', 'u32']);
    await tc(['filter', 'add', 'dev', dev, 'parent', '1:', 'prio', '9', 'protocol', 'ip', 'handle', '31d:', 'u32', 'divisor', '8']);
    await tc(['filter', 'del', 'dev', dev, 'parent', '1:', 'prio', '9']);
    desired.subjects[0]!.addresses.push('10.5.5.0/29'); // needs table 31d: (IPv4 /29)
    assert.match((await assertConverges(desired)) ?? '', /exists/i);
  });

  test('a foreign root qdisc is refused with a message naming it, and left untouched', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    index += 1;
    const dev = `rp${lab.id}${index}`;
    await lab.ip(ns, ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}x`]);
    await lab.ip(ns, ['link', 'set', dev, 'up']);
    await tc(['qdisc', 'add', 'dev', dev, 'root', 'handle', '5:', 'tbf', 'rate', '1mbit', 'burst', '10kb', 'latency', '50ms']);
    const desired: DesiredInterface = { name: dev, netns: ns, kind: 'wireguard', subjects: [{ type: 'peer', id: 'p', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 0, downKbps: 1000 }] };
    await assert.rejects(reconcileInterface(desired, lab.executor, caps), (error: unknown) => {
      assert.ok(error instanceof PlanError);
      assert.match(error.message, new RegExp(`${dev} has a root qdisc tbf 5: that panel-bandwidth did not create`));
      return true;
    });
    assert.match(await tc(['qdisc', 'show', 'dev', dev]), /qdisc tbf 5: root/);
  });

  test('a foreign filter where the ingress redirect must go is refused, naming it', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    index += 1;
    const dev = `rp${lab.id}${index}`;
    await lab.ip(ns, ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}x`]);
    await lab.ip(ns, ['link', 'set', dev, 'up']);
    await tc(['qdisc', 'add', 'dev', dev, 'handle', 'ffff:', 'ingress']);
    // Someone's own mirror of uploads (this kernel has act_mirred, not act_gact).
    await tc(['filter', 'add', 'dev', dev, 'parent', 'ffff:', 'prio', '1', 'protocol', 'ip', 'u32', 'match', 'ip', 'src', '10.9.9.9/32', 'action', 'mirred', 'egress', 'mirror', 'dev', `${dev}x`]);
    const desired: DesiredInterface = { name: dev, netns: ns, kind: 'wireguard', subjects: [{ type: 'peer', id: 'p', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 1000, downKbps: 0 }] };
    await assert.rejects(reconcileInterface(desired, lab.executor, caps), new RegExp(`${dev}'s ingress holds a redirect to ${dev}x at prio 1 \\(not panel-bandwidth's\\)`));
    assert.match(await tc(['filter', 'show', 'dev', dev, 'parent', 'ffff:']), /10\.9\.9\.9|0a090909/);
  });
});
