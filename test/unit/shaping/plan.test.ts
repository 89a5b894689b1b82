import assert from 'node:assert/strict';
import { test } from 'node:test';

import { emptyActual, type ActualInterface } from '../../../src/shaping/actual.js';
import { ifbNameFor } from '../../../src/shaping/ifb-name.js';
import type { DesiredInterface } from '../../../src/shaping/model.js';
import { commandLine, type Operation } from '../../../src/shaping/operations.js';
import { parseQdiscJson } from '../../../src/shaping/parse-qdisc-json.js';
import { planInterface, PlanError, rejectedSubjects } from '../../../src/shaping/plan.js';
import { parseFilterJson } from '../../../src/shaping/parse-filter-json.js';
import { fixture, FIXTURE_IFB, fixtureActual, fixtureDesired } from './fixtures.js';

const pfifo = { leaf: 'pfifo' } as const;
const lines = (ops: Operation[]): string[] => ops.map((o) => commandLine(o).join(' '));
const NS = 'pbw-fixture';
const tcx = (rest: string): string => `tc -n ${NS} ${rest}`;

function wgDesired(subjects: DesiredInterface['subjects']): DesiredInterface {
  return { name: 'wg0', kind: 'wireguard', subjects };
}

test('a fresh WireGuard interface with one capped peer: the full tree, exact argv', () => {
  const ifb = ifbNameFor('wg0');
  const desired = wgDesired([{ type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 4000, downKbps: 8000 }]);
  const ops = planInterface(desired, emptyActual('wg0', ifb), pfifo);
  assert.deepEqual(
    ops.map((o) => [o.tool, ...o.argv]),
    [
      ['ip', 'link', 'add', 'name', ifb, 'type', 'ifb'],
      ['ip', 'link', 'set', 'dev', ifb, 'up'],
      ['tc', 'qdisc', 'add', 'dev', 'wg0', 'root', 'handle', '1:', 'htb', 'default', 'ffff'],
      ['tc', 'class', 'add', 'dev', 'wg0', 'parent', '1:', 'classid', '1:ffff', 'htb', 'rate', '100000000kbit', 'ceil', '100000000kbit', 'quantum', '60000', 'burst', '125000000', 'cburst', '125000000'],
      ['tc', 'class', 'add', 'dev', 'wg0', 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '8000kbit', 'ceil', '8000kbit', 'quantum', '60000', 'burst', '10000', 'cburst', '10000'],
      ['tc', 'qdisc', 'add', 'dev', 'wg0', 'parent', '1:2', 'handle', '2:', 'pfifo', 'limit', '200'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', '1:', 'prio', '5', 'protocol', 'all', 'u32'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '3ff:', 'u32', 'divisor', '1'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', '1:', 'prio', '5', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'link', '3ff:'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '320:', 'u32', 'divisor', '256'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '3ff:0:1', 'u32', 'ht', '3ff:0:', 'match', 'u8', '0x40', '0xf0', 'at', '0', 'hashkey', 'mask', '0x000000ff', 'at', '16', 'link', '320:'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '320:2:1', 'u32', 'ht', '320:2:', 'match', 'ip', 'dst', '10.0.0.2/32', 'flowid', '1:2'],
      ['tc', 'qdisc', 'add', 'dev', 'wg0', 'handle', 'ffff:', 'ingress'],
      ['tc', 'filter', 'add', 'dev', 'wg0', 'parent', 'ffff:', 'prio', '1', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', ifb],
      ['tc', 'qdisc', 'add', 'dev', ifb, 'root', 'handle', '1:', 'htb', 'default', 'ffff'],
      ['tc', 'class', 'add', 'dev', ifb, 'parent', '1:', 'classid', '1:ffff', 'htb', 'rate', '100000000kbit', 'ceil', '100000000kbit', 'quantum', '60000', 'burst', '125000000', 'cburst', '125000000'],
      ['tc', 'class', 'add', 'dev', ifb, 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '4000kbit', 'ceil', '4000kbit', 'quantum', '50000', 'burst', '5000', 'cburst', '5000'],
      ['tc', 'qdisc', 'add', 'dev', ifb, 'parent', '1:2', 'handle', '2:', 'pfifo', 'limit', '200'],
      ['tc', 'filter', 'add', 'dev', ifb, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'u32'],
      ['tc', 'filter', 'add', 'dev', ifb, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '3ff:', 'u32', 'divisor', '1'],
      ['tc', 'filter', 'add', 'dev', ifb, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'link', '3ff:'],
      ['tc', 'filter', 'add', 'dev', ifb, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '320:', 'u32', 'divisor', '256'],
      ['tc', 'filter', 'add', 'dev', ifb, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '3ff:0:1', 'u32', 'ht', '3ff:0:', 'match', 'u8', '0x40', '0xf0', 'at', '0', 'hashkey', 'mask', '0x000000ff', 'at', '12', 'link', '320:'],
      ['tc', 'filter', 'add', 'dev', ifb, 'parent', '1:', 'prio', '5', 'protocol', 'all', 'handle', '320:2:1', 'u32', 'ht', '320:2:', 'match', 'ip', 'src', '10.0.0.2/32', 'flowid', '1:2'],
    ],
  );
  assert.ok(ops.every((o) => o.netns === undefined && o.note.length > 0));
});

test('operations carry the namespace of the interface', () => {
  const desired: DesiredInterface = { ...wgDesired([{ type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2'], upKbps: 0, downKbps: 100 }]), netns: 'lab1' };
  const ops = planInterface(desired, emptyActual('wg0', ifbNameFor('wg0', 'lab1')), pfifo);
  assert.ok(ops.every((o) => o.netns === 'lab1'));
  assert.equal(commandLine(ops[0]!).slice(0, 3).join(' '), 'tc -n lab1');
});

test('an interface with no limited subject gets no qdisc, no IFB; a subject at 0/0 has no class or filter', () => {
  const desired = wgDesired([{ type: 'peer', id: 'free', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 0, downKbps: 0 }]);
  assert.deepEqual(planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), pfifo), []);
  const mixed = wgDesired([
    { type: 'peer', id: 'free', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 0, downKbps: 0 },
    { type: 'peer', id: 'capped', classMinor: 3, addresses: ['10.0.0.3/32'], upKbps: 0, downKbps: 500 },
  ]);
  const text = lines(planInterface(mixed, emptyActual('wg0', ifbNameFor('wg0')), pfifo)).join('\n');
  assert.doesNotMatch(text, /1:2\b|10\.0\.0\.2/);
  assert.doesNotMatch(text, /ifb|ingress/, 'no up cap: no IFB, no ingress qdisc');
});

test('the probe decides the leaf: fq_codel where the kernel has it', () => {
  const desired = wgDesired([{ type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 0, downKbps: 8000 }]);
  const ops = planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), { leaf: 'fq_codel' });
  assert.ok(lines(ops).includes('tc qdisc add dev wg0 parent 1:2 handle 2: fq_codel limit 1000 flows 128'));
  const sfq = planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), { leaf: 'sfq' });
  assert.ok(lines(sfq).includes('tc qdisc add dev wg0 parent 1:2 handle 2: sfq perturb 10'));
});

