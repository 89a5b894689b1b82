import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countTick, type CountOptions, type SeriesDelta } from '../../../src/accounting/billing.js';
import type { SourceName } from '../../../src/accounting/sample.js';

const T = 1_700_000_060_000;
const MINUTE = 60_000;
const WIRE: CountOptions = { billing: 'wire', billedSources: ['wireguard', 'sysfs'] };
const INNER: CountOptions = { billing: 'inner', billedSources: ['wireguard', 'sysfs'] };

/** One series' delta of subject `type:id` ending at `at`, with the host's rx (subject's up) and tx (down). */
function delta(
  source: SourceName,
  seriesKey: string,
  rx: bigint,
  tx: bigint,
  over: { kind?: 'delta' | 'reset'; at?: number; elapsedMs?: number; type?: 'peer' | 'vm'; id?: string } = {},
): SeriesDelta {
  return {
    sample: {
      identity: { node: 'local', source, interface: over.type === 'vm' ? 'tap7' : 'wg0', seriesKey, ifindex: 3, bootId: 'b' },
      subjectType: over.type ?? 'peer', subjectId: over.id ?? '1', rxBytes: 0n, txBytes: 0n, rxPackets: null, txPackets: null,
      at: over.at ?? T,
    },
    kind: over.kind ?? 'delta',
    rxBytes: rx,
    txBytes: tx,
    elapsedMs: over.elapsedMs ?? MINUTE,
  };
}
// A peer capped both ways for a minute: WireGuard counted each packet with ~32 bytes more than its class.
const wire = delta('wireguard', 'key-1', 2_080_000n, 61_600_000n);
// The class counters are read just before the wg dump in every tick.
const classUp = delta('tc', 'class:1:2:up', 2_000_000n, 0n, { at: T - 5 });
const classDown = delta('tc', 'class:1:2:down', 0n, 60_000_000n, { at: T - 5 });

test('billing wire: a capped peer is billed WireGuard\'s bytes, and its class bytes are kept beside them for utilisation', () => {
  const count = countTick([wire, classUp, classDown], WIRE).get('peer:1');
  assert.ok(count);
  assert.deepEqual([count.up, count.down], [{ bytes: 2_080_000n, elapsedMs: MINUTE }, { bytes: 61_600_000n, elapsedMs: MINUTE }]);
  assert.deepEqual([count.classUp, count.classDown], [{ bytes: 2_000_000n, elapsedMs: MINUTE }, { bytes: 60_000_000n, elapsedMs: MINUTE }]);
  assert.deepEqual(count.rows, [{ source: 'wireguard', node: 'local', interface: 'wg0', periodStart: T - MINUTE, periodEnd: T, up: 2_080_000n, down: 61_600_000n }]);
});

test('billing inner: a peer capped both ways is billed its class bytes, as one tc usage row', () => {
  const count = countTick([wire, classUp, classDown], INNER).get('peer:1');
  assert.ok(count);
  assert.deepEqual([count.up?.bytes, count.down?.bytes], [2_000_000n, 60_000_000n]);
  assert.deepEqual(count.rows, [{ source: 'tc', node: 'local', interface: 'wg0', periodStart: T - 5 - MINUTE, periodEnd: T - 5, up: 2_000_000n, down: 60_000_000n }]);
});

test('billing inner: a direction without a class (down-only cap) is billed from WireGuard\'s counters', () => {
  const count = countTick([wire, classDown], INNER).get('peer:1');
  assert.ok(count);
  assert.deepEqual([count.up?.bytes, count.down?.bytes, count.classUp], [2_080_000n, 60_000_000n, null]);
  assert.deepEqual(count.rows.map((r) => [r.source, r.up, r.down]), [['wireguard', 2_080_000n, 0n], ['tc', 0n, 60_000_000n]]);
});

test('billing inner: an unlimited peer (no class at all) is billed WireGuard\'s bytes', () => {
  const count = countTick([wire], INNER).get('peer:1');
  assert.ok(count);
  assert.deepEqual([count.up?.bytes, count.down?.bytes, count.classUp, count.classDown], [2_080_000n, 61_600_000n, null, null]);
});

test('a class counter that went down (class re-created mid-interval) is not used: the interval comes from the peer\'s own counters', () => {
  const recreated = delta('tc', 'class:1:2:down', 0n, 1_000_000n, { kind: 'reset', at: T - 5 });
  const count = countTick([wire, classUp, recreated], INNER).get('peer:1');
  assert.ok(count);
  assert.deepEqual([count.down?.bytes, count.classDown], [61_600_000n, null]);
  assert.equal(count.up?.bytes, 2_000_000n, 'the other side\'s class still counts');
});

test('a class missing from earlier readings (cap removed and set again) is not used until it was read in the previous tick too', () => {
  // Its stored reading is from an hour ago: its delta spans ticks that WireGuard's counters already billed.
  const stale = delta('tc', 'class:1:2:down', 0n, 900_000_000n, { at: T - 5, elapsedMs: 60 * MINUTE });
  const count = countTick([wire, stale], INNER).get('peer:1');
  assert.ok(count);
  assert.deepEqual([count.down?.bytes, count.classDown], [61_600_000n, null]);
  assert.deepEqual(count.rows.map((r) => r.source), ['wireguard']);
});

test('VMs are billed from their tap in both modes: its counters are the VM\'s own frames', () => {
  const tap = delta('sysfs', 'vm:7', 5_000_000n, 9_000_000n, { type: 'vm', id: '7' });
  const vmClass = delta('tc', 'class:1:3:down', 0n, 8_990_000n, { type: 'vm', id: '7', at: T - 5 });
  for (const options of [WIRE, INNER]) {
    const count = countTick([tap, vmClass], options).get('vm:7');
    assert.ok(count);
    assert.deepEqual([count.up?.bytes, count.down?.bytes, count.classDown?.bytes], [5_000_000n, 9_000_000n, 8_990_000n], options.billing);
    assert.deepEqual(count.rows.map((r) => r.source), ['sysfs']);
  }
});

test('subjects stay apart; sources outside the billed ones and old-style tc keys bill nothing', () => {
  const counts = countTick([
    wire,
    delta('wireguard', 'key-2', 10n, 20n, { id: '2' }),
    delta('vnstat', 'vm:9', 100n, 100n, { type: 'vm', id: '9' }),
    delta('tc', 'class:1:2', 7n, 7n),
  ], INNER);
  assert.deepEqual([...counts.keys()].sort(), ['peer:1', 'peer:2']);
  assert.equal(counts.get('peer:1')?.down?.bytes, 61_600_000n);
  assert.deepEqual(counts.get('peer:2')?.rows.map((r) => [r.up, r.down]), [[10n, 20n]]);
});

test('when the peer\'s own counters could not be read, its class still gives utilisation, and only billing inner bills it', () => {
  const onlyClass = countTick([classDown], WIRE).get('peer:1');
  assert.deepEqual([onlyClass?.down, onlyClass?.classDown?.bytes, onlyClass?.rows], [null, 60_000_000n, []]);
  assert.equal(countTick([classDown], INNER).get('peer:1')?.down?.bytes, 60_000_000n);
});
