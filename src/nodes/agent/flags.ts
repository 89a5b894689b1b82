/**
 * The agent's flags (`panel-bandwidth agent …`), each with an environment variable for systemd's
 * `EnvironmentFile`. A flag wins over its variable; an empty variable counts as unset.
 *
 * Parsing is pure: the files it reads (token, TLS) and the `tc` lookup come in through
 * {@link AgentFlagsIo}, so every rule is tested without a file system.
 */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';

import type { BillingBytes } from '../../accounting/billing.js';
import { nodeNameProblem } from '../node-name.js';

export const AGENT_USAGE = `Usage: panel-bandwidth agent --node NAME [options]

Runs the node's agent: the single writer of tc and reader of counters on this machine, with an
authenticated HTTP API for the panel (desired state, ledger, live rates, /metrics, jobs).
Every flag has an environment variable (a flag wins over its variable).

  --node NAME              this node's name, as the panel's networks and VMs refer to it: 1-64
                           letters, digits, \`_\`, \`.\` or \`-\`; not \`local\` (required)
                           env PANEL_BANDWIDTH_NODE
  --listen HOST:PORT       address to listen on (IPv6 as [::1]:9731)    default 127.0.0.1:9731
                           env PANEL_BANDWIDTH_AGENT_LISTEN
  --token-file PATH        file holding the bearer token the panel sends (at least 32 printable
                           characters, surrounding whitespace ignored; required unless the env
                           variable is set)
                           env PANEL_BANDWIDTH_AGENT_TOKEN (the token itself, not a path)
  --state PATH             the agent's SQLite state (desired state, ledger)
                           default /var/lib/panel-bandwidth/agent.sqlite
                           env PANEL_BANDWIDTH_AGENT_STATE
  --tls-cert PATH          serve HTTPS with this PEM certificate (with --tls-key; both or neither)
                           env PANEL_BANDWIDTH_AGENT_TLS_CERT
  --tls-key PATH           the certificate's PEM private key
                           env PANEL_BANDWIDTH_AGENT_TLS_KEY
  --collect-interval S     seconds between two counter reads into the ledger      default 60
                           env PANEL_BANDWIDTH_AGENT_COLLECT_INTERVAL
  --reconcile-interval S   seconds between two reconciles of tc with the desired state
                           (one also runs at start: caps come back after a reboot)  default 60
                           env PANEL_BANDWIDTH_AGENT_RECONCILE_INTERVAL
  --ledger-days N          days the ledger keeps counted deltas for the panel      default 30
                           env PANEL_BANDWIDTH_AGENT_LEDGER_DAYS
  --executor E             local (run tc) or recording (a dry run: nothing runs, nothing is
                           counted; for tests and demos)                        default local
                           env PANEL_BANDWIDTH_AGENT_EXECUTOR
  --billing-bytes B        peers billed by wire bytes or inner (their tc class)  default wire
                           env PANEL_BANDWIDTH_AGENT_BILLING_BYTES
  --vm-source S            VMs' bytes from sysfs or vnstat                       default sysfs
                           env PANEL_BANDWIDTH_AGENT_VM_SOURCE
  -h, --help               show this help

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed while running, 2 bad flags (or no tc).`;

/** Everything the agent runs with, validated. */
export interface AgentConfig {
  node: string;
  /** Host without brackets (`::1`), as `listen()` takes it. */
  listen: { host: string; port: number };
  token: string;
  statePath: string;
  tls: { cert: string; key: string } | null;
  collectIntervalS: number;
  reconcileIntervalS: number;
  ledgerDays: number;
  executor: 'local' | 'recording';
  billing: BillingBytes;
  vmSource: 'sysfs' | 'vnstat';
}

/** What parsing reads from outside. */
export interface AgentFlagsIo {
  /** Reads a text file (throws when it cannot). */
  readFile(path: string): string;
  /** Where `tc` is, or undefined (see `findTc`). */
  findTc(): string | undefined;
}

/** A flag (or its variable) that cannot be used; `flag` names it (`--listen`). Exit code 2. */
export class AgentFlagError extends Error {
  override name = 'AgentFlagError';
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(message);
  }
}

export const DEFAULT_LISTEN = '127.0.0.1:9731';
export const DEFAULT_STATE_PATH = '/var/lib/panel-bandwidth/agent.sqlite';
/** Shorter tokens are refused: 32 random characters are beyond guessing over the network. */
export const MIN_TOKEN_LENGTH = 32;

