import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseClassText } from '../../../src/shaping/parse-class-text.js';
import { classSamples } from '../../../src/accounting/tc-classes.js';

const fixture = (name: string) => readFileSync(join('test', 'fixtures', 'tc', name), 'utf8');

test('class counters captured from tc -s become per-subject samples: egress = down, IFB = up', () => {
  const egress = parseClassText(fixture('class-egress.iproute2-6.1.0.txt'));
  const ifb = parseClassText(fixture('class-ifb.iproute2-6.1.0.txt'));
  const limited = egress.filter((c) => c.minor !== 0xffff && c.major === 1);
  assert.ok(limited.length > 0, 'the fixture has subject classes');
  const subjects = limited.map((c, i) => ({ subjectType: 'peer' as const, subjectId: String(i + 1), classMinor: c.minor }));
  const samples = classSamples(egress, ifb, subjects, { node: 'local', interface: 'wg0', ifindex: 3, bootId: 'b' }, 1000);
  assert.equal(samples.length, subjects.length);
  for (const [i, sample] of samples.entries()) {
    const minor = subjects[i]!.classMinor;
    assert.equal(sample.identity.source, 'tc');
    assert.equal(sample.identity.seriesKey, `class:1:${minor.toString(16)}`);
    assert.equal(sample.txBytes, egress.find((c) => c.minor === minor)?.counters?.bytes ?? 0n);
    assert.equal(sample.rxBytes, ifb.find((c) => c.minor === minor)?.counters?.bytes ?? 0n);
  }
  const missing = classSamples([], [], [{ subjectType: 'vm', subjectId: '9', classMinor: 77 }], { node: 'local', interface: 'tap9', ifindex: 4, bootId: 'b' }, 1);
  assert.deepEqual([missing[0]?.rxBytes, missing[0]?.txBytes], [0n, 0n]);
});
