import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { execa } from 'execa';

import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { Collector } from '../../src/accounting/collector.js';
import { HOUR_MS } from '../../src/accounting/buckets.js';
import { connect } from '../../src/db/connect.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperf, Lab, labRequirements, waitFor, type WireGuardLab } from '../support/lab.js';
import { recreateWireGuardInterface, startPanelProcess, type ApiResponse, type PanelProcess } from '../support/lab-panel.js';

const { available, reason } = labRequirements();

interface Bytes {
  rx: bigint;
  tx: bigint;
}

/** What the test reads itself, independently of the plugin: per-peer wg transfer counters, the VM tap's sysfs counters. */
interface Reading {
  peers: Map<string, Bytes>;
  vm: Bytes;
}

function expectStatus(response: ApiResponse, status: number, what: string): void {
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}`);
}

/** `wg show <if> dump`: transfer-rx (field 6) and transfer-tx (field 7) of each peer line. */
async function wgDump(wg: WireGuardLab): Promise<Map<string, Bytes>> {
  const { stdout } = await wg.lab.executor.run(['wg', 'show', wg.ifname, 'dump'], { netns: wg.ns });
  const peers = new Map<string, Bytes>();
  for (const line of stdout.trim().split('\n').slice(1)) {
    const fields = line.split('\t');
    peers.set(fields[0]!, { rx: BigInt(fields[5]!), tx: BigInt(fields[6]!) });
  }
  return peers;
}

/** `/sys/class/net/<if>/{ifindex,statistics/rx_bytes,statistics/tx_bytes}` read inside the namespace. */
async function sysfs(lab: Lab, ns: string, ifname: string): Promise<{ ifindex: number } & Bytes> {
  const files = ['ifindex', 'statistics/rx_bytes', 'statistics/tx_bytes'].map((file) => `/sys/class/net/${ifname}/${file}`);
  const [ifindex, rx, tx] = (await lab.executor.run(['cat', ...files], { netns: ns })).stdout.trim().split('\n');
  return { ifindex: Number(ifindex), rx: BigInt(rx!), tx: BigInt(tx!) };
}

const same = (a: Reading, b: Reading): boolean =>
  a.vm.rx === b.vm.rx && a.vm.tx === b.vm.tx && a.peers.size === b.peers.size &&
  [...a.peers].every(([key, bytes]) => b.peers.get(key)?.rx === bytes.rx && b.peers.get(key)?.tx === bytes.tx);

test('per-subject byte accounting equals the kernel\'s own counters exactly, and survives a re-created interface without a spike', { timeout: 150_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  let wg!: WireGuardLab;
  let hvNs = '';
  let vmNs = '';
  let panel!: PanelProcess;
  const tap = `pt${lab.id}h`;
  await Promise.all([
    createWireGuardLab(lab, [{ addresses: ['10.66.0.11'] }, { addresses: ['10.66.0.12'] }, { addresses: ['10.66.0.13'] }]).then((built) => (wg = built)),
    (async () => {
      hvNs = await lab.namespace('hv');
      vmNs = await lab.namespace('vm');
      const guest = `pt${lab.id}g`;
      await lab.veth({ ns: hvNs, name: tap, addresses: ['10.77.0.1/24'] }, { ns: vmNs, name: guest, addresses: ['10.77.0.2/24'] });
      // No IPv6 on the tap: router solicitations and MLD reports would only make idle readings wait.
      await lab.executor.run(['sysctl', '-qw', `net.ipv6.conf.${tap}.disable_ipv6=1`], { netns: hvNs });
      await lab.executor.run(['sysctl', '-qw', `net.ipv6.conf.${guest}.disable_ipv6=1`], { netns: vmNs });
    })(),
    // The in-panel timers stay out of the way: the ticks are the CLI's, taken when the test says.
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 86400, collect_interval_s: 86400 } }).then((started) => (panel = started)),
  ]);
  type LabPeer = WireGuardLab['peers'][number];
  // carol joins the panel only for the last story; until then the CLI ticks read alice, bob and the VM.
  const [alice, bob, carol] = wg.peers as [LabPeer, LabPeer, LabPeer];

  const network = await panel.post('/api/networks', { name: 'tunnel', interface: wg.ifname, netns: wg.ns });
  expectStatus(network, 201, 'POST /api/networks');
  const networkId = network.body.network.id as number;
  const peerIds = new Map<string, number>();
  for (const [name, peer] of [['alice', alice], ['bob', bob]] as const) {
    const created = await panel.post(`/api/networks/${networkId}/peers`, { name, public_key: peer.publicKey, allowed_ips: [`${peer.addresses[0]}/32`] });
    expectStatus(created, 201, `POST peer ${name}`);
    peerIds.set(peer.publicKey, created.body.peer.id as number);
  }
  const vm = await panel.post('/api/vms', { name: 'vm-1', interface: tap, netns: hvNs });
  expectStatus(vm, 201, 'POST /api/vms');
  const vmId = vm.body.vm.id as number;

  const read = async (): Promise<Reading> => ({ peers: await wgDump(wg), vm: await sysfs(lab, hvNs, tap) });
  const collect = async (): Promise<void> => {
    const result = await execa(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli.ts'), 'collect', '--database-url', panel.databaseUrl], {
      cwd: REPO_ROOT, reject: false,
    });
    assert.equal(result.exitCode, 0, `panel-bandwidth collect: ${result.stderr}`);
    assert.match(result.stdout, /^collected 3 series/, 'two peers and one VM read');
  };
  /**
   * One CLI tick between two identical readings of our own: the tick read exactly these numbers.
   * A keepalive or a handshake between the readings makes it take another (the deltas add up anyway).
   */
  const idleTick = () =>
    waitFor('a collector tick with no packet around it', async () => {
      const before = await read();
      await collect();
      const after = await read();
      return same(before, after) ? { reading: after, at: Date.now() } : undefined;
    }, 60_000, 0);
  /** What the plugin says a subject did in (from, to], through its HTTP API. */
  const usage = async (type: 'peer' | 'vm', id: number, from: number, to: number): Promise<{ up: bigint; down: bigint }> => {
    const iso = (ms: number) => new Date(ms).toISOString();
    const answer = await panel.get(`/api/bandwidth/usage?subject_type=${type}&subject_id=${id}&from=${iso(from)}&to=${iso(to)}`);
    expectStatus(answer, 200, 'GET /api/bandwidth/usage');
    const { up_bytes: up, down_bytes: down } = answer.body.totals as { up_bytes: number; down_bytes: number };
    assert.ok(Number.isSafeInteger(up) && Number.isSafeInteger(down), 'totals are exact integers');
    return { up: BigInt(up), down: BigInt(down) };
  };
  const delta = (after: Bytes | undefined, before: Bytes | undefined) => {
    assert.ok(after && before);
    return { up: after.rx - before.rx, down: after.tx - before.tx };
  };

  let last = await idleTick(); // the first tick of every series only sets its baseline

  await t.test('between two ticks a peer\'s up and down are exactly the transfer-rx and transfer-tx differences of wg show dump', async (t) => {
    const start = last;
    const sent = await iperf(lab, { serverNs: alice.ns, clientNs: wg.ns, target: '10.66.0.11', seconds: 2, omitSeconds: 0, reverse: true });
    const received = await iperf(lab, { serverNs: alice.ns, clientNs: wg.ns, target: '10.66.0.11', seconds: 2, omitSeconds: 0 });
    last = await idleTick();

    const counted = await usage('peer', peerIds.get(alice.publicKey)!, start.at, last.at);
    const expected = delta(last.reading.peers.get(alice.publicKey), start.reading.peers.get(alice.publicKey));
    t.diagnostic(`alice: up ${counted.up} B (iperf sent ${sent.bytes}), down ${counted.down} B (iperf received ${received.bytes})`);
    assert.deepEqual(counted, expected, 'up = Δ transfer-rx, down = Δ transfer-tx');
    assert.ok(counted.up >= BigInt(sent.bytes) && counted.down >= BigInt(received.bytes), 'each direction carries at least its iperf payload');
    // bob sent nothing but his own keepalives: his totals are his own counters, not alice's.
    const bobCounted = await usage('peer', peerIds.get(bob.publicKey)!, start.at, last.at);
    assert.deepEqual(bobCounted, delta(last.reading.peers.get(bob.publicKey), start.reading.peers.get(bob.publicKey)));
  });

  await t.test('a VM\'s up is exactly what the host side of its veth received (rx_bytes), its down what it sent (tx_bytes)', async (t) => {
    const start = last;
    const sent = await iperf(lab, { serverNs: hvNs, clientNs: vmNs, target: '10.77.0.1', seconds: 1, omitSeconds: 0 }); // VM → host
    last = await idleTick();
    const counted = await usage('vm', vmId, start.at, last.at);
    t.diagnostic(`vm: up ${counted.up} B (iperf sent ${sent.bytes}), down ${counted.down} B`);
    assert.deepEqual(counted, { up: last.reading.vm.rx - start.reading.vm.rx, down: last.reading.vm.tx - start.reading.vm.tx });
    assert.ok(counted.up >= BigInt(sent.bytes), 'the VM\'s upload is its up');
    assert.ok(counted.down < counted.up / 10n, 'and only the ACKs are its down');
  });

  await t.test('deleting and re-creating the wg interface between two ticks counts only what was sent after it: no spike', async (t) => {
    const start = last;
    const { ifindex: before } = await sysfs(lab, wg.ns, wg.ifname);
    await recreateWireGuardInterface(wg);
    const { ifindex: after } = await sysfs(lab, wg.ns, wg.ifname);
    assert.notEqual(after, before, 'a new interface');
    // The server sends first: it knows the peer's endpoint and starts the handshake with the new keys.
    const received = await iperf(lab, { serverNs: alice.ns, clientNs: wg.ns, target: '10.66.0.11', seconds: 1, omitSeconds: 0 });
    last = await idleTick();

    const fresh = last.reading.peers.get(alice.publicKey);
    assert.ok(fresh);
    const counted = await usage('peer', peerIds.get(alice.publicKey)!, start.at, last.at);
    const old = start.reading.peers.get(alice.publicKey)!;
    t.diagnostic(`alice after re-creation: counted up ${counted.up}, down ${counted.down}; new counters ${fresh.rx}/${fresh.tx}; old ${old.rx}/${old.tx}`);
    assert.deepEqual(counted, { up: fresh.rx, down: fresh.tx }, 'exactly the new interface\'s counters, which started at zero');
    assert.ok(counted.down >= BigInt(received.bytes));
    const bobFresh = last.reading.peers.get(bob.publicKey)!;
    assert.deepEqual(await usage('peer', peerIds.get(bob.publicKey)!, start.at, last.at), { up: bobFresh.rx, down: bobFresh.tx });
  });

  await t.test(
    'a range that spans a whole hour counts a delta straddling that hour once, like the raw rows do',
    async (t) => {
      const created = await panel.post(`/api/networks/${networkId}/peers`, { name: 'carol', public_key: carol.publicKey, allowed_ips: ['10.66.0.13/32'] });
      expectStatus(created, 201, 'POST peer carol');
      const carolId = created.body.peer.id as number;
      // The product's collector in process, on the panel's database, with a clock the test sets: two ticks
      // 2 s before and 3 s after an hour boundary in the future (later than every real sample so far).
      const db = connect(panel.databaseUrl);
      t.after(() => db.destroy());
      let clock = 0;
      const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
      const collector = new Collector({ db, executor: lab.executor, logger: silent, now: () => clock });
      const fakeTick = (at: number) => {
        let attempt = 0;
        return waitFor(`a tick at ${new Date(at).toISOString()} with no packet around it`, async () => {
          const before = await read();
          clock = at + attempt++;
          await collector.tick();
          const after = await read();
          return same(before, after) ? { reading: after, at: clock } : undefined;
        }, 30_000, 0);
      };
      const hour = (Math.floor(Date.now() / HOUR_MS) + 2) * HOUR_MS;
      const first = await fakeTick(hour - 2000); // carol's first sample: her baseline
      await iperf(lab, { serverNs: carol.ns, clientNs: wg.ns, target: '10.66.0.13', seconds: 1, omitSeconds: 0, reverse: true });
      const second = await fakeTick(hour + 3000);

      const exact = await usage('peer', carolId, first.at, second.at);
      assert.deepEqual(exact, delta(second.reading.peers.get(carol.publicKey), first.reading.peers.get(carol.publicKey)), 'the raw rows are exact');
      const everything = await usage('peer', carolId, hour - 2001, second.at); // every row carol has, raw only
      const withWholeHour = await usage('peer', carolId, hour - HOUR_MS, hour + 10_000); // hourly [h-1h, h) + raw (h, h+10s]
      t.diagnostic(`carol: ${everything.up} B up counted by raw rows, ${withWholeHour.up} B by a range holding the hour before`);
      assert.deepEqual(withWholeHour, everything, 'the same rows, the same total');
    },
  );
});
