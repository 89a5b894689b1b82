import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseExecutor, hasNetAdmin, hasSysAdmin } from '../../../src/limits/executor-choice.js';

test('CAP_NET_ADMIN is read from bit 12 of CapEff', () => {
  assert.equal(hasNetAdmin('Name:\tnode\nCapEff:\t000001ffffffffff\n'), true);
  assert.equal(hasNetAdmin('CapEff:\t0000000000001000\n'), true);
  assert.equal(hasNetAdmin('CapEff:\t0000000000000fff\n'), false);
  assert.equal(hasNetAdmin(''), false);
  assert.equal(hasSysAdmin('CapEff:\t0000000000200000\n'), true);
  assert.equal(hasSysAdmin('CapEff:\t0000000000001000\n'), false);
});

test('auto runs tc only where the process may change the kernel, and says why not', () => {
  assert.equal(chooseExecutor('auto', { netAdmin: true, tc: '/usr/sbin/tc' }).mode, 'local');
  const noCap = chooseExecutor('auto', { netAdmin: false, tc: '/usr/sbin/tc' });
  assert.equal(noCap.mode, 'recording');
  assert.match(noCap.reason, /lacks CAP_NET_ADMIN/);
  const noTc = chooseExecutor('auto', { netAdmin: true, tc: undefined });
  assert.equal(noTc.mode, 'recording');
  assert.match(noTc.reason, /`tc` \(iproute2\) was not found/);
  assert.equal(chooseExecutor('recording', { netAdmin: true, tc: '/usr/sbin/tc' }).mode, 'recording');
  assert.equal(chooseExecutor('local', { netAdmin: false, tc: undefined }).mode, 'local');
  assert.match(chooseExecutor('auto', { netAdmin: true, sysAdmin: false, tc: '/usr/sbin/tc' }).reason, /without CAP_SYS_ADMIN, interfaces inside network namespaces will fail/);
});
