import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { AgentFlagError, parseAgentFlags, parseListen, type AgentConfig, type AgentFlagsIo } from '../../../src/nodes/agent/flags.js';

const TOKEN = 'a'.repeat(40);

/** A file system of the given files and a machine with (or without) tc. */
function io(files: Record<string, string> = { '/etc/agent.token': `${TOKEN}\n` }, tc: string | null = '/usr/sbin/tc'): AgentFlagsIo {
  return {
    readFile(path) {
      const text = files[path];
      if (text === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
      return text;
    },
    findTc: () => tc ?? undefined,
  };
}

const BASE = ['--node', 'hv1', '--token-file', '/etc/agent.token'];

function parse(argv: string[], env: Record<string, string | undefined> = {}, files?: AgentFlagsIo): AgentConfig {
  const config = parseAgentFlags(argv, env, files ?? io());
  assert.notEqual(config, 'help');
  return config as AgentConfig;
}

/** Asserts parsing fails naming `flag`, with a message matching `message`. */
function refuses(argv: string[], flag: string, message: RegExp, env: Record<string, string | undefined> = {}, files?: AgentFlagsIo): void {
  assert.throws(
    () => parseAgentFlags(argv, env, files ?? io()),
    (error: unknown) => {
      assert.ok(error instanceof AgentFlagError, `expected an AgentFlagError, got ${String(error)}`);
      assert.equal(error.flag, flag);
      assert.match(error.message, message);
      return true;
    },
  );
}

describe('agent flags', () => {
  test('defaults: listen on 127.0.0.1:9731, the state under /var/lib, 60 s intervals, 30 days of ledger, tc runs', () => {
    assert.deepEqual(parse(BASE), {
      node: 'hv1',
      listen: { host: '127.0.0.1', port: 9731 },
      token: TOKEN,
      statePath: '/var/lib/panel-bandwidth/agent.sqlite',
      tls: null,
      collectIntervalS: 60,
      reconcileIntervalS: 60,
      ledgerDays: 30,
      executor: 'local',
      billing: 'wire',
      vmSource: 'sysfs',
    });
  });

  test('every flag is read', () => {
    const files = io({ '/t': TOKEN, '/c.pem': 'CERT', '/k.pem': 'KEY' });
    const config = parse([
      '--node', 'gw-2.eu', '--listen', '[::1]:8443', '--token-file', '/t', '--state', '/tmp/a.sqlite', '--tls-cert', '/c.pem', '--tls-key', '/k.pem',
      '--collect-interval', '0.5', '--reconcile-interval', '300', '--ledger-days', '90', '--executor', 'recording', '--billing-bytes', 'inner', '--vm-source', 'vnstat',
    ], {}, files);
    assert.deepEqual(config, {
      node: 'gw-2.eu',
      listen: { host: '::1', port: 8443 },
      token: TOKEN,
      statePath: '/tmp/a.sqlite',
      tls: { cert: 'CERT', key: 'KEY' },
      collectIntervalS: 0.5,
      reconcileIntervalS: 300,
      ledgerDays: 90,
      executor: 'recording',
      billing: 'inner',
      vmSource: 'vnstat',
    });
  });

  test('every flag has an environment variable, and a flag wins over its variable', () => {
    const env = {
      PANEL_BANDWIDTH_NODE: 'hv-env',
      PANEL_BANDWIDTH_AGENT_LISTEN: '0.0.0.0:9000',
      PANEL_BANDWIDTH_AGENT_TOKEN: `  ${'e'.repeat(32)}  `,
      PANEL_BANDWIDTH_AGENT_STATE: '/srv/agent.sqlite',
      PANEL_BANDWIDTH_AGENT_TLS_CERT: '/c.pem',
      PANEL_BANDWIDTH_AGENT_TLS_KEY: '/k.pem',
      PANEL_BANDWIDTH_AGENT_COLLECT_INTERVAL: '10',
      PANEL_BANDWIDTH_AGENT_RECONCILE_INTERVAL: '20',
      PANEL_BANDWIDTH_AGENT_LEDGER_DAYS: '7',
      PANEL_BANDWIDTH_AGENT_EXECUTOR: 'recording',
      PANEL_BANDWIDTH_AGENT_BILLING_BYTES: 'inner',
      PANEL_BANDWIDTH_AGENT_VM_SOURCE: 'vnstat',
    };
    const files = io({ '/c.pem': 'CERT', '/k.pem': 'KEY', '/t': TOKEN });
    const fromEnv = parse([], env, files);
    assert.equal(fromEnv.node, 'hv-env');
    assert.deepEqual(fromEnv.listen, { host: '0.0.0.0', port: 9000 });
    assert.equal(fromEnv.token, 'e'.repeat(32), 'the token from the environment is trimmed');
    assert.equal(fromEnv.statePath, '/srv/agent.sqlite');
    assert.deepEqual(fromEnv.tls, { cert: 'CERT', key: 'KEY' });
    assert.equal(fromEnv.collectIntervalS, 10);
    assert.equal(fromEnv.reconcileIntervalS, 20);
    assert.equal(fromEnv.ledgerDays, 7);
    assert.equal(fromEnv.executor, 'recording');
    assert.equal(fromEnv.billing, 'inner');
    assert.equal(fromEnv.vmSource, 'vnstat');

    const flagsWin = parse(['--node', 'hv-flag', '--listen', '127.0.0.2:1', '--token-file', '/t', '--executor', 'local'], env, files);
    assert.equal(flagsWin.node, 'hv-flag');
    assert.deepEqual(flagsWin.listen, { host: '127.0.0.2', port: 1 });
    assert.equal(flagsWin.token, TOKEN, '--token-file wins over the token in the environment');
    assert.equal(flagsWin.executor, 'local');
  });

  test('an empty variable counts as unset', () => {
    assert.equal(parse(BASE, { PANEL_BANDWIDTH_AGENT_LISTEN: '', PANEL_BANDWIDTH_AGENT_EXECUTOR: '' }).listen.port, 9731);
    refuses([], '--node', /--node/, { PANEL_BANDWIDTH_NODE: '', PANEL_BANDWIDTH_AGENT_TOKEN: TOKEN });
  });

  test('--help asks for the help text', () => {
    assert.equal(parseAgentFlags(['--help'], {}, io()), 'help');
    assert.equal(parseAgentFlags(['-h'], {}, io()), 'help');
  });

  test('the node name is required, follows the node name rule and is not `local`', () => {
    refuses(['--token-file', '/etc/agent.token'], '--node', /Expected `--node` \(or PANEL_BANDWIDTH_NODE\)/);
    refuses(['--node', 'local', '--token-file', '/etc/agent.token'], '--node', /reserved/);
    refuses(['--node', 'hv 1', '--token-file', '/etc/agent.token'], '--node', /1-64 characters/);
    refuses(['--node', 'x'.repeat(65), '--token-file', '/etc/agent.token'], '--node', /1-64 characters/);
    refuses(['--token-file', '/etc/agent.token'], '--node', /PANEL_BANDWIDTH_NODE/, { PANEL_BANDWIDTH_NODE: 'a/b' });
    assert.equal(parse(['--node', 'x'.repeat(64), '--token-file', '/etc/agent.token']).node, 'x'.repeat(64));
  });

  test('the token: required, read from its file, trimmed, at least 32 printable characters', () => {
    refuses(['--node', 'hv1'], '--token-file', /Expected `--token-file` \(or the token itself in PANEL_BANDWIDTH_AGENT_TOKEN\)/);
    refuses(['--node', 'hv1', '--token-file', '/missing'], '--token-file', /Cannot read the token file `\/missing`.*ENOENT/);
    refuses(['--node', 'hv1', '--token-file', '/short'], '--token-file', /at least 32 characters, got 31/, {}, io({ '/short': ` ${'s'.repeat(31)}\n` }));
    refuses(['--node', 'hv1'], '--token-file', /PANEL_BANDWIDTH_AGENT_TOKEN.*at least 32 characters, got 5/, { PANEL_BANDWIDTH_AGENT_TOKEN: 'short' });
    refuses(['--node', 'hv1', '--token-file', '/spaced'], '--token-file', /printable ASCII without spaces/, {}, io({ '/spaced': `${'a'.repeat(20)} ${'b'.repeat(20)}` }));
    assert.equal(parse(['--node', 'hv1', '--token-file', '/t'], {}, io({ '/t': `\n  ${'t'.repeat(32)}\r\n` })).token, 't'.repeat(32));
  });

  test('--listen takes HOST:PORT, IPv6 in brackets, port 0-65535', () => {
    assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
    assert.deepEqual(parseListen('[fd00::1]:0'), { host: 'fd00::1', port: 0 });
    for (const bad of ['127.0.0.1', '127.0.0.1:', ':9731', '127.0.0.1:65536', '::1:9731', '[::1]', '[not-v6]:1', '[1.2.3.4]:1', 'a b:1', '127.0.0.1:-1']) {
      refuses([...BASE, '--listen', bad], '--listen', /Expected `--listen` to/);
    }
    refuses(BASE, '--listen', /PANEL_BANDWIDTH_AGENT_LISTEN/, { PANEL_BANDWIDTH_AGENT_LISTEN: 'nowhere' });
  });

  test('--tls-cert and --tls-key go together, and both files must be readable', () => {
    const files = io({ '/etc/agent.token': TOKEN, '/c.pem': 'CERT' });
    refuses([...BASE, '--tls-cert', '/c.pem'], '--tls-key', /together.*`--tls-key` is missing/, {}, files);
    refuses([...BASE, '--tls-key', '/c.pem'], '--tls-cert', /`--tls-cert` is missing/, {}, files);
    refuses([...BASE, '--tls-cert', '/c.pem', '--tls-key', '/nokey.pem'], '--tls-key', /Cannot read the TLS key `\/nokey.pem`/, {}, files);
    refuses([...BASE, '--tls-cert', '/nocert.pem', '--tls-key', '/c.pem'], '--tls-cert', /Cannot read the TLS certificate/, {}, files);
  });

  test('intervals are seconds > 0 and ≤ a day; ledger days a whole number from 1 to 3650', () => {
    for (const flag of ['--collect-interval', '--reconcile-interval']) {
      for (const bad of ['0', '=-1', 'abc', '1e3', '86401', '', ' 5']) {
        // `=` joins a value that starts with a dash (parseArgs reads `--flag -1` as a missing value).
        const argv = bad.startsWith('=') ? [`${flag}${bad}`] : [flag, bad];
        refuses([...BASE, ...argv], flag, new RegExp(`Expected \`${flag}\` to be a number of seconds`));
      }
      refuses([...BASE, flag, '-1'], flag, /argument is ambiguous/);
    }
    for (const bad of ['0', '3651', '1.5', 'x', '-3']) refuses([...BASE, `--ledger-days=${bad}`], '--ledger-days', /whole number of days from 1 to 3650/);
    refuses(BASE, '--collect-interval', /PANEL_BANDWIDTH_AGENT_COLLECT_INTERVAL/, { PANEL_BANDWIDTH_AGENT_COLLECT_INTERVAL: 'soon' });
    assert.equal(parse([...BASE, '--ledger-days', '3650']).ledgerDays, 3650);
  });

  test('choices: --executor, --billing-bytes, --vm-source', () => {
    refuses([...BASE, '--executor', 'auto'], '--executor', /local or recording, got `auto`/);
    refuses([...BASE, '--billing-bytes', 'both'], '--billing-bytes', /wire or inner/);
    refuses([...BASE, '--vm-source', 'libvirt'], '--vm-source', /sysfs or vnstat/);
  });

  test('--state must not be empty', () => {
    refuses([...BASE, '--state', ''], '--state', /empty/);
  });

  test('without tc the agent refuses to start unless it is a dry run', () => {
    refuses(BASE, '--executor', /`tc` \(iproute2\) was not found.*--executor recording/, {}, io(undefined, null));
    assert.equal(parse([...BASE, '--executor', 'recording'], {}, io(undefined, null)).executor, 'recording');
  });

  test('unknown flags, missing values and stray arguments name what is wrong', () => {
    refuses([...BASE, '--colect-interval', '5'], '--colect-interval', /Unknown option '--colect-interval'/);
    refuses(['--token-file', '/etc/agent.token', '--node'], '--node', /--node <value>' argument missing/);
    refuses([...BASE, 'extra'], 'extra', /Unexpected argument 'extra'/);
  });
});
