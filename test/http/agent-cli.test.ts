import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli.ts');
const TOKEN = 'cli-agent-token-0123456789abcdefghijklmnopq';

/** A scratch directory with a token file, removed when the test ends. */
function scratch(t: TestContext, token = TOKEN): { dir: string; tokenFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-agent-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  return { dir, tokenFile };
}

/** `panel-bandwidth agent …` through tsx; an environment without the agent's variables. */
function agent(args: string[]): ResultPromise<{ timeout: number; reject: false; env: Record<string, string>; extendEnv: false }> {
  return execa(process.execPath, ['--import', 'tsx', CLI, 'agent', ...args], {
    timeout: 60_000,
    reject: false,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
    extendEnv: false,
  });
}

test('a bad flag, a short token or no token ends the agent with code 2 and a message naming the flag', async (t) => {
  const { dir, tokenFile } = scratch(t);
  const shortToken = join(dir, 'short');
  writeFileSync(shortToken, 'too-short\n');
  const state = join(dir, 'agent.sqlite');
  // A few cases end to end (each costs a node start); test/unit/nodes/agent-flags.test.ts has every rule.
  const cases: [string[], RegExp][] = [
    [['--node', 'hv1', '--token-file', tokenFile, '--listen', 'nowhere', '--executor', 'recording', '--state', state], /Expected `--listen` to be HOST:PORT/],
    [['--node', 'hv1', '--token-file', shortToken, '--executor', 'recording', '--state', state], /--token-file.*at least 32 characters, got 9/],
    [['--node', 'hv1', '--executor', 'recording', '--state', state], /Expected `--token-file`/],
    [['--node', 'hv1', '--token-file', tokenFile, '--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const result = await agent(args);
    assert.equal(result.exitCode, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.match(result.stderr, /Usage: panel-bandwidth agent/);
  }
});

test('the agent starts without a panel database, answers /v1/health at the URL it prints, and exits 0 on SIGTERM', async (t) => {
  const { dir, tokenFile } = scratch(t);
  const child = agent(['--node', 'hv-cli', '--token-file', tokenFile, '--state', join(dir, 'agent.sqlite'), '--listen', '127.0.0.1:0', '--executor', 'recording']);
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      const match = /agent hv-cli listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    void child.then((result) => reject(new Error(`the agent exited (${result.exitCode}) before listening: ${stderr}`)));
  });
  const health = await fetch(`${url}/v1/health`);
  assert.equal(health.status, 200);
  const body = (await health.json()) as { node: string; mode: string };
  assert.equal(body.node, 'hv-cli');
  assert.equal(body.mode, 'recording');
  assert.equal((await fetch(`${url}/v1/interfaces`)).status, 401);
  assert.equal((await fetch(`${url}/v1/interfaces`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status, 200);

  child.kill('SIGTERM');
  const result = await child;
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stderr, /SIGTERM, stopping/);
});
