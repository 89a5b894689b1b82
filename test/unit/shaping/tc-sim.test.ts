/**
 * The simulated kernel on its own (no root needed): the kernel facts the model-based test relies
 * on, each as the engine would meet it. The same facts are checked against the real kernel by
 * tc-sim-kernel.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { KernelError } from '../../../src/shaping/errors.js';
import type { Operation } from '../../../src/shaping/operations.js';
import { parseClassText } from '../../../src/shaping/parse-class-text.js';
import { parseFilterJson } from '../../../src/shaping/parse-filter-json.js';
import { htbClassArgs, printedRateBits } from '../../../src/shaping/rates.js';
import { readActual } from '../../../src/shaping/read.js';
import { TcSim } from '../../support/tc-sim.js';

const NS = 'lab';
const tc = (line: string): Operation => ({ tool: 'tc', argv: line.split(' '), note: '' });

function simWith(device = 'ifb0'): TcSim {
  const sim = new TcSim();
  sim.addDevice(device, { netns: NS, kind: 'ifb' });
  return sim;
}

async function refusal(sim: TcSim, lines: string[]): Promise<KernelError> {
  try {
    await sim.batch(lines.map(tc), NS);
  } catch (error) {
    if (error instanceof KernelError) return error;
    throw error;
  }
  throw new assert.AssertionError({ message: `expected the batch to fail:\n${lines.join('\n')}` });
}

/** The pre-issue-9 layout's IFB tree for c1 (fd77::d0, 1:2), c2 (10.77.1.113, 1:3), c3 (fd77::12f, 1:4). */
const LEGACY_TREE = [
  'qdisc add dev ifb0 root handle 1: htb default ffff',
  ...['ffff', '2', '3', '4'].map((m) => `class add dev ifb0 parent 1: classid 1:${m} htb rate 1000kbit ceil 1000kbit quantum 1500 burst 3028 cburst 3028`),
  'filter add dev ifb0 parent 1: prio 10 protocol ip u32',
  'filter add dev ifb0 parent 1: prio 10 protocol ip handle 10: u32 divisor 256',
  'filter add dev ifb0 parent 1: prio 10 protocol ip u32 match u32 0 0 hashkey mask 0x000000ff at 12 link 10:',
  'filter add dev ifb0 parent 1: prio 10 protocol ip handle 10:71:1 u32 ht 10:71: match ip src 10.77.1.113/32 flowid 1:3',
  'filter add dev ifb0 parent 1: prio 11 protocol ipv6 u32',
  'filter add dev ifb0 parent 1: prio 11 protocol ipv6 handle 11: u32 divisor 256',
  'filter add dev ifb0 parent 1: prio 11 protocol ipv6 u32 match u32 0 0 hashkey mask 0x000000ff at 20 link 11:',
  'filter add dev ifb0 parent 1: prio 11 protocol ipv6 handle 11:d0:1 u32 ht 11:d0: match ip6 src fd77::d0/128 flowid 1:2',
  'filter add dev ifb0 parent 1: prio 11 protocol ipv6 handle 11:2f:1 u32 ht 11:2f: match ip6 src fd77::12f/128 flowid 1:4',
];

test('the issue 9 wedge: the old plan for "c2 up 0" orphans table 10: and HTB refuses the class, on every retry', async () => {
  const sim = simWith();
  await sim.batch(LEGACY_TREE.map(tc), NS);
  // What the old planner emitted when the last IPv4 subject lost its up cap: drop its prio, then its class.
  const plan = ['filter del dev ifb0 parent 1: prio 10', 'class del dev ifb0 classid 1:3'];
  const first = await refusal(sim, plan);
  assert.match(first.stderr, /^Error: HTB class in use\.\nCommand failed -:2\n$/);
  assert.equal(first.operation?.argv.join(' '), 'class del dev ifb0 classid 1:3');
  // The prio is gone from the listing, its table is not: nothing the reader sees holds 1:3.
  const listed = parseFilterJson((await sim.run(['tc', '-j', 'filter', 'show', 'dev', 'ifb0', 'parent', '1:'], { netns: NS })).stdout);
  assert.deepEqual([...new Set(listed.map((f) => f.prio))], [11]);
  assert.equal(listed.some((f) => f.flowidMinor === 3), false);
  assert.equal(sim.orphanTables('ifb0', 1, NS), 1);
  // The next reconcile sees a stray class 1:3 and no filter for it: the same refusal, forever.
  const again = await refusal(sim, ['class del dev ifb0 classid 1:3']);
  assert.match(again.stderr, /HTB class in use/);
  // Packets still take the orphan through nothing (no key links to it), so they are not misrouted.
  assert.equal(sim.classify('ifb0', { family: 4, src: [10, 77, 1, 113], dst: [192, 0, 2, 1] }, NS), 0xffff);
  // Bringing prio 10 back lists the table again; its key can then be deleted, and the class with it.
  await sim.batch([tc('filter add dev ifb0 parent 1: prio 10 protocol ip u32')], NS);
  const back = parseFilterJson((await sim.run(['tc', '-j', 'filter', 'show', 'dev', 'ifb0', 'parent', '1:'], { netns: NS })).stdout);
  assert.ok(back.some((f) => f.handle === '10:71:1' && f.flowidMinor === 3));
  await sim.batch(['filter del dev ifb0 parent 1: prio 10 protocol ip handle 10:71:1 u32', 'class del dev ifb0 classid 1:3'].map(tc), NS);
});

