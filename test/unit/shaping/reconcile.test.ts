import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatDoctor } from '../../../src/shaping/doctor.js';
import { KernelError } from '../../../src/shaping/errors.js';
import { ifbNameFor } from '../../../src/shaping/ifb-name.js';
import { KeyedMutex } from '../../../src/shaping/lock.js';
import type { Capabilities } from '../../../src/shaping/probe.js';
import { DesiredStateError, parseDesiredInterface } from '../../../src/shaping/model.js';
import type { Operation } from '../../../src/shaping/operations.js';
import { changeSubjectRate, changeSubjectRates } from '../../../src/shaping/rate-change.js';
import { planFromKernel, printPlan, reconcileInterface, removeInterface } from '../../../src/shaping/reconcile.js';
import { RecordingExecutor, type CannedResponse } from '../../../src/shaping/recording-executor.js';
import { FIXTURE_IFB, fixture, fixtureDesired, netcapDesired, type FixtureVariant } from './fixtures.js';

const NS = 'pbw-fixture';

/** A recorder that answers reads the way this kernel did for the fixture state (or the `netcap-` one). */
function kernelWithFixtureState(variant: FixtureVariant = ''): RecordingExecutor {
  const out = (stdout: string): CannedResponse => ({ stdout, stderr: '' });
  return new RecordingExecutor({
    outputs: {
      [`tc -n ${NS} -j qdisc show dev fx0`]: out(fixture(`${variant}qdisc-egress`)),
      [`tc -n ${NS} -s class show dev fx0`]: out(fixture(`${variant}class-egress`)),
      [`tc -n ${NS} -j filter show dev fx0 parent 1:`]: out(fixture(`${variant}filter-egress`)),
      [`tc -n ${NS} -j filter show dev fx0 parent ffff:`]: out(fixture('filter-ingress')),
      [`ip -n ${NS} -j link show dev ${FIXTURE_IFB}`]: out(fixture('ip-link-ifb')),
      [`tc -n ${NS} -j qdisc show dev ${FIXTURE_IFB}`]: out(fixture(`${variant}qdisc-ifb`)),
      [`tc -n ${NS} -s class show dev ${FIXTURE_IFB}`]: out(fixture(`${variant}class-ifb`)),
      [`tc -n ${NS} -j filter show dev ${FIXTURE_IFB} parent 1:`]: out(fixture(`${variant}filter-ifb`)),
    },
  });
}

test('reconcile reads the kernel and, when it already matches, changes nothing', async () => {
  const kernel = kernelWithFixtureState();
  const result = await reconcileInterface(fixtureDesired(), kernel, { leaf: 'pfifo' });
  assert.deepEqual(result, { operations: [], changed: false, interfaceExists: true, rejected: [] });
  assert.ok(kernel.calls.every((c) => c.kind === 'run'), 'reads only');
});

test('reconcile applies a rate change as one batch holding one class change', async () => {
  const kernel = kernelWithFixtureState();
  const desired = fixtureDesired();
  desired.subjects[2]!.upKbps = 64;
  const result = await reconcileInterface(desired, kernel, { leaf: 'pfifo' });
  assert.equal(result.changed, true);
  const batches = kernel.calls.filter((c) => c.kind === 'batch');
  assert.equal(batches.length, 1);
  assert.equal(batches[0]?.argv.join(' '), `tc -n ${NS} -batch -`);
  assert.equal(batches[0]?.kind === 'batch' ? batches[0].script : '', `class change dev ${FIXTURE_IFB} parent 1:1 classid 1:1a htb rate 64kbit ceil 64kbit quantum 1500 burst 3028 cburst 3028\n`);
});

test('a missing interface is reported, not an error', async () => {
  const kernel = new RecordingExecutor({ outputs: { 'tc -j qdisc show dev wg9': { error: 'Cannot find device "wg9"' } } });
  const result = await reconcileInterface({ name: 'wg9', kind: 'wireguard', subjects: [] }, kernel, { leaf: 'pfifo' });
  assert.deepEqual(result, { operations: [], changed: false, interfaceExists: false, rejected: [] });
});

