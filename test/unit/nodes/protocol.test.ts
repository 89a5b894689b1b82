/**
 * The node protocol's interface state with issue 14's fields: network caps and each subject's
 * guarantee and burst survive a round trip through JSON and the agent's parser, and malformed ones
 * are refused naming the field.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LimitRow } from '../../../src/db/limits.js';
import { interfaceStateOf } from '../../../src/nodes/panel/applier.js';
import { ProtocolError, parseInterfaceState, type InterfaceState } from '../../../src/nodes/protocol.js';

function row(id: number, values: Partial<LimitRow> = {}): LimitRow {
  return {
    id, subjectType: 'peer', subjectId: String(id), name: `peer-${id}`, node: 'hv-01', networkId: '7', interface: 'wg0', netns: null,
    interfaceKind: 'wireguard', addresses: [`10.8.0.${id}/32`], publicKey: null, upKbps: 0, downKbps: 0, minKbps: 0, burstKbps: 0, burstBytes: 0,
    defaultUpKbps: 0, defaultDownKbps: 0, throttleUpKbps: null, throttleDownKbps: null, classMinor: id + 1, status: 'applied', lastError: null,
    reason: null, appliedAt: null, updatedAt: new Date(0), ...values,
  };
}

const refused = (state: unknown, field: string) =>
  assert.throws(() => parseInterfaceState(state), (error: unknown) => error instanceof ProtocolError && error.field === field);

describe('interface state with network caps, guarantees and bursts', () => {
  test('the panel sends effective values (defaults and throttles resolved, a burst while in force) and every class under a network cap', () => {
    const rows = [
      row(1, { defaultDownKbps: 4000, minKbps: 10_000, burstKbps: 9000, burstBytes: 5_000_000 }),
      row(2, { upKbps: 3000, throttleUpKbps: 500, throttleDownKbps: 0, burstKbps: 9000, burstBytes: 5_000_000 }),
      row(3),
    ];
    const state = interfaceStateOf(rows, 42, null, { totalUpKbps: 0, totalDownKbps: 30_000 });
    assert.deepEqual(state, {
      version: 42, kind: 'wireguard', netns: null, totalDownKbps: 30_000,
      subjects: [
        { type: 'peer', id: '1', name: 'peer-1', classMinor: 2, addresses: ['10.8.0.1/32'], publicKey: null, upKbps: 0, downKbps: 4000, minKbps: 10_000, burstKbps: 9000, burstBytes: 5_000_000 },
        { type: 'peer', id: '2', name: 'peer-2', classMinor: 3, addresses: ['10.8.0.2/32'], publicKey: null, upKbps: 500, downKbps: 0 },
        { type: 'peer', id: '3', name: 'peer-3', classMinor: 4, addresses: ['10.8.0.3/32'], publicKey: null, upKbps: 0, downKbps: 0 },
      ],
    });
    assert.deepEqual(parseInterfaceState(JSON.parse(JSON.stringify(state))), state, 'the round trip keeps every field');
    assert.equal(interfaceStateOf([row(3)], 1, null).subjects[0]?.classMinor, null, 'without a network cap an unlimited subject has no class');
  });

  test('malformed fields are refused naming the field', () => {
    const base: InterfaceState = {
      version: 1, kind: 'wireguard', netns: null, totalUpKbps: 10_000,
      subjects: [{ type: 'peer', id: '1', name: 'a', classMinor: 2, addresses: ['10.8.0.1/32'], publicKey: null, upKbps: 0, downKbps: 0 }],
    };
    assert.deepEqual(parseInterfaceState(base), base);
    refused({ ...base, totalUpKbps: -1 }, 'totalUpKbps');
    refused({ ...base, totalDownKbps: 1.5 }, 'totalDownKbps');
    refused({ ...base, subjects: [{ ...base.subjects[0], classMinor: null }] }, 'subjects.0.classMinor');
    refused({ ...base, subjects: [{ ...base.subjects[0], minKbps: 100_000_001 }] }, 'subjects.0.minKbps');
    refused({ ...base, subjects: [{ ...base.subjects[0], upKbps: 1000, burstKbps: 5000 }] }, 'subjects.0.burstBytes');
    refused({ ...base, subjects: [{ ...base.subjects[0], upKbps: 1000, burstBytes: 5000 }] }, 'subjects.0.burstKbps');
    refused({ ...base, subjects: [{ ...base.subjects[0], burstKbps: 5000, burstBytes: 2 ** 32 + 1 }] }, 'subjects.0.burstBytes');
  });
});