test('a VM owns its interface: match-all filters, down on the tap egress, up on the IFB', () => {
  const ifb = ifbNameFor('tap101');
  const desired: DesiredInterface = { name: 'tap101', kind: 'vm', subjects: [{ type: 'vm', id: '101', classMinor: 2, addresses: [], upKbps: 3000, downKbps: 5000 }] };
  const out = lines(planInterface(desired, emptyActual('tap101', ifb), pfifo));
  assert.ok(out.includes('tc class add dev tap101 parent 1: classid 1:2 htb rate 5000kbit ceil 5000kbit quantum 60000 burst 6250 cburst 6250'), 'VM down = host egress');
  assert.ok(out.includes(`tc class add dev ${ifb} parent 1: classid 1:2 htb rate 3000kbit ceil 3000kbit quantum 37500 burst 3750 cburst 3750`), 'VM up = IFB');
  assert.ok(out.includes('tc filter add dev tap101 parent 1: prio 1 protocol all u32 match u32 0 0 flowid 1:2'));
  assert.ok(out.includes(`tc filter add dev ${ifb} parent 1: prio 1 protocol all u32 match u32 0 0 flowid 1:2`));
  assert.ok(!out.some((l) => /hashkey|divisor/.test(l)), 'no hash tables for a VM');
});

