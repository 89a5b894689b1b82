import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { DesiredInterface, DesiredSubject } from '../../src/shaping/model.js';
import { probeCapabilities, type Capabilities } from '../../src/shaping/probe.js';
import { changeSubjectRates } from '../../src/shaping/rate-change.js';
import { readActual } from '../../src/shaping/read.js';
import { reconcileInterface, type ReconcileResult } from '../../src/shaping/reconcile.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperfReport, Lab, labRequirements, type IperfReport, type WireGuardLab } from '../support/lab.js';
import {
  assertCountersKept,
  assertFigures,
  classBytes,
  firstIntervalFrom,
  formatIntervals,
  leadingAbove,
  operationKinds,
  rateBetween,
  secondsInto,
  timeToBytes,
  type Figure,
} from '../support/lab-sharing.js';
import { until } from '../support/poll.js';

const { available, reason } = labRequirements();

/** TCP's slow start and the first queue fill: left out of every steady rate. */
const RAMP_SECONDS = 1;
/**
 * The last half second of a transfer is left out too: transfers side by side stop a few tens of
 * milliseconds apart, and the receiver then reads what was queued (up to 21 Mbit/s in a half second
 * of a 15 Mbit/s share, seen on a loaded machine).
 */
const END_SECONDS = 0.5;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Caps of one peer in a step of the test; everything absent is 0 / none. */
type PeerState = Partial<Pick<DesiredSubject, 'downKbps' | 'upKbps' | 'minKbps' | 'burst'>>;

