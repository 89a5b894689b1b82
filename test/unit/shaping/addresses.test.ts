import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatPrefix, parseCidr } from '../../../src/shaping/addresses.js';
import { entriesFor, placePrefix, prefixFromKeys } from '../../../src/shaping/classify.js';

test('CIDRs are parsed, host bits cleared, bare addresses are hosts', () => {
  assert.deepEqual(parseCidr('10.0.0.5/24'), { family: 4, bytes: [10, 0, 0, 0], length: 24 });
  assert.equal(formatPrefix(parseCidr('10.0.0.2')), '10.0.0.2/32');
  assert.equal(formatPrefix(parseCidr('fd00:0:0:0::2')), 'fd00::2/128');
  assert.equal(formatPrefix(parseCidr('fd00:1:2:3:4:5:6:7/64')), 'fd00:1:2:3::/64');
  assert.equal(formatPrefix(parseCidr('::ffff:10.1.2.3/128')), '::ffff:a01:203/128');
  assert.equal(formatPrefix(parseCidr('::/0')), '::/0');
});

test('malformed CIDRs are refused', () => {
  for (const bad of ['10.0.0', '10.0.0.256', '10.0.0.1/33', 'fd00:::1', 'fd00::1/129', 'x', '1:2:3:4:5:6:7:8:9']) {
    assert.throws(() => parseCidr(bad), Error, bad);
  }
});

test('an IPv4 host goes to one bucket of table 10: keyed on its last byte (dst at 16, src at 12)', () => {
  const dst = placePrefix(parseCidr('10.0.0.200/32'), 'dst');
  assert.deepEqual(dst, { table: { prio: 10, protocol: 'ip', htid: 0x10, divisor: 256, hashOffset: 16 }, buckets: [200], band: [1, 0x7ff] });
  assert.equal(placePrefix(parseCidr('10.0.0.200/32'), 'src').table.hashOffset, 12);
});

test('an IPv6 host goes to table 11: keyed on its last byte (dst at 36, src at 20)', () => {
  const dst = placePrefix(parseCidr('fd00::1:ab/128'), 'dst');
  assert.deepEqual(dst.table, { prio: 11, protocol: 'ipv6', htid: 0x11, divisor: 256, hashOffset: 36 });
  assert.deepEqual(dst.buckets, [0xab]);
  assert.equal(placePrefix(parseCidr('fd00::1/128'), 'src').table.hashOffset, 20);
});

test('a /30 is enumerated over its 4 buckets, a /24 over all 256, in a band after the hosts', () => {
  const slash30 = placePrefix(parseCidr('10.0.1.4/30'), 'dst');
  assert.deepEqual(slash30.buckets, [4, 5, 6, 7]);
  assert.deepEqual(slash30.band, [0x900, 0x9ff]);
  const slash24 = placePrefix(parseCidr('10.0.1.0/24'), 'dst');
  assert.equal(slash24.buckets.length, 256);
  assert.deepEqual(slash24.band, [0xf00, 0xfff]);
  assert.deepEqual(placePrefix(parseCidr('fd00::/120'), 'dst').band, [0xf00, 0xfff]);
});

test('shorter prefixes go to a linear table of their length, tried after the hashed ones', () => {
  const v4 = placePrefix(parseCidr('10.8.0.0/16'), 'dst');
  assert.deepEqual(v4, { table: { prio: 184, protocol: 'ip', htid: 0x110, divisor: 1, hashOffset: null }, buckets: [0], band: [1, 0xfff] });
  const v4wider = placePrefix(parseCidr('10.0.0.0/8'), 'dst');
  assert.ok(v4wider.table.prio > v4.table.prio, 'a /8 is tried after a /16');
  const v6 = placePrefix(parseCidr('fd00:1::/64'), 'src');
  assert.deepEqual(v6.table, { prio: 936, protocol: 'ipv6', htid: 0x240, divisor: 1, hashOffset: null });
});

test('a subject with two allowed IPs gets one entry per address and bucket', () => {
  const entries = entriesFor([parseCidr('10.0.0.2/32'), parseCidr('10.0.1.0/31')], 2, 'dst');
  assert.deepEqual(
    entries.map((e) => [e.table.htid, e.bucket, e.prefixText]),
    [
      [0x10, 2, '10.0.0.2/32'],
      [0x10, 0, '10.0.1.0/31'],
      [0x10, 1, '10.0.1.0/31'],
    ],
  );
});

test('u32 keys read back into the prefix they match', () => {
  assert.equal(prefixFromKeys([{ value: 0x0a000002, mask: 0xffffffff, off: 16 }], 4, 'dst'), '10.0.0.2/32');
  assert.equal(prefixFromKeys([{ value: 0x0a000100, mask: 0xfffffffc, off: 16 }], 4, 'dst'), '10.0.1.0/30');
  assert.equal(prefixFromKeys([{ value: 0x0a000002, mask: 0xffffffff, off: 12 }], 4, 'dst'), null, 'a src key is not a dst prefix');
  const v6 = [
    { value: 0xfd000000, mask: 0xffffffff, off: 24 },
    { value: 0, mask: 0xffffffff, off: 28 },
    { value: 0, mask: 0xffffffff, off: 32 },
    { value: 2, mask: 0xffffffff, off: 36 },
  ];
  assert.equal(prefixFromKeys(v6, 6, 'dst'), 'fd00::2/128');
  assert.equal(prefixFromKeys([{ value: 0x0a000000, mask: 0xff00ff00, off: 16 }], 4, 'dst'), null, 'non-contiguous mask');
});
