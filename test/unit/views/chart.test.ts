import { test } from 'node:test';
import assert from 'node:assert/strict';
import { niceCeiling, renderChart } from '../../../src/views/chart.js';

const HOUR = 3_600_000;
const label = (start: number) => new Date(start).toISOString().slice(11, 16);

test('a chart draws both directions as average rates and each cap as a line', () => {
  // 450 MB in an hour = 1,000,000 kbit/s average; 45 MB = 100,000.
  const points = [0, 1, 2].map((i) => ({ start: i * HOUR, upBytes: 45_000_000n * BigInt(i), downBytes: 450_000_000n }));
  const svg = renderChart({ title: 'web-01 <48 h>', points, bucketMs: HOUR, capUpKbps: 50_000, capDownKbps: 2_000_000, label });
  assert.match(svg, /^<svg [^>]*role="img" aria-label="web-01 &#60;48 h&#62;"/);
  assert.equal((svg.match(/<polyline /g) ?? []).length, 2);
  assert.match(svg, /class="cap down"><title>down cap 2.00 Gbps<\/title>/);
  assert.match(svg, /class="cap up"><title>up cap 50.0 Mbps<\/title>/);
  assert.match(svg, />01:00</);
  assert.doesNotMatch(svg, /<script/);
  const down = /<polyline points="([^"]+)" class="down"/.exec(svg)?.[1]?.split(' ') ?? [];
  assert.equal(new Set(down.map((p) => p.split(',')[1])).size, 1, 'a constant download is a flat line');
});

test('unlimited draws no cap line, and an empty series still renders axes', () => {
  const svg = renderChart({ title: 'x', points: [], bucketMs: HOUR, capUpKbps: 0, capDownKbps: 0, label });
  assert.doesNotMatch(svg, /class="cap/);
  assert.match(svg, /class="grid"/);
});

test('axis tops are 1, 2, 2.5 or 5 times a power of ten', () => {
  assert.deepEqual([0, 0.3, 1, 1.2, 3, 7, 11, 4800, 51_000, 210_000].map(niceCeiling), [1, 0.5, 1, 2, 5, 10, 20, 5000, 100_000, 250_000]);
});