describe('Network caps, fair shares and bursts on a wireguard-go interface', { concurrency: false }, () => {
  const lab = new Lab();
  let wg: WireGuardLab;
  let caps: Capabilities;
  let desired: DesiredInterface;
  const PEERS = ['p1', 'p2', 'p3'] as const;
  type Peer = (typeof PEERS)[number];
  const ADDRESSES: Record<Peer, string> = { p1: '10.66.0.11', p2: '10.66.0.12', p3: '10.66.0.13' };

  /**
   * Sets the interface's whole desired state and reconciles. A peer without caps is a subject only
   * under a network cap (as the panel sends it: then every peer has a class).
   */
  const shape = (network: { downKbps?: number; upKbps?: number }, peers: Partial<Record<Peer, PeerState>> = {}): Promise<ReconcileResult> => {
    const networkCapped = (network.downKbps ?? 0) > 0 || (network.upKbps ?? 0) > 0;
    desired = {
      name: wg.ifname,
      netns: wg.ns,
      kind: 'wireguard',
      ...(network.downKbps ? { totalDownKbps: network.downKbps } : {}),
      ...(network.upKbps ? { totalUpKbps: network.upKbps } : {}),
      subjects: PEERS.map((id, index): DesiredSubject => ({
        type: 'peer',
        id,
        classMinor: index + 2,
        addresses: [`${ADDRESSES[id]}/32`],
        downKbps: 0,
        upKbps: 0,
        ...peers[id],
      })).filter((s) => networkCapped || s.downKbps > 0 || s.upKbps > 0),
    };
    return reconcileInterface(desired, lab.executor, caps);
  };
  const subject = (id: Peer): DesiredSubject => {
    const found = desired.subjects.find((s) => s.id === id);
    assert.ok(found, id);
    return found;
  };
  const peerNs = (id: Peer): string => {
    const peer = wg.peers.find((p) => p.addresses.includes(ADDRESSES[id]));
    assert.ok(peer, id);
    return peer.ns;
  };
  /** A TCP transfer to the peer (its download: egress of the wg interface), receiver reports every `interval` s. */
  const down = (id: Peer, seconds: number, interval = 0.5): Promise<IperfReport> =>
    iperfReport(lab, { serverNs: peerNs(id), clientNs: wg.ns, target: ADDRESSES[id], seconds, omitSeconds: 0, intervalSeconds: interval });
  /** A TCP transfer from the peer (its upload: through the IFB). */
  const up = (id: Peer, seconds: number, interval = 0.5): Promise<IperfReport> =>
    iperfReport(lab, { serverNs: peerNs(id), clientNs: wg.ns, target: ADDRESSES[id], seconds, omitSeconds: 0, intervalSeconds: interval, reverse: true });
  /** The steady window of transfers run side by side: from the last start plus the ramp to the first end. */
  const together = (reports: IperfReport[], seconds: number): ((report: IperfReport) => number) => {
    const from = Math.max(...reports.map((r) => r.startedAt)) + RAMP_SECONDS * 1000;
    const to = Math.min(...reports.map((r) => r.startedAt)) + (seconds - END_SECONDS) * 1000;
    return (report) => rateBetween(report, secondsInto(report, from), secondsInto(report, to));
  };

  before(async () => {
    if (!available) return;
    caps = await probeCapabilities(lab.executor);
    wg = await createWireGuardLab(lab, PEERS.map((id) => ({ addresses: [ADDRESSES[id]] })));
  });
  after(() => lab.close());

  test('three peers saturating a 30 Mbit/s network cap get 10 each; when one stops the other two get 15 each within 2 s', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await shape({ downKbps: 30_000, upKbps: 30_000 });
    // One-second reports (a half second's is shaken by when the receiver gets the CPU). p3 starts
    // first, so that it stops just before a report of p1 and p2 starts: the first one starting 2 s
    // or more after the stop then starts just over 2 s after it.
    const p3Transfer = down('p3', 6, 1);
    p3Transfer.catch(() => undefined); // awaited below; a failure meanwhile is not unhandled
    await sleep(300);
    const [p1, p2, p3] = await Promise.all([down('p1', 12, 1), down('p2', 12, 1), p3Transfer]);
    const steady = together([p1, p2, p3], 6);
    const stoppedAt = p3.startedAt + 6000;
    const figures: Figure[] = [
      { label: 'down, 3 peers under 30 Mbit/s: p1', bitsPerSecond: steady(p1), expectedKbps: 10_000 },
      { label: 'down, 3 peers under 30 Mbit/s: p2', bitsPerSecond: steady(p2), expectedKbps: 10_000 },
      { label: 'down, 3 peers under 30 Mbit/s: p3', bitsPerSecond: steady(p3), expectedKbps: 10_000 },
    ];
    for (const [id, report] of [['p1', p1], ['p2', p2]] as const) {
      t.diagnostic(`down, ${id} Mbit/s every second (p3 stops at ${secondsInto(report, stoppedAt).toFixed(2)} s): ${formatIntervals(report)}`);
      const twoSecondsOn = secondsInto(report, stoppedAt + 2000);
      const first = firstIntervalFrom(report, twoSecondsOn);
      figures.push(
        { label: `down, p3 stopped: ${id} in ${first.start.toFixed(1)}-${first.end.toFixed(1)} s (${(first.start - twoSecondsOn + 2).toFixed(2)} s after the stop)`, bitsPerSecond: first.bitsPerSecond, expectedKbps: 15_000 },
        { label: `down, p3 stopped: ${id} from 2 s after the stop to the end`, bitsPerSecond: rateBetween(report, twoSecondsOn, 12 - END_SECONDS), expectedKbps: 15_000 },
      );
    }
    assertFigures(t, figures);
  });

  test('uploads through the IFB share a 30 Mbit/s network cap: 10 each', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await shape({ downKbps: 30_000, upKbps: 30_000 });
    const reports = await Promise.all(PEERS.map((id) => up(id, 6)));
    const steady = together(reports, 6);
    assertFigures(t, reports.map((report, i) => ({ label: `up, 3 peers under 30 Mbit/s: ${PEERS[i]}`, bitsPerSecond: steady(report), expectedKbps: 10_000 })));
  });

  test('a peer capped at 5 Mbit/s under a 30 Mbit/s network cap stays at 5; the other two share the rest', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await shape({ downKbps: 30_000, upKbps: 30_000 }, { p1: { downKbps: 5000 } });
    const [p1, p2, p3] = await Promise.all([down('p1', 7), down('p2', 7), down('p3', 7)]);
    const steady = together([p1, p2, p3], 7);
    assertFigures(t, [
      { label: 'down, p1 capped at 5 under 30 Mbit/s: p1', bitsPerSecond: steady(p1), expectedKbps: 5000 },
      { label: 'down, p1 capped at 5 under 30 Mbit/s: p2', bitsPerSecond: steady(p2), expectedKbps: 12_500 },
      { label: 'down, p1 capped at 5 under 30 Mbit/s: p3', bitsPerSecond: steady(p3), expectedKbps: 12_500 },
    ]);
  });

  test('a network cap, a guaranteed share and several peers\' rates change with class changes only; no class counter restarts', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await shape({ downKbps: 30_000, upKbps: 30_000 }, { p1: { downKbps: 5000 }, p2: { downKbps: 12_000 }, p3: { downKbps: 12_000 } });
    const seconds = 11;
    const launched = Date.now();
    const transfers = Promise.all([down('p1', seconds), down('p2', seconds), down('p3', seconds)]);
    // The transfers fail the test on their own if they fail; until they settle, the steps below run beside them.
    transfers.catch(() => undefined);
    const counters = () => classBytes(lab.executor, wg.ifname, wg.ns);
    const egressClass = (minor: number) => `${wg.ifname} 1:${minor}`;
    await until('traffic in the three peers\' classes', counters, (c) => [2, 3, 4].every((minor) => (c.get(egressClass(minor)) ?? 0n) > 500_000n), 5000);

    const steps: { name: string; at: number; run: () => Promise<ReconcileResult & { fastPath?: boolean }> }[] = [
      {
        name: 'network cap 30 → 24 Mbit/s',
        at: 2000,
        run: () => {
          desired.totalDownKbps = 24_000;
          return reconcileInterface(desired, lab.executor, caps);
        },
      },
      {
        name: 'p2 guaranteed 12 Mbit/s',
        at: 4500,
        run: () => {
          subject('p2').minKbps = 12_000;
          return reconcileInterface(desired, lab.executor, caps);
        },
      },
      {
        name: 'p2 and p3 from 12 to 9 Mbit/s (a network default changed)',
        at: 7000,
        run: () => {
          subject('p2').downKbps = 9000;
          subject('p3').downKbps = 9000;
          return changeSubjectRates(
            desired,
            [
              { subjectId: 'p2', previous: { downKbps: 12_000, upKbps: 0, minKbps: 12_000 } },
              { subjectId: 'p3', previous: { downKbps: 12_000, upKbps: 0 } },
            ],
            lab.executor,
            caps,
          );
        },
      },
    ];
    const changedAt: number[] = [];
    let afterLast = new Map<string, bigint>();
    try {
      for (const step of steps) {
        // A schedule, not a condition: each step gets a stretch of the transfers to itself.
        await sleep(launched + step.at - Date.now());
        const before = await counters();
        const result = await step.run();
        changedAt.push(Date.now());
        afterLast = await counters();
        const kinds = operationKinds(result.operations);
        t.diagnostic(`${step.name}: ${kinds.length} operations (${[...new Set(kinds)].join(', ')})${result.fastPath === undefined ? '' : `, fast path ${result.fastPath}`}`);
        assert.ok(kinds.length > 0, `${step.name}: something changed`);
        assert.deepEqual(kinds.filter((kind) => kind !== 'tc class change'), [], `${step.name}: class changes only`);
        assertCountersKept(before, afterLast, step.name);
      }
    } finally {
      // A failed step leaves no transfer running into the next test.
      await transfers.catch(() => undefined);
    }
    const reports = await transfers;
    const [p1, p2, p3] = reports;
    // The peers' classes kept counting after the last change.
    const end = await counters();
    assertCountersKept(afterLast, end, 'after the transfers');
    for (const minor of [2, 3, 4]) assert.ok((end.get(egressClass(minor)) ?? 0n) > (afterLast.get(egressClass(minor)) ?? 0n), `class 1:${minor} kept counting`);

    const window = (report: IperfReport, from: number, to: number) => rateBetween(report, secondsInto(report, from) + RAMP_SECONDS, Math.min(secondsInto(report, to), seconds - END_SECONDS));
    const [capChanged, minChanged, ratesChanged] = changedAt as [number, number, number];
    const finish = Math.min(...reports.map((r) => r.startedAt)) + seconds * 1000;
    assertFigures(t, [
      { label: 'down under 24 Mbit/s: p1 (own cap 5)', bitsPerSecond: window(p1, capChanged, minChanged), expectedKbps: 5000 },
      { label: 'down under 24 Mbit/s: p2 (cap 12)', bitsPerSecond: window(p2, capChanged, minChanged), expectedKbps: 9500 },
      { label: 'down under 24 Mbit/s: p3 (cap 12)', bitsPerSecond: window(p3, capChanged, minChanged), expectedKbps: 9500 },
      { label: 'down under 24 Mbit/s, p2 guaranteed 12: p1', bitsPerSecond: window(p1, minChanged, ratesChanged), expectedKbps: 5000 },
      { label: 'down under 24 Mbit/s, p2 guaranteed 12: p2', bitsPerSecond: window(p2, minChanged, ratesChanged), expectedKbps: 12_000 },
      { label: 'down under 24 Mbit/s, p2 guaranteed 12: p3', bitsPerSecond: window(p3, minChanged, ratesChanged), expectedKbps: 7000 },
      { label: 'down under 24 Mbit/s, p2 and p3 at 9: p1', bitsPerSecond: window(p1, ratesChanged, finish), expectedKbps: 5000 },
      { label: 'down under 24 Mbit/s, p2 and p3 at 9: p2', bitsPerSecond: window(p2, ratesChanged, finish), expectedKbps: 9000 },
      { label: 'down under 24 Mbit/s, p2 and p3 at 9: p3', bitsPerSecond: window(p3, ratesChanged, finish), expectedKbps: 9000 },
    ]);
  });

  test('a burst: after an idle period the first burst bytes arrive at the burst rate, then the cap holds', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const cap = 5000;
    const burst = { kbps: 20_000, bytes: 5_000_000 };
    await shape({}, { p1: { downKbps: cap, burst } });
    const seconds = 7;
    // The latest the burst can end: a bucket of all `bytes`, emptied at burst − cap.
    const burstEnds = (burst.bytes * 8) / ((burst.kbps - cap) * 1000);
    // Reports every 0.1 s: the moment the first `bytes` are in is read inside one report, as if its
    // rate were even, and the fall to the cap comes right about then.
    const fresh = await down('p1', seconds, 0.1);
    // Idle long enough for the bucket to refill at the cap, then burst again.
    const idle = (burst.bytes * 8) / cap;
    await sleep(idle);
    const again = await down('p1', 4, 0.1);
    t.diagnostic(`burst, Mbit/s every 0.5 s after creation: ${formatIntervals(fresh, 0.5)}`);
    t.diagnostic(`burst, Mbit/s every 0.5 s after ${idle / 1000} s idle: ${formatIntervals(again, 0.5)}`);
    // The bucket counts what the shaper counts (IP packets, as every cap does); iperf3 reports TCP
    // payload, 1368 of every 1420 bytes here. So the burst's figures are its rate while it lasts and
    // the payload it carried before the rate fell, each against what was asked (the same ~96 % any cap
    // measures as goodput), not the time to the 5,000,000th payload byte, which adds the slice of the
    // last packets' headers sent at the cap (printed for reference).
    const first = timeToBytes(fresh, burst.bytes);
    const second = timeToBytes(again, burst.bytes);
    t.diagnostic(`burst: the first ${burst.bytes} payload bytes in ${first.seconds.toFixed(2)} s (fresh), ${second.seconds.toFixed(2)} s (after idle)`);
    // Before the rate falls: the intervals above halfway between the burst rate and the cap.
    const threshold = ((burst.kbps + cap) / 2) * 1000;
    const phase = leadingAbove(fresh, threshold);
    const rephase = leadingAbove(again, threshold);
    assertFigures(t, [
      { label: `burst 20 Mbit/s, cap 5: before the rate falls, ${phase.bytes} bytes in ${phase.seconds.toFixed(1)} s`, bitsPerSecond: phase.bitsPerSecond, expectedKbps: burst.kbps },
      { label: `burst: then from ${(burstEnds + RAMP_SECONDS).toFixed(1)} s to ${seconds - END_SECONDS} s`, bitsPerSecond: rateBetween(fresh, burstEnds + RAMP_SECONDS, seconds - END_SECONDS), expectedKbps: cap },
      { label: `burst after ${(idle / 1000).toFixed(0)} s idle: before the rate falls, ${rephase.bytes} bytes in ${rephase.seconds.toFixed(1)} s`, bitsPerSecond: rephase.bitsPerSecond, expectedKbps: burst.kbps },
    ]);
    for (const [label, bytes] of [['fresh', phase.bytes], ['after idle', rephase.bytes]] as const) {
      const share = bytes / burst.bytes;
      t.diagnostic(`burst (${label}): ${bytes} payload bytes at the burst rate = ${(share * 100).toFixed(1)} % of ${burst.bytes}`);
      assert.ok(share >= 0.85 && share <= 1.02, `burst (${label}): ${bytes} bytes at the burst rate is ${(share * 100).toFixed(1)} % of ${burst.bytes}, outside 85-102 %`);
    }
  });

  test('unlimited costs nothing: no network cap and no capped peer leave no engine qdisc and no IFB', async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    await shape({ downKbps: 30_000, upKbps: 30_000 }, { p1: { downKbps: 5000, burst: { kbps: 20_000, bytes: 5_000_000 } } });
    assert.equal((await shape({})).changed, true, 'the trees are removed');
    const actual = await readActual(lab.executor, wg.ifname, wg.ns);
    assert.deepEqual(actual.egress?.qdiscs.filter((q) => q.kind === 'htb' || q.kind === 'ingress' || q.kind === 'tbf' || !q.root), []);
    assert.equal(actual.ifb.exists, false);
    assert.equal((await shape({})).changed, false, 'and nothing to do next time');
  });
});