test('a link key holds its table until the kernel frees it: not within the same batch, but by the next call', async () => {
  const sim = simWith();
  await sim.batch(LEGACY_TREE.map(tc), NS);
  const refused = await refusal(sim, ['filter del dev ifb0 parent 1: prio 10 protocol ip handle 800::800 u32', 'filter del dev ifb0 parent 1: prio 10 protocol ip handle 10: u32']);
  assert.match(refused.stderr, /^Error: cls_u32: Can not delete in-use filter\.\nWe have an error talking to the kernel\nCommand failed -:2\n$/);
  await sim.batch([tc('filter del dev ifb0 parent 1: prio 10 protocol ip handle 10: u32')], NS);
  // The table's key went with it: its class is free.
  await sim.batch([tc('class del dev ifb0 classid 1:3')], NS);
});

test('the last key of the only u32 filter takes the filter with it: a following prio delete finds no chain', async () => {
  const sim = simWith();
  await sim.batch(['qdisc add dev ifb0 root handle 1: htb default ffff', 'class add dev ifb0 parent 1: classid 1:2 htb rate 1mbit', 'filter add dev ifb0 parent 1: prio 1 protocol all u32 match u32 0 0 flowid 1:2'].map(tc), NS);
  const refused = await refusal(sim, ['filter del dev ifb0 parent 1: prio 1 protocol all handle 800::800 u32', 'filter del dev ifb0 parent 1: prio 1']);
  assert.match(refused.stderr, /^Error: Cannot find specified filter chain\./);
  assert.equal((await sim.run(['tc', '-j', 'filter', 'show', 'dev', 'ifb0', 'parent', '1:'], { netns: NS })).stdout, '[]\n');
});

test('HTB has no change operation: replacing an HTB root with an HTB root is refused', async () => {
  const sim = simWith();
  await sim.batch([tc('qdisc add dev ifb0 root handle 1: htb default 10')], NS);
  const refused = await refusal(sim, ['qdisc replace dev ifb0 root handle 1: htb default ffff']);
  assert.match(refused.stderr, /^Error: Change operation not supported by specified qdisc\./);
  // A different handle grafts a new root and destroys the old one with its classes.
  await sim.batch([tc('qdisc replace dev ifb0 root handle 2: htb default ffff')], NS);
  const qdiscs = JSON.parse((await sim.run(['tc', '-j', 'qdisc', 'show', 'dev', 'ifb0'], { netns: NS })).stdout) as { handle: string }[];
  assert.deepEqual(qdiscs.map((q) => q.handle), ['2:']);
});

test('reads come back in iproute2 6.1 form: the engine parses them, rates as printed', async () => {
  const sim = simWith('wg0');
  await sim.batch(
    [
      'qdisc add dev wg0 root handle 1: htb default ffff',
      `class add dev wg0 parent 1: classid 1:2 htb ${htbClassArgs(1234567).join(' ')}`,
      'qdisc add dev wg0 parent 1:2 handle 2: pfifo limit 200',
    ].map(tc),
    NS,
  );
  const text = (await sim.run(['tc', '-s', 'class', 'show', 'dev', 'wg0'], { netns: NS })).stdout;
  // Byte for byte the line the kernel printed for the engine's class (test/fixtures/tc/class-egress).
  assert.match(text, /^class htb 1:2 root leaf 2: prio 0 rate 1234Mbit ceil 1234Mbit burst 1543208b cburst 1543208b \n Sent 0 bytes/);
  const [cls] = parseClassText(text);
  assert.equal(cls?.rateBits, printedRateBits(1234567));
  const actual = await readActual(sim, 'wg0', NS);
  assert.equal(actual.exists, true);
  assert.deepEqual(actual.egress?.qdiscs.map((q) => `${q.kind} ${q.handle} ${q.parent ?? 'root'}`), ['htb 1: root', 'pfifo 2: 1:2']);
  assert.equal(actual.ifb.exists, false);
  await assert.rejects(sim.run(['tc', '-j', 'qdisc', 'show', 'dev', 'wg9'], { netns: NS }), (error: KernelError) => error.stderr === 'Cannot find device "wg9"\n');
});

