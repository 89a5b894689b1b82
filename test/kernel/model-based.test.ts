/**
 * Model-based, randomised: fast-check generates sequences of panel API edits (create, caps in one or
 * both directions to and from 0, clear, change addresses, delete peers; guarantees and bursts of peers
 * and VMs; network caps and default caps; delete and re-create networks; create, re-cap, move and
 * delete VMs), concurrent bursts on one interface and on one subject, hand flushes of the kernel and
 * explicit reconciles, over 22 peers (IPv4, IPv6, several addresses, routed /16, /24, /64) on two
 * wireguard-go interfaces and 3 VMs on 4 taps. Edits the panel must refuse (a default above the
 * network cap, a burst not above the cap, …) are sent too and must answer 400 naming the field.
 * After every step the database must equal the model and the kernel the database: 1:1 at the network
 * cap, every class under it at the rate and ceil of the expected tree, tbf leaves where subjects burst
 * (test/support/kernel-model*.ts). Failures it found are replayed by name at the end.
 *
 * Each run prints its seed; `PBW_SEED=<seed>` replays it, `PBW_SEED=<s> PBW_PATH=<p>` replays one
 * shrunk counterexample (with the `PBW_MAX` and `PBW_REPLAY` the failure prints), `PBW_STEPS` sets how
 * many steps to run at least (default 300), `PBW_BUDGET_S` and `PBW_SHRINK_S` the time allowed.
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { test, type TestContext } from 'node:test';

import fc from 'fast-check';

import { requireOrSkip } from '../support/layer.js';
import { labRequirements } from '../support/lab.js';
import { createModelLab } from '../support/kernel-model-lab.js';
import { seededRandom } from '../support/kernel-model-addresses.js';
import { verify, type ExpectedSubject, type VerifyContext } from '../support/kernel-model-check.js';
import {
  addressesOf,
  assertSlotsDisjoint,
  commandArbs,
  describeFailure,
  newCounter,
  PEER_SLOTS,
  resetWorld,
  startRun,
  TAPS,
  VM_SLOTS,
  type Model,
  type Real,
} from '../support/kernel-model.js';

const { available, reason } = labRequirements();

const envNumber = (name: string, fallback: number): number => {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`Expected \`${name}\` to be a whole number >= 0, got \`${text}\``);
  return value;
};

/** Longest sequence in one run (fast-check draws lengths up to it). */
const MAX_COMMANDS = 200;
/** Time kept back at the end of the budget for the final replay of a shrunk sequence and teardown. */
const RESERVE_MS = 20_000;