test('IPv6 hosts and prefixes: one table per length, hashed on the last fixed byte at the IPv6 offsets', () => {
  const desired = wgDesired([{ type: 'peer', id: 'v6', classMinor: 5, addresses: ['fd00::5/128', 'fd00:5::/64'], upKbps: 0, downKbps: 6000 }]);
  const out = lines(planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), pfifo));
  assert.deepEqual(
    out.filter((l) => l.includes('filter')),
    [
      'tc filter add dev wg0 parent 1: prio 5 protocol all u32',
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 3ff: u32 divisor 1',
      'tc filter add dev wg0 parent 1: prio 5 protocol all u32 match u32 0 0 link 3ff:',
      // The /64's last fixed byte is byte 7, in the word at 24 + 4 = 28.
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 440: u32 divisor 256',
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 3ff:0:80 u32 ht 3ff:0: match u8 0x60 0xf0 at 0 hashkey mask 0x000000ff at 28 link 440:',
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 480: u32 divisor 256',
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 3ff:0:40 u32 ht 3ff:0: match u8 0x60 0xf0 at 0 hashkey mask 0x000000ff at 36 link 480:',
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 480:5:1 u32 ht 480:5: match ip6 dst fd00::5/128 flowid 1:5',
      // Byte 7 of fd00:5::/64 is 0: bucket 0.
      'tc filter add dev wg0 parent 1: prio 5 protocol all handle 440:0:1 u32 ht 440:0: match ip6 dst fd00:5::/64 flowid 1:5',
    ],
  );
});

test('hosts sharing a last byte share a bucket with distinct nodes; a /30 has its own table, linked after the /32s', () => {
  const desired = wgDesired([
    { type: 'peer', id: 'a', classMinor: 2, addresses: ['10.0.0.5/32'], upKbps: 0, downKbps: 100 },
    { type: 'peer', id: 'b', classMinor: 3, addresses: ['10.0.1.5/32'], upKbps: 0, downKbps: 100 },
    { type: 'peer', id: 'c', classMinor: 4, addresses: ['10.0.0.4/30'], upKbps: 0, downKbps: 100 },
  ]);
  const out = lines(planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), pfifo));
  const handles = out.filter((l) => l.includes(' flowid ')).map((l) => /handle (\S+)/.exec(l)?.[1]);
  // 10.0.0.4/30: its last fixed byte is 4 = 0b000001|00, bucket 1 of the 64-bucket /30 table.
  assert.deepEqual(handles, ['320:5:1', '320:5:2', '31e:1:1']);
  // u32 tries the dispatch keys in node order: /32 (node 1) before /30 (node 3).
  assert.deepEqual(
    out.filter((l) => l.includes(' ht 3ff:0: ')).map((l) => /handle (\S+) .* link (\S+)/.exec(l)?.slice(1).join(' → ')),
    ['3ff:0:3 → 31e:', '3ff:0:1 → 320:'],
  );
  assert.ok(out.includes('tc filter add dev wg0 parent 1: prio 5 protocol all handle 3ff:0:3 u32 ht 3ff:0: match u8 0x40 0xf0 at 0 hashkey mask 0x000000fc at 16 link 31e:'));
});

test('no-op: the kernel already matches, zero operations', () => {
  assert.deepEqual(planInterface(fixtureDesired(), fixtureActual(), pfifo), []);
});

