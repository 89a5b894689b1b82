import assert from 'node:assert/strict';
import { test } from 'node:test';

import { KernelError } from '../../../src/shaping/errors.js';
import { batchScript, failedBatchLine, groupForBatch, withNetns } from '../../../src/shaping/executor.js';
import { LocalExecutor } from '../../../src/shaping/local-executor.js';
import { op } from '../../../src/shaping/operations.js';
import { RecordingExecutor } from '../../../src/shaping/recording-executor.js';

const plan = [
  op('ip', ['link', 'add', 'name', 'ifb-x', 'type', 'ifb'], 'ns1', 'ifb'),
  op('ip', ['link', 'set', 'dev', 'ifb-x', 'up'], 'ns1', 'up'),
  op('tc', ['qdisc', 'add', 'dev', 'wg0', 'root', 'handle', '1:', 'htb', 'default', 'ffff'], 'ns1', 'root'),
  op('tc', ['class', 'add', 'dev', 'wg0', 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '8kbit'], 'ns1', 'class'),
  op('ip', ['link', 'del', 'dev', 'ifb-y'], 'ns1', 'old'),
];

test('namespaces: tc/ip take -n, other programs run under ip netns exec', () => {
  assert.deepEqual(withNetns(['tc', 'qdisc', 'show'], 'ns1'), ['tc', '-n', 'ns1', 'qdisc', 'show']);
  assert.deepEqual(withNetns(['wg', 'show'], 'ns1'), ['ip', 'netns', 'exec', 'ns1', 'wg', 'show']);
  assert.deepEqual(withNetns(['tc', 'qdisc', 'show'], undefined), ['tc', 'qdisc', 'show']);
});

test('a plan is batched as runs of the same program, in order', () => {
  const groups = groupForBatch(plan);
  assert.deepEqual(
    groups.map((g) => [g.tool, g.netns, g.operations.length, g.start]),
    [
      ['ip', 'ns1', 2, 0],
      ['tc', 'ns1', 2, 2],
      ['ip', 'ns1', 1, 4],
    ],
  );
  assert.equal(batchScript(groups[1]!.operations), 'qdisc add dev wg0 root handle 1: htb default ffff\nclass add dev wg0 parent 1: classid 1:2 htb rate 8kbit\n');
});

test('arguments a batch line cannot carry are refused', () => {
  assert.throws(() => batchScript([op('tc', ['qdisc', 'show', 'dev', 'a b'], undefined, '')]), /without white space/);
  assert.throws(() => batchScript([op('tc', ['x', '#'], undefined, '')]), TypeError);
});

test('the recording executor records batches and answers reads from canned outputs', async () => {
  const recorder = new RecordingExecutor({
    outputs: {
      'tc -n ns1 -j qdisc show dev wg0': { stdout: '[]', stderr: '' },
      'tc -n ns1 -j qdisc show dev gone': { error: 'Cannot find device "gone"' },
    },
  });
  assert.equal((await recorder.run(['tc', '-j', 'qdisc', 'show', 'dev', 'wg0'], { netns: 'ns1' })).stdout, '[]');
  await assert.rejects(recorder.run(['tc', '-j', 'qdisc', 'show', 'dev', 'gone'], { netns: 'ns1' }), KernelError);
  await recorder.batch(plan);
  assert.deepEqual(
    recorder.calls.filter((c) => c.kind === 'batch').map((c) => c.argv.join(' ')),
    ['ip -n ns1 -batch -', 'tc -n ns1 -batch -', 'ip -n ns1 -batch -'],
  );
  assert.equal(recorder.operations.length, 5);
});

test('tc reports a failing batch line as `Command failed -:N`', () => {
  assert.equal(failedBatchLine('RTNETLINK answers: File exists\nCommand failed -:3\n'), 3);
  assert.equal(failedBatchLine('nothing'), undefined);
});

test('KernelError keeps argv, stderr, exit code and a one-line shortMessage', () => {
  const error = new KernelError({
    argv: ['tc', 'class', 'del', 'dev', 'wg0', 'classid', '1:9'],
    stderr: 'Error: Specified class not found.\nWe have an error talking to the kernel\n',
    exitCode: 2,
    timedOut: false,
    cause: new Error('execa'),
  });
  assert.equal(error.shortMessage, 'tc class del dev wg0 classid 1:9: Error: Specified class not found.');
  assert.equal(error.exitCode, 2);
  assert.ok(error.cause instanceof Error);
});

test('the local executor runs argv without a shell and surfaces stderr and exit code', async () => {
  const local = new LocalExecutor({ timeoutMs: 5000 });
  const ok = await local.run([process.execPath, '-e', 'process.stdout.write(process.argv[1])', '$HOME; echo hi']);
  assert.equal(ok.stdout, '$HOME; echo hi', 'no shell expansion');
  await assert.rejects(local.run([process.execPath, '-e', 'console.error("Error: boom"); process.exit(3)']), (error: unknown) => {
    assert.ok(error instanceof KernelError);
    assert.equal(error.exitCode, 3);
    assert.match(error.shortMessage, /Error: boom$/);
    return true;
  });
});

test('every local call has a timeout', async () => {
  const local = new LocalExecutor({ timeoutMs: 200 });
  await assert.rejects(local.run([process.execPath, '-e', 'setTimeout(() => {}, 5000)']), (error: unknown) => {
    assert.ok(error instanceof KernelError);
    assert.equal(error.timedOut, true);
    assert.match(error.shortMessage, /timed out$/);
    return true;
  });
  assert.throws(() => new LocalExecutor({ timeoutMs: -1 }), /Expected `timeoutMs` to be a finite number > 0, got `-1` \(number\)/);
});