test('removeInterface removes the tree, the ingress qdisc and the IFB', async () => {
  const kernel = kernelWithFixtureState();
  const result = await removeInterface('fx0', NS, kernel, { locks: new KeyedMutex() });
  assert.deepEqual(
    result.operations.map((o) => `${o.tool} ${o.argv.join(' ')}`),
    ['tc qdisc del dev fx0 root', 'tc qdisc del dev fx0 ingress', `ip link del dev ${FIXTURE_IFB}`],
  );
});

test('plan without running: against the kernel, or from scratch as printable commands', async () => {
  const desired = fixtureDesired();
  desired.subjects[0]!.downKbps = 9000;
  const ops = await planFromKernel(desired, kernelWithFixtureState(), { leaf: 'pfifo' });
  assert.equal(ops.length, 1);
  const text = printPlan({ name: 'wg0', kind: 'wireguard', subjects: [{ type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2'], upKbps: 0, downKbps: 8000 }] }, { leaf: 'pfifo' });
  assert.match(text, /^tc qdisc add dev wg0 root handle 1: htb default ffff {2}# engine's HTB on wg0$/m);
  assert.match(text, /^tc filter add dev wg0 parent 1: prio 5 protocol all handle 320:2:1 u32 ht 320:2: match ip dst 10\.0\.0\.2\/32 flowid 1:2 {2}# 10\.0\.0\.2\/32 → peer p1 down 8000 kbit\/s$/m);
  assert.doesNotMatch(text, new RegExp(ifbNameFor('wg0')));
});

test('doctor explains the leaf and classifier the planner will use', () => {
  const caps: Capabilities = {
    probed: true,
    iproute2Version: '6.1.0',
    permission: { root: true, capNetAdmin: true },
    qdiscs: { htb: true, ingress: true, clsact: true },
    leafQdiscs: { fq_codel: false, sfq: false, pfifo: true },
    classifiers: { u32: true, flower: false, matchall: false, bpf: true },
    actions: { mirred: true },
    ifb: true,
    wireguard: { kernelModule: false, wireguardGo: true },
    leaf: 'pfifo',
    classifier: 'u32',
    canShape: true,
  };
  const text = formatDoctor(caps);
  assert.match(text, /leaf qdisc: pfifo \(fq_codel and sfq are missing/);
  assert.match(text, /wireguard: kernel module no, wireguard-go yes/);
  assert.match(text, /up caps \(ingress → IFB\): yes/);
  assert.match(formatDoctor({ ...caps, probed: false, probeError: 'ip netns add: Operation not permitted' }), /probe: could not run \(ip netns add: Operation not permitted\)/);
});

test('a rate change through the fast path is one class change, with no read of the kernel', async () => {
  const kernel = new RecordingExecutor();
  const desired = fixtureDesired();
  desired.subjects[0]!.downKbps = 9000;
  const result = await changeSubjectRate(desired, 'a', { downKbps: 8000, upKbps: 4000 }, kernel, { leaf: 'pfifo' });
  assert.equal(result.fastPath, true);
  assert.deepEqual(kernel.calls.map((c) => c.argv.join(' ')), [`tc -n ${NS} -batch -`]);
  assert.deepEqual(result.operations.map((o) => o.argv.join(' ')), ['class change dev fx0 parent 1:1 classid 1:2 htb rate 9000kbit ceil 9000kbit quantum 60000 burst 11250 cburst 11250']);
});

test('a cap to or from 0 falls back to a full reconcile', async () => {
  const kernel = kernelWithFixtureState();
  const desired = fixtureDesired();
  desired.subjects[0]!.upKbps = 0;
  const result = await changeSubjectRate(desired, 'a', { downKbps: 8000, upKbps: 4000 }, kernel, { leaf: 'pfifo' });
  assert.equal(result.fastPath, false);
  assert.ok(result.operations.some((o) => o.argv.join(' ') === `class del dev ${FIXTURE_IFB} classid 1:2`));
});

test('when the kernel refuses the class change (class missing), the fast path falls back to reconcile', async () => {
  const desired = fixtureDesired();
  desired.subjects[0]!.downKbps = 9000;
  const kernel = kernelWithFixtureState();
  kernel.batch = async (operations) => {
    kernel.calls.push({ kind: 'batch', argv: ['tc', '-batch', '-'], operations: [...operations], script: '' });
    if (kernel.calls.filter((c) => c.kind === 'batch').length === 1) {
      throw new KernelError({ argv: ['tc', '-batch', '-'], stderr: 'Error: Specified class not found.', exitCode: 1, timedOut: false });
    }
  };
  const result = await changeSubjectRate(desired, 'a', { downKbps: 8000, upKbps: 4000 }, kernel, { leaf: 'pfifo' });
  assert.equal(result.fastPath, false);
  assert.equal(result.operations.length, 1, 'the reconcile found the one class to change');
});

test('the fast path checks the changed subject (a bad cap is a DesiredStateError naming it), not the whole interface', async () => {
  const kernel = new RecordingExecutor();
  const desired = fixtureDesired();
  desired.subjects[1]!.downKbps = -5;
  await assert.rejects(changeSubjectRate(desired, 'b', { downKbps: 1_234_567, upKbps: 0 }, kernel, { leaf: 'pfifo' }), (error: unknown) => {
    assert.ok(error instanceof DesiredStateError);
    assert.equal(error.field, 'subjects.1.downKbps');
    return true;
  });
  assert.equal(kernel.calls.length, 0, 'nothing ran');
  // Another subject's problem (two subjects on one class minor) is not this path's to find: the
  // full reconcile it falls back to, or the next one, refuses it.
  const clash = fixtureDesired();
  clash.subjects[2]!.classMinor = 2;
  clash.subjects[0]!.downKbps = 9000;
  const result = await changeSubjectRate(clash, 'a', { downKbps: 8000, upKbps: 4000 }, kernel, { leaf: 'pfifo' });
  assert.equal(result.fastPath, true);
  assert.throws(() => parseDesiredInterface(clash), DesiredStateError);
});

// ---- changeSubjectRates: several subjects, network caps, bursts ---------------------------------

const argvOf = (result: { operations: readonly Operation[] }): string[] => result.operations.map((o) => o.argv.join(' '));
const pfifo = { leaf: 'pfifo' } as const;

test('the reconcile under network caps reads the captured tree (tbf leaves, classes under 1:1) and changes nothing', async () => {
  const result = await reconcileInterface(netcapDesired(), kernelWithFixtureState('netcap-'), pfifo);
  assert.deepEqual(result, { operations: [], changed: false, interfaceExists: true, rejected: [] });
});

test('several subjects at once: one tc batch, a class change for each moved class and nothing for the rest', async () => {
  const kernel = new RecordingExecutor();
  const desired = fixtureDesired();
  desired.subjects[0]!.downKbps = 9000;
  desired.subjects[2]!.upKbps = 64;
  const result = await changeSubjectRates(
    desired,
    [
      { subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000 } },
      { subjectId: 'c', previous: { downKbps: 1, upKbps: 1 } },
    ],
    kernel,
    pfifo,
  );
  assert.equal(result.fastPath, true);
  assert.deepEqual(kernel.calls.map((c) => c.argv.join(' ')), [`tc -n ${NS} -batch -`]);
  assert.deepEqual(argvOf(result), [
    'class change dev fx0 parent 1:1 classid 1:2 htb rate 9000kbit ceil 9000kbit quantum 60000 burst 11250 cburst 11250',
    `class change dev ${FIXTURE_IFB} parent 1:1 classid 1:1a htb rate 64kbit ceil 64kbit quantum 1500 burst 3028 cburst 3028`,
  ]);
  // Nothing moved: nothing runs.
  const idle = new RecordingExecutor();
  const same = await changeSubjectRates(fixtureDesired(), [{ subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000 } }], idle, pfifo);
  assert.deepEqual([same.fastPath, same.changed, same.operations, idle.calls], [true, false, [], []]);
});

test('under a network cap a changed minimum moves the other subjects\' guarantees: their classes change too, on both sides', async () => {
  const kernel = new RecordingExecutor();
  const desired = netcapDesired();
  desired.subjects[1]!.minKbps = 10_000;
  const result = await changeSubjectRates(desired, [{ subjectId: 'b', previous: { downKbps: 1_234_567, upKbps: 0, minKbps: 5000 } }], kernel, pfifo);
  assert.equal(result.fastPath, true);
  // Down: 29992 − 10000 = 19992 / 3 = 6664 for a (cap 8000), c (1) and d. Up: 19992 − 10000 = 9992 / 3 = 3330.
  assert.deepEqual(argvOf(result), [
    'class change dev fx0 parent 1:1 classid 1:2 htb rate 6664kbit ceil 20000kbit quantum 60000 burst 8330 cburst 25000',
    'class change dev fx0 parent 1:1 classid 1:3 htb rate 10000kbit ceil 30000kbit quantum 60000 burst 12500 cburst 37500',
    'class change dev fx0 parent 1:1 classid 1:4 htb rate 6664kbit ceil 30000kbit quantum 60000 burst 8330 cburst 37500',
    `class change dev ${FIXTURE_IFB} parent 1:1 classid 1:2 htb rate 3330kbit ceil 20000kbit quantum 41625 burst 4163 cburst 25000`,
    `class change dev ${FIXTURE_IFB} parent 1:1 classid 1:3 htb rate 10000kbit ceil 20000kbit quantum 60000 burst 12500 cburst 25000`,
    `class change dev ${FIXTURE_IFB} parent 1:1 classid 1:4 htb rate 3330kbit ceil 20000kbit quantum 41625 burst 4163 cburst 25000`,
  ]);
  // The full reconcile against the captured tree agrees with the fast path.
  assert.deepEqual(argvOf({ operations: await planFromKernel(desired, kernelWithFixtureState('netcap-'), pfifo) }), argvOf(result));
});

test('under a network cap a cap from 0 is a class change (the class is there already)', async () => {
  const kernel = new RecordingExecutor();
  const desired = netcapDesired();
  desired.subjects[3]!.downKbps = 5000;
  const result = await changeSubjectRates(desired, [{ subjectId: 'd', previous: { downKbps: 0, upKbps: 0 } }], kernel, pfifo);
  assert.equal(result.fastPath, true);
  assert.deepEqual(argvOf(result), ['class change dev fx0 parent 1:1 classid 1:4 htb rate 5000kbit ceil 5000kbit quantum 60000 burst 6250 cburst 6250']);
});

test('a burst that holds more bytes: the tbf leaf gets its new depth with `qdisc replace`, the class is untouched', async () => {
  const kernel = new RecordingExecutor();
  const desired = netcapDesired();
  desired.subjects[0]!.burst = { kbps: 20_000, bytes: 3_000_000 };
  const result = await changeSubjectRates(desired, [{ subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000, burst: { kbps: 20_000, bytes: 2_000_000 } } }], kernel, pfifo);
  assert.equal(result.fastPath, true);
  assert.deepEqual(argvOf(result), [
    'qdisc replace dev fx0 parent 1:2 handle 2: tbf rate 8000kbit burst 1800000 limit 300000',
    `qdisc replace dev ${FIXTURE_IFB} parent 1:2 handle 2: tbf rate 4000kbit burst 2400000 limit 300000`,
  ]);
  assert.deepEqual(argvOf({ operations: await planFromKernel(desired, kernelWithFixtureState('netcap-'), pfifo) }), argvOf(result));
});

test('a bursting subject\'s cap change: class and tbf change together, hitless', async () => {
  const kernel = new RecordingExecutor();
  const desired = netcapDesired();
  desired.subjects[0]!.downKbps = 10_000;
  const result = await changeSubjectRates(desired, [{ subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000, burst: { kbps: 20_000, bytes: 2_000_000 } } }], kernel, pfifo);
  assert.equal(result.fastPath, true);
  // Share 8330 (below its new cap), ceil still the burst rate; depth 2000000 × (1 − 10000/20000).
  assert.deepEqual(argvOf(result), [
    'class change dev fx0 parent 1:1 classid 1:2 htb rate 8330kbit ceil 20000kbit quantum 60000 burst 10413 cburst 25000',
    'qdisc replace dev fx0 parent 1:2 handle 2: tbf rate 10000kbit burst 1000000 limit 300000',
  ]);
});

test('fallbacks to a full reconcile: a class that appears, a tbf that appears or goes, a subject the interface does not hold', async () => {
  // No network cap: b's up cap from 0 adds a class on the IFB.
  const up = fixtureDesired();
  up.subjects[1]!.upKbps = 500;
  const appears = await changeSubjectRates(up, [{ subjectId: 'b', previous: { downKbps: 1_234_567, upKbps: 0 } }], kernelWithFixtureState(), pfifo);
  assert.equal(appears.fastPath, false);
  assert.ok(argvOf(appears).includes(`class add dev ${FIXTURE_IFB} parent 1:1 classid 1:3 htb rate 500kbit ceil 500kbit quantum 6250 burst 3028 cburst 3028`));

  // A burst that starts: the leaf changes kind.
  const starts = fixtureDesired();
  starts.subjects[0]!.burst = { kbps: 20_000, bytes: 2_000_000 };
  const tbfAppears = await changeSubjectRates(starts, [{ subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000 } }], kernelWithFixtureState(), pfifo);
  assert.equal(tbfAppears.fastPath, false);
  assert.ok(argvOf(tbfAppears).includes('qdisc del dev fx0 parent 1:2'));
  assert.ok(argvOf(tbfAppears).includes('qdisc add dev fx0 parent 1:2 handle 2: tbf rate 8000kbit burst 1200000 limit 300000'));

  // A burst that ends.
  const ends = netcapDesired();
  delete ends.subjects[0]!.burst;
  const tbfGoes = await changeSubjectRates(ends, [{ subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000, burst: { kbps: 20_000, bytes: 2_000_000 } } }], kernelWithFixtureState('netcap-'), pfifo);
  assert.equal(tbfGoes.fastPath, false);
  assert.ok(argvOf(tbfGoes).includes(`qdisc add dev ${FIXTURE_IFB} parent 1:2 handle 2: pfifo limit 200`));

  // A burst no faster than the new cap is no burst: the tbf goes.
  const overtaken = netcapDesired();
  overtaken.subjects[0]!.downKbps = 20_000;
  const capped = await changeSubjectRates(overtaken, [{ subjectId: 'a', previous: { downKbps: 8000, upKbps: 4000, burst: { kbps: 20_000, bytes: 2_000_000 } } }], kernelWithFixtureState('netcap-'), pfifo);
  assert.equal(capped.fastPath, false);
  assert.ok(argvOf(capped).includes('qdisc add dev fx0 parent 1:2 handle 2: pfifo limit 200'));

  // A subject that is not on the interface.
  const gone = await changeSubjectRates(fixtureDesired(), [{ subjectId: 'zz', previous: { downKbps: 1, upKbps: 1 } }], kernelWithFixtureState(), pfifo);
  assert.deepEqual([gone.fastPath, gone.changed], [false, false]);
});

test('a KernelError in the fast path of several subjects falls back to one reconcile that repairs them all', async () => {
  const desired = netcapDesired();
  desired.subjects[1]!.minKbps = 10_000;
  const kernel = kernelWithFixtureState('netcap-');
  let batches = 0;
  kernel.batch = async (operations) => {
    kernel.calls.push({ kind: 'batch', argv: ['tc', '-batch', '-'], operations: [...operations], script: '' });
    batches += 1;
    if (batches === 1) throw new KernelError({ argv: ['tc', '-batch', '-'], stderr: 'Error: Specified class not found.', exitCode: 1, timedOut: false });
  };
  const result = await changeSubjectRates(desired, [{ subjectId: 'b', previous: { downKbps: 1_234_567, upKbps: 0, minKbps: 5000 } }], kernel, pfifo);
  assert.equal(result.fastPath, false);
  assert.equal(batches, 2);
  assert.equal(result.operations.length, 6, 'the reconcile found the six classes to change');
  assert.ok(kernel.calls.some((c) => c.kind === 'run' && c.argv.join(' ') === `tc -n ${NS} -s class show dev fx0`), 'it read the kernel');
});