test('a rate change is exactly one `class change`, nothing else', () => {
  const desired = fixtureDesired();
  desired.subjects[0]!.downKbps = 16000;
  assert.deepEqual(lines(planInterface(desired, fixtureActual(), pfifo)), [
    tcx('class change dev fx0 parent 1: classid 1:2 htb rate 16000kbit ceil 16000kbit quantum 60000 burst 20000 cburst 20000'),
  ]);
  const up = fixtureDesired();
  up.subjects[0]!.upKbps = 2000;
  assert.deepEqual(lines(planInterface(up, fixtureActual(), pfifo)), [
    tcx(`class change dev ${FIXTURE_IFB} parent 1: classid 1:2 htb rate 2000kbit ceil 2000kbit quantum 25000 burst 3028 cburst 3028`),
  ]);
});

test('a rate of 1234567 kbit/s (printed 1234Mbit by tc) is not seen as drift', () => {
  const desired = fixtureDesired();
  assert.equal(desired.subjects[1]?.downKbps, 1_234_567);
  assert.deepEqual(planInterface(desired, fixtureActual(), pfifo), []);
});

test('adding one subject touches only its class, leaf and filters', () => {
  const desired = fixtureDesired();
  desired.subjects.push({ type: 'peer', id: 'd', classMinor: 4, addresses: ['10.0.0.4/32'], upKbps: 0, downKbps: 2000 });
  assert.deepEqual(lines(planInterface(desired, fixtureActual(), pfifo)), [
    tcx('class add dev fx0 parent 1: classid 1:4 htb rate 2000kbit ceil 2000kbit quantum 25000 burst 3028 cburst 3028'),
    tcx('qdisc add dev fx0 parent 1:4 handle 4: pfifo limit 200'),
    tcx('filter add dev fx0 parent 1: prio 5 protocol all handle 320:4:1 u32 ht 320:4: match ip dst 10.0.0.4/32 flowid 1:4'),
  ]);
});

test('removing one subject deletes its filters (by handle) then its classes, on both sides', () => {
  const desired = fixtureDesired();
  desired.subjects = desired.subjects.filter((s) => s.id !== 'c');
  assert.deepEqual(lines(planInterface(desired, fixtureActual(), pfifo)), [
    tcx('filter del dev fx0 parent 1: prio 5 protocol all handle 320:1a:1 u32'),
    tcx('class del dev fx0 classid 1:1a'),
    tcx(`filter del dev ${FIXTURE_IFB} parent 1: prio 5 protocol all handle 320:1a:1 u32`),
    tcx(`class del dev ${FIXTURE_IFB} classid 1:1a`),
  ]);
});

test('a cap set to 0 removes that direction\'s class and its entries (by handle), and unlinks a table left empty', () => {
  const desired = fixtureDesired();
  desired.subjects[0]!.downKbps = 0;
  assert.deepEqual(lines(planInterface(desired, fixtureActual(), pfifo)), [
    // fd00::2 was the only IPv6 /128: its table is unlinked, not deleted (the kernel frees a table's
    // link reference only after an RCU grace period, and deleting the priority would orphan it).
    tcx('filter del dev fx0 parent 1: prio 5 protocol all handle 3ff::40 u32'),
    tcx('filter del dev fx0 parent 1: prio 5 protocol all handle 480:2:1 u32'),
    tcx('filter del dev fx0 parent 1: prio 5 protocol all handle 320:2:1 u32'),
    tcx('class del dev fx0 classid 1:2'),
  ]);
});

test('removing the last limited subject removes the trees, the ingress qdisc and the IFB', () => {
  const desired = fixtureDesired();
  desired.subjects = [];
  assert.deepEqual(lines(planInterface(desired, fixtureActual(), pfifo)), [
    tcx('qdisc del dev fx0 root'),
    tcx('qdisc del dev fx0 ingress'),
    `ip -n ${NS} link del dev ${FIXTURE_IFB}`,
  ]);
});

function flushed(actual: ActualInterface): ActualInterface {
  // What `tc qdisc del dev fx0 root; tc qdisc del dev fx0 ingress` leaves: a noqueue root, nothing else.
  return { ...actual, egress: { device: 'fx0', qdiscs: parseQdiscJson('[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]'), classes: [], filters: [] }, ingressFilters: [] };
}

