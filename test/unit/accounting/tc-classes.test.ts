import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseClassText } from '../../../src/shaping/parse-class-text.js';
import { classDirectionOf, classSamples, classSeriesKey } from '../../../src/accounting/tc-classes.js';

const fixture = (name: string) => readFileSync(join('test', 'fixtures', 'tc', name), 'utf8');

test('class counters captured from tc -s become one series per side: egress = down, IFB = up', () => {
  const egress = parseClassText(fixture('class-egress.iproute2-6.1.0.txt'));
  const ifb = parseClassText(fixture('class-ifb.iproute2-6.1.0.txt'));
  const limited = egress.filter((c) => c.minor !== 0xffff && c.major === 1);
  assert.ok(limited.length > 0, 'the fixture has subject classes');
  const subjects = limited.map((c, i) => ({ subjectType: 'peer' as const, subjectId: String(i + 1), classMinor: c.minor }));
  const samples = classSamples(egress, ifb, subjects, { node: 'local', interface: 'wg0', ifindex: 3, bootId: 'b' }, 1000);
  const onIfb = subjects.filter((s) => ifb.some((c) => c.major === 1 && c.minor === s.classMinor));
  assert.equal(samples.length, subjects.length + onIfb.length, 'a down series per class on the egress, an up series per class on the IFB');
  for (const subject of subjects) {
    const minor = subject.classMinor;
    const down = samples.find((s) => s.identity.seriesKey === `class:1:${minor.toString(16)}:down`);
    const counters = egress.find((c) => c.minor === minor)?.counters;
    assert.ok(down && counters);
    assert.equal(down.identity.source, 'tc');
    assert.equal(down.subjectId, subject.subjectId);
    assert.deepEqual([down.rxBytes, down.txBytes, down.txPackets], [0n, counters.bytes, counters.packets], 'egress bytes are what the subject received');
    assert.equal(classDirectionOf(down.identity.seriesKey), 'down');
  }
  for (const subject of onIfb) {
    const up = samples.find((s) => s.identity.seriesKey === `class:1:${subject.classMinor.toString(16)}:up`);
    const counters = ifb.find((c) => c.minor === subject.classMinor)?.counters;
    assert.ok(up && counters);
    assert.deepEqual([up.rxBytes, up.txBytes, up.rxPackets], [counters.bytes, 0n, counters.packets], 'IFB bytes are what the subject sent');
    assert.equal(classDirectionOf(up.identity.seriesKey), 'up');
  }
});

test('a class the kernel does not have gives no sample: "no class" is never "0 bytes through it"', () => {
  const missing = classSamples([], [], [{ subjectType: 'vm', subjectId: '9', classMinor: 77 }], { node: 'local', interface: 'tap9', ifindex: 4, bootId: 'b' }, 1);
  assert.deepEqual(missing, []);
});

test('class series keys round-trip their direction; other keys have none', () => {
  assert.equal(classSeriesKey(0x2a, 'up'), 'class:1:2a:up');
  assert.equal(classDirectionOf(classSeriesKey(0xfffe, 'down')), 'down');
  for (const key of ['class:1:2a', 'class:1:2a:sideways', 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=', 'vm:7']) assert.equal(classDirectionOf(key), null, key);
});