test(`random API edits, bursts, hand flushes and reconciles over ${PEER_SLOTS} peers and ${VM_SLOTS} VMs leave the kernel exactly as the database says after every step`, { timeout: 20 * 60_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const started = Date.now();
  assertSlotsDisjoint();
  const seed = envNumber('PBW_SEED', randomInt(1, 2 ** 31 - 1));
  const target = envNumber('PBW_STEPS', 300);
  const path = process.env.PBW_PATH || undefined;
  const replayPath = process.env.PBW_REPLAY || undefined;
  const replayMax = envNumber('PBW_MAX', 0);
  // The test runner gives a kernel file 8 minutes (scripts/run-tests.mjs --test-timeout): runs, shrinking
  // and the final replay all fit in PBW_BUDGET_S. Locally, raise it and PBW_SHRINK_S to shrink further.
  const deadline = started + envNumber('PBW_BUDGET_S', 420) * 1000;
  const shrinkMs = envNumber('PBW_SHRINK_S', 600) * 1000;
  const announce = `seed ${seed} (PBW_SEED=${seed} replays this run${path ? ` PBW_PATH=${path} PBW_REPLAY='${replayPath ?? ''}' PBW_MAX=${replayMax}` : ''})`;
  t.diagnostic(announce);
  console.log(`model-based: ${announce}`);

  const world = await createModelLab(t, { wireguard: 2, taps: TAPS });
  const counter = newCounter();
  const findings: string[] = [];
  const loopStarted = Date.now();
  const stepMs = () => (counter.steps === 0 ? 500 : (Date.now() - loopStarted) / counter.steps);
  let rounds = 0;
  /**
   * One fast-check property per round. Once a run has failed, shrinking (which replays sequences on
   * the real kernel) goes on until `shrinkMs` or the budget runs out; after that every further
   * candidate passes at once, so fast-check reports the smallest failing sequence found by then.
   * With `dump`, a failure's message carries the whole state (slow: for the final replay only).
   */
  const propertyOf = (roundSeed: number, maxCommands: number, dump: boolean, replay: string | undefined) => {
    let shrinkUntil: number | undefined;
    const commands = fc.commands(commandArbs, { maxCommands, size: 'max', ...(replay ? { replayPath: replay } : {}) });
    return fc.asyncProperty(commands, async (sequence) => {
      if (shrinkUntil !== undefined && Date.now() > shrinkUntil) return;
      let current: { model: Model; real: Real } | undefined;
      try {
        await fc.asyncModelRun(async () => {
          findings.push(...(await resetWorld(world)));
          current = await startRun(world, roundSeed, counter, deadline - RESERVE_MS);
          return current;
        }, sequence);
      } catch (error) {
        shrinkUntil ??= Math.min(Date.now() + shrinkMs, deadline - RESERVE_MS);
        if (dump && current && error instanceof Error) error.message += `\n${await describeFailure(current.model, current.real)}`;
        throw error;
      }
    });
  };
  // One fast-check run per round, on a fresh world. Round r uses seed + r and a length bound from the
  // steps still missing (both follow from the seed alone), so PBW_SEED replays all of them.
  while ((counter.steps < target && Date.now() < deadline - RESERVE_MS) || (path !== undefined && rounds === 0)) {
    const roundSeed = seed + rounds;
    // About a third of the drawn commands run (lengths are uniform, some commands do not apply): aim at the missing steps.
    const maxCommands = replayMax || Math.min(MAX_COMMANDS, Math.max(60, 3 * (target - counter.steps)));
    const stepsBefore = counter.steps;
    const details = await fc.check(propertyOf(roundSeed, maxCommands, false, replayPath), { seed: roundSeed, numRuns: 1, ...(path ? { path } : {}) });
    rounds += 1;
    if (details.failed) {
      // The commands arbitrary needs its own replay hint besides seed and path (which commands ran).
      const hint = /replayPath="([^"]*)"/.exec(fc.stringify(details.counterexample))?.[1] ?? '';
      const replay = `PBW_SEED=${roundSeed} PBW_MAX=${maxCommands} PBW_PATH=${details.counterexamplePath ?? ''} PBW_REPLAY='${hint}'`;
      t.diagnostic(`failed in round ${rounds} after ${stepsBefore} passing steps; replay the shrunk sequence with ${replay}`);
      console.log(`model-based: failed in round ${rounds}; replay with ${replay}`);
      // Once more, the shrunk sequence alone, this time with the whole state in the message, if it fits.
      const length = [...(details.counterexample?.[0] ?? [])].length;
      const again = Date.now() + length * stepMs() + 10_000 < deadline
        ? await fc.check(propertyOf(roundSeed, maxCommands, true, hint), { seed: roundSeed, numRuns: 1, path: details.counterexamplePath ?? '0', endOnFailure: true })
        : undefined;
      const error = (again?.failed ? again.errorInstance : details.errorInstance) as Error | undefined;
      assert.fail(
        `${fc.defaultReportMessage(details)}\n\nReplay: ${replay} node --import tsx --test test/kernel/model-based.test.ts\n\n` +
          `${again ? (again.failed ? '' : '(the final replay passed: the failure depends on timing)\n') : '(no time left to replay it with the whole state)\n'}` +
          `${error?.message ?? String(error)}`,
      );
    }
    if (path) break;
  }
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const kinds = Object.entries(counter.kinds).sort(([a], [b]) => a.localeCompare(b)).map(([kind, n]) => `${kind} ${n}`).join(', ');
  const summary = `${counter.steps} steps in ${rounds} runs, ${s(Date.now() - started)} (acting ${s(counter.actMs)}, full checks ${s(counter.checkMs)}, sweeps ${s(counter.sweepMs)}); ${kinds}`;
  t.diagnostic(summary);
  console.log(`model-based: seed ${seed}: ${summary}`);
  if (counter.steps < target) {
    t.diagnostic(`only ${counter.steps} of ${target} steps fitted in the budget: this machine is slow`);
    console.log(`model-based: only ${counter.steps} of ${target} steps fitted in the budget`);
    // CI must cover the issue's floor of 300 steps: fewer is a failure there, not a note.
    assert.ok(process.env.CI !== 'true', `CI runs at least ${target} steps; only ${counter.steps} fitted in ${envNumber('PBW_BUDGET_S', 420)} s`);
  }
  assert.deepEqual(findings, [], 'deleting every network and VM left nothing behind between runs');
});

