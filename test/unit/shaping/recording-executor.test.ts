import assert from 'node:assert/strict';
import { test } from 'node:test';

import { KernelError } from '../../../src/shaping/errors.js';
import type { Executor, RunOptions } from '../../../src/shaping/executor.js';
import { op } from '../../../src/shaping/operations.js';
import { isReadOnlyCommand } from '../../../src/shaping/read-only-command.js';
import { RecordingExecutor } from '../../../src/shaping/recording-executor.js';

/** A kernel that answers reads from a table and remembers what it was asked. */
function fakeKernel(answers: Record<string, string | KernelError>): Executor & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async run(argv: readonly string[], options: RunOptions = {}) {
      const line = [...(options.netns ? ['@' + options.netns] : []), ...argv].join(' ');
      asked.push(line);
      const answer = answers[line];
      if (answer instanceof KernelError) throw answer;
      return { stdout: answer ?? '', stderr: '' };
    },
    async batch() {
      throw new Error('a dry run must never pass a plan on');
    },
  };
}

const refusal = (argv: string[], stderr: string) => new KernelError({ argv, stderr, exitCode: 1, timedOut: false });
const plan = (device: string, rate: number) => [
  op('ip', ['link', 'add', 'name', `ifb-${device}`, 'type', 'ifb'], undefined, 'ifb'),
  op('tc', ['qdisc', 'add', 'dev', device, 'root', 'handle', '1:', 'htb', 'default', 'ffff'], undefined, 'root'),
  op('tc', ['class', 'add', 'dev', device, 'parent', '1:', 'classid', '1:2', 'htb', 'rate', `${rate}kbit`], undefined, 'class'),
];

test('`history: latest` keeps the newest call of each command and the newest plan of each interface', async () => {
  const recorder = new RecordingExecutor({ history: 'latest' });
  for (let i = 1; i <= 500; i++) {
    await recorder.run(['tc', '-j', 'qdisc', 'show', 'dev', 'wg0']);
    await recorder.batch(plan('wg0', i));
    await recorder.batch(plan('wg1', 1000 + i));
  }
  assert.deepEqual(
    recorder.calls.map((call) => call.argv.join(' ')),
    ['tc -j qdisc show dev wg0', 'ip -batch -', 'tc -batch -', 'ip -batch -', 'tc -batch -'],
    'one read, and per interface one ip and one tc batch',
  );
  assert.deepEqual(
    recorder.operations.filter((o) => o.argv[0] === 'class').map((o) => `${o.argv[3]} ${o.argv.at(-1)}`),
    ['wg0 500kbit', 'wg1 1500kbit'],
    'the latest plan of each interface',
  );
});

test('by default every call is kept, in order (what unit tests read)', async () => {
  const recorder = new RecordingExecutor();
  await recorder.batch(plan('wg0', 1));
  await recorder.batch(plan('wg0', 2));
  assert.equal(recorder.calls.length, 4);
  assert.equal(recorder.operations.length, 6);
  assert.throws(() => new RecordingExecutor({ history: 'some' as 'all' }), /Expected `history` to be 'all' or 'latest', got `some` \(string\)/);
});

test('with `reads`, a dry run asks the real kernel for reads only, and never passes a change on', async () => {
  const kernel = fakeKernel({
    'tc -j qdisc show dev wg0': '[{"kind":"htb","handle":"1:","root":true}]',
    'tc -j qdisc show dev gone': refusal(['tc'], 'Cannot find device "gone"'),
    '@lab tc -j qdisc show dev wg0': refusal(['tc'], 'setting the network namespace "lab" failed: Operation not permitted'),
  });
  const recorder = new RecordingExecutor({ reads: kernel, history: 'latest', outputs: { 'tc -s class show dev wg0': { stdout: 'canned', stderr: '' } } });

  assert.equal((await recorder.run(['tc', '-j', 'qdisc', 'show', 'dev', 'wg0'])).stdout, '[{"kind":"htb","handle":"1:","root":true}]');
  await assert.rejects(recorder.run(['tc', '-j', 'qdisc', 'show', 'dev', 'gone']), /Cannot find device "gone"/, 'a missing device is the kernel’s answer');
  assert.deepEqual(await recorder.run(['tc', '-j', 'qdisc', 'show', 'dev', 'wg0'], { netns: 'lab' }), { stdout: '', stderr: '' }, 'a namespace it may not enter reads as empty');
  assert.equal((await recorder.run(['tc', '-s', 'class', 'show', 'dev', 'wg0'])).stdout, 'canned', 'canned answers win');
  await recorder.run(['ip', 'link', 'add', 'name', 'ifb0', 'type', 'ifb']);
  await recorder.run(['ip', 'netns', 'add', 'probe']);
  await recorder.batch(plan('wg0', 8000));

  assert.deepEqual(kernel.asked, ['tc -j qdisc show dev wg0', 'tc -j qdisc show dev gone', '@lab tc -j qdisc show dev wg0']);
  assert.equal(recorder.operations.length, 3, 'the plan is recorded');
});

test('read-only commands are told from changes', () => {
  const reads = [
    ['tc', '-j', 'qdisc', 'show', 'dev', 'wg0'],
    ['tc', '-n', 'lab', '-s', 'class', 'show', 'dev', 'wg0'],
    ['tc', '-j', 'filter', 'show', 'dev', 'wg0', 'parent', '1:'],
    ['ip', '-n', 'lab', '-j', 'link', 'show', 'dev', 'ifb-0123456789'],
    ['ip', 'addr', 'list'],
  ];
  const changes = [
    ['tc', 'qdisc', 'add', 'dev', 'wg0', 'root', 'handle', '1:', 'htb'],
    ['tc', '-batch', '-'],
    ['tc', '-j', 'qdisc', 'del', 'dev', 'wg0', 'root'],
    ['ip', 'link', 'set', 'dev', 'ifb0', 'up'],
    ['ip', 'netns', 'add', 'x'],
    ['ip', 'netns', 'exec', 'x', 'tc', 'qdisc', 'show'],
    ['cat', '/proc/self/status'],
    ['tc', '-force', 'qdisc', 'show'],
    [],
  ];
  for (const argv of reads) assert.equal(isReadOnlyCommand(argv), true, argv.join(' '));
  for (const argv of changes) assert.equal(isReadOnlyCommand(argv), false, argv.join(' '));
});
