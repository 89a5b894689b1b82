import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseClassText, parseTcRate, parseTcSize, TcParseError } from '../../../src/shaping/parse-class-text.js';
import { fixture } from './fixtures.js';

test('HTB classes of a real `tc -s class show` are parsed with rates, bursts and counters', () => {
  const classes = parseClassText(fixture('class-egress'));
  assert.deepEqual(
    classes.map((c) => c.classid),
    ['1:ffff', '1:1', '1:2', '1:1a', '1:3'],
  );
  const peerA = classes[2];
  assert.deepEqual(peerA, {
    kind: 'htb',
    classid: '1:2',
    major: 1,
    minor: 2,
    parent: '1:1',
    leaf: '2:',
    rateBits: 8_000_000,
    ceilBits: 8_000_000,
    burstBytes: 10_000,
    cburstBytes: 10_000,
    counters: { bytes: 372_394n, packets: 304n, dropped: 0n, overlimits: 34n, requeues: 0n, backlogBytes: 0n, backlogPackets: 0n },
  });
  assert.equal(classes[0]?.rateBits, 100_000_000_000, '100Gbit');
  assert.deepEqual([classes[1]?.parent, classes[1]?.leaf, classes[0]?.parent], [null, null, '1:1'], '1:1 at the root, without a leaf; 1:ffff under it');
  assert.equal(classes[4]?.rateBits, 1_234_000_000, '1234Mbit (iproute2 truncates)');
  assert.equal(classes[3]?.minor, 0x1a);
  assert.equal(classes[3]?.rateBits, 1000);
});

test('the -d variant (quantum, linklayer, burst/cell) parses the same', () => {
  const plain = parseClassText(fixture('class-egress')).map(({ counters: _c, ...rest }) => rest);
  const detailed = parseClassText(fixture('class-egress-details')).map(({ counters: _c, ...rest }) => rest);
  assert.deepEqual(detailed, plain);
});

test('the upload tree on the IFB has its own counters', () => {
  const classes = parseClassText(fixture('class-ifb'));
  assert.deepEqual(
    classes.map((c) => [c.classid, c.rateBits, c.counters?.bytes]),
    [
      ['1:ffff', 100_000_000_000, 348n],
      ['1:1', 100_000_000_000, 136_994n],
      ['1:2', 4_000_000, 136_646n],
      ['1:1a', 1000, 0n],
    ],
  );
});

test('counters above 2^53 stay exact (bigint)', () => {
  const text = 'class htb 1:2 root leaf 2: prio 0 rate 8Mbit ceil 8Mbit burst 10000b cburst 10000b \n Sent 18446744073709551615 bytes 9007199254740993 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 2Kb 3p requeues 0\n';
  const [cls] = parseClassText(text);
  assert.equal(cls?.counters?.bytes, 18_446_744_073_709_551_615n);
  assert.equal(cls?.counters?.packets, 9_007_199_254_740_993n);
  assert.equal(cls?.counters?.backlogBytes, 2048n);
  assert.equal(cls?.counters?.backlogPackets, 3n);
});

test('a class under a parent and an empty output', () => {
  assert.deepEqual(parseClassText(''), []);
  const [cls] = parseClassText('class htb 1:10 parent 1:1 leaf 10: prio 0 rate 1Kbit ceil 2Kbit burst 1600b cburst 1600b\n');
  assert.equal(cls?.parent, '1:1');
  assert.equal(cls?.ceilBits, 2000);
  assert.equal(cls?.counters, undefined);
});

test('garbage is refused with a TcParseError', () => {
  assert.throws(() => parseClassText(' Sent 1 bytes 1 pkt\n'), TcParseError);
  assert.throws(() => parseClassText('class htb nonsense\n'), TcParseError);
  assert.throws(() => parseTcRate('8 Mbit'), TcParseError);
  assert.throws(() => parseTcSize('10k'), TcParseError);
});

test('rates and sizes in every unit iproute2 prints', () => {
  assert.deepEqual(['500bit', '1Kbit', '8Mbit', '10Gbit', '1Tbit', '12Kibit'].map(parseTcRate), [500, 1000, 8e6, 1e10, 1e12, 12288]);
  assert.deepEqual(['10000b', '2Kb', '1Mb', '1600b/1'].map(parseTcSize), [10000, 2048, 1048576, 1600]);
});
