import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Collector } from '../../src/accounting/collector.js';
import { totalsBySubject } from '../../src/accounting/queries.js';
import type { Rate } from '../../src/accounting/rates.js';
import { utilisation } from '../../src/accounting/utilisation.js';
import { connect } from '../../src/db/connect.js';
import { createMetrics } from '../../src/routes/metrics.js';
import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { readTree } from '../../src/shaping/read.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperf, Lab, labRequirements, waitFor, type IperfResult, type WireGuardLab } from '../support/lab.js';
import { startPanelProcess, type ApiResponse, type PanelProcess } from '../support/lab-panel.js';

const { available, reason } = labRequirements();

const CAP_KBPS = 8000;
/** How far above the cap the class-based figure may read: HTB's burst and the few ms between two reads. */
const TOLERANCE_PERCENT = 2;

interface Counter {
  bytes: bigint;
  packets: bigint;
}

/** What the test reads itself, independently of the plugin, in the server's namespace. */
interface Reading {
  at: number;
  /** `wg show dump` of each peer: transfer-rx (its up) and transfer-tx (its down). */
  wg: Map<string, { rx: bigint; tx: bigint }>;
  /** alice's HTB class: on the wg interface's egress (her down), on the IFB (her up). */
  classDown: Counter;
  classUp: Counter;
  /** The veth that carries alice's tunnel (UDP/IP in Ethernet frames): what the uplink sees. */
  underlayTx: Counter;
  underlayRx: Counter;
}

function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

const pct = (part: number, whole: number) => `${((part / whole) * 100).toFixed(2)}%`;