test('a flushed interface is rebuilt in full: tree, ingress and redirect; the intact IFB is left alone', () => {
  const out = lines(planInterface(fixtureDesired(), flushed(fixtureActual()), pfifo));
  assert.equal(out[0], tcx('qdisc add dev fx0 root handle 1: htb default ffff'));
  assert.equal(out.filter((l) => l.includes(' class add dev fx0 ')).length, 4, '1:ffff + three peers');
  assert.equal(out.filter((l) => / filter add dev fx0 .* flowid /.test(l)).length, 2 + 3 + 1, 'a: v4+v6, b: /30 + /16 + /64 (one entry each), c: 1');
  assert.ok(out.includes(tcx('qdisc add dev fx0 handle ffff: ingress')));
  assert.ok(out.includes(tcx(`filter add dev fx0 parent ffff: prio 1 protocol all u32 match u32 0 0 action mirred egress redirect dev ${FIXTURE_IFB}`)));
  assert.ok(!out.some((l) => l.includes(`dev ${FIXTURE_IFB} `)), 'nothing on the IFB');
  // And after the rebuild the plan is empty again.
  assert.deepEqual(planInterface(fixtureDesired(), fixtureActual(), pfifo), []);
});

test('a missing IFB (deleted by hand) is re-created with its tree', () => {
  const actual = fixtureActual();
  actual.ifb = { name: FIXTURE_IFB, exists: false, up: false, tree: null };
  const out = lines(planInterface(fixtureDesired(), actual, pfifo));
  assert.deepEqual(out.slice(0, 2), [`ip -n ${NS} link add name ${FIXTURE_IFB} type ifb`, `ip -n ${NS} link set dev ${FIXTURE_IFB} up`]);
  assert.ok(out.includes(tcx(`qdisc add dev ${FIXTURE_IFB} root handle 1: htb default ffff`)));
});

test('drift: a wrong rate, a missing class, a lost leaf, stray classes and filters are all repaired', () => {
  const actual = fixtureActual();
  const egress = actual.egress!;
  egress.classes = egress.classes
    .map((c) => (c.minor === 2 ? { ...c, rateBits: 1_000_000, ceilBits: 1_000_000 } : c))
    .filter((c) => c.minor !== 0x1a)
    .concat([{ kind: 'htb', classid: '1:99', major: 1, minor: 0x99, parent: null, leaf: null, rateBits: 1000, ceilBits: 1000 }]);
  egress.qdiscs = egress.qdiscs.filter((q) => q.parent !== '1:3');
  egress.filters = egress.filters.concat([{ prio: 5, protocol: 'all', kind: 'u32', handle: '320:63:1', htid: 0x320, bucket: 0x63, node: 1, flowidMinor: 0x99, keys: [{ value: 0x0a000063, mask: 0xffffffff, off: 16 }] }]);
  // A foreign priority holding a table with a key on class 1:2: the key goes first, by handle.
  egress.filters.push(
    { prio: 50, protocol: 'ip', kind: 'u32', keys: [] },
    { prio: 50, protocol: 'ip', kind: 'u32', handle: '7:', htid: 7, bucket: 0, node: 0, divisor: 1, keys: [] },
    { prio: 50, protocol: 'ip', kind: 'u32', handle: '7::1', htid: 7, bucket: 0, node: 1, flowidMinor: 2, keys: [{ value: 0x0a000002, mask: 0xffffffff, off: 16 }] },
  );
  assert.deepEqual(lines(planInterface(fixtureDesired(), actual, pfifo)), [
    tcx('filter del dev fx0 parent 1: prio 50 protocol ip handle 7::1 u32'),
    tcx('filter del dev fx0 parent 1: prio 50'),
    tcx('filter del dev fx0 parent 1: prio 5 protocol all handle 320:63:1 u32'),
    tcx('class del dev fx0 classid 1:99'),
    tcx('class change dev fx0 parent 1: classid 1:2 htb rate 8000kbit ceil 8000kbit quantum 60000 burst 10000 cburst 10000'),
    tcx('qdisc add dev fx0 parent 1:3 handle 3: pfifo limit 200'),
    tcx('class add dev fx0 parent 1: classid 1:1a htb rate 1kbit ceil 1kbit quantum 1500 burst 3028 cburst 3028'),
    tcx('qdisc add dev fx0 parent 1:1a handle 1a: pfifo limit 200'),
  ]);
});

