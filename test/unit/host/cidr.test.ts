import { test } from 'node:test';
import assert from 'node:assert/strict';
import { overlaps, parseCidr, type Cidr } from '../../../examples/host-panel/src/cidr.js';

const cidr = (text: string) => parseCidr(text) as Cidr;

test('CIDRs are parsed to their canonical text', () => {
  assert.equal(cidr('10.8.0.2').text, '10.8.0.2/32');
  assert.equal(cidr('10.8.0.0/24').text, '10.8.0.0/24');
  assert.equal(cidr('FD00:0:0:0::2').text, 'fd00::2/128');
  assert.equal(cidr('fd00:0:0:1::/64').text, 'fd00:0:0:1::/64');
  assert.equal(cidr('::/0').text, '::/0');
  assert.equal(cidr('0.0.0.0/0').text, '0.0.0.0/0');
  assert.equal(cidr('::ffff:10.0.0.1').text, '::ffff:a00:1/128');
});

test('bad CIDRs get a message that says what is wrong', () => {
  assert.match(parseCidr('10.0.0.256/32') as string, /not an IPv4 or IPv6 address/);
  assert.match(parseCidr('10.0.0.1/33') as string, /prefix longer than 32/);
  assert.match(parseCidr('fd00::/129') as string, /prefix longer than 128/);
  assert.match(parseCidr('10.0.0.1/24') as string, /host bits set: did you mean `10\.0\.0\.0\/24`/);
  assert.match(parseCidr('10.0.0.0/2x') as string, /invalid prefix length/);
  assert.match(parseCidr('10.0.0.0/8/8') as string, /more than one/);
  assert.match(parseCidr('fe80::1%eth0') as string, /not an IPv4 or IPv6 address/);
});

test('overlap is containment within one family', () => {
  assert.equal(overlaps(cidr('10.0.0.0/24'), cidr('10.0.0.7/32')), true);
  assert.equal(overlaps(cidr('10.0.1.0/24'), cidr('10.0.0.7/32')), false);
  assert.equal(overlaps(cidr('0.0.0.0/0'), cidr('192.168.1.1')), true);
  assert.equal(overlaps(cidr('fd00::/64'), cidr('fd00::2')), true);
  assert.equal(overlaps(cidr('fd00::/64'), cidr('10.0.0.0/8')), false);
});
