import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { ResultPromise } from 'execa';

import { connect } from '../../src/db/connect.js';
import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { parseClassText } from '../../src/shaping/parse-class-text.js';
import { requireOrSkip } from '../support/layer.js';
import { createWireGuardLab, iperf, Lab, labRequirements, waitFor, type LabPeer, type WireGuardLab } from '../support/lab.js';
import { startPanelProcess, type ApiResponse, type PanelProcess } from '../support/lab-panel.js';
import { assertHoldsCap, leftoversOf } from '../support/lab-shaping.js';

const { available, reason } = labRequirements();

const COLLECT_INTERVAL_MS = 5000;
const ALLOWANCE_BYTES = 30_000_000;
const THROTTLE_KBPS = 1000;
const QUOTA = { allowance_bytes: ALLOWANCE_BYTES, counted: 'total', action: 'throttle', throttle_up_kbps: THROTTLE_KBPS, throttle_down_kbps: THROTTLE_KBPS };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Asserts an answer's status; a 5xx shows the end of the panel's log (its body says only "Internal error"). */
function expectStatus(panel: PanelProcess, response: ApiResponse, status: number, what: string): void {
  const log = response.status >= 500 ? `\n--- panel output (end) ---\n${panel.output().slice(-3000)}` : '';
  assert.equal(response.status, status, `${what}: ${response.status} ${response.text.slice(0, 400)}${log}`);
}

/** HTB classes of a device by minor, with their rate in bit/s; empty when the device or its tree is missing. */
async function htbRates(lab: Lab, ns: string, device: string): Promise<Map<number, number>> {
  const text = await lab.tc(ns, ['class', 'show', 'dev', device]).catch(() => '');
  const rates = new Map<number, number>();
  for (const c of parseClassText(text)) if (c.kind === 'htb' && c.major === 1 && c.rateBits !== undefined) rates.set(c.minor, c.rateBits);
  return rates;
}

/** `wg show <if> transfer`: transfer-rx + transfer-tx of one peer, what the panel counts for it (`total`). */
async function wgTotal(wg: WireGuardLab, publicKey: string): Promise<number> {
  const { stdout } = await wg.lab.executor.run(['wg', 'show', wg.ifname, 'transfer'], { netns: wg.ns });
  const line = stdout.split('\n').map((l) => l.split('\t')).find((fields) => fields[0] === publicKey);
  assert.ok(line, `peer ${publicKey} in wg show transfer`);
  return Number(line[1]) + Number(line[2]);
}

let nextBurnPort = 6100;

/**
 * iperf3 at full speed from a peer to the server (the peer's `up`, iperf3 -R with the client on the
 * server), until `stop()` kills the client. Both processes belong to the lab: `close()` kills what is left.
 */
async function startBurn(lab: Lab, wg: WireGuardLab, peer: LabPeer): Promise<{ stop: () => Promise<void> }> {
  const port = String((nextBurnPort += 1));
  lab.spawn(peer.ns, ['iperf3', '-s', '-1', '-p', port]);
  await waitFor(`iperf3 server on ${peer.ns}:${port}`, async () => (await lab.executor.run(['ss', '-Hltn', `sport = :${port}`], { netns: peer.ns })).stdout.trim() !== '');
  const client: ResultPromise = lab.spawn(wg.ns, ['iperf3', '-c', peer.addresses[0]!, '-p', port, '-t', '60', '-R']);
  return {
    stop: async () => {
      client.kill('SIGTERM');
      await client;
    },
  };
}

