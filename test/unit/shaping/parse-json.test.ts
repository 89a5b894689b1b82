import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TcParseError } from '../../../src/shaping/parse-class-text.js';
import { parseFilterJson, parseU32Handle } from '../../../src/shaping/parse-filter-json.js';
import { htbDefaultMinor, parseQdiscJson } from '../../../src/shaping/parse-qdisc-json.js';
import { fixture, FIXTURE_IFB } from './fixtures.js';

test('qdiscs of a real `tc -j qdisc show`: the engine HTB, leaves and the ingress qdisc', () => {
  const qdiscs = parseQdiscJson(fixture('qdisc-egress'));
  assert.deepEqual(
    qdiscs.map((q) => [q.kind, q.handle, q.root, q.parent]),
    [
      ['htb', '1:', true, null],
      ['pfifo', '2:', false, '1:2'],
      ['pfifo', '3:', false, '1:3'],
      ['pfifo', '1a:', false, '1:1a'],
      ['ingress', 'ffff:', false, 'ffff:fff1'],
    ],
  );
  assert.equal(htbDefaultMinor(qdiscs[0]!), 0xffff);
  assert.equal(qdiscs[1]?.options.limit, 200);
});

test('a fresh veth has a noqueue root with handle 0:', () => {
  const [root] = parseQdiscJson(fixture('qdisc-noqueue'));
  assert.deepEqual([root?.kind, root?.handle, root?.root], ['noqueue', '0:', true]);
});

test('u32 filters: header, tables, links with hash mask and offset, and host entries', () => {
  const filters = parseFilterJson(fixture('filter-egress')).filter((f) => f.prio === 5);
  const table = filters.find((f) => f.handle === '320:');
  assert.deepEqual([table?.htid, table?.divisor], [0x320, 256]);
  const dispatch = filters.find((f) => f.handle === '3ff::3');
  assert.deepEqual([dispatch?.link, dispatch?.hashOffset, dispatch?.hashMask, dispatch?.keys], [0x31e, 16, 0xfc, [{ value: 0x40000000, mask: 0xf0000000, off: 0 }]]);
  const root = filters.find((f) => f.link === 0x3ff);
  assert.deepEqual([root?.htid, root?.hashMask, root?.keys], [0x800, undefined, [{ value: 0, mask: 0, off: 0 }]]);
  const host = filters.find((f) => f.handle === '320:2:1');
  assert.deepEqual(host, {
    prio: 5,
    protocol: 'all',
    kind: 'u32',
    handle: '320:2:1',
    htid: 0x320,
    bucket: 2,
    node: 1,
    flowidMinor: 2,
    keys: [{ value: 0x0a000002, mask: 0xffffffff, off: 16 }],
  });
});

test('IPv6 entries keep all four keys although iproute2 repeats the "match" key', () => {
  const v6 = parseFilterJson(fixture('filter-egress')).find((f) => f.handle === '480:2:1');
  assert.deepEqual(v6?.keys, [
    { value: 0xfd000000, mask: 0xffffffff, off: 24 },
    { value: 0, mask: 0xffffffff, off: 28 },
    { value: 0, mask: 0xffffffff, off: 32 },
    { value: 2, mask: 0xffffffff, off: 36 },
  ]);
  // The layout before issue 9 parses the same way.
  const legacy = parseFilterJson(fixture('legacy-filter-egress')).find((f) => f.handle === '11:2:1');
  assert.equal(legacy?.keys.length, 4);
});

test('the ingress redirect names its IFB', () => {
  const redirect = parseFilterJson(fixture('filter-ingress')).find((f) => f.mirredTo !== undefined);
  assert.equal(redirect?.mirredTo, FIXTURE_IFB);
  assert.equal(redirect?.protocol, 'all');
});

test('u32 handles split into table, bucket and node', () => {
  assert.deepEqual(parseU32Handle('10:2:1'), [0x10, 2, 1]);
  assert.deepEqual(parseU32Handle('800::800'), [0x800, 0, 0x800]);
  assert.deepEqual(parseU32Handle('10:'), [0x10, 0, 0]);
});

test('non-JSON output is a TcParseError, empty output is nothing', () => {
  assert.throws(() => parseQdiscJson('qdisc noqueue 0: root'), TcParseError);
  assert.throws(() => parseFilterJson('{'), TcParseError);
  assert.deepEqual(parseQdiscJson(''), []);
  assert.deepEqual(parseFilterJson(''), []);
});
