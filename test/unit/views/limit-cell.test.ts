import { test } from 'node:test';
import assert from 'node:assert/strict';
import { limitCell } from '../../../src/views/limit-cell.js';

test('applied and unlimited subjects read as their caps alone', () => {
  assert.equal(limitCell({ bandwidth_up_kbps: 10_000, bandwidth_down_kbps: 50_000, bandwidth_status: 'applied' }), '10 / 50 Mbps');
  assert.equal(limitCell({ bandwidth_up_kbps: 0, bandwidth_down_kbps: 0, bandwidth_status: 'unlimited' }), 'Unlimited');
});

test('a pending or failed cap gets its badge, titled with the kernel\u2019s answer', () => {
  assert.deepEqual(limitCell({ bandwidth_up_kbps: 512, bandwidth_down_kbps: 0, bandwidth_status: 'failed', bandwidth_error: 'RTNETLINK answers' }), {
    text: '512 kbps / Unlimited', badge: { label: 'failed', tone: 'failed' }, title: 'RTNETLINK answers',
  });
});

test('a throttled subject keeps its configured caps as the text, with a throttled badge saying what the cycle used', () => {
  assert.deepEqual(limitCell({ bandwidth_up_kbps: 0, bandwidth_down_kbps: 0, bandwidth_status: 'throttled', quota_used_bytes: '30500000000' }), {
    text: 'Unlimited', badge: { label: 'throttled', tone: 'off' }, title: 'Quota exceeded (30.5 GB used this cycle): throttled until the cycle ends or the quota is reset',
  });
  assert.equal((limitCell({ bandwidth_up_kbps: 8000, bandwidth_down_kbps: 8000, bandwidth_status: 'throttled', quota_used_bytes: null }) as { title: string }).title, 'Quota exceeded: throttled until the cycle ends or the quota is reset');
});