test('a tbf leaf prints as iproute2 6.1 prints it: the burst rounded through the kernel ticks, `lat` or `limit`, and its class N:1', async () => {
  const sim = simWith('wg0');
  await sim.batch(
    [
      'qdisc add dev wg0 root handle 1: htb default ffff',
      'class add dev wg0 parent 1: classid 1:1 htb rate 30mbit ceil 30mbit',
      'class add dev wg0 parent 1:1 classid 1:2 htb rate 1mbit ceil 20mbit',
      'class add dev wg0 parent 1:1 classid 1:3 htb rate 1mbit ceil 20mbit',
      'qdisc add dev wg0 parent 1:2 handle 2: tbf rate 10000kbit burst 12345 limit 300000',
      'qdisc add dev wg0 parent 1:3 handle 3: tbf rate 1000kbit burst 90000000 limit 300000',
    ].map(tc),
    NS,
  );
  const qdiscs = JSON.parse((await sim.run(['tc', '-j', 'qdisc', 'show', 'dev', 'wg0'], { netns: NS })).stdout) as { handle: string; options: unknown }[];
  // The kernel's answers (tc-sim-kernel.test.ts): 12345 B come back as 12343; the queue outlasts that
  // bucket, so `lat` and no `limit`; 720 s of bucket wraps the 32-bit ticks of the dump.
  assert.deepEqual(
    qdiscs.filter((q) => q.handle !== '1:').map((q) => [q.handle, q.options]),
    [
      ['2:', { rate: 1250000, burst: 12343, lat: 230125 }],
      ['3:', { rate: 125000, burst: 21280523, limit: 300000 }],
    ],
  );
  const text = (await sim.run(['tc', '-s', 'class', 'show', 'dev', 'wg0'], { netns: NS })).stdout;
  assert.match(text, /class htb 1:2 parent 1:1 leaf 2: prio 0 rate 1Mbit ceil 20Mbit /);
  assert.match(text, /\nclass tbf 2:1 parent 2: \n\nclass tbf 3:1 parent 3: \n\n$/);
  assert.deepEqual(
    parseClassText(text).map((c) => `${c.kind} ${c.classid} ${c.parent ?? 'root'}`),
    ['htb 1:1 root', 'htb 1:2 1:1', 'htb 1:3 1:1', 'tbf 2:1 2:', 'tbf 3:1 3:'],
  );
});

test('a leaf changes kind by delete and add: a replace of another kind under the same handle is refused, the deleted leaf leaves a hidden default', async () => {
  const sim = simWith('wg0');
  await sim.batch(
    [
      'qdisc add dev wg0 root handle 1: htb default ffff',
      'class add dev wg0 parent 1: classid 1:1 htb rate 30mbit',
      'class add dev wg0 parent 1:1 classid 1:2 htb rate 1mbit ceil 5mbit',
      'qdisc add dev wg0 parent 1:2 handle 2: pfifo limit 200',
    ].map(tc),
    NS,
  );
  const refused = await refusal(sim, ['qdisc replace dev wg0 parent 1:2 handle 2: tbf rate 1000kbit burst 50000 limit 300000']);
  assert.match(refused.stderr, /^Error: Invalid qdisc name: must match existing qdisc\.\nCommand failed -:1\n$/);
  await sim.batch(['qdisc del dev wg0 parent 1:2', 'qdisc add dev wg0 parent 1:2 handle 2: tbf rate 1000kbit burst 50000 limit 300000'].map(tc), NS);
  // Same kind, same handle: the options change in place.
  await sim.batch([tc('qdisc replace dev wg0 parent 1:2 handle 2: tbf rate 2000kbit burst 60000 limit 300000')], NS);
  const actual = await readActual(sim, 'wg0', NS);
  assert.deepEqual(actual.egress?.qdiscs.map((q) => [q.kind, q.handle, q.parent, q.options]), [
    ['htb', '1:', null, { r2q: 10, default: '0xffff', direct_packets_stat: 0, direct_qlen: 32 }],
    ['tbf', '2:', '1:2', { rate: 250000, burst: 60000, lat: 960000 }],
  ]);
  // Deleted by its parent alone, the leaf leaves HTB's own pfifo (handle 0: unlisted, no `leaf`).
  await sim.batch([tc('qdisc del dev wg0 parent 1:2')], NS);
  const again = await refusal(sim, ['qdisc del dev wg0 parent 1:2']);
  assert.match(again.stderr, /^Error: Cannot delete qdisc with handle of zero\./);
  const text = (await sim.run(['tc', 'class', 'show', 'dev', 'wg0'], { netns: NS })).stdout;
  assert.match(text, /^class htb 1:2 parent 1:1 prio 0 rate 1Mbit ceil 5Mbit /m);
  await sim.batch([tc('qdisc add dev wg0 parent 1:2 handle 2: pfifo limit 200')], NS);
});