const ENV = {
  node: 'PANEL_BANDWIDTH_NODE',
  listen: 'PANEL_BANDWIDTH_AGENT_LISTEN',
  token: 'PANEL_BANDWIDTH_AGENT_TOKEN',
  state: 'PANEL_BANDWIDTH_AGENT_STATE',
  'tls-cert': 'PANEL_BANDWIDTH_AGENT_TLS_CERT',
  'tls-key': 'PANEL_BANDWIDTH_AGENT_TLS_KEY',
  'collect-interval': 'PANEL_BANDWIDTH_AGENT_COLLECT_INTERVAL',
  'reconcile-interval': 'PANEL_BANDWIDTH_AGENT_RECONCILE_INTERVAL',
  'ledger-days': 'PANEL_BANDWIDTH_AGENT_LEDGER_DAYS',
  executor: 'PANEL_BANDWIDTH_AGENT_EXECUTOR',
  'billing-bytes': 'PANEL_BANDWIDTH_AGENT_BILLING_BYTES',
  'vm-source': 'PANEL_BANDWIDTH_AGENT_VM_SOURCE',
} as const;

type Flag = Exclude<keyof typeof ENV, 'token'> | 'token-file';

const FLAGS: Flag[] = ['node', 'listen', 'token-file', 'state', 'tls-cert', 'tls-key', 'collect-interval', 'reconcile-interval', 'ledger-days', 'executor', 'billing-bytes', 'vm-source'];

/** How a value was given, for messages: `--listen` or `PANEL_BANDWIDTH_AGENT_LISTEN`. */
interface Given {
  value: string;
  source: string;
}

/** Parses `host:port` (`[v6]:port`); the port may be 0 (any free port: tests). */
export function parseListen(text: string, source = '--listen'): { host: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65_535) {
    throw new AgentFlagError('--listen', `Expected \`${source}\` to be HOST:PORT (IPv6 as [::1]:9731, port 0-65535), got \`${text}\``);
  }
  const host = match[1] ?? match[2]!;
  if (match[1] !== undefined && isIP(host) !== 6) throw new AgentFlagError('--listen', `Expected \`${source}\` to hold an IPv6 address in brackets, got \`${text}\``);
  if (match[2] !== undefined && host.includes(':')) throw new AgentFlagError('--listen', `Expected \`${source}\` to put an IPv6 address in brackets, got \`${text}\``);
  return { host, port };
}

/** A number of seconds: > 0 and ≤ one day (fractions allowed: tests collect every 0.5 s). */
function seconds(given: Given | undefined, fallback: number, flag: Flag): number {
  if (!given) return fallback;
  const value = Number(given.value);
  if (!/^\d+(\.\d+)?$/.test(given.value) || !(value > 0) || value > 86_400) {
    throw new AgentFlagError(`--${flag}`, `Expected \`${given.source}\` to be a number of seconds > 0 and ≤ 86400, got \`${given.value}\``);
  }
  return value;
}

function oneOf<T extends string>(given: Given | undefined, choices: readonly T[], fallback: T, flag: Flag): T {
  if (!given) return fallback;
  if (!(choices as readonly string[]).includes(given.value)) {
    throw new AgentFlagError(`--${flag}`, `Expected \`${given.source}\` to be ${choices.join(' or ')}, got \`${given.value}\``);
  }
  return given.value as T;
}

function readText(io: AgentFlagsIo, given: Given, flag: Flag, what: string): string {
  try {
    return io.readFile(given.value);
  } catch (error) {
    throw new AgentFlagError(`--${flag}`, `Cannot read the ${what} \`${given.value}\` (${given.source}): ${(error as Error).message}`);
  }
}

function tokenOf(given: Given, text: string): string {
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new AgentFlagError('--token-file', `Expected the token of \`${given.source}\` to be at least ${MIN_TOKEN_LENGTH} characters, got ${token.length}`);
  }
  // It travels in an HTTP header: visible ASCII only.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new AgentFlagError('--token-file', `Expected the token of \`${given.source}\` to be printable ASCII without spaces`);
  }
  return token;
}

/**
 * Parses the agent's flags and environment into an {@link AgentConfig}.
 * @returns the config, or `'help'` for `--help`.
 * @throws {AgentFlagError} naming the flag at fault (the CLI exits with code 2).
 * @example parseAgentFlags(['--node', 'hv1', '--token-file', '/etc/panel-bandwidth/agent.token'], process.env, io)
 */
