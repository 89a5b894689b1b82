/**
 * desiredInterface: what the engine is asked to build from `bw_limits` rows and the network's caps
 * (issue 14): effective caps, totals, guarantees and bursts, as exact objects.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LimitRow } from '../../../src/db/limits.js';
import { desiredInterface } from '../../../src/limits/desired.js';

const REF = { node: 'local', interface: 'wg0', netns: null };

function row(id: number, values: Partial<LimitRow> = {}): LimitRow {
  return {
    id, subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, node: 'local', networkId: '7', interface: 'wg0', netns: null,
    interfaceKind: 'wireguard', addresses: [`10.8.0.${id}/32`], publicKey: null, upKbps: 0, downKbps: 0, minKbps: 0, burstKbps: 0, burstBytes: 0,
    defaultUpKbps: 0, defaultDownKbps: 0, throttleUpKbps: null, throttleDownKbps: null, classMinor: id + 1, status: 'applied', lastError: null,
    reason: null, appliedAt: null, updatedAt: new Date(0), ...values,
  };
}

const subject = (id: number, up: number, down: number, extra: Record<string, unknown> = {}) => ({
  type: 'peer', id: String(id), classMinor: id + 1, addresses: [`10.8.0.${id}/32`], upKbps: up, downKbps: down, ...extra,
});

describe('desiredInterface', () => {
  test('no network cap: only limited subjects, with their own caps; no totals', () => {
    const rows = [row(1, { upKbps: 1000, downKbps: 5000 }), row(2, { classMinor: null }), row(3, { minKbps: 4000 })];
    assert.deepEqual(desiredInterface(REF, rows), { name: 'wg0', kind: 'wireguard', subjects: [subject(1, 1000, 5000)] });
    assert.deepEqual(desiredInterface(REF, rows, { totalUpKbps: 0, totalDownKbps: 0 }), { name: 'wg0', kind: 'wireguard', subjects: [subject(1, 1000, 5000)] }, 'totals of 0 are none');
  });

  test('a network cap on one side: every subject with a class is shaped, the unlimited ones too, and the total is set', () => {
    const rows = [row(1, { upKbps: 5000 }), row(2), row(3)];
    assert.deepEqual(desiredInterface({ ...REF, netns: 'lab' }, rows, { totalUpKbps: 0, totalDownKbps: 30_000 }), {
      name: 'wg0', netns: 'lab', kind: 'wireguard', totalDownKbps: 30_000,
      subjects: [subject(1, 5000, 0), subject(2, 0, 0), subject(3, 0, 0)],
    });
  });

  test('network defaults fill the directions without an own cap', () => {
    const rows = [row(1, { upKbps: 2000, defaultUpKbps: 1000, defaultDownKbps: 4000 }), row(2, { defaultUpKbps: 1000, defaultDownKbps: 4000 })];
    assert.deepEqual(desiredInterface(REF, rows), { name: 'wg0', kind: 'wireguard', subjects: [subject(1, 2000, 4000), subject(2, 1000, 4000)] });
  });

  test('a guarantee is passed on as minKbps, under a network cap', () => {
    const rows = [row(1, { minKbps: 20_000 }), row(2, { downKbps: 5000 })];
    assert.deepEqual(desiredInterface(REF, rows, { totalUpKbps: 30_000, totalDownKbps: 30_000 }), {
      name: 'wg0', kind: 'wireguard', totalUpKbps: 30_000, totalDownKbps: 30_000,
      subjects: [subject(1, 0, 0, { minKbps: 20_000 }), subject(2, 0, 5000)],
    });
  });

  test('a burst is passed on while in force; a throttle in force takes it away and caps the subject', () => {
    const burst = { burstKbps: 20_000, burstBytes: 10_000_000 };
    assert.deepEqual(desiredInterface(REF, [row(1, { upKbps: 5000, downKbps: 5000, ...burst })]), {
      name: 'wg0', kind: 'wireguard', subjects: [subject(1, 5000, 5000, { burst: { kbps: 20_000, bytes: 10_000_000 } })],
    });
    assert.deepEqual(desiredInterface(REF, [row(1, { upKbps: 5000, downKbps: 5000, throttleUpKbps: 256, throttleDownKbps: 0, ...burst })]), {
      name: 'wg0', kind: 'wireguard', subjects: [subject(1, 256, 5000)],
    });
  });

  test('a VM is shaped on its whole interface: no addresses', () => {
    const vm = row(1, { subjectType: 'vm', interfaceKind: 'vm', interface: 'tap1', networkId: null, upKbps: 100, addresses: ['x'] });
    assert.deepEqual(desiredInterface({ ...REF, interface: 'tap1' }, [vm]), {
      name: 'tap1', kind: 'vm', subjects: [{ type: 'vm', id: '1', classMinor: 2, addresses: [], upKbps: 100, downKbps: 0 }],
    });
  });
});
