/**
 * Issue 12, item 1, http layer: 200 peers created with caps at once, and 200 uncapped peers capped
 * at once, all on one interface, each answer a success and every typed cap is stored with a class
 * of its own and applied by the plugin (the test panel's recording executor: `pending`/`dry_run`).
 * On SQLite, MariaDB and PostgreSQL, each on a database of its own (`pbw_writers_<pid>_<engine>`).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ENGINES, type Engine } from './databases.js';
import { ownDatabase } from './own-database.js';
import { API_TOKEN, listen, startPanel } from './panel.js';

const CONCURRENT = 200;

/** The fields of a peer these tests read (the API answers more). */
interface Peer {
  id: number;
  name: string;
  bandwidth_up_kbps: number;
  bandwidth_down_kbps: number;
  bandwidth_status: string;
  bandwidth_error: string | null;
  bandwidth_reason: string | null;
}

interface Answer {
  status: number;
  body: { peer: Peer; peers: Peer[]; network: { id: number } };
}

/** A JSON request with the API token over a real socket (200 at once through one server). */
function request(base: string, method: string, path: string, body?: unknown): Promise<Answer> {
  return fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then(async (response) => ({ status: response.status, body: (await response.json()) as Answer['body'] }));
}

/** `status → how many answered it`, to show every answer at once when one is wrong. */
function tally(answers: Answer[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const { status } of answers) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

const address = (n: number) => `10.9.${n >> 8}.${n & 255}/32`;

/** A WireGuard public key of its own for each `n` up to 65535. */
function keyOf(n: number): string {
  const key = Buffer.alloc(32, 0x42);
  key.writeUInt16BE(n, 0);
  return key.toString('base64');
}

/**
 * Declares the test on one engine. Each engine has its own test file: the whole run takes minutes
 * (200 writers on one interface are served one at a time by its lock), more than one file may.
 */
export function concurrentWriters(id: Engine['id']): void {
  const engine = ENGINES.find((candidate) => candidate.id === id)!;
  describe(`concurrent writers on ${engine.id}`, () => {
    test(`${CONCURRENT} concurrent peer creates with caps and ${CONCURRENT} concurrent cap updates on one interface: every cap stored and applied, no 500`, { timeout: 300_000 }, async (t) => {
      const own = await ownDatabase(t, engine, 'writers');
      if (!own) return;
      const host = await startPanel(t, { databaseUrl: own.url });
      own.closeFirst(() => host.close());
      const base = await listen(t, host.panel.app);
      const network = await request(base, 'POST', '/api/networks', { name: 'office', interface: 'wg0' });
      assert.equal(network.status, 201, JSON.stringify(network.body));
      const networkId = Number(network.body.network.id);

      // Creates: each peer with caps of its own, so a cap landing on the wrong peer shows too.
      const creates = await Promise.all(
        Array.from({ length: CONCURRENT }, (_, i) =>
          request(base, 'POST', `/api/networks/${networkId}/peers`, {
            name: `capped-${i}`, public_key: keyOf(i + 1), allowed_ips: [address(i + 2)], bandwidth_up_kbps: 1000 + i, bandwidth_down_kbps: 20_000 + i,
          }),
        ),
      );
      assert.deepEqual(tally(creates), { 201: CONCURRENT }, JSON.stringify(creates.find((a) => a.status !== 201)?.body));
      for (const { body } of creates) {
        const i = Number(String(body.peer.name).slice('capped-'.length));
        assert.deepEqual([body.peer.bandwidth_up_kbps, body.peer.bandwidth_down_kbps], [1000 + i, 20_000 + i], `${body.peer.name} answers its caps`);
        assert.notEqual(body.peer.bandwidth_status, 'failed', `${body.peer.name}: ${body.peer.bandwidth_error}`);
      }

      // Updates: uncapped peers on the same interface, then every one capped at once through the limits API.
      const uncapped: number[] = [];
      for (let i = 0; i < CONCURRENT; i += 1) {
        const answer = await request(base, 'POST', `/api/networks/${networkId}/peers`, {
          name: `later-${i}`, public_key: keyOf(CONCURRENT + 1 + i), allowed_ips: [address(CONCURRENT + 2 + i)],
        });
        assert.equal(answer.status, 201, JSON.stringify(answer.body));
        uncapped.push(Number(answer.body.peer.id));
      }
      const updates = await Promise.all(
        uncapped.map((id, i) => request(base, 'PUT', `/api/bandwidth/limits/peer/${id}`, { bandwidth_up_kbps: 3000 + i, bandwidth_down_kbps: 40_000 + i })),
      );
      assert.deepEqual(tally(updates), { 200: CONCURRENT }, JSON.stringify(updates.find((a) => a.status !== 200)?.body));

      // What a user would see: every peer lists the caps typed for it, none failed; the classes differ.
      const listed = await request(base, 'GET', `/api/networks/${networkId}/peers`);
      assert.equal(listed.status, 200);
      const peers = listed.body.peers;
      assert.equal(peers.length, 2 * CONCURRENT);
      for (const peer of peers) {
        const name = String(peer.name);
        const wanted = name.startsWith('capped-')
          ? [1000 + Number(name.slice(7)), 20_000 + Number(name.slice(7))]
          : [3000 + uncapped.indexOf(Number(peer.id)), 40_000 + uncapped.indexOf(Number(peer.id))];
        assert.deepEqual([peer.bandwidth_up_kbps, peer.bandwidth_down_kbps], wanted, `${name} keeps the caps typed for it`);
        assert.ok(['pending', 'applied'].includes(String(peer.bandwidth_status)), `${name}: ${peer.bandwidth_status} ${peer.bandwidth_error}`);
        assert.ok(peer.bandwidth_status === 'applied' || peer.bandwidth_reason === 'dry_run', `${name} was applied by the plugin (a dry run here): ${peer.bandwidth_reason} ${peer.bandwidth_error}`);
      }
      const minors = (await host.db('bw_limits').whereNotNull('class_minor').pluck('class_minor')).map(Number);
      assert.equal(new Set(minors).size, 2 * CONCURRENT, 'every capped peer has a class of its own');
    });
  });
}