export function parseAgentFlags(argv: string[], env: Record<string, string | undefined>, io: AgentFlagsIo): AgentConfig | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: { ...Object.fromEntries(FLAGS.map((flag) => [flag, { type: 'string' as const }])), help: { type: 'boolean', short: 'h' } },
    });
    values = parsed.values;
  } catch (error) {
    const message = (error as Error).message;
    const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? /Unexpected argument '([^']+)'/.exec(message)?.[1] ?? 'argv';
    throw new AgentFlagError(flag, message.split('. To specify')[0]!);
  }
  if (values.help) return 'help';
  const given = (flag: Flag): Given | undefined => {
    const value = values[flag];
    if (typeof value === 'string') return { value, source: `--${flag}` };
    const name = flag === 'token-file' ? undefined : ENV[flag];
    const fromEnv = name ? env[name] : undefined;
    return fromEnv !== undefined && fromEnv !== '' ? { value: fromEnv, source: name! } : undefined;
  };

  const node = given('node');
  if (!node) throw new AgentFlagError('--node', `Expected \`--node\` (or ${ENV.node}): the name the panel knows this node by`);
  const problem = nodeNameProblem(node.value);
  if (problem) throw new AgentFlagError('--node', `Expected \`${node.source}\` to be a node name: ${problem}, got \`${node.value}\``);

  const listenGiven = given('listen') ?? { value: DEFAULT_LISTEN, source: '--listen' };
  const listen = parseListen(listenGiven.value, listenGiven.source);

  const tokenFile = given('token-file');
  const tokenEnv = env[ENV.token];
  let token: string;
  if (tokenFile) token = tokenOf(tokenFile, readText(io, tokenFile, 'token-file', 'token file'));
  else if (tokenEnv !== undefined && tokenEnv !== '') token = tokenOf({ value: tokenEnv, source: ENV.token }, tokenEnv);
  else throw new AgentFlagError('--token-file', `Expected \`--token-file\` (or the token itself in ${ENV.token}): the panel authenticates with it`);

  const state = given('state')?.value ?? DEFAULT_STATE_PATH;
  if (state.trim() === '') throw new AgentFlagError('--state', 'Expected `--state` to be a path (`:memory:` for a throwaway state), got an empty string');

  const certGiven = given('tls-cert');
  const keyGiven = given('tls-key');
  if ((certGiven === undefined) !== (keyGiven === undefined)) {
    const missing = certGiven ? '--tls-key' : '--tls-cert';
    throw new AgentFlagError(missing, `Expected \`--tls-cert\` and \`--tls-key\` together (HTTPS needs both), \`${missing}\` is missing`);
  }
  const tls = certGiven && keyGiven
    ? { cert: readText(io, certGiven, 'tls-cert', 'TLS certificate'), key: readText(io, keyGiven, 'tls-key', 'TLS key') }
    : null;

  const ledgerGiven = given('ledger-days');
  let ledgerDays = 30;
  if (ledgerGiven) {
    ledgerDays = Number(ledgerGiven.value);
    if (!/^\d{1,4}$/.test(ledgerGiven.value) || ledgerDays < 1 || ledgerDays > 3650) {
      throw new AgentFlagError('--ledger-days', `Expected \`${ledgerGiven.source}\` to be a whole number of days from 1 to 3650, got \`${ledgerGiven.value}\``);
    }
  }

  const config: AgentConfig = {
    node: node.value,
    listen,
    token,
    statePath: state,
    tls,
    collectIntervalS: seconds(given('collect-interval'), 60, 'collect-interval'),
    reconcileIntervalS: seconds(given('reconcile-interval'), 60, 'reconcile-interval'),
    ledgerDays,
    executor: oneOf(given('executor'), ['local', 'recording'] as const, 'local', 'executor'),
    billing: oneOf(given('billing-bytes'), ['wire', 'inner'] as const, 'wire', 'billing-bytes'),
    vmSource: oneOf(given('vm-source'), ['sysfs', 'vnstat'] as const, 'sysfs', 'vm-source'),
  };
  // Checked last: the flags are right, the machine is not.
  if (config.executor === 'local' && io.findTc() === undefined) {
    throw new AgentFlagError('--executor', '`tc` (iproute2) was not found on PATH, /usr/sbin or /sbin: install iproute2, or run a dry run with `--executor recording`');
  }
  return config;
}