test('utilisation divides the bytes a cap governs by the cap: at most 100% under a saturating flow, while WireGuard\'s counters pass the cap', { timeout: 240_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  let wg!: WireGuardLab;
  let panel!: PanelProcess;
  await Promise.all([
    createWireGuardLab(lab, [{ addresses: ['10.66.0.11'] }, { addresses: ['10.66.0.12'] }]).then((built) => (wg = built)),
    // The panel applies the caps; the ticks are the test's own, taken when it says.
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 86400, collect_interval_s: 86400 } }).then((started) => (panel = started)),
  ]);
  const [alice, bob] = wg.peers as [WireGuardLab['peers'][number], WireGuardLab['peers'][number]];

  const network = await panel.post('/api/networks', { name: 'tunnel', interface: wg.ifname, netns: wg.ns });
  expectStatus(network, 201, 'POST /api/networks');
  const networkId = network.body.network.id as number;
  const created = await panel.post(`/api/networks/${networkId}/peers`, {
    name: 'alice', public_key: alice.publicKey, allowed_ips: ['10.66.0.11/32'], bandwidth_up_kbps: CAP_KBPS, bandwidth_down_kbps: CAP_KBPS,
  });
  expectStatus(created, 201, 'POST peer alice');
  assert.equal(created.body.peer.bandwidth_status, 'applied', 'alice\'s caps are in the kernel');
  const aliceId = created.body.peer.id as number;
  const bobCreated = await panel.post(`/api/networks/${networkId}/peers`, { name: 'bob', public_key: bob.publicKey, allowed_ips: ['10.66.0.12/32'] });
  expectStatus(bobCreated, 201, 'POST peer bob');
  const bobId = bobCreated.body.peer.id as number;
  const limits = await panel.get(`/api/bandwidth/limits?network_id=${networkId}`);
  expectStatus(limits, 200, 'GET /api/bandwidth/limits');
  const classId = (limits.body.limits as { subject_id: string; class_id: string | null }[]).find((l) => l.subject_id === String(aliceId))?.class_id;
  assert.ok(classId, 'alice has a class');
  const minor = Number.parseInt(classId.split(':')[1]!, 16);
  const ifb = ifbNameFor(wg.ifname, wg.ns);
  const underlay = `pu${lab.id}h1`;

  const db = connect(panel.databaseUrl);
  t.after(() => db.destroy());
  const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
  const collectors = {
    wire: new Collector({ db, executor: lab.executor, logger: silent, billing: 'wire' }),
    inner: new Collector({ db, executor: lab.executor, logger: silent, billing: 'inner' }),
  };

  const classOf = async (device: string): Promise<Counter> => {
    const counters = (await readTree(lab.executor, device, wg.ns))?.classes.find((c) => c.major === 1 && c.minor === minor)?.counters;
    assert.ok(counters, `class 1:${minor.toString(16)} on ${device}`);
    return { bytes: counters.bytes, packets: counters.packets };
  };
  const read = async (): Promise<Reading> => {
    const dump = (await lab.executor.run(['wg', 'show', wg.ifname, 'dump'], { netns: wg.ns })).stdout.trim().split('\n').slice(1);
    const files = ['tx_bytes', 'tx_packets', 'rx_bytes', 'rx_packets'].map((file) => `/sys/class/net/${underlay}/statistics/${file}`);
    const [txBytes, txPackets, rxBytes, rxPackets] = (await lab.executor.run(['cat', ...files], { netns: wg.ns })).stdout.trim().split('\n').map(BigInt);
    return {
      at: Date.now(),
      wg: new Map(dump.map((line) => line.split('\t')).map((f) => [f[0]!, { rx: BigInt(f[5]!), tx: BigInt(f[6]!) }])),
      classDown: await classOf(wg.ifname),
      classUp: await classOf(ifb),
      underlayTx: { bytes: txBytes!, packets: txPackets! },
      underlayRx: { bytes: rxBytes!, packets: rxPackets! },
    };
  };
  const same = (a: Reading, b: Reading) =>
    a.classDown.bytes === b.classDown.bytes && a.classUp.bytes === b.classUp.bytes && a.underlayTx.bytes === b.underlayTx.bytes &&
    a.underlayRx.bytes === b.underlayRx.bytes && [...a.wg].every(([key, v]) => b.wg.get(key)?.rx === v.rx && b.wg.get(key)?.tx === v.tx);
  /** A collector tick between two identical readings of our own: it read exactly these numbers. */
  const idleTick = (collector: Collector) =>
    waitFor('a collector tick with no packet around it', async () => {
      const before = await read();
      await collector.tick();
      const after = await read();
      return same(before, after) ? after : undefined;
    }, 60_000, 0);
  const aliceWg = (r: Reading) => r.wg.get(alice.publicKey)!;

  /**
   * One saturating flow to or from alice: an idle tick before, two ticks inside the flow once her
   * class carries it (the rate between them is what the pages show), an idle tick after.
   */
  async function measure(collector: Collector, flow: () => Promise<IperfResult>, direction: 'up' | 'down') {
    const classBytes = (r: Reading) => (direction === 'down' ? r.classDown.bytes : r.classUp.bytes);
    const before = await idleTick(collector);
    const running = flow();
    await waitFor('the flow to fill alice\'s class', async () => classBytes(await read()) - classBytes(before) >= 1_500_000n, 15_000, 50);
    await collector.tick();
    const start = await read();
    // ~4 s at the cap: the measured interval is long against the few ms between two readings.
    await waitFor('4 MB more through alice\'s class', async () => classBytes(await read()) - classBytes(start) >= 4_000_000n, 15_000, 100);
    await collector.tick();
    const rate = collector.rates().get(`peer:${aliceId}`);
    // What Prometheus would scrape now, from the same collector.
    const exposition = await createMetrics(db, collector).scrape();
    const goodput = await running;
    const after = await idleTick(collector);
    return { before, after, rate, goodput, exposition };
  }

  /** WireGuard's and the uplink's bytes against the class's, over a whole flow (idle readings: exact). */
  function overhead(before: Reading, after: Reading, direction: 'up' | 'down') {
    const klass = direction === 'down' ? { bytes: after.classDown.bytes - before.classDown.bytes, packets: after.classDown.packets - before.classDown.packets }
      : { bytes: after.classUp.bytes - before.classUp.bytes, packets: after.classUp.packets - before.classUp.packets };
    const wire = direction === 'down' ? aliceWg(after).tx - aliceWg(before).tx : aliceWg(after).rx - aliceWg(before).rx;
    const uplink = direction === 'down' ? after.underlayTx.bytes - before.underlayTx.bytes : after.underlayRx.bytes - before.underlayRx.bytes;
    const perPacket = (bytes: bigint) => Number(bytes - klass.bytes) / Number(klass.packets);
    return {
      klass,
      wire,
      uplink,
      wgPerPacket: perPacket(wire),
      uplinkPerPacket: perPacket(uplink),
      text: `${klass.packets} packets, ${klass.bytes} B through the class (${(Number(klass.bytes) / Number(klass.packets)).toFixed(0)} B average); ` +
        `wg counters ${wire} B (+${perPacket(wire).toFixed(1)} B/packet, +${pct(Number(wire - klass.bytes), Number(klass.bytes))}); ` +
        `underlay Ethernet ${uplink} B (+${perPacket(uplink).toFixed(1)} B/packet, +${pct(Number(uplink - klass.bytes), Number(klass.bytes))})`,
    };
  }

  function assertUtilisation(rate: Rate | undefined, direction: 'up' | 'down', label: string): string {
    assert.ok(rate, `${label}: a rate for alice`);
    const use = utilisation({ upKbps: CAP_KBPS, downKbps: CAP_KBPS }, rate);
    const classKbps = direction === 'down' ? rate.classDownKbps : rate.classUpKbps;
    assert.ok(use && classKbps !== null, `${label}: class counters counted`);
    assert.equal(use.basis, 'class', `${label}: like with like`);
    assert.ok(use.percent <= 100 + TOLERANCE_PERCENT, `${label}: utilisation ${use.percent}% (class ${classKbps} kbit/s), expected at most ${100 + TOLERANCE_PERCENT}%`);
    assert.ok(classKbps >= 0.85 * CAP_KBPS, `${label}: the flow saturates the cap (class ${classKbps} kbit/s)`);
    return `${label}: utilisation ${use.percent}% (class ${classKbps} kbit/s of ${CAP_KBPS})`;
  }

  await t.test('UDP at 1.5× the cap in 600-byte datagrams to alice: the class says ≤ 100%, WireGuard\'s counters say more than the cap', async (t) => {
    const udp = () => iperf(lab, { serverNs: alice.ns, clientNs: wg.ns, target: '10.66.0.11', seconds: 10, omitSeconds: 0, udp: { mbps: 12, length: 600 } });
    const { before, after, rate, exposition } = await measure(collectors.wire, udp, 'down');
    t.diagnostic(assertUtilisation(rate, 'down', 'UDP down'));
    const wireKbps = rate!.downKbps;
    t.diagnostic(`UDP down: billed (wire) ${wireKbps} kbit/s = ${pct(wireKbps, CAP_KBPS)} of the cap, ${pct(wireKbps, rate!.classDownKbps!)} of the class rate`);
    assert.ok(wireKbps > CAP_KBPS, `WireGuard's counters pass the cap: ${wireKbps} kbit/s`);
    // /metrics from the same collector: the ratio Prometheus sees is the class's.
    const gauge = (name: string) => Number(new RegExp(`^${name}\\{subject_type="peer",subject_id="${aliceId}",direction="down"\\} (\\S+)$`, 'm').exec(exposition)?.[1]);
    t.diagnostic(`/metrics: utilisation_ratio ${gauge('panel_bandwidth_subject_utilisation_ratio')}, class_rate_kbps ${gauge('panel_bandwidth_subject_class_rate_kbps')}, rate_kbps ${gauge('panel_bandwidth_subject_rate_kbps')}`);
    assert.equal(gauge('panel_bandwidth_subject_class_rate_kbps'), rate!.classDownKbps);
    assert.ok(gauge('panel_bandwidth_subject_utilisation_ratio') <= 1 + TOLERANCE_PERCENT / 100, '/metrics utilisation by the class');
    assert.ok(gauge('panel_bandwidth_subject_rate_kbps') / CAP_KBPS > 1, 'while rate / cap from the billed (wire) gauge passes 1');
    const figures = overhead(before, after, 'down');
    t.diagnostic(`UDP down, whole flow: ${figures.text}`);
    // 16-byte header + 16-byte tag + padding of the inner packet to 16 bytes (628 → 640).
    assert.ok(figures.wgPerPacket >= 32 && figures.wgPerPacket < 48, `WireGuard adds 32-47 bytes per packet, got ${figures.wgPerPacket.toFixed(1)}`);
    const totals = (await totalsBySubject(db, before.at, after.at + 1)).get(`peer:${aliceId}`);
    assert.deepEqual(totals, { upBytes: aliceWg(after).rx - aliceWg(before).rx, downBytes: figures.wire }, 'billing wire: exactly WireGuard\'s counters');
  });

  await t.test('a bulk TCP download and upload in full-size packets: ≤ 100% by the class, with the per-packet figures', async (t) => {
    for (const direction of ['down', 'up'] as const) {
      const tcp = () => iperf(lab, { serverNs: alice.ns, clientNs: wg.ns, target: '10.66.0.11', seconds: 10, omitSeconds: 0, reverse: direction === 'up' });
      const { before, after, rate, goodput } = await measure(collectors.wire, tcp, direction);
      t.diagnostic(`${assertUtilisation(rate, direction, `TCP ${direction}`)}; billed (wire) ${direction === 'down' ? rate!.downKbps : rate!.upKbps} kbit/s; goodput ${(goodput.bitsPerSecond / 1000).toFixed(0)} kbit/s`);
      const data = overhead(before, after, direction);
      const acks = overhead(before, after, direction === 'down' ? 'up' : 'down');
      t.diagnostic(`TCP ${direction}, data: ${data.text}`);
      t.diagnostic(`TCP ${direction}, ACKs the other way: ${acks.text}`);
      assert.ok(data.wgPerPacket >= 32 && data.wgPerPacket < 48, `data: WireGuard adds 32-47 bytes per packet, got ${data.wgPerPacket.toFixed(1)}`);
      assert.ok(acks.wgPerPacket >= 32 && acks.wgPerPacket < 48, `ACKs: WireGuard adds 32-47 bytes per packet, got ${acks.wgPerPacket.toFixed(1)}`);
      // 42 bytes (UDP 8 + IPv4 20 + Ethernet 14) per underlay packet in the lab's runs, but GRO on the
      // veth may merge underlay packets and count their headers once: only "more" is certain.
      assert.ok(data.uplinkPerPacket > data.wgPerPacket, `the uplink adds UDP, IPv4 and Ethernet headers on top: ${data.uplinkPerPacket.toFixed(1)} vs ${data.wgPerPacket.toFixed(1)} B/packet`);
    }
  });

  await t.test('billing inner: alice is billed exactly her class bytes, bob (no class) exactly his WireGuard bytes', async (t) => {
    const udp = async () => {
      const result = await iperf(lab, { serverNs: alice.ns, clientNs: wg.ns, target: '10.66.0.11', seconds: 10, omitSeconds: 0, udp: { mbps: 12, length: 600 } });
      await iperf(lab, { serverNs: bob.ns, clientNs: wg.ns, target: '10.66.0.12', seconds: 1, omitSeconds: 0 });
      return result;
    };
    const { before, after, rate } = await measure(collectors.inner, udp, 'down');
    t.diagnostic(assertUtilisation(rate, 'down', 'UDP down, billing inner'));
    assert.equal(rate!.downKbps, rate!.classDownKbps, 'the billed rate is the class rate');
    const totals = await totalsBySubject(db, before.at, after.at + 1);
    assert.deepEqual(totals.get(`peer:${aliceId}`), {
      upBytes: after.classUp.bytes - before.classUp.bytes,
      downBytes: after.classDown.bytes - before.classDown.bytes,
    }, 'alice: the bytes through her class');
    const bobBefore = before.wg.get(bob.publicKey)!;
    const bobAfter = after.wg.get(bob.publicKey)!;
    assert.ok(bobAfter.tx - bobBefore.tx > 1_000_000n, 'bob downloaded');
    assert.deepEqual(totals.get(`peer:${bobId}`), { upBytes: bobAfter.rx - bobBefore.rx, downBytes: bobAfter.tx - bobBefore.tx }, 'bob: his WireGuard counters');
    const bobRate = collectors.inner.rates().get(`peer:${bobId}`);
    assert.equal(utilisation({ upKbps: 0, downKbps: 0 }, bobRate), null, 'an unlimited peer has no utilisation');
  });
});
