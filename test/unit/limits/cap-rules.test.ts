/**
 * Issue 14's checks of a subject's guarantee and burst and of a network's defaults: each problem is
 * an issue naming the host field to fix (the hooks and the API answer 400 with it).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInput, parseBurstBytes, shareInput } from '../../../src/hooks/bandwidth-fields.js';
import { networkShapeIssues, subjectShapeIssues } from '../../../src/limits/cap-rules.js';
import { MAX_BURST_BYTES } from '../../../src/shaping/model.js';

const NONE = { totalUpKbps: 0, totalDownKbps: 0, defaultUpKbps: 0, defaultDownKbps: 0 };
const subject = (values: Partial<Parameters<typeof subjectShapeIssues>[0]>) => ({ upKbps: 0, downKbps: 0, minKbps: 0, burstKbps: 0, burstBytes: 0, ...values });
const fields = (issues: { field: string }[]) => issues.map((issue) => issue.field);

describe('a subject\u2019s guarantee and burst', () => {
  test('a guarantee above the network cap names bandwidth_min_kbps; one within it, or without a network cap, is fine', () => {
    const network = { ...NONE, totalDownKbps: 30_000 };
    assert.deepEqual(subjectShapeIssues(subject({ minKbps: 40_000 }), network), [
      { field: 'bandwidth_min_kbps', message: "`bandwidth_min_kbps` (40000 kbit/s) is above the network's download cap of 30000 kbit/s" },
    ]);
    assert.deepEqual(subjectShapeIssues(subject({ minKbps: 30_000 }), network), []);
    assert.deepEqual(subjectShapeIssues(subject({ minKbps: 40_000 }), NONE), []);
  });

  test('a burst rate without a size names bandwidth_burst_bytes, a size without a rate bandwidth_burst_kbps', () => {
    assert.deepEqual(fields(subjectShapeIssues(subject({ upKbps: 1000, burstKbps: 5000 }), NONE)), ['bandwidth_burst_bytes']);
    assert.deepEqual(fields(subjectShapeIssues(subject({ upKbps: 1000, burstBytes: 1_000_000 }), NONE)), ['bandwidth_burst_kbps']);
  });

  test('a burst with no cap at all, own or default, names bandwidth_burst_kbps', () => {
    const [issue] = subjectShapeIssues(subject({ burstKbps: 5000, burstBytes: 1_000_000 }), NONE);
    assert.equal(issue?.field, 'bandwidth_burst_kbps');
    assert.match(issue?.message ?? '', /needs a cap to burst above/);
    assert.deepEqual(subjectShapeIssues(subject({ burstKbps: 5000, burstBytes: 1_000_000 }), { ...NONE, defaultUpKbps: 1000 }), [], 'a network default is a cap');
  });

  test('a burst not above the cap of a capped direction (own or default) names bandwidth_burst_kbps', () => {
    assert.deepEqual(subjectShapeIssues(subject({ upKbps: 5000, downKbps: 20_000, burstKbps: 10_000, burstBytes: 1_000_000 }), NONE), [
      { field: 'bandwidth_burst_kbps', message: '`bandwidth_burst_kbps` (10000 kbit/s) must be above its download cap of 20000 kbit/s' },
    ]);
    assert.deepEqual(subjectShapeIssues(subject({ upKbps: 5000, burstKbps: 8000, burstBytes: 1_000_000 }), { ...NONE, defaultDownKbps: 8000 }), [
      { field: 'bandwidth_burst_kbps', message: "`bandwidth_burst_kbps` (8000 kbit/s) must be above the network's default download cap of 8000 kbit/s" },
    ]);
    assert.deepEqual(subjectShapeIssues(subject({ upKbps: 5000, burstKbps: 5001, burstBytes: 1 }), NONE), []);
  });
});

describe('a network\u2019s caps', () => {
  test('a default above the network cap of its direction names the default field', () => {
    assert.deepEqual(networkShapeIssues({ totalUpKbps: 10_000, totalDownKbps: 0, defaultUpKbps: 20_000, defaultDownKbps: 50_000 }), [
      { field: 'bandwidth_default_up_kbps', message: "`bandwidth_default_up_kbps` (20000 kbit/s) is above the network's upload cap of 10000 kbit/s" },
    ]);
    assert.deepEqual(networkShapeIssues({ totalUpKbps: 10_000, totalDownKbps: 10_000, defaultUpKbps: 10_000, defaultDownKbps: 0 }), []);
  });
});

describe('the fields of a body', () => {
  test('guarantee and burst parse as kbps and bytes; fields left out stay undefined', () => {
    assert.deepEqual(shareInput({ bandwidth_min_kbps: '2500', bandwidth_burst_kbps: 9000, bandwidth_burst_bytes: String(MAX_BURST_BYTES) }), {
      minKbps: 2500, burstKbps: 9000, burstBytes: MAX_BURST_BYTES, issues: [],
    });
    assert.deepEqual(shareInput({ name: 'x' }), { issues: [] });
    assert.deepEqual(fields(shareInput({ bandwidth_min_kbps: -1, bandwidth_burst_kbps: '1e3', bandwidth_burst_bytes: 1.5 }).issues), [
      'bandwidth_min_kbps', 'bandwidth_burst_kbps', 'bandwidth_burst_bytes',
    ]);
  });

  test('a burst size is a whole number of bytes up to MAX_BURST_BYTES', () => {
    for (const value of [0, 1, MAX_BURST_BYTES, '4294967296']) assert.equal(typeof parseBurstBytes('b', value), 'number', String(value));
    for (const value of [-1, MAX_BURST_BYTES + 1, '4294967297', '10 MB', null, 2.5]) {
      const issue = parseBurstBytes('bandwidth_burst_bytes', value);
      assert.equal((issue as { field: string }).field, 'bandwidth_burst_bytes', String(value));
      assert.match((issue as { message: string }).message, /^`bandwidth_burst_bytes` must be a whole number of bytes from 0 \(no burst\) to 4294967296, got /);
    }
  });

  test('a network body\u2019s four caps parse as kbps, each issue naming its field', () => {
    assert.deepEqual(networkInput({ bandwidth_total_up_kbps: '30000', bandwidth_default_down_kbps: 0 }), { totalUpKbps: 30_000, defaultDownKbps: 0, issues: [] });
    assert.deepEqual(fields(networkInput({ bandwidth_total_down_kbps: 'lots', bandwidth_default_up_kbps: 100_000_001 }).issues), ['bandwidth_total_down_kbps', 'bandwidth_default_up_kbps']);
  });
});

test('a burst the kernel cannot hold at the cap is refused on its bytes, naming the most it can be', () => {
  // 1000 kbit/s holds 273 s of bucket (34,125,000 B): at 20,000 kbit/s that lets 35,921,052 B through at the burst rate.
  assert.deepEqual(subjectShapeIssues(subject({ downKbps: 1000, burstKbps: 20_000, burstBytes: 35_921_052 }), NONE), []);
  const issues = subjectShapeIssues(subject({ downKbps: 1000, burstKbps: 20_000, burstBytes: 35_921_053 }), NONE);
  assert.deepEqual(fields(issues), ['bandwidth_burst_bytes']);
  assert.match(issues[0]?.message ?? '', /at most 35921052 bytes at 20000 kbit\/s/);
  // The lowest capped direction decides.
  assert.deepEqual(fields(subjectShapeIssues(subject({ upKbps: 1000, downKbps: 100_000, burstKbps: 200_000, burstBytes: 100_000_000 }), NONE)), ['bandwidth_burst_bytes']);
});
