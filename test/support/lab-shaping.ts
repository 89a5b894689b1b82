/** Assertions and reads shared by the shaping kernel tests. */
import assert from 'node:assert/strict';

import type { Executor } from '../../src/shaping/executor.js';
import { readActual } from '../../src/shaping/read.js';
import type { IperfResult } from './lab.js';

/** Asserts a receiver-side goodput between 85% and 102% of `capKbps`; returns the measure as text (for `t.diagnostic`). */
export function assertHoldsCap(result: IperfResult, capKbps: number, label: string): string {
  const ratio = result.bitsPerSecond / (capKbps * 1000);
  const got = `${(result.bitsPerSecond / 1e6).toFixed(2)} Mbit/s = ${(ratio * 100).toFixed(1)}% of ${capKbps / 1000} Mbit/s`;
  assert.ok(ratio >= 0.85 && ratio <= 1.02, `${label}: ${got}, expected 85%-102%`);
  return `${label}: ${got}`;
}

/** Everything of the engine that still points at class minor `minor`, on the interface and its IFB. */
export async function leftoversOf(executor: Executor, ifname: string, netns: string, minor: number): Promise<string[]> {
  const actual = await readActual(executor, ifname, netns);
  const found: string[] = [];
  for (const tree of [actual.egress, actual.ifb.tree]) {
    if (!tree) continue;
    for (const c of tree.classes) if (c.major === 1 && c.minor === minor) found.push(`class ${c.classid} on ${tree.device}`);
    for (const q of tree.qdiscs) if (q.parent === `1:${minor.toString(16)}`) found.push(`leaf ${q.handle} on ${tree.device}`);
    for (const f of tree.filters) if (f.flowidMinor === minor) found.push(`filter ${f.handle ?? '?'} on ${tree.device}`);
  }
  return found;
}
