import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ifbNameFor, isEngineIfbName } from '../../../src/shaping/ifb-name.js';

test('IFB names are deterministic, at most 15 characters and recognisable', () => {
  const name = ifbNameFor('wg0');
  assert.equal(name, ifbNameFor('wg0'));
  assert.ok(name.length <= 15, name);
  assert.match(name, /^ifb-[0-9a-f]{10}$/);
  assert.ok(isEngineIfbName(name));
  assert.ok(!isEngineIfbName('ifb0'));
});

test('the same interface name in two namespaces gets two IFBs', () => {
  assert.notEqual(ifbNameFor('wg0', 'a'), ifbNameFor('wg0', 'b'));
  assert.notEqual(ifbNameFor('wg0'), ifbNameFor('wg0', 'a'));
  assert.notEqual(ifbNameFor('wg0'), ifbNameFor('wg1'));
});

test('the fixture IFB name is stable across releases (it is in the captured tc output)', () => {
  assert.equal(ifbNameFor('fx0', 'pbw-fixture'), 'ifb-a503d9ef53');
});
