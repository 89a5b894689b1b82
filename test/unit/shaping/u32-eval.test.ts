/**
 * u32-eval, the classification oracle of the model-based test, against what the kernel does:
 * - on the trees captured from the real kernel (test/fixtures/tc), hand-checked packets;
 * - as root (with python3 for raw packets): real packets sent through real trees in a namespace,
 *   where the class whose counter moves must be the one `classify` names from the tree as read.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';

import { execa } from 'execa';

import { parseCidr } from '../../../src/shaping/addresses.js';
import { KeyedMutex } from '../../../src/shaping/lock.js';
import { LocalExecutor } from '../../../src/shaping/local-executor.js';
import type { DesiredInterface } from '../../../src/shaping/model.js';
import { parseClassText } from '../../../src/shaping/parse-class-text.js';
import { parseFilterJson } from '../../../src/shaping/parse-filter-json.js';
import { readActual, readTree } from '../../../src/shaping/read.js';
import { reconcileInterface } from '../../../src/shaping/reconcile.js';
import { onPath } from '../../support/lab.js';
import { classify, packetBytes, treeClassifier, U32EvalError, type Packet } from '../../support/u32-eval.js';
import { fixture, fixtureActual } from './fixtures.js';

const v4 = (text: string): number[] => parseCidr(text).bytes;
const v6 = (text: string): number[] => parseCidr(text).bytes;
const to4 = (dst: string, src = '192.0.2.1'): Packet => ({ family: 4, src: v4(src), dst: v4(dst) });
const to6 = (dst: string, src = '2001:db8::1'): Packet => ({ family: 6, src: v6(src), dst: v6(dst) });
const from4 = (src: string): Packet => ({ family: 4, src: v4(src), dst: v4('192.0.2.1') });
const from6 = (src: string): Packet => ({ family: 6, src: v6(src), dst: v6('2001:db8::1') });

for (const layout of ['current', 'legacy'] as const) {
  test(`the captured egress tree (${layout} layout) sends each destination to its peer class, the rest to 1:ffff`, () => {
    const captured = fixtureActual().egress;
    assert.ok(captured);
    const tree = layout === 'current' ? captured : { ...captured, filters: parseFilterJson(fixture('legacy-filter-egress')) };
    // peer a (1:2) 10.0.0.2/32 + fd00::2; peer b (1:3) 10.0.1.0/30, 10.8.0.0/16, fd00:1::/64; peer c (1:1a) 10.0.0.26.
    const cases: [Packet, number][] = [
      [to4('10.0.0.2'), 0x2],
      [to4('10.0.1.0'), 0x3],
      [to4('10.0.1.3'), 0x3],
      [to4('10.0.1.4'), 0xffff],
      [to4('10.8.200.7'), 0x3],
      [to4('10.0.0.26'), 0x1a],
      [to4('10.0.0.3'), 0xffff],
      [to4('10.9.0.2'), 0xffff],
      [to6('fd00::2'), 0x2],
      [to6('fd00::3'), 0xffff],
      [to6('fd00:1::ab:cd'), 0x3],
      [to6('fd00:2::2'), 0xffff],
      // Source addresses do not matter on the egress tree.
      [{ family: 4, src: v4('10.0.0.2'), dst: v4('10.9.9.9') }, 0xffff],
    ];
    for (const [packet, minor] of cases) assert.equal(classify(tree, packet).toString(16), minor.toString(16), JSON.stringify(packet));
  });
}

test('the captured IFB tree classifies by source; a class that is not there sends to the default', () => {
  const actual = fixtureActual();
  const tree = actual.ifb.tree;
  assert.ok(tree);
  assert.equal(classify(tree, from4('10.0.0.2')), 0x2);
  assert.equal(classify(tree, from6('fd00::2')), 0x2);
  assert.equal(classify(tree, from4('10.0.0.26')), 0x1a);
  assert.equal(classify(tree, to4('10.0.0.2')), 0xffff);
  // HTB sends a filter's result for a missing class to its default class.
  const withoutClass = { ...tree, classes: tree.classes.filter((c) => c.minor !== 0x1a) };
  assert.equal(classify(withoutClass, from4('10.0.0.26')), 0xffff);
  // …and to its direct queue (0) when the default class is missing too.
  const bare = { ...tree, classes: tree.classes.filter((c) => c.minor === 2) };
  assert.equal(classify(bare, from4('10.0.0.26')), 0);
});

test('a key linking to a table that was not listed cannot be walked, and says so', () => {
  const tree = fixtureActual().egress;
  assert.ok(tree);
  const linked = tree.filters.find((f) => f.link !== undefined)?.link;
  assert.ok(linked !== undefined);
  const missing = { ...tree, filters: tree.filters.filter((f) => f.htid !== linked || f.divisor === undefined) };
  assert.throws(() => classify(missing, to4('10.0.0.2')), U32EvalError);
});

test('packet bytes: an IPv4 header with the addresses at 12/16, IPv6 at 8/24', () => {
  const bytes4 = packetBytes(to4('10.0.0.2', '10.0.0.1'));
  assert.deepEqual([...bytes4.slice(12, 20)], [10, 0, 0, 1, 10, 0, 0, 2]);
  assert.equal(bytes4[0], 0x45);
  const bytes6 = packetBytes(to6('fd00::2', 'fd00::1'));
  assert.equal(bytes6[0], 0x60);
  assert.equal(bytes6[23], 1);
  assert.equal(bytes6[39], 2);
});

// ---- the real kernel ----

const python = onPath('python3') ? 'python3' : null;
const canRun = process.getuid?.() === 0 && onPath('tc') && onPath('ip') && python !== null;

function requireKernel(t: TestContext): boolean {
  if (canRun) return true;
  t.skip('sending packets through the kernel needs root, iproute2 and python3');
  return false;
}

// Reads one hex Ethernet frame per line from stdin and sends it on the interface named in argv[1]
// (AF_PACKET: it goes through the interface's egress qdisc); answers "ok" once sent.
const SENDER = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in sys.stdin:
    s.send(bytes.fromhex(line.strip()))
    sys.stdout.write("ok\\n"); sys.stdout.flush()
`;

/** A namespace with a veth pair (d0 ↔ d0p), IPv6 off so that nothing else sends packets. */
async function withLab(body: (lab: { netns: string; kernel: LocalExecutor; send(device: string, packet: Packet): Promise<void> }) => Promise<void>): Promise<void> {
  const kernel = new LocalExecutor({ timeoutMs: 15_000 });
  const netns = `pbw-u32-${randomBytes(3).toString('hex')}`;
  await kernel.run(['ip', 'netns', 'add', netns]);
  const senders = new Map<string, ReturnType<typeof execa>>();
  try {
    for (const key of ['all', 'default']) await kernel.run(['ip', 'netns', 'exec', netns, 'sysctl', '-qw', `net.ipv6.conf.${key}.disable_ipv6=1`]);
    await kernel.run(['ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd0p'], { netns });
    for (const dev of ['d0', 'd0p', 'lo']) await kernel.run(['ip', 'link', 'set', 'dev', dev, 'up'], { netns });
    const send = async (device: string, packet: Packet): Promise<void> => {
      let sender = senders.get(device);
      if (!sender) {
        sender = execa('ip', ['netns', 'exec', netns, python ?? 'python3', '-c', SENDER, device], { stdin: 'pipe', stdout: 'pipe', buffer: false, reject: false });
        senders.set(device, sender);
      }
      const ethertype = packet.family === 4 ? '0800' : '86dd';
      const frame = `ffffffffffff020000000001${ethertype}${Buffer.from(packetBytes(packet)).toString('hex')}`;
      const answered = new Promise<void>((resolve) => sender.stdout?.once('data', () => resolve()));
      sender.stdin?.write(`${frame}\n`);
      await answered;
    };
    await body({ netns, kernel, send });
  } finally {
    for (const sender of senders.values()) {
      sender.stdin?.end();
      sender.kill();
    }
    await kernel.run(['ip', 'netns', 'del', netns]).catch(() => undefined);
  }
}

