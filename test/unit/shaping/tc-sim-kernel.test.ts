/**
 * Keeps the simulated kernel honest: the same steps run against the real kernel (a fresh network
 * namespace, as root) and against TcSim, and every outcome must be the same — success or the same
 * error text on the same batch line, and the same `tc -j filter show` / `tc -s class show` output
 * byte for byte (qdisc and link JSON minus reference counts, ifindexes and addresses).
 * Skips without root or iproute2: the simulator's own tests (tc-sim.test.ts) need neither.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';

import { KernelError } from '../../../src/shaping/errors.js';
import { ifbNameFor } from '../../../src/shaping/ifb-name.js';
import type { Executor } from '../../../src/shaping/executor.js';
import { LocalExecutor } from '../../../src/shaping/local-executor.js';
import type { DesiredInterface } from '../../../src/shaping/model.js';
import type { Operation } from '../../../src/shaping/operations.js';
import { reconcileInterface } from '../../../src/shaping/reconcile.js';
import { tbfArgs, tbfDepthBytes } from '../../../src/shaping/tree-shape.js';
import { onPath } from '../../support/lab.js';
import { TcSim } from '../../support/tc-sim.js';

const canRun = process.getuid?.() === 0 && onPath('tc') && onPath('ip');

function requireKernel(t: TestContext): boolean {
  if (canRun) return true;
  t.skip('comparing with the kernel needs root and iproute2');
  return false;
}

/** A plan (lines of `tc …` / `ip …`, run as batches), or one command whose output is compared. */
type Step = { batch: string[] } | { run: string[] };

interface Outcome {
  ok: boolean;
  stdout: string;
  stderr: string;
}

const toOperation = (line: string): Operation => {
  const [tool, ...argv] = line.trim().split(/\s+/);
  if (tool !== 'tc' && tool !== 'ip') throw new TypeError(`Expected a tc or ip line, got ${line}`);
  return { tool, argv, note: '' };
};

/**
 * Drops what differs between two equal states: reference counts, ifindexes, addresses, and traffic
 * counters (the veth sees IPv6 autoconfiguration packets; HTB's tokens move with traffic and keep
 * their old value over a `class change`).
 */
function comparable(stdout: string, argv: readonly string[]): string {
  if (argv.includes('qdisc') && argv.includes('-j')) return stdout.replace(/"refcnt":\d+,/g, '').replace(/"direct_packets_stat":\d+/g, '');
  if (argv.includes('class')) return stdout.replace(/^ (Sent|backlog|lended|tokens).*\n/gm, '');
  if (argv[0] === 'ip' && argv.includes('-j')) {
    const links = JSON.parse(stdout) as { ifname: string; flags?: string[] }[];
    return JSON.stringify(links.map((l) => ({ ifname: l.ifname, up: l.flags?.includes('UP') === true })));
  }
  return stdout;
}

async function runStep(executor: Executor, step: Step, netns: string): Promise<Outcome> {
  try {
    if ('batch' in step) {
      await executor.batch(step.batch.map(toOperation), netns);
      return { ok: true, stdout: '', stderr: '' };
    }
    const { stdout } = await executor.run(step.run, { netns });
    return { ok: true, stdout: comparable(stdout, step.run), stderr: '' };
  } catch (error) {
    if (!(error instanceof KernelError)) throw error;
    return { ok: false, stdout: '', stderr: error.stderr };
  }
}

/** Lends a fresh namespace to `body` on both kernels; removes it afterwards, also on failure. */
async function withBoth<T>(body: (kernel: Executor, sim: TcSim, netns: string) => Promise<T>): Promise<T> {
  const kernel = new LocalExecutor({ timeoutMs: 15_000 });
  const netns = `pbw-sim-${randomBytes(3).toString('hex')}`;
  await kernel.run(['ip', 'netns', 'add', netns]);
  const sim = new TcSim();
  sim.addNamespace(netns);
  try {
    return await body(kernel, sim, netns);
  } finally {
    await kernel.run(['ip', 'netns', 'del', netns]).catch(() => undefined);
  }
}

