import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatPrefix, parseCidr } from '../../../src/shaping/addresses.js';
import { bucketOf, entriesFor, lengthTable, placementProblems, prefixFromKeys } from '../../../src/shaping/classify.js';

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

test('an IPv4 host goes to the /32 table, bucket = its last byte (dst word at 16, src at 12)', () => {
  const table = lengthTable(4, 32, 'dst');
  assert.deepEqual(table, {
    family: 4, length: 32, htid: 0x320, divisor: 256, hashOffset: 16, hashMask: 0x000000ff, dispatchNode: 1,
    versionKey: { value: 0x40000000, mask: 0xf0000000, off: 0 },
  });
  assert.equal(lengthTable(4, 32, 'src').hashOffset, 12);
  assert.equal(bucketOf(parseCidr('10.0.0.200/32')), 200);
});

test('an IPv6 host goes to the /128 table keyed on its last byte (dst word at 36, src at 20)', () => {
  const table = lengthTable(6, 128, 'dst');
  assert.deepEqual([table.htid, table.divisor, table.hashOffset, table.hashMask, table.dispatchNode], [0x480, 256, 36, 0xff, 0x40]);
  assert.equal(table.versionKey.value, 0x60000000);
  assert.equal(lengthTable(6, 128, 'src').hashOffset, 20);
  assert.equal(bucketOf(parseCidr('fd00::1:ab/128')), 0xab);
});

test('a prefix of any length sits in ONE bucket: the fixed bits of its last fixed byte', () => {
  // /30: byte 3, 6 fixed bits → 64 buckets; 10.0.1.4 → 4 >> 2 = 1.
  const slash30 = lengthTable(4, 30, 'dst');
  assert.deepEqual([slash30.divisor, slash30.hashOffset, slash30.hashMask], [64, 16, 0x000000fc]);
  assert.equal(bucketOf(parseCidr('10.0.1.4/30')), 1);
  // /24: byte 2, all 8 bits → bucket = third octet, mask 0x0000ff00.
  assert.deepEqual([lengthTable(4, 24, 'dst').divisor, lengthTable(4, 24, 'dst').hashMask], [256, 0x0000ff00]);
  assert.equal(bucketOf(parseCidr('10.0.77.0/24')), 77);
  // /17: byte 2, 1 fixed bit → 2 buckets.
  assert.deepEqual([lengthTable(4, 17, 'dst').divisor, lengthTable(4, 17, 'dst').hashMask], [2, 0x00008000]);
  assert.equal(bucketOf(parseCidr('10.0.128.0/17')), 1);
  // /64 (IPv6): byte 7, in the word at 24 + 4 = 28 (dst), low byte.
  assert.deepEqual([lengthTable(6, 64, 'dst').hashOffset, lengthTable(6, 64, 'dst').hashMask], [28, 0xff]);
  assert.equal(bucketOf(parseCidr('fd00:1:2:3::/64')), 3);
  // /0: one bucket, no hash.
  assert.deepEqual([lengthTable(4, 0, 'dst').divisor, lengthTable(4, 0, 'dst').hashOffset, bucketOf(parseCidr('0.0.0.0/0'))], [1, null, 0]);
});

test('dispatch keys order the lengths longest first, per family', () => {
  const v4 = [32, 30, 24, 16, 8, 0].map((l) => lengthTable(4, l, 'dst').dispatchNode);
  assert.deepEqual(v4, [...v4].sort((a, b) => a - b));
  const v6 = [128, 120, 64, 48, 0].map((l) => lengthTable(6, l, 'dst').dispatchNode);
  assert.deepEqual(v6, [...v6].sort((a, b) => a - b));
  assert.ok(Math.max(...v6) <= 0xfff && Math.max(...v4) < Math.min(...v6));
});

test('a subject with two allowed IPs gets one entry per address', () => {
  const entries = entriesFor([parseCidr('10.0.0.2/32'), parseCidr('10.0.1.0/31')], 2, 'dst');
  assert.deepEqual(
    entries.map((e) => [e.table.htid, e.bucket, e.prefixText]),
    [
      [0x320, 2, '10.0.0.2/32'],
      [0x31f, 0, '10.0.1.0/31'],
    ],
  );
});

test('placement refuses the subject whose prefix would be the 4096th of a bucket, and only it', () => {
  const hosts = (from: number, count: number, minor: number) =>
    Array.from({ length: count }, (_, i) => ({ id: `p${from + i}`, type: 'peer', classMinor: minor + i, prefixes: [parseCidr(`10.${((from + i) >> 8) & 0xff}.${(from + i) & 0xff}.9/32`)] }));
  assert.equal(placementProblems(hosts(0, 4095, 2), 'dst').size, 0);
  const over = placementProblems([...hosts(0, 4095, 2), ...hosts(4095, 2, 5000)], 'dst');
  assert.deepEqual([...over.keys()], ['p4095', 'p4096']);
  // Two prefixes of one subject in the same nearly full bucket count both.
  const pair = { id: 'pair', type: 'peer', classMinor: 9000, prefixes: [parseCidr('10.200.0.9/32'), parseCidr('10.200.1.9/32')] };
  assert.deepEqual([...placementProblems([...hosts(0, 4094, 2), pair], 'dst').keys()], ['pair']);
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