test('a monthly quota throttles a peer in the kernel within a collector tick, a manual reset lifts it, and a lower own cap stays', { timeout: 240_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const lab = new Lab();
  t.after(() => lab.close());
  let wg!: WireGuardLab;
  let panel!: PanelProcess;
  await Promise.all([
    createWireGuardLab(lab, [{ addresses: ['10.66.0.11'] }, { addresses: ['10.66.0.12'] }, { addresses: ['10.66.0.13'] }]).then((built) => (wg = built)),
    // The reconcile loop (which also evaluates quotas) runs once at the start only: a throttle in
    // the kernel can then come from nothing but the evaluation after each ledger ingestion.
    startPanelProcess(t, { bandwidth: { executor: 'local', reconcile_interval_s: 3600, collect_interval_s: COLLECT_INTERVAL_MS / 1000 } }).then((started) => (panel = started)),
  ]);
  const expectAnswer = (response: ApiResponse, status: number, what: string) => expectStatus(panel, response, status, what);
  const [alice, bob, carol] = wg.peers as [LabPeer, LabPeer, LabPeer];
  const ifb = ifbNameFor(wg.ifname, wg.ns);

  const network = await panel.post('/api/networks', { name: 'tunnel', interface: wg.ifname, netns: wg.ns });
  expectAnswer(network, 201, 'POST /api/networks');
  const networkId = network.body.network.id as number;
  const ids = new Map<LabPeer, number>();
  // alice has no caps of her own, bob 8 Mbit/s down (above the throttle), carol 500 kbps down (below it); up is unlimited for all.
  for (const [name, peer, down] of [['alice', alice, 0], ['bob', bob, 8000], ['carol', carol, 500]] as const) {
    const created = await panel.post(`/api/networks/${networkId}/peers`, {
      name, public_key: peer.publicKey, allowed_ips: [`${peer.addresses[0]}/32`], bandwidth_up_kbps: 0, bandwidth_down_kbps: down,
    });
    expectAnswer(created, 201, `POST peer ${name}`);
    const id = created.body.peer.id as number;
    ids.set(peer, id);
    const quota = await panel.put(`/api/bandwidth/quotas/peer/${id}`, QUOTA);
    expectAnswer(quota, 200, `PUT quota of ${name}`);
    assert.deepEqual({ state: quota.body.state, limit: quota.body.limit_bytes, throttled: quota.body.throttled }, { state: 'ok', limit: ALLOWANCE_BYTES, throttled: false });
  }

  const quotaOf = async (peer: LabPeer) => {
    const answer = await panel.get(`/api/bandwidth/quotas/peer/${ids.get(peer)}`);
    expectAnswer(answer, 200, 'GET quota');
    return answer.body as { state: string; used_bytes: number; throttled: boolean };
  };
  const peerOf = async (peer: LabPeer) => {
    const answer = await panel.get(`/api/networks/${networkId}/peers/${ids.get(peer)}`);
    expectAnswer(answer, 200, 'GET peer');
    return answer.body.peer as Record<string, unknown>;
  };
  const minorOf = async (peer: LabPeer): Promise<number | null> => {
    const answer = await panel.get(`/api/bandwidth/limits?subject_type=peer&network_id=${networkId}&per_page=100`);
    expectAnswer(answer, 200, 'GET /api/bandwidth/limits');
    const row = (answer.body.limits as Record<string, unknown>[]).find((l) => l.subject_id === String(ids.get(peer)));
    assert.ok(row, 'the peer has a bw_limits row');
    return row.class_id ? parseInt(String(row.class_id).slice(2), 16) : null;
  };
  const down = (peer: LabPeer, seconds = 4, omitSeconds = 1) => iperf(lab, { serverNs: peer.ns, clientNs: wg.ns, target: peer.addresses[0]!, seconds, omitSeconds });
  const up = (peer: LabPeer, seconds = 4, omitSeconds = 1) => iperf(lab, { serverNs: peer.ns, clientNs: wg.ns, target: peer.addresses[0]!, seconds, omitSeconds, reverse: true });
  /** Burns a peer's allowance at full speed until the panel reports its quota exceeded. */
  const exhaust = async (peer: LabPeer): Promise<void> => {
    const burn = await startBurn(lab, wg, peer);
    try {
      await waitFor('the quota to be exceeded', async () => (await quotaOf(peer)).state === 'exceeded', 6 * COLLECT_INTERVAL_MS, 200);
    } finally {
      await burn.stop();
    }
  };

  // Every peer's first collector sample is only its baseline: a few counted packets show that the
  // next bytes are counted in full (and the handshake is done before anything is timed).
  await Promise.all(wg.peers.map((peer) => waitFor(`counted packets of ${peer.addresses[0]}`, async () => {
    await iperf(lab, { serverNs: peer.ns, clientNs: wg.ns, target: peer.addresses[0]!, seconds: 1, omitSeconds: 0, udp: { mbps: 0.1, length: 100 } });
    return (await quotaOf(peer)).used_bytes > 0;
  }, 6 * COLLECT_INTERVAL_MS, 500)));

  let aliceMinor = 0;

  await t.test('a peer without caps that uses up its 30 MB is held at 1 Mbit/s both ways within a collector tick, throttled and exceeded', async (t) => {
    const id = ids.get(alice)!;
    const used0 = (await quotaOf(alice)).used_bytes;
    const counters0 = await wgTotal(wg, alice.publicKey);
    const seen: { crossed?: number; counted?: number; exceeded?: number; down?: number; up?: number } = {};
    let watching = true;
    // What the panel counted, as its API tells it (after the ingestion that counted it).
    const apiWatch = (async () => {
      while (watching && seen.exceeded === undefined) {
        const quota = await quotaOf(alice);
        const at = Date.now();
        if (seen.counted === undefined && quota.used_bytes >= ALLOWANCE_BYTES) seen.counted = at;
        if (quota.state === 'exceeded') seen.exceeded = at;
        await sleep(100);
      }
    })();
    const burn = await startBurn(lab, wg, alice);
    const started = Date.now();
    try {
      // The bytes the panel counts (wg's transfer counters) and the kernel's classes, read in turn.
      while (seen.down === undefined || seen.up === undefined) {
        const before = Date.now();
        if (seen.crossed === undefined && used0 + (await wgTotal(wg, alice.publicKey)) - counters0 >= ALLOWANCE_BYTES) seen.crossed = before;
        const rates = [await htbRates(lab, wg.ns, wg.ifname), await htbRates(lab, wg.ns, ifb)];
        const at = Date.now();
        if (seen.down === undefined && [...rates[0]!.values()].includes(THROTTLE_KBPS * 1000)) seen.down = at;
        if (seen.up === undefined && [...rates[1]!.values()].includes(THROTTLE_KBPS * 1000)) seen.up = at;
        assert.ok(at - started < 60_000, `no 1 Mbit/s class after 60 s (crossed ${seen.crossed === undefined ? 'never' : `${seen.crossed - started} ms`} after the start)`);
        await sleep(40);
      }
    } finally {
      watching = false;
      await burn.stop();
      await apiWatch;
    }
    assert.ok(seen.crossed !== undefined, 'the counted bytes crossed the allowance before the throttle came');
    const inKernel = Math.max(seen.down, seen.up);
    const latency = inKernel - seen.crossed;
    // The tick that crossed: the first of alice's ledger rows (as ingested) whose running sum reaches the allowance.
    const countedFrom = Date.parse((await panel.get(`/api/bandwidth/quotas/peer/${id}`)).body.counted_from as string);
    const db = connect(panel.databaseUrl);
    let crossingTick: number | undefined;
    try {
      const rows = (await db('bw_usage').where({ subject_type: 'peer', subject_id: String(id) }).where('period_end', '>', countedFrom).orderBy('period_end')) as Record<string, unknown>[];
      let sum = 0;
      crossingTick = rows.map((row) => ({ end: Number(row.period_end), sum: (sum += Number(row.up_bytes) + Number(row.down_bytes)) })).find((row) => row.sum >= ALLOWANCE_BYTES)?.end;
    } finally {
      await db.destroy();
    }
    const events = await panel.get(`/api/bandwidth/events?subject_type=peer&subject_id=${id}&per_page=50`);
    const audited = (events.body.events as { action: string; at: string }[]).find((e) => e.action === 'quota.throttled')?.at;
    const after = (at: number | undefined) => (at === undefined ? '?' : `+${at - seen.crossed!} ms`);
    console.log(`quota enforcement latency: ${latency} ms`);
    t.diagnostic(
      `after the counted bytes crossed ${ALLOWANCE_BYTES} B (wg counters, polled every ~100 ms): the crossing tick sampled ${after(crossingTick)}, ` +
      `the API showed them counted ${after(seen.counted)} and exceeded ${after(seen.exceeded)}, quota.throttled audited ${after(audited ? Date.parse(audited) : undefined)}, ` +
      `1 Mbit/s class down ${after(seen.down)}, up ${after(seen.up)}`,
    );
    assert.ok(crossingTick !== undefined, 'a ledger row of alice reaches the allowance');
    const tickToKernel = inKernel - crossingTick;
    t.diagnostic(`the crossing tick → the throttle in the kernel (tick, ingestion, evaluation, class change): ${tickToKernel} ms`);
    // The issue's bar: within one collector interval of the tick that crossed. Asserted with one more
    // interval of slack for scheduling: iperf3 and two wireguard-go run at full speed on the same CPUs.
    assert.ok(tickToKernel <= 2 * COLLECT_INTERVAL_MS, `the throttle was in the kernel ${tickToKernel} ms after the tick that crossed the allowance (bar ${COLLECT_INTERVAL_MS} ms, slack to ${2 * COLLECT_INTERVAL_MS} ms)`);

    const peer = await waitFor('alice reported throttled', async () => {
      const found = await peerOf(alice);
      return found.bandwidth_status === 'throttled' ? found : undefined;
    }, 5000, 100);
    assert.deepEqual({ up: peer.bandwidth_up_kbps, down: peer.bandwidth_down_kbps, error: peer.bandwidth_error, state: peer.quota_state }, { up: 0, down: 0, error: null, state: 'exceeded' }, 'her configured caps are still unlimited');
    const quota = await quotaOf(alice);
    assert.deepEqual({ state: quota.state, throttled: quota.throttled }, { state: 'exceeded', throttled: true });
    aliceMinor = (await minorOf(alice))!;
    assert.equal((await htbRates(lab, wg.ns, wg.ifname)).get(aliceMinor), 1_000_000, 'her down class on the wg interface');
    assert.equal((await htbRates(lab, wg.ns, ifb)).get(aliceMinor), 1_000_000, 'her up class on the IFB');

    t.diagnostic(assertHoldsCap(await down(alice), THROTTLE_KBPS, 'alice down while throttled'));
    t.diagnostic(assertHoldsCap(await up(alice), THROTTLE_KBPS, 'alice up while throttled'));
  });

  await t.test('a manual reset lifts the throttle: an unlimited peer is unshaped again, a capped one back at its own 8 Mbit/s', async (t) => {
    const reset = await panel.post(`/api/bandwidth/quotas/peer/${ids.get(alice)}/reset`);
    expectAnswer(reset, 200, 'POST reset (alice)');
    assert.deepEqual({ state: reset.body.state, throttled: reset.body.throttled }, { state: 'ok', throttled: false });
    // The cycle counts deltas whose period ends after the reset: the tick right after it may add the
    // throttled seconds before it (at most an interval at 1 Mbit/s each way), nothing more.
    const straddle = 2 * (COLLECT_INTERVAL_MS / 1000) * (THROTTLE_KBPS * 1000 / 8) * 1.2;
    assert.ok(reset.body.used_bytes < straddle, `used ${reset.body.used_bytes} B right after the reset`);
    t.diagnostic(`alice right after the reset: used ${reset.body.used_bytes} B (counted from ${reset.body.counted_from})`);
    const peer = await peerOf(alice);
    assert.deepEqual({ status: peer.bandwidth_status, up: peer.bandwidth_up_kbps, down: peer.bandwidth_down_kbps, state: peer.quota_state }, { status: 'unlimited', up: 0, down: 0, state: 'ok' });
    assert.deepEqual(await leftoversOf(lab.executor, wg.ifname, wg.ns, aliceMinor), [], 'no class, leaf or filter of alice is left');
    // One second only: at full speed the 30 MB are used again in about that, and the next tick throttles again.
    const fast = await down(alice, 1, 0);
    t.diagnostic(`alice down after the reset: ${(fast.bitsPerSecond / 1e6).toFixed(1)} Mbit/s`);
    assert.ok(fast.bitsPerSecond > 20e6, `alice is unshaped after the reset: ${(fast.bitsPerSecond / 1e6).toFixed(2)} Mbit/s`);

    await exhaust(bob);
    const bobMinor = (await minorOf(bob))!;
    await waitFor('bob reported throttled', async () => (await peerOf(bob)).bandwidth_status === 'throttled', 5000, 100);
    assert.equal((await htbRates(lab, wg.ns, wg.ifname)).get(bobMinor), 1_000_000, 'min(8 Mbit/s, 1 Mbit/s) down');
    assert.equal((await htbRates(lab, wg.ns, ifb)).get(bobMinor), 1_000_000, 'his unlimited up throttled too');
    t.diagnostic(assertHoldsCap(await down(bob, 3), THROTTLE_KBPS, 'bob down while throttled'));

    const bobReset = await panel.post(`/api/bandwidth/quotas/peer/${ids.get(bob)}/reset`);
    expectAnswer(bobReset, 200, 'POST reset (bob)');
    assert.deepEqual({ state: bobReset.body.state, throttled: bobReset.body.throttled }, { state: 'ok', throttled: false });
    const after = await peerOf(bob);
    assert.deepEqual({ status: after.bandwidth_status, up: after.bandwidth_up_kbps, down: after.bandwidth_down_kbps }, { status: 'applied', up: 0, down: 8000 });
    assert.equal((await htbRates(lab, wg.ns, wg.ifname)).get(bobMinor), 8_000_000, 'his own 8 Mbit/s down class is back');
    t.diagnostic(assertHoldsCap(await down(bob), 8000, 'bob down after the reset'));
  });

  await t.test('a peer whose own cap (500 kbps) is below the throttle keeps it when exceeded, and its configured caps are unchanged', async (t) => {
    await exhaust(carol);
    const minor = (await minorOf(carol))!;
    const peer = await waitFor('carol reported throttled', async () => {
      const found = await peerOf(carol);
      return found.bandwidth_status === 'throttled' ? found : undefined;
    }, 5000, 100);
    assert.deepEqual({ up: peer.bandwidth_up_kbps, down: peer.bandwidth_down_kbps, state: peer.quota_state }, { up: 0, down: 500, state: 'exceeded' });
    assert.equal((await htbRates(lab, wg.ns, wg.ifname)).get(minor), 500_000, 'her own 500 kbps down class stays');
    assert.equal((await htbRates(lab, wg.ns, ifb)).get(minor), 1_000_000, 'her unlimited up is throttled');
    t.diagnostic(assertHoldsCap(await down(carol), 500, 'carol down while exceeded'));
    const limits = await panel.get(`/api/bandwidth/limits?subject_type=peer&network_id=${networkId}&per_page=100`);
    const row = (limits.body.limits as Record<string, unknown>[]).find((l) => l.subject_id === String(ids.get(carol)));
    assert.deepEqual(
      { up: row?.bandwidth_up_kbps, down: row?.bandwidth_down_kbps, status: row?.bandwidth_status },
      { up: 0, down: 500, status: 'throttled' },
      'the limits API keeps her configured caps',
    );
  });
});