/** The class whose packet counter moved while `send` ran (0: none moved, i.e. HTB's direct queue). */
async function landedIn(kernel: LocalExecutor, netns: string, device: string, send: () => Promise<void>): Promise<number> {
  // Leaf classes only: an inner class (the engine's 1:1) counts every packet its children pass.
  const counts = async (): Promise<Map<number, bigint>> => {
    const classes = parseClassText((await kernel.run(['tc', '-s', 'class', 'show', 'dev', device], { netns })).stdout);
    const parents = new Set(classes.map((c) => c.parent));
    return new Map(classes.filter((c) => c.major === 1 && !parents.has(c.classid)).map((c) => [c.minor, c.counters?.packets ?? 0n]));
  };
  const before = await counts();
  await send();
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const after = await counts();
    const moved = [...after].filter(([minor, n]) => n !== (before.get(minor) ?? 0n)).map(([minor]) => minor);
    if (moved.length === 1) return moved[0] ?? -1;
    if (moved.length > 1) throw new Error(`several classes moved on ${device}: ${moved.map((m) => m.toString(16)).join(',')}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return 0;
}

/** Addresses to try against a set of prefixes: each prefix's first, last and a middle address, plus neighbours. */
function probes(cidrs: readonly string[]): { family: 4 | 6; address: number[] }[] {
  const out: { family: 4 | 6; address: number[] }[] = [];
  for (const cidr of cidrs) {
    const prefix = parseCidr(cidr);
    const last = prefix.bytes.map((byte, i) => byte | (0xff >> Math.max(0, Math.min(8, prefix.length - i * 8))));
    const middle = prefix.bytes.map((byte, i) => byte | (0x5a & (0xff >> Math.max(0, Math.min(8, prefix.length - i * 8)))));
    const after = [...last];
    for (let i = after.length - 1; i >= 0; i -= 1) {
      after[i] = ((after[i] ?? 0) + 1) & 0xff;
      if (after[i] !== 0) break;
    }
    for (const address of [prefix.bytes, last, middle, after]) out.push({ family: prefix.family, address });
  }
  return out;
}

test('packets sent through the engine\'s own trees land where classify says, both ways', async (t) => {
  if (!requireKernel(t)) return;
  await withLab(async ({ netns, kernel, send }) => {
    const peer = (id: string, minor: number, addresses: string[], up: number, down: number) => ({ type: 'peer' as const, id, classMinor: minor, addresses, upKbps: up, downKbps: down });
    const subjects = [
      peer('a', 2, ['10.77.0.0/16', 'fd77::/64'], 100000, 100000),
      peer('b', 3, ['10.77.1.113/32', 'fd77::12f/128'], 100000, 100000),
      peer('c', 4, ['10.77.20.0/22', 'fd77::12e/127'], 100000, 0),
      peer('d', 5, ['10.77.1.112/30', '0.0.0.0/0'], 0, 100000),
      peer('e', 6, ['fd00::/8', '10.78.0.1/32'], 100000, 100000),
    ];
    const desired: DesiredInterface = { name: 'd0', netns, kind: 'wireguard', subjects };
    await reconcileInterface(desired, kernel, { leaf: 'pfifo' }, { locks: new KeyedMutex({ fileLocks: null }) });
    const actual = await readActual(kernel, 'd0', netns);
    assert.ok(actual.egress && actual.ifb.tree, 'both trees built');
    const down = treeClassifier(actual.egress);
    const up = treeClassifier(actual.ifb.tree);
    const mismatches: string[] = [];
    const cidrs = [...subjects.flatMap((s) => s.addresses), '10.79.0.0/16', 'fd78::/64'];
    for (const { family, address } of probes(cidrs)) {
      const other = family === 4 ? v4('192.0.2.1') : v6('2001:db8::1');
      const toPeer: Packet = { family, src: other, dst: address };
      const fromPeer: Packet = { family, src: address, dst: other };
      // down: sent out of d0 (its egress tree, by destination); up: sent into d0 from d0p, redirected to the IFB (by source).
      const realDown = await landedIn(kernel, netns, 'd0', () => send('d0', toPeer));
      const realUp = await landedIn(kernel, netns, actual.ifb.name, () => send('d0p', fromPeer));
      if (realDown !== down(toPeer)) mismatches.push(`down ${address.join('.')}: kernel 1:${realDown.toString(16)}, classify 1:${down(toPeer).toString(16)}`);
      if (realUp !== up(fromPeer)) mismatches.push(`up ${address.join('.')}: kernel 1:${realUp.toString(16)}, classify 1:${up(fromPeer).toString(16)}`);
    }
    assert.deepEqual(mismatches, []);
  });
});

test('a hand-made tree: prio order, protocol per tp, falling back from a linked table, a terminal link, a missing class', async (t) => {
  if (!requireKernel(t)) return;
  await withLab(async ({ netns, kernel, send }) => {
    const lines = [
      'qdisc add dev d0 root handle 1: htb default ffff',
      ...['2', '3', '4', '5', '6', 'ffff'].map((m) => `class add dev d0 parent 1: classid 1:${m} htb rate 100mbit`),
      // prio 3, IPv6 only: one host.
      'filter add dev d0 parent 1: prio 3 protocol ipv6 u32 match ip6 dst fd77::5/128 flowid 1:5',
      // prio 4, all: a hashed table on the last byte, whose miss falls back to the next root key.
      'filter add dev d0 parent 1: prio 4 protocol all handle 20: u32 divisor 256',
      'filter add dev d0 parent 1: prio 4 protocol all u32 match u8 0x40 0xf0 at 0 hashkey mask 0x000000ff at 16 link 20:',
      'filter add dev d0 parent 1: prio 4 protocol all handle 20:9:1 u32 ht 20:9: match ip dst 10.1.1.9/32 flowid 1:2',
      'filter add dev d0 parent 1: prio 4 protocol all handle 20:9:2 u32 ht 20:9: match ip dst 10.2.0.0/16 flowid 1:9',
      'filter add dev d0 parent 1: prio 4 protocol all u32 match ip dst 10.1.0.0/16 flowid 1:3',
      // prio 6: a link that is terminal itself (its own flowid when the table has nothing).
      'filter add dev d0 parent 1: prio 6 protocol ip handle 30: u32 divisor 1',
      'filter add dev d0 parent 1: prio 6 protocol ip u32 match ip dst 10.3.0.0/16 link 30: flowid 1:6',
      'filter add dev d0 parent 1: prio 6 protocol ip handle 30::1 u32 ht 30:: match ip dst 10.3.3.3/32 flowid 1:4',
    ];
    await kernel.run(['tc', '-batch', '-'], { netns, input: `${lines.join('\n')}\n` });
    const tree = await readTree(kernel, 'd0', netns);
    assert.ok(tree);
    const mine = treeClassifier(tree);
    const packets = [
      to4('10.1.1.9'), to4('10.1.2.9'), to4('10.1.2.10'), to4('10.2.5.9'), to4('10.3.3.3'), to4('10.3.3.4'), to4('10.4.0.9'),
      to6('fd77::5'), to6('fd77::9'), to6('fd77::6'),
    ];
    const mismatches: string[] = [];
    for (const packet of packets) {
      const real = await landedIn(kernel, netns, 'd0', () => send('d0', packet));
      if (real !== mine(packet)) mismatches.push(`${packet.dst.join('.')}: kernel 1:${real.toString(16)}, classify 1:${mine(packet).toString(16)}`);
    }
    assert.deepEqual(mismatches, []);
  });
});