// ---- regressions: panel bugs the run above found, each replayed on its own ----

/** One network on one wireguard-go interface with `caps`; peers (no caps of their own) added by slot; a strict check of both. */
async function networkWithPeers(t: TestContext, caps: Record<string, number>) {
  const world = await createModelLab(t, { wireguard: 1, taps: 0 });
  const ifname = world.wireguard[0]!;
  const created = await world.panel.post('/api/networks', { name: 'net-0', interface: ifname, netns: world.ns });
  const networkId = created.body.network.id as number;
  const put = await world.panel.put(`/api/bandwidth/networks/${networkId}`, caps);
  assert.equal(put.status, 200, put.text);
  const slots = new Map<number, number>();
  const addPeer = async (slot: number): Promise<number> => {
    const answer = await world.panel.post(`/api/networks/${networkId}/peers`, { name: `peer-${slot}`, public_key: Buffer.alloc(32, slot + 1).toString('base64'), allowed_ips: addressesOf(slot, 0) });
    assert.equal(answer.status, 201, answer.text);
    const id = answer.body.peer.id as number;
    slots.set(id, slot);
    return id;
  };
  const deletePeer = async (id: number): Promise<void> => {
    assert.equal((await world.panel.delete(`/api/networks/${networkId}/peers/${id}`)).status, 204);
    slots.delete(id);
  };
  const check = async (): Promise<string[]> => {
    const expected = [...slots].map(([id, slot]): ExpectedSubject => ({ type: 'peer', id, interface: ifname, addresses: addressesOf(slot, 0), up: 0, down: 0 }));
    const ctx: VerifyContext = {
      panel: world.panel, executor: world.lab.executor, netns: world.ns, interfaces: [{ name: ifname, kind: 'wireguard' }],
      expected, totals: new Map([[ifname, { up: caps.bandwidth_total_up_kbps ?? 0, down: caps.bandwidth_total_down_kbps ?? 0 }]]), next: seededRandom(14),
    };
    return (await verify(ctx)).problems;
  };
  return { addPeer, deletePeer, check };
}

test('a peer with a class only because of the network cap takes its class with it when deleted (found by the run above)', { timeout: 120_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const { addPeer, deletePeer, check } = await networkWithPeers(t, { bandwidth_total_down_kbps: 30_000 });
  await addPeer(0);
  const second = await addPeer(2);
  assert.deepEqual(await check(), []);
  await deletePeer(second);
  assert.deepEqual(await check(), []);
});

test(
  'a network cap shapes the peers of its network: no tree without one, the tree with the first, none after the last (found by the run above)',
  { timeout: 120_000 },
  async (t) => {
    if (!requireOrSkip(t, available, reason)) return;
    const { addPeer, deletePeer, check } = await networkWithPeers(t, { bandwidth_total_down_kbps: 1000, bandwidth_total_up_kbps: 2000 });
    assert.deepEqual(await check(), []);
    const id = await addPeer(0);
    assert.deepEqual(await check(), []);
    await deletePeer(id);
    assert.deepEqual(await check(), []);
  },
);