test('a leaf of the wrong kind is replaced in place', () => {
  const actual = fixtureActual();
  actual.egress!.qdiscs = actual.egress!.qdiscs.map((q) => (q.parent === '1:2' ? { ...q, kind: 'sfq' } : q));
  assert.deepEqual(lines(planInterface(fixtureDesired(), actual, pfifo)), [tcx('qdisc replace dev fx0 parent 1:2 handle 2: pfifo limit 200')]);
});

test('an address moved to another subject: its filter is deleted and re-added with the new class', () => {
  const desired = fixtureDesired();
  desired.subjects[2]!.addresses = [];
  desired.subjects[0]!.addresses.push('10.0.0.26/32');
  const out = lines(planInterface(desired, fixtureActual(), pfifo));
  assert.deepEqual(out.filter((l) => l.includes('dev fx0 ')), [
    tcx('filter del dev fx0 parent 1: prio 5 protocol all handle 320:1a:1 u32'),
    tcx('filter add dev fx0 parent 1: prio 5 protocol all handle 320:1a:1 u32 ht 320:1a: match ip dst 10.0.0.26/32 flowid 1:2'),
  ]);
});

test('a root qdisc someone else configured is refused, naming it; the kernel\'s default root is replaced', () => {
  const desired = wgDesired([{ type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 0, downKbps: 8000 }]);
  const actual = emptyActual('wg0', ifbNameFor('wg0'));
  actual.egress!.qdiscs = parseQdiscJson('[{"kind":"tbf","handle":"8001:","root":true,"options":{}}]');
  assert.throws(() => planInterface(desired, actual, pfifo), (error: unknown) => {
    assert.ok(error instanceof PlanError);
    assert.match(error.message, /wg0 has a root qdisc tbf 8001: that panel-bandwidth did not create/);
    assert.match(error.message, /tc qdisc del dev wg0 root/);
    return true;
  });
  // Nothing capped on that side: the foreign root is simply left alone.
  assert.deepEqual(planInterface(wgDesired([]), actual, pfifo), []);
  actual.egress!.qdiscs = parseQdiscJson('[{"kind":"fq_codel","handle":"0:","root":true,"options":{}}]');
  assert.equal(lines(planInterface(desired, actual, pfifo))[0], 'tc qdisc add dev wg0 root handle 1: htb default ffff');
});

test('a classification layout that is not the engine\'s (a lost root link) rebuilds the tree from scratch', () => {
  const fixture = fixtureActual();
  fixture.egress!.filters = fixture.egress!.filters.filter((f) => !(f.htid === 0x800 && f.link !== undefined));
  const out = lines(planInterface(fixtureDesired(), fixture, pfifo));
  assert.deepEqual(out.slice(0, 2), [tcx('qdisc del dev fx0 root'), tcx('qdisc add dev fx0 root handle 1: htb default ffff')]);
  assert.ok(!out.some((l) => l.includes(FIXTURE_IFB)), 'the intact IFB is left alone');
});

test('a tree in the layout before issue 9 (prio 10/11 and one prio per length) migrates without orphaning a table', () => {
  const actual = fixtureActual();
  actual.egress!.filters = parseFilterJson(fixture('legacy-filter-egress'));
  actual.ifb.tree!.filters = parseFilterJson(fixture('legacy-filter-ifb'));
  const out = lines(planInterface(fixtureDesired(), actual, pfifo));
  const egress = out.filter((l) => l.includes(' dev fx0 '));
  // Every old key that targets a class is deleted by handle before its priority.
  for (const prio of ['10', '11', '184', '936']) {
    const keyDeletes = egress.filter((l) => l.includes(` prio ${prio} protocol `) && / handle \S+ u32$/.test(l)).length;
    const prioDelete = egress.indexOf(tcx(`filter del dev fx0 parent 1: prio ${prio}`));
    assert.ok(keyDeletes > 0 && prioDelete > 0, `prio ${prio}: keys then the priority`);
    assert.ok(egress.slice(prioDelete + 1).every((l) => !l.includes(` prio ${prio} `)));
  }
  assert.equal(egress.filter((l) => / filter add .* flowid /.test(l)).length, 6, 'the new entries');
  assert.ok(!out.some((l) => / class (del|add) /.test(l)), 'classes are kept');
});

