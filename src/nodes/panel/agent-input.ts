/**
 * What an admin may send to register or change a node's agent, checked once at the edge. Every
 * problem is an {@link InputError} naming its field (`name`, `url`, `token`, `tls_fingerprint`,
 * `enabled`, `body`).
 */
import { InputError } from '../../errors.js';
import { nodeNameProblem } from '../node-name.js';

/** A bearer token shorter than this is refused (the agent refuses it too). */
export const MIN_TOKEN_LENGTH = 32;
const MAX_TOKEN_LENGTH = 512;
const MAX_URL_LENGTH = 255;
const FIELDS = ['name', 'url', 'token', 'tls_fingerprint', 'enabled'] as const;

/** A checked registration: the URL normalised to `scheme://host:port`, the fingerprint to 64 lower-case hex digits. */
export interface AgentInput {
  name: string;
  url: string;
  token: string;
  tlsFingerprint: string | null;
  enabled: boolean;
}

/** A checked change: only what was sent. */
export type AgentChange = Partial<AgentInput>;

const describe = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'string' ? `\`${value.slice(0, 40)}\`` : `a ${typeof value}`;

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InputError('body', 'The request body must be a JSON object');
  const input = body as Record<string, unknown>;
  const unknown = Object.keys(input).find((key) => !(FIELDS as readonly string[]).includes(key));
  if (unknown) throw new InputError(unknown, `Unknown field \`${unknown.slice(0, 40)}\`: send ${FIELDS.join(', ')}`);
  return input;
}

function name(value: unknown): string {
  const problem = nodeNameProblem(value);
  if (problem) throw new InputError('name', `\`name\` ${problem}`);
  return value as string;
}

/**
 * `http(s)://host[:port]` with nothing after the authority (a trailing `/` is fine); the port
 * defaults by scheme and is always written out.
 * @example url('https://hv-01.example:9731/') // 'https://hv-01.example:9731'
 */
function url(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw new InputError('url', `\`url\` must be a URL such as https://hv-01.example:9731, got ${describe(value)}`);
  const text = value.trim();
  if (text.length > MAX_URL_LENGTH) throw new InputError('url', `\`url\` must be at most ${MAX_URL_LENGTH} characters`);
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new InputError('url', `\`url\` is not a URL: ${describe(text)}; expected http(s)://host:port`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new InputError('url', '`url` must start with http:// or https://');
  if (parsed.username || parsed.password || /^[a-z]+:\/\/[^/]*@/i.test(text)) {
    throw new InputError('url', '`url` must not hold credentials: the token goes in the `token` field');
  }
  if (parsed.pathname !== '/' || parsed.search || parsed.hash || /[?#]/.test(text)) {
    throw new InputError('url', '`url` must be only http(s)://host:port, without a path, query or fragment');
  }
  if (!parsed.hostname) throw new InputError('url', '`url` must name a host');
  const port = parsed.port || (parsed.protocol === 'https:' ? '443' : '80');
  return `${parsed.protocol}//${parsed.hostname}:${port}`;
}

function token(value: unknown): string {
  if (typeof value !== 'string') throw new InputError('token', `\`token\` must be a string of at least ${MIN_TOKEN_LENGTH} characters, got ${value === undefined ? 'nothing' : describe(value)}`);
  if (value.length < MIN_TOKEN_LENGTH) throw new InputError('token', `\`token\` must be at least ${MIN_TOKEN_LENGTH} characters (got ${value.length}); make one with \`openssl rand -hex 32\``);
  if (value.length > MAX_TOKEN_LENGTH) throw new InputError('token', `\`token\` must be at most ${MAX_TOKEN_LENGTH} characters`);
  // It travels in an Authorization header: visible ASCII only.
  if (!/^[\x21-\x7e]+$/.test(value)) throw new InputError('token', '`token` must be printable ASCII without spaces');
  return value;
}

/** SHA-256 of the agent's certificate: 64 hex digits, colons allowed (as `openssl x509 -fingerprint -sha256` prints it). */
function fingerprint(value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value !== 'string') throw new InputError('tls_fingerprint', `\`tls_fingerprint\` must be a string or null, got ${describe(value)}`);
  const text = value.trim();
  const bare = text.replaceAll(':', '');
  if (!/^[0-9a-fA-F]{64}$/.test(bare) || (text.includes(':') && !/^([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}$/.test(text))) {
    throw new InputError('tls_fingerprint', '`tls_fingerprint` must be a SHA-256 fingerprint: 64 hex digits, optionally in pairs separated by colons');
  }
  return bare.toLowerCase();
}

function enabled(value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InputError('enabled', `\`enabled\` must be true or false, got ${describe(value)}`);
  return value;
}

function pinOnlyOverHttps(result: { url: string; tlsFingerprint: string | null }): void {
  if (result.tlsFingerprint !== null && !result.url.startsWith('https:')) {
    throw new InputError('tls_fingerprint', '`tls_fingerprint` pins a TLS certificate: it needs an https:// url');
  }
}

/** Checks a registration (`POST`): name, url and token are required. */
export function parseAgentInput(body: unknown): AgentInput {
  const input = objectBody(body);
  const result: AgentInput = {
    name: name(input.name),
    url: url(input.url),
    token: token(input.token),
    tlsFingerprint: fingerprint(input.tls_fingerprint),
    enabled: input.enabled === undefined ? true : enabled(input.enabled),
  };
  pinOnlyOverHttps(result);
  return result;
}

/**
 * Checks a change (`PUT`): any subset of the fields; the fingerprint rule is checked against the
 * agent's current url when the change does not send one.
 */
export function parseAgentChange(body: unknown, current: { url: string; tlsFingerprint: string | null }): AgentChange {
  const input = objectBody(body);
  if (Object.keys(input).length === 0) throw new InputError('body', `The request body names no field to change: send any of ${FIELDS.join(', ')}`);
  const change: AgentChange = {};
  if (input.name !== undefined) change.name = name(input.name);
  if (input.url !== undefined) change.url = url(input.url);
  if (input.token !== undefined) change.token = token(input.token);
  if ('tls_fingerprint' in input) change.tlsFingerprint = fingerprint(input.tls_fingerprint);
  if (input.enabled !== undefined) change.enabled = enabled(input.enabled);
  pinOnlyOverHttps({ url: change.url ?? current.url, tlsFingerprint: change.tlsFingerprint === undefined ? current.tlsFingerprint : change.tlsFingerprint });
  return change;
}
