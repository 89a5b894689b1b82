import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DesiredStateError, MAX_BURST_BYTES, parseDesiredInterface, parseSubjectOf, type DesiredInterface } from '../../../src/shaping/model.js';

const peer = { type: 'peer', id: 'p1', classMinor: 2, addresses: ['10.0.0.2/32'], upKbps: 0, downKbps: 100 };

function rejects(input: unknown, field: string, message: RegExp): void {
  assert.throws(() => parseDesiredInterface(input), (error: unknown) => {
    assert.ok(error instanceof DesiredStateError);
    assert.equal(error.field, field);
    assert.match(error.message, message);
    return true;
  });
}

test('a valid desired interface passes through unchanged', () => {
  const input = { name: 'wg0', netns: 'lab', kind: 'wireguard', subjects: [peer] };
  assert.deepEqual(parseDesiredInterface(input), input);
});

test('bad names, caps and minors are refused with the field', () => {
  rejects({ name: 'way-too-long-name0', kind: 'wireguard', subjects: [] }, 'name', /1-15 characters/);
  rejects({ name: 'wg0', kind: 'wireguard', subjects: [{ ...peer, downKbps: -1 }] }, 'subjects.0.downKbps', /subjects\.0\.downKbps/);
  rejects({ name: 'wg0', kind: 'wireguard', subjects: [{ ...peer, classMinor: 0xffff }] }, 'subjects.0.classMinor', /classMinor/);
  rejects({ name: 'wg0', kind: 'wireguard', subjects: [peer, { ...peer, id: 'p2', addresses: ['10.0.0.3'] }] }, 'subjects.1.classMinor', /already used by peer p1/);
});

test('an address belongs to one subject only, and must be a CIDR', () => {
  rejects({ name: 'wg0', kind: 'wireguard', subjects: [peer, { ...peer, id: 'p2', classMinor: 3, addresses: ['10.0.0.2'] }] }, 'subjects.1.addresses.0', /already owned by peer p1/);
  rejects({ name: 'wg0', kind: 'wireguard', subjects: [{ ...peer, addresses: ['10.0.0.300'] }] }, 'subjects.0.addresses.0', /Invalid address/);
});

test('a vm interface holds exactly its VM, with no addresses', () => {
  const vm = { type: 'vm', id: '101', classMinor: 2, addresses: [], upKbps: 1, downKbps: 1 };
  assert.equal(parseDesiredInterface({ name: 'tap101', kind: 'vm', subjects: [vm] }).subjects.length, 1);
  rejects({ name: 'tap101', kind: 'vm', subjects: [{ ...vm, addresses: ['10.0.0.1'] }] }, 'subjects.0.addresses', /whole interface/);
  rejects({ name: 'tap101', kind: 'vm', subjects: [vm, { ...vm, id: '102', classMinor: 3 }] }, 'subjects', /one VM/);
  rejects({ name: 'wg0', kind: 'wireguard', subjects: [vm] }, 'subjects.0.type', /holds peers/);
});

test('network caps, minimums and bursts pass through; out-of-range values are refused with the field', () => {
  const input = {
    name: 'wg0',
    kind: 'wireguard',
    totalUpKbps: 20_000,
    totalDownKbps: 30_000,
    subjects: [{ ...peer, minKbps: 5000, burst: { kbps: 20_000, bytes: 2_000_000 } }],
  };
  assert.deepEqual(parseDesiredInterface(input), input);
  rejects({ ...input, totalDownKbps: -1 }, 'totalDownKbps', /totalDownKbps/);
  rejects({ ...input, totalUpKbps: 1.5 }, 'totalUpKbps', /totalUpKbps/);
  rejects({ ...input, subjects: [{ ...peer, minKbps: -1 }] }, 'subjects.0.minKbps', /minKbps/);
  rejects({ ...input, subjects: [{ ...peer, burst: { kbps: 0, bytes: 1000 } }] }, 'subjects.0.burst.kbps', /burst\.kbps/);
  rejects({ ...input, subjects: [{ ...peer, burst: { kbps: 9000, bytes: 0 } }] }, 'subjects.0.burst.bytes', /burst\.bytes/);
  rejects({ ...input, subjects: [{ ...peer, burst: { kbps: 9000, bytes: MAX_BURST_BYTES + 1 } }] }, 'subjects.0.burst.bytes', /burst\.bytes/);
  rejects({ ...input, subjects: [{ ...peer, burst: { kbps: 9000 } }] }, 'subjects.0.burst.bytes', /burst\.bytes/);
});

test('a rate change checks only the changed subject, with its index in the field', () => {
  const input = { name: 'wg0', kind: 'wireguard' as const, subjects: [peer, { ...peer, id: 'p2', classMinor: 3, addresses: ['10.0.0.3/32'], burst: { kbps: 0, bytes: 1 } }] } as DesiredInterface;
  assert.equal(parseSubjectOf(input, 'p1')?.id, 'p1');
  assert.equal(parseSubjectOf(input, 'nobody'), undefined);
  assert.throws(() => parseSubjectOf(input, 'p2'), (error: unknown) => error instanceof DesiredStateError && error.field === 'subjects.1.burst.kbps');
});
