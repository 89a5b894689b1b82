import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseWgDump, WgDumpError } from '../../../src/accounting/wg-dump.js';
import { parseSysfsValues, SysfsError } from '../../../src/accounting/sysfs.js';
import { parseVnstatJson, VnstatError } from '../../../src/accounting/vnstat.js';

const fixture = (name: string) => readFileSync(join('test', 'fixtures', 'accounting', name), 'utf8');

test('wg show dump (captured after an iperf3 run through wireguard-go) gives per-peer counters', () => {
  const dump = parseWgDump(fixture('wg-dump-after-iperf3.wireguard-tools-1.0.20210914.txt'));
  assert.equal(dump.publicKey, 'NnNEC2TaH7HQZp9mJqhzTti8EdnVX4EfCG+eK0NRAwA=');
  assert.equal(dump.listenPort, 51820);
  assert.equal(JSON.stringify(dump, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes('8KLeHCy3'), false, 'the private key is not kept');
  assert.deepEqual(dump.peers.map((p) => [p.publicKey.slice(0, 8), p.endpoint, p.allowedIps, p.rxBytes, p.txBytes]), [
    ['KPVAmuGp', '10.250.0.2:51821', ['10.99.0.2/32', 'fd00:99::2/128'], 48_577_668n, 966_060n],
    ['qv+5lwxd', null, ['10.99.0.3/32', '192.168.77.0/24'], 0n, 0n],
  ]);
  assert.equal(parseWgDump(fixture('wg-dump.wireguard-tools-1.0.20210914.txt')).peers[0]?.rxBytes, 180n);
});

test('a malformed dump is an error, not zeros', () => {
  assert.throws(() => parseWgDump(''), WgDumpError);
  assert.throws(() => parseWgDump('a\tb\n'), /Unexpected interface line/);
  const good = fixture('wg-dump.wireguard-tools-1.0.20210914.txt').split('\n');
  assert.throws(() => parseWgDump([good[0], good[1]?.replace('\t180\t', '\tlots\t')].join('\n')), /non-numeric counters/);
  assert.throws(() => parseWgDump([good[0], 'x\ty'].join('\n')), /has 2 fields, expected 8/);
});

test('sysfs values parse in file order, exactly past 2^53', () => {
  assert.deepEqual(parseSysfsValues('3\n47506170\n598766\n33473\n9780\n'), {
    ifindex: 3, rxBytes: 47_506_170n, txBytes: 598_766n, rxPackets: 33_473n, txPackets: 9_780n,
  });
  assert.equal(parseSysfsValues('3\n18446744073709551615\n0\n0\n0').rxBytes, 2n ** 64n - 1n);
  assert.throws(() => parseSysfsValues('3\n1\n2\n'), SysfsError);
  assert.throws(() => parseSysfsValues('3\n-1\n2\n3\n4'), /Expected 5 numbers/);
});

test('vnstat --json (vnStat 2.10) gives interface totals; JSON version 1 is refused', () => {
  const totals = parseVnstatJson(fixture('vnstat-2.10.json'));
  assert.deepEqual(totals.map((t) => t.name), ['eth0', 'ifb0', 'ifb1']);
  assert.equal(totals[0]?.rxBytes, 0n);
  assert.equal(totals[0]?.updatedAt, 1_795_302_800_000);
  const big = fixture('vnstat-2.10.json').replace('"total":{"rx":0,"tx":0}', '"total":{"rx":9007199254740993,"tx":5}');
  assert.equal(parseVnstatJson(big)[0]?.rxBytes, 2n ** 53n + 1n);
  assert.throws(() => parseVnstatJson(fixture('vnstat-2.10.json').replace('"jsonversion":"2"', '"jsonversion":"1"')), /version 1 is not supported/);
  assert.throws(() => parseVnstatJson('{'), VnstatError);
});