/** Runs `steps` on both and returns a report of every step whose outcome differs ('' when none). */
async function divergences(steps: readonly Step[]): Promise<string> {
  return withBoth(async (kernel, sim, netns) => {
    const report: string[] = [];
    for (const [index, step] of steps.entries()) {
      const real = await runStep(kernel, step, netns);
      const simulated = await runStep(sim, step, netns);
      if (JSON.stringify(real) !== JSON.stringify(simulated)) {
        const what = 'batch' in step ? step.batch.join('\n      ') : step.run.join(' ');
        report.push(`step ${index}:\n      ${what}\n  kernel: ${JSON.stringify(real)}\n  sim:    ${JSON.stringify(simulated)}`);
      }
      // The kernel frees a deleted key (and its hold on a linked table) an RCU grace period later;
      // the simulator at its next call. Leave the kernel that time between steps.
      if ('batch' in step) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return report.join('\n');
  });
}

const D = 'd0';
const b = (...lines: string[]): Step => ({ batch: lines });
const filters = (parent = '1:', dev = D): Step => ({ run: ['tc', '-j', 'filter', 'show', 'dev', dev, 'parent', parent] });
const qdiscs = (dev = D): Step => ({ run: ['tc', '-j', 'qdisc', 'show', 'dev', dev] });
const classes = (dev = D): Step => ({ run: ['tc', '-s', 'class', 'show', 'dev', dev] });
const link = (dev: string): Step => ({ run: ['ip', '-j', 'link', 'show', 'dev', dev] });
const f = (rest: string): string => `tc filter ${rest.replace('%', `dev ${D} parent 1:`)}`;
const htb = (...minors: string[]): Step =>
  b(`tc qdisc add dev ${D} root handle 1: htb default ffff`, ...minors.map((m) => `tc class add dev ${D} parent 1: classid 1:${m} htb rate 10mbit ceil 10mbit quantum 1500 burst 3028 cburst 3028`));
const veth = b(`ip link add ${D} type veth peer name ${D}p`, `ip link set dev ${D} up`, `ip link set dev ${D}p up`);

test('the new classification layout lists the same tables, keys and hashes as the kernel', async (t) => {
  if (!requireKernel(t)) return;
  const report = await divergences([
    veth,
    htb('3', '4', '5', 'ffff'),
    b(
      f('add % prio 5 protocol all u32'),
      f('add % prio 5 protocol all handle 3ff: u32 divisor 1'),
      f('add % prio 5 protocol all u32 match u32 0 0 link 3ff:'),
      f('add % prio 5 protocol all handle 316: u32 divisor 64'),
      f('add % prio 5 protocol all handle 3ff:0:1 u32 ht 3ff:0: match u8 0x40 0xf0 at 0 hashkey mask 0x0000fc00 at 16 link 316:'),
      f('add % prio 5 protocol all handle 316:5:1 u32 ht 316:5: match ip dst 10.77.20.0/22 flowid 1:3'),
      f('add % prio 5 protocol all handle 320: u32 divisor 256'),
      f('add % prio 5 protocol all handle 3ff:0:2 u32 ht 3ff:0: match u8 0x40 0xf0 at 0 hashkey mask 0x000000ff at 16 link 320:'),
      f('add % prio 5 protocol all handle 320:71:1 u32 ht 320:71: match ip dst 10.77.1.113/32 flowid 1:4'),
      f('add % prio 5 protocol all handle 480: u32 divisor 256'),
      f('add % prio 5 protocol all handle 3ff:0:3 u32 ht 3ff:0: match u8 0x60 0xf0 at 0 hashkey mask 0x000000ff at 36 link 480:'),
      f('add % prio 5 protocol all handle 480:2f:1 u32 ht 480:2f: match ip6 dst fd77::12f/128 flowid 1:5'),
      f('add % prio 5 protocol all handle 440: u32 divisor 1'),
      f('add % prio 5 protocol all handle 3ff:0:4 u32 ht 3ff:0: match u8 0x60 0xf0 at 0 link 440:'),
      f('add % prio 5 protocol all handle 440::1 u32 ht 440:0: match ip6 src fd00:1:2:3::/64 flowid 1:5'),
      f('add % prio 5 protocol all handle 440::2 u32 ht 440:0: match ip6 src fd00::/31 flowid 1:5'),
      f('add % prio 5 protocol all handle 440::3 u32 ht 440:0: match ip6 src ::/0 flowid 1:ffff'),
      f('add % prio 5 protocol all handle 440::4 u32 ht 440:0: match ip src 0.0.0.0/0 flowid 1:ffff'),
    ),
    filters(),
    classes(),
    qdiscs(),
    // A VM's match-all at prio 1 and an old-layout hash at prio 10 next to it.
    b(f('add % prio 1 protocol all u32 match u32 0 0 flowid 1:3')),
    b(
      f('add % prio 10 protocol ip u32'),
      f('add % prio 10 protocol ip handle 10: u32 divisor 256'),
      f('add % prio 10 protocol ip u32 match u32 0 0 hashkey mask 0x000000ff at 16 link 10:'),
      f('add % prio 10 protocol ip handle 10:2:1 u32 ht 10:2: match ip dst 10.0.0.2/32 flowid 1:4'),
      f('add % prio 10 protocol ip handle 10:2:900 u32 ht 10:2: match ip dst 10.0.0.0/30 flowid 1:5'),
      f('add % prio 184 protocol ip u32'),
      f('add % prio 184 protocol ip handle 110: u32 divisor 1'),
      f('add % prio 184 protocol ip u32 match u32 0 0 link 110:'),
      f('add % prio 184 protocol ip handle 110::1 u32 ht 110:0: match ip dst 10.8.0.0/16 flowid 1:3'),
    ),
    filters(),
  ]);
  assert.equal(report, '');
});

test('orphans: a deleted prio leaves its other tables alive, holding their classes, listed again with the prio', async (t) => {
  if (!requireKernel(t)) return;
  const report = await divergences([
    veth,
    htb('3', '4', 'ffff'),
    b(
      f('add % prio 10 protocol ip u32'),
      f('add % prio 10 protocol ip handle 10: u32 divisor 256'),
      f('add % prio 10 protocol ip u32 match u32 0 0 hashkey mask 0x000000ff at 16 link 10:'),
      f('add % prio 10 protocol ip handle 10:71:1 u32 ht 10:71: match ip dst 10.77.1.113/32 flowid 1:3'),
      f('add % prio 11 protocol ipv6 u32'),
      f('add % prio 11 protocol ipv6 handle 11: u32 divisor 256'),
      f('add % prio 11 protocol ipv6 u32 match u32 0 0 hashkey mask 0x000000ff at 36 link 11:'),
      f('add % prio 11 protocol ipv6 handle 11:2f:1 u32 ht 11:2f: match ip6 dst fd77::12f/128 flowid 1:4'),
    ),
    b(f('del % prio 10')),
    filters(),
    b(`tc class del dev ${D} classid 1:3`),
    b(f('add % prio 12 protocol ip handle 10: u32 divisor 1')),
    b(f('add % prio 10 protocol ip u32')),
    filters(),
    b(f('del % prio 10')),
    // The orphan's key can be deleted through any live prio: u32 finds tables across the qdisc.
    b(f('del % prio 11 protocol ipv6 handle 10:71:1 u32')),
    b(`tc class del dev ${D} classid 1:3`),
    classes(),
    b(f('add % prio 10 protocol ip u32')),
    filters(),
    b(f('del % prio 11'), f('del % prio 10')),
    b(`tc class del dev ${D} classid 1:4`),
    filters(),
  ]);
  assert.equal(report, '');
});

test('a link key releases its table later: deleting both in one batch fails, in the next one works', async (t) => {
  if (!requireKernel(t)) return;
  const report = await divergences([
    veth,
    htb('3', 'ffff'),
    b(
      f('add % prio 5 protocol all u32'),
      f('add % prio 5 protocol all handle 3ff: u32 divisor 1'),
      f('add % prio 5 protocol all u32 match u32 0 0 link 3ff:'),
      f('add % prio 5 protocol all handle 316: u32 divisor 64'),
      f('add % prio 5 protocol all handle 3ff:0:1 u32 ht 3ff:0: match u8 0x40 0xf0 at 0 hashkey mask 0x0000fc00 at 16 link 316:'),
      f('add % prio 5 protocol all handle 316:5:1 u32 ht 316:5: match ip dst 10.77.20.0/22 flowid 1:3'),
    ),
    b(f('del % prio 5 protocol all handle 316: u32')),
    b(f('del % prio 5 protocol all handle 800: u32')),
    b(f('del % prio 5 protocol all handle 3ff::1 u32'), f('del % prio 5 protocol all handle 316: u32')),
    b(f('del % prio 5 protocol all handle 316: u32')),
    filters(),
    b(`tc class del dev ${D} classid 1:3`),
    classes(),
  ]);
  assert.equal(report, '');
});

test('u32 errors, node ids, cyclic root ids, and the tp that goes with its last key', async (t) => {
  if (!requireKernel(t)) return;
  const report = await divergences([
    veth,
    b(f('add % prio 3 protocol ip u32 match ip dst 1.2.3.4/32 flowid 1:9')),
    b(f('del % prio 3')),
    b(f('del %')),
    htb('3', 'ffff'),
    b(f('del %')),
    b(f('del % prio 3')),
    b(f('add % prio 3 protocol ip handle 5: u32 divisor 3')),
    b(f('add % prio 3 protocol ip handle 5:1:0 u32 divisor 2')),
    b(f('add % prio 3 protocol ip u32 link 999: match u32 0 0')),
    b(f('add % prio 3 protocol ip u32 link 800: match u32 0 0')),
    b(f('add % prio 3 protocol ip u32 match u32 0 0 flowid 1:3'), f('add % prio 3 protocol ip handle ::7 u32 ht 800:: match u32 0 0 flowid 1:3')),
    b(f('add % prio 3 protocol ip u32 match u32 0 0 flowid 1:3'), f('add % prio 3 protocol ip handle 800::801 u32 match u32 0 0')),
    b(f('add % prio 3 protocol ipv6 u32')),
    b(f('add % prio 3 protocol ip handle 10:1:5 u32 ht 800:: match u32 0 0 flowid 1:3')),
    b(f('add % prio 3 protocol ip handle 77: u32 divisor 4'), f('add % prio 3 protocol ip handle 77:4:1 u32 ht 77:4: match u32 0 0 flowid 1:3')),
    b(f('add % prio 3 protocol ip handle 77:3:1 u32 ht 78:3: match u32 0 0 flowid 1:3')),
    b(f('del % prio 3 protocol ip handle 800::801 u32')),
    b(f('add % prio 3 protocol ip u32 match ip src 10.1.2.3/22 match ip dst 10.0.0.0/8 match ip dst 10.1.0.0/16 flowid 1:3')),
    b(f('add % prio 3 protocol ip u32 match u8 5 0x0f at 0 match u16 0x1234 0xffff at 2 match u8 0x40 0xf0 at 1 flowid 1:3')),
    filters(),
    b(f('del % prio 3 protocol ipv6 handle 800::7 u32')),
    b(f('del % prio 3 protocol ip handle 800::9 u32')),
    // Root ids: 800: for the first tp of a qdisc, then 801:, 802:, … also past failed creations.
    b(f('add % prio 4 protocol ip u32'), f('add % prio 6 protocol ip handle 77: u32 divisor 1')),
    b(f('add % prio 7 protocol ip u32'), f('del % prio 4'), f('add % prio 4 protocol ip u32')),
    filters(),
    // Deleting the last key of the only tp removes the tp.
    b(f('del %')),
    b(f('add % prio 1 protocol all u32 match u32 0 0 flowid 1:3')),
    b(f('del % prio 1 protocol all handle 800::800 u32')),
    filters(),
    b(f('add % prio 3 protocol all handle 5: u32 divisor 1')),
    b(f('del % prio 3 protocol all handle 5: u32')),
    filters(),
  ]);
  assert.equal(report, '');
});

test('qdiscs, classes and the ingress redirect answer and list like the kernel', async (t) => {
  if (!requireKernel(t)) return;
  const rates = ['1kbit', '64kbit', '1234kbit', '4000kbit', '8000kbit', '10000kbit', '1234567kbit', '100000000kbit', '2mbit', '1gbit'];
  const ifb = 'ifbsim0';
  const report = await divergences([
    veth,
    qdiscs(),
    b(`tc qdisc del dev ${D} root`),
    b(`tc qdisc del dev ${D} ingress`),
    b(`tc qdisc add dev ${D} root handle 2: pfifo`),
    b(`tc qdisc add dev ${D} root handle 1: htb default ffff`),
    b(`tc qdisc change dev ${D} root handle 2: pfifo limit 5`),
    qdiscs(),
    b(`tc qdisc replace dev ${D} root handle 1: htb default ffff`),
    b(`tc qdisc replace dev ${D} root handle 1: htb default ffff`),
    b(`tc qdisc replace dev ${D} root handle 1: pfifo`),
    b(`tc qdisc add dev ${D} root handle 1: htb default ffff`),
    ...rates.map((rate, i) => b(`tc class add dev ${D} parent 1: classid 1:${(i + 2).toString(16)} htb rate ${rate} ceil ${rate} burst 3028 cburst 10000`)),
    b(`tc class add dev ${D} parent 1: classid 1:ffff htb rate 100000000kbit ceil 100000000kbit quantum 60000 burst 125000000 cburst 125000000`),
    b(`tc class add dev ${D} parent 1: classid 1:3 htb rate 1mbit`),
    b(`tc class change dev ${D} parent 1: classid 1:77 htb rate 1mbit`),
    b(`tc class change dev ${D} parent 1: classid 1:3 htb rate 2500kbit ceil 2500kbit quantum 3125 burst 3125 cburst 3125`),
    b(`tc class del dev ${D} classid 1:77`),
    b(`tc class add dev ${D} parent 1: classid 2:5 htb rate 1mbit`),
    classes(),
    b(`tc qdisc add dev ${D} parent 1:3 handle 3: pfifo limit 200`, `tc qdisc add dev ${D} parent 1:4 handle 4: pfifo limit 200`, `tc qdisc add dev ${D} parent 1:1a handle 1a: pfifo limit 200`),
    b(`tc qdisc add dev ${D} parent 1:3 handle 3: pfifo limit 200`),
    b(`tc qdisc replace dev ${D} parent 1:3 handle 3: pfifo limit 100`),
    b(`tc qdisc replace dev ${D} parent 1:3 handle 3: sfq perturb 10`),
    b(`tc qdisc add dev ${D} parent 1:77 handle 77: pfifo`),
    b(`tc qdisc add dev ${D} parent 1:5 handle 1: pfifo`),
    b(`tc qdisc del dev ${D} parent 1:4 handle 8:`),
    b(`tc qdisc del dev ${D} parent 1:5`),
    b(`tc qdisc del dev ${D} parent 1:4`),
    qdiscs(),
    classes(),
    b(`tc class del dev ${D} classid 1:3`),
    qdiscs(),
    // Ingress and its redirect to an IFB, and what becomes of the redirect when the IFB goes.
    link(ifb),
    b(`ip link add name ${ifb} type ifb`),
    b(`ip link add name ${ifb} type ifb`),
    link(ifb),
    qdiscs(ifb),
    b(`ip link set dev ${ifb} up`),
    link(ifb),
    qdiscs(ifb),
    b(`tc qdisc add dev ${D} handle ffff: ingress`),
    b(`tc qdisc add dev ${D} handle ffff: ingress`),
    b(`tc filter add dev ${D} parent ffff: prio 1 protocol all u32 match u32 0 0 action mirred egress redirect dev ${ifb}`),
    filters('ffff:'),
    qdiscs(),
    b(`ip link del dev ${ifb}`),
    filters('ffff:'),
    b(`ip link del dev ${ifb}`),
    b(`ip link set dev ${ifb} up`),
    qdiscs(ifb),
    b(`tc filter add dev ${D} parent ffff: prio 1 protocol all u32 match u32 0 0 action mirred egress redirect dev ${ifb}`),
    b(`tc qdisc del dev ${D} ingress`),
    b(`tc qdisc del dev ${D} ingress`),
    qdiscs(),
    b(`tc qdisc del dev ${D} root`),
    qdiscs(),
    classes(),
    b(`ip link del dev ${D}`),
    qdiscs(),
    { run: ['tc', '-s', 'class', 'show', 'dev', D] },
    filters(),
  ]);
  assert.equal(report, '');
});

test('issue 14 trees: classes under 1:1 with rate below ceil, tbf leaves as printed (burst rounding, lat or limit, 64-bit rates), a leaf of another kind refused under the same handle, deleted and added again', async (t) => {
  if (!requireKernel(t)) return;
  const cls = (minor: string, parent: string, rate: string, ceil: string): string =>
    `tc class add dev ${D} parent ${parent} classid 1:${minor} htb rate ${rate} ceil ${ceil} quantum 1500 burst 3028 cburst 12500`;
  const tbf = (verb: string, minor: string, rest: string): string => `tc qdisc ${verb} dev ${D} parent 1:${minor} handle ${minor}: tbf ${rest}`;
  const report = await divergences([
    veth,
    b(
      `tc qdisc add dev ${D} root handle 1: htb default ffff`,
      cls('1', '1:', '30000kbit', '30000kbit'),
      cls('ffff', '1:1', '8kbit', '30000kbit'),
      ...['2', '3', '4', '5', '6', '7', '8', '9', 'a', '1f'].map((m) => cls(m, '1:1', '9997kbit', '10000kbit')),
    ),
    classes(),
    // The planner's bucket sizes and the kernel's rounding of them: ns at the rate through mult/shift,
    // 64 ns ticks, whole µs, bytes. `lat` while the queue (limit) outlasts the bucket, else `limit`.
    b(
      tbf('add', '2', 'rate 10000kbit burst 12345 limit 300000'),
      tbf('add', '3', 'rate 1000kbit burst 1000000 limit 300000'),
      tbf('add', '4', 'rate 5000kbit burst 4500000 limit 300000'),
      tbf('add', '5', 'rate 1000000kbit burst 1250000 limit 300000'),
      tbf('add', '6', 'rate 50000000kbit burst 62500000 limit 300000'),
      tbf('add', '7', 'rate 8kbit burst 3028 limit 300000'),
      tbf('add', '8', 'rate 8kbit burst 4294967295 limit 300000'),
      tbf('add', '9', 'rate 1234567kbit burst 1543209 limit 300000'),
      tbf('add', 'a', 'rate 64kbit burst 3028 limit 300000'),
    ),
    qdiscs(),
    classes(),
    b(tbf('add', '1f', 'rate 8kbit burst 4294967296 limit 300000')),
    b(tbf('add', '1f', 'rate 8kbit limit 300000')),
    b(tbf('add', '1f', 'burst 3000')),
    b(tbf('add', '1f', 'rate 8kbit burst 3000 foo 1')),
    // A replace of the same kind and handle changes the options; of another kind it is refused; a
    // change needs every option again.
    b(tbf('replace', '2', 'rate 20000kbit burst 30000 limit 300000')),
    b(tbf('change', '3', 'rate 2000kbit burst 40000 limit 300000')),
    b(`tc qdisc replace dev ${D} parent 1:4 handle 4: pfifo limit 200`),
    b(`tc qdisc replace dev ${D} parent 1:1f handle 1f: pfifo limit 200`, tbf('replace', '1f', 'rate 8kbit burst 3028 limit 300000')),
    b(`tc qdisc add dev ${D} parent 1:1f handle 1f: pfifo limit 200`),
    qdiscs(),
    // A leaf deleted by its parent alone leaves the class HTB's hidden default pfifo (no `leaf` in
    // the class line); a second delete finds handle 0; a new leaf takes the same handle.
    b(`tc qdisc del dev ${D} parent 1:4`),
    b(`tc qdisc del dev ${D} parent 1:4`),
    qdiscs(),
    classes(),
    b(`tc qdisc add dev ${D} parent 1:4 handle 4: pfifo limit 200`, `tc qdisc del dev ${D} parent 1:5`, tbf('add', '5', 'rate 1000000kbit burst 1250000 limit 300000')),
    b(`tc qdisc del dev ${D} parent 1:1f handle 1f: pfifo`),
    b(`tc qdisc del dev ${D} parent 1:1f handle 1f: tbf`),
    // Network cap and shares move by class change only; 1:1 stays the root.
    b(`tc class change dev ${D} parent 1: classid 1:1 htb rate 50000kbit ceil 50000kbit quantum 6250 burst 62500 cburst 62500`, `tc class change dev ${D} parent 1:1 classid 1:2 htb rate 2000kbit ceil 20000kbit quantum 1500 burst 3028 cburst 25000`),
    qdiscs(),
    classes(),
    b(`tc class del dev ${D} classid 1:1`),
    b(`tc class del dev ${D} classid 1:2`),
    qdiscs(),
    classes(),
  ]);
  assert.equal(report, '');
});

test("the planner's own tbf leaves, over the caps and bursts the model test draws, print as the sim prints them", async (t) => {
  if (!requireKernel(t)) return;
  const caps = [1, 64, 1000, 1234, 2000, 8000, 20000, 100000, 1234567, 50_000_000];
  const bursts = [{ kbps: 100_000_000, bytes: 3028 }, { kbps: 30000, bytes: 250_000 }, { kbps: 2_000_000, bytes: 5_000_000 }, { kbps: 100_000_000, bytes: 4_294_967_296 }];
  const leaves: string[] = [];
  const classesOf: string[] = [];
  let minor = 2;
  for (const cap of caps) {
    for (const burst of bursts) {
      if (burst.kbps <= cap) continue;
      const m = (minor++).toString(16);
      classesOf.push(`tc class add dev ${D} parent 1:1 classid 1:${m} htb rate ${cap}kbit ceil ${burst.kbps}kbit quantum 1500 burst 3028 cburst 3028`);
      leaves.push(`tc qdisc add dev ${D} parent 1:${m} handle ${m}: ${tbfArgs({ kbps: cap, depthBytes: tbfDepthBytes(cap, burst) }).join(' ')}`);
    }
  }
  const report = await divergences([
    veth,
    b(`tc qdisc add dev ${D} root handle 1: htb default ffff`, `tc class add dev ${D} parent 1: classid 1:1 htb rate 100000000kbit quantum 60000 burst 3028 cburst 3028`, ...classesOf),
    b(...leaves),
    qdiscs(),
    classes(),
  ]);
  assert.equal(report, '');
});

test('classes list in the kernel class-hash order, also after it grows and shrinks', async (t) => {
  if (!requireKernel(t)) return;
  const minors = [0xffff, 2, 3, 0x1a, 0x100, 0x77, 5, 0x4000, 0xfffe, 9, 0x10, 0x11, 0x33, 0x81, 0xabc, 7, 8, 0x200];
  const report = await divergences([
    veth,
    htb(...minors.map((m) => m.toString(16))),
    classes(),
    b(...minors.filter((_, i) => i % 3 === 0).map((m) => `tc class del dev ${D} classid 1:${m.toString(16)}`)),
    b(`tc class add dev ${D} parent 1: classid 1:4 htb rate 1mbit`, `tc class add dev ${D} parent 1: classid 1:6 htb rate 1mbit`),
    classes(),
  ]);
  assert.equal(report, '');
});

test('the engine itself, reconciling the same desired states, gets the same answers from both kernels', async (t) => {
  if (!requireKernel(t)) return;
  // Whatever the planner is (old or new layout), it must see the same reads and the same refusals.
  const peer = (id: string, minor: number, addresses: string[], up: number, down: number) => ({ type: 'peer' as const, id, classMinor: minor, addresses, upKbps: up, downKbps: down });
  const states: DesiredInterface['subjects'][] = [
    [peer('c1', 2, ['fd77::d0/128'], 100000, 1000), peer('c2', 3, ['10.77.1.113/32'], 20000, 8000), peer('c3', 4, ['fd77::12f/128'], 1000, 5000)],
    [peer('c1', 2, ['fd77::d0/128'], 100000, 1000), peer('c2', 3, ['10.77.1.113/32'], 20000, 1234), peer('c3', 4, ['fd77::12f/128'], 1000, 5000)],
    [peer('c1', 2, ['fd77::d0/128'], 100000, 1000), peer('c2', 3, ['10.77.1.113/32'], 20000, 1234), peer('c3', 4, ['fd77::12f/128'], 0, 2000)],
    [peer('c1', 2, ['fd77::d0/128'], 100000, 1000), peer('c2', 3, ['10.77.1.113/32'], 20000, 1234), peer('c3', 4, ['fd77::12f/128'], 1234, 1234)],
    [peer('c1', 2, ['fd77::d0/128'], 100000, 1000), peer('c2', 3, ['10.77.1.113/32'], 0, 1234), peer('c3', 4, ['fd77::12f/128'], 1234, 1234)],
    [peer('c1', 2, ['fd77::d0/128', '10.77.0.0/16'], 0, 1000), peer('c2', 3, ['10.77.1.113/32', '10.77.20.0/22'], 700, 0), peer('c3', 4, ['fd77::12f/128', 'fd00:1::/64'], 1234, 1234)],
    [peer('c2', 3, ['10.77.1.113/32'], 0, 0)],
    [],
  ];
  // Issue 14: network caps (every subject gets a class), guaranteed shares, and bursts (tbf leaves;
  // leaves that change kind; buckets whose tbf prints `lat` and ones that print `limit`).
  const totals: Pick<DesiredInterface, 'totalUpKbps' | 'totalDownKbps'>[] = states.map(() => ({}));
  const bursting = (subject: DesiredInterface['subjects'][number], kbps: number, bytes: number) => ({ ...subject, burst: { kbps, bytes } });
  const withMin = (subject: DesiredInterface['subjects'][number], minKbps: number) => ({ ...subject, minKbps });
  const issue14: [Pick<DesiredInterface, 'totalUpKbps' | 'totalDownKbps'>, DesiredInterface['subjects']][] = [
    [{ totalDownKbps: 30000 }, [peer('c1', 2, ['fd77::d0/128'], 0, 0), peer('c2', 3, ['10.77.1.113/32'], 0, 5000), peer('c3', 4, ['fd77::12f/128'], 0, 0)]],
    [{ totalDownKbps: 30000, totalUpKbps: 20000 }, [withMin(peer('c1', 2, ['fd77::d0/128'], 0, 0), 12000), peer('c2', 3, ['10.77.1.113/32'], 0, 5000), peer('c3', 4, ['fd77::12f/128'], 1000, 0)]],
    [{ totalDownKbps: 30000, totalUpKbps: 20000 }, [withMin(peer('c1', 2, ['fd77::d0/128'], 0, 0), 12000), bursting(peer('c2', 3, ['10.77.1.113/32'], 0, 5000), 20000, 2_000_000), bursting(peer('c3', 4, ['fd77::12f/128'], 1000, 0), 8000, 100_000)]],
    [{ totalDownKbps: 40000 }, [peer('c1', 2, ['fd77::d0/128'], 0, 0), bursting(peer('c2', 3, ['10.77.1.113/32'], 0, 5000), 30000, 4_000_000), peer('c3', 4, ['fd77::12f/128'], 1000, 0)]],
    [{}, [bursting(peer('c2', 3, ['10.77.1.113/32'], 2000, 5000), 30000, 4_000_000)]],
    [{}, [peer('c2', 3, ['10.77.1.113/32'], 2000, 5000)]],
    [{}, []],
  ];
  for (const [total, subjects] of issue14) {
    states.push(subjects);
    totals.push(total);
  }
  const report = await withBoth(async (kernel, sim, netns) => {
    const lines: string[] = [];
    for (const executor of [kernel, sim]) {
      await executor.batch([toOperation('ip link add wgsim0 type veth peer name wgsim0p'), toOperation('ip link set dev wgsim0 up'), toOperation('ip link set dev wgsim0p up')], netns);
    }
    const ifb = ifbNameFor('wgsim0', netns);
    const reads = (dev: string): Step[] => [qdiscs(dev), classes(dev), filters('1:', dev), filters('ffff:', dev)];
    for (const [index, subjects] of states.entries()) {
      const desired: DesiredInterface = { name: 'wgsim0', netns, kind: 'wireguard', subjects, ...totals[index] };
      for (let pass = 0; pass < 2; pass += 1) {
        const outcome = async (executor: Executor): Promise<string> => {
          try {
            const result = await reconcileInterface(desired, executor, { leaf: 'pfifo' });
            return `ok ${result.operations.length}`;
          } catch (error) {
            return error instanceof KernelError ? `error ${error.shortMessage}` : `throw ${String(error)}`;
          }
        };
        const real = await outcome(kernel);
        const simulated = await outcome(sim);
        if (real !== simulated) lines.push(`state ${index} pass ${pass}: kernel ${real} / sim ${simulated}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
        for (const step of [...reads('wgsim0'), link(ifb), ...reads(ifb).slice(0, 3)]) {
          const a = await runStep(kernel, step, netns);
          const c = await runStep(sim, step, netns);
          if (JSON.stringify(a) !== JSON.stringify(c)) lines.push(`state ${index} pass ${pass} ${'run' in step ? step.run.join(' ') : ''}:\n  kernel ${JSON.stringify(a)}\n  sim    ${JSON.stringify(c)}`);
        }
      }
    }
    return lines.join('\n');
  });
  assert.equal(report, '');
});