test('an interface that does not exist gets nothing (its stale IFB is removed)', () => {
  const desired = fixtureDesired();
  const gone: ActualInterface = { ...emptyActual('fx0', FIXTURE_IFB, false, NS), ifb: { name: FIXTURE_IFB, exists: true, up: true, tree: null } };
  assert.deepEqual(lines(planInterface(desired, gone, pfifo)), [`ip -n ${NS} link del dev ${FIXTURE_IFB}`]);
  assert.deepEqual(planInterface(desired, emptyActual('fx0', FIXTURE_IFB, false, NS), pfifo), []);
});

test('a subject that would overflow a bucket is left out and named; the rest of the interface is planned', () => {
  // 4095 /32s ending in .7 fill bucket 7 of the /32 table; the 4096th cannot be classified.
  const subjects = Array.from({ length: 4096 }, (_, i) => ({
    type: 'peer' as const,
    id: `p${i}`,
    classMinor: i + 2,
    addresses: [`10.${(i >> 8) & 0xff}.${i & 0xff}.7/32`],
    upKbps: 0,
    downKbps: 100,
  }));
  subjects.push({ type: 'peer', id: 'other', classMinor: 5000, addresses: ['10.99.0.8/32'], upKbps: 0, downKbps: 100 });
  const desired = wgDesired(subjects);
  const rejected = rejectedSubjects(desired);
  assert.deepEqual([...rejected.keys()], ['p4095']);
  assert.match(rejected.get('p4095') ?? '', /10\.15\.255\.7\/32: bucket 320:7: of the IPv4 \/32 table already holds 4095 prefixes/);
  const out = lines(planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), pfifo));
  assert.ok(!out.some((l) => l.includes('10.15.255.7/32')));
  assert.ok(out.some((l) => l.includes('10.99.0.8/32 flowid 1:1388')), 'an unrelated subject is still placed');
});

test('a foreign clsact qdisc blocks the ingress redirect with a clear error', () => {
  const actual = emptyActual('wg0', ifbNameFor('wg0'));
  actual.egress!.qdiscs = parseQdiscJson('[{"kind":"clsact","handle":"ffff:","parent":"ffff:fff1","options":{}}]');
  const desired = wgDesired([{ type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 100, downKbps: 0 }]);
  assert.throws(() => planInterface(desired, actual, pfifo), /clsact/);
});

test('an uncapped peer inside a capped peer\'s prefix gets an entry into 1:ffff, so the wider peer\'s cap never holds it', () => {
  const desired = wgDesired([
    { type: 'peer', id: 'site', classMinor: 2, addresses: ['10.77.0.0/16'], upKbps: 0, downKbps: 1000 },
    { type: 'peer', id: 'laptop', classMinor: 3, addresses: ['10.77.0.5/32', '10.99.0.5/32'], upKbps: 0, downKbps: 0 },
  ]);
  const out = lines(planInterface(desired, emptyActual('wg0', ifbNameFor('wg0')), pfifo));
  assert.ok(out.includes('tc filter add dev wg0 parent 1: prio 5 protocol all handle 320:5:1 u32 ht 320:5: match ip dst 10.77.0.5/32 flowid 1:ffff'));
  assert.ok(!out.some((l) => l.includes('10.99.0.5')), 'an address no capped prefix covers costs nothing');
  assert.ok(!out.some((l) => l.includes('class add dev wg0 parent 1: classid 1:3')), 'and the laptop has no class');
});
