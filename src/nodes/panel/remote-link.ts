/**
 * The panel's link to a remote node's agent: the agent's HTTP/JSON API (DESIGN.md "Nodes") behind
 * the {@link NodeLink} interface, so callers never see HTTP.
 *
 * - Every call has a deadline; a refused connection, a timeout, a TLS failure or a 5xx becomes a
 *   {@link NodeUnreachableError} (retrying may help), a 4xx a {@link NodeRefusedError} (it will not).
 * - What the agent answers is checked before anyone uses it: a malformed answer is an unreachable
 *   node too (one that cannot be used), never a crash further in.
 * - TLS pinning: agents usually run with a self-signed certificate. With `tlsFingerprint` set, the
 *   connection is accepted only when the certificate's SHA-256 fingerprint is the pinned one, and
 *   this is checked before the request (and its bearer token) is written to the socket.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type ClientRequestArgs, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { z } from 'zod';

import { toOutcomeReason } from '../../limits/outcome-reason.js';
import { NodeRefusedError, NodeUnreachableError, type HeldInterface, type NodeEvent, type NodeLink } from '../link.js';
import { parseWith, type InterfaceReport, type InterfaceState, type LedgerPage, type NodeHealth, type NodeRates } from '../protocol.js';

export interface RemoteLinkOptions {
  /** The node's name (what the panel's networks and VMs refer to). */
  node: string;
  /** The agent's base URL, `http://` or `https://` (`https://10.0.0.2:9731`). */
  url: string;
  /** The agent's bearer token. */
  token: string;
  /**
   * SHA-256 fingerprint of the agent's certificate (DER), hex, with or without colons, any case.
   * When set (https only), that certificate is accepted whoever signed it, and no other; when not,
   * the certificate must verify against the system's CAs.
   * @default null
   */
  tlsFingerprint?: string | null;
  /** Deadline of each call, from connecting to the last byte of the answer. @default 10000 */
  timeoutMs?: number;
  /** `follow`: a stream that brings no byte for this long is dead (a half-open connection). @default 15000 */
  readDeadlineMs?: number;
}

/** The largest answer read (a ledger page of 10,000 entries is ~2.5 MB). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** The longest line an event stream may send. */
const MAX_SSE_LINE = 1024 * 1024;

/** `AB:cd:…` or `abcd…` → `ABCD…` (64 hex digits); throws on anything else. */
export function normalizeFingerprint(fingerprint: string): string {
  const hex = fingerprint.replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) {
    throw new TypeError(`Expected \`tlsFingerprint\` to be a SHA-256 fingerprint (64 hex digits, colons allowed), got \`${fingerprint}\``);
  }
  return hex;
}

function positiveMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`Expected \`${name}\` to be a finite number > 0, got \`${value}\` (${typeof value})`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// What the agent answers, checked at the edge. Objects are not strict: a newer agent may add fields.

const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const byteCount = z.string().regex(/^\d{1,20}$/, 'must be a decimal byte count');
const subjectType = z.enum(['peer', 'vm']);
const limitStatus = z.enum(['pending', 'applied', 'failed']);
/** A reason this version does not know is no reason (as stored reasons are read). */
const outcomeReason = z.unknown().transform(toOutcomeReason);

const healthSchema = z.object({
  node: z.string(),
  version: z.string(),
  protocol: z.number().int(),
  uptimeS: z.number().min(0),
  capabilities: z.record(z.string(), z.unknown()),
  ledgerId: z.string(),
  ledgerHead: seq,
  mode: z.enum(['local', 'recording']),
});

const heldSchema = z.object({
  interface: z.string(),
  netns: z.string().nullable(),
  kind: z.enum(['wireguard', 'vm']),
  version: z.number().int().min(0),
});

const ledgerPageSchema = z.object({
  node: z.string(),
  ledgerId: z.string(),
  head: seq,
  oldest: seq.nullable(),
  entries: z.array(z.object({
    seq,
    subjectType,
    subjectId: z.string(),
    source: z.string(),
    interface: z.string(),
    periodStart: z.number().int(),
    periodEnd: z.number().int(),
    upBytes: byteCount,
    downBytes: byteCount,
  })),
});

const reportSchema = z.object({
  interface: z.string(),
  netns: z.string().nullable(),
  version: seq,
  stale: z.boolean(),
  status: limitStatus,
  reason: outcomeReason,
  error: z.string().nullable(),
  operations: z.array(z.string()),
  subjects: z.array(z.object({ type: subjectType, id: z.string(), status: limitStatus, reason: outcomeReason, error: z.string().nullable() })),
});

const kbps = z.number().min(0);
const ratesSchema = z.record(z.string(), z.object({
  upKbps: kbps,
  downKbps: kbps,
  classUpKbps: kbps.nullable(),
  classDownKbps: kbps.nullable(),
  at: z.number(),
}));

const ledgerEventSchema = z.object({ head: seq });
const refusalSchema = z.object({ error: z.string().optional(), field: z.string().nullable().optional() });

// ---------------------------------------------------------------------------------------------

/** An https agent that hands a socket over only once the peer's certificate has the pinned fingerprint. */
class PinnedAgent extends HttpsAgent {
  private readonly connecting = new Set<Duplex>();

  constructor(
    private readonly node: string,
    private readonly fingerprint: string,
    private readonly handshakeTimeoutMs: number,
  ) {
    // The CA check is replaced by the fingerprint check; no session is resumed without it.
    super({ keepAlive: true, rejectUnauthorized: false, maxCachedSessions: 0 });
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = super.createConnection({ ...options, rejectUnauthorized: false }) as TLSSocket;
    this.connecting.add(socket);
    const done = (error: Error | null) => {
      clearTimeout(timer);
      socket.off('error', done);
      this.connecting.delete(socket);
      if (error) socket.destroy();
      callback?.(error, socket);
    };
    const timer = setTimeout(() => done(new NodeUnreachableError(this.node, `TLS handshake not done within ${this.handshakeTimeoutMs} ms`)), this.handshakeTimeoutMs);
    socket.once('error', done);
    socket.once('secureConnect', () => {
      const actual = socket.getPeerCertificate().fingerprint256 ?? '';
      if (actual.replace(/:/g, '').toUpperCase() === this.fingerprint) return done(null);
      done(new NodeUnreachableError(this.node, `the agent's TLS certificate fingerprint did not match the pinned one (it has ${actual || 'none'})`));
    });
    return undefined;
  }

  override destroy(): void {
    for (const socket of this.connecting) socket.destroy();
    this.connecting.clear();
    super.destroy();
  }
}

class LineTooLong extends Error {}

/** Reads Server-Sent Events (the subset the agent sends) into {@link NodeEvent}s. */
class SseReader {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | undefined;
  private skipLf = false;

  constructor(private readonly dispatch: (event: { type: string; data: string; id: string | undefined } | 'comment') => void) {}

  /** Feeds decoded text; throws when a line is longer than anyone should send. */
  push(text: string): void {
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const char = this.buffer[i];
      if (char !== '\n' && char !== '\r') continue;
      // A CRLF split across two chunks: the LF ends nothing.
      if (!(char === '\n' && this.skipLf && i === start)) this.line(this.buffer.slice(start, i));
      this.skipLf = char === '\r';
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length > 0) this.skipLf = false;
    if (this.buffer.length > MAX_SSE_LINE) throw new LineTooLong(`a line of the event stream is longer than ${MAX_SSE_LINE} characters`);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0 || this.event !== '') this.dispatch({ type: this.event || 'message', data: this.data.join('\n'), id: this.id });
      this.event = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return this.dispatch('comment');
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
  }
}

export class RemoteLink implements NodeLink {
  readonly kind = 'remote' as const;
  readonly node: string;
  readonly url: URL;
  readonly timeoutMs: number;
  readonly readDeadlineMs: number;
  /** The id of the last event `follow` read; sent as `Last-Event-ID` when it follows again. */
  lastEventId: string | null = null;
  private readonly token: string;
  private readonly agent: HttpAgent;
  private closed = false;

  constructor(options: RemoteLinkOptions) {
    this.node = options.node;
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new TypeError(`Expected \`url\` to be an http:// or https:// URL, got \`${options.url}\``);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`Expected \`url\` to be an http:// or https:// URL, got \`${options.url}\``);
    if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      throw new TypeError(`Expected \`url\` to hold no query, fragment or credentials, got \`${options.url}\``);
    }
    this.url = url;
    if (typeof options.token !== 'string' || options.token === '') throw new TypeError('Expected `token` to be a non-empty string');
    this.token = options.token;
    this.timeoutMs = positiveMs('timeoutMs', options.timeoutMs ?? 10_000);
    this.readDeadlineMs = positiveMs('readDeadlineMs', options.readDeadlineMs ?? 15_000);
    const fingerprint = options.tlsFingerprint ?? null;
    if (fingerprint !== null && url.protocol !== 'https:') throw new TypeError(`A pinned \`tlsFingerprint\` needs an https:// URL, got \`${options.url}\``);
    if (fingerprint !== null) this.agent = new PinnedAgent(this.node, normalizeFingerprint(fingerprint), this.timeoutMs);
    else this.agent = url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  health(): Promise<NodeHealth> {
    return this.call('GET', '/v1/health', healthSchema);
  }

  putInterface(name: string, state: InterfaceState): Promise<InterfaceReport> {
    return this.call('PUT', `/v1/interfaces/${encodeURIComponent(name)}`, reportSchema, state);
  }

  deleteInterface(name: string, netns: string | null): Promise<InterfaceReport> {
    const query = netns === null ? '' : `?${new URLSearchParams({ netns })}`;
    return this.call('DELETE', `/v1/interfaces/${encodeURIComponent(name)}${query}`, reportSchema);
  }

  async ledger(after: number, limit: number): Promise<LedgerPage> {
    const page = await this.call('GET', `/v1/ledger?${new URLSearchParams({ after: String(after), limit: String(limit) })}`, ledgerPageSchema);
    // Ingestion keys on (node, seq): another node's ledger must never be written as this one's.
    if (page.node !== this.node) throw new NodeUnreachableError(this.node, `the agent at ${this.url.host} says it is node ${page.node}`);
    return page;
  }

  async interfaces(): Promise<HeldInterface[]> {
    return (await this.call('GET', '/v1/interfaces', z.object({ interfaces: z.array(heldSchema) }))).interfaces;
  }

  async tickRates(): Promise<NodeRates> {
    return (await this.call('GET', '/v1/rates', z.object({ tick: ratesSchema }))).tick;
  }

  liveRates(): Promise<NodeRates> {
    return this.call('GET', '/v1/rates/live', ratesSchema);
  }

  /**
   * Follows `GET /v1/events` (see {@link NodeLink.follow}). A comment line is a heartbeat; a
   * `ledger` event carries the ledger's head; any other event counts as a heartbeat (a newer agent
   * may send more). A stream that sends no byte for `readDeadlineMs` is torn down: TCP alone may
   * never notice a peer that vanished.
   */
  follow(onEvent: (event: NodeEvent) => void, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    const what = 'GET /v1/events';
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let deadline: NodeJS.Timeout | undefined;
      const headers: OutgoingHttpHeaders = { accept: 'text/event-stream' };
      if (this.lastEventId !== null) headers['last-event-id'] = this.lastEventId;
      const req = this.open('GET', '/v1/events', headers);
      const finish = (error: Error | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        signal.removeEventListener('abort', onAbort);
        req.destroy();
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => finish(null);
      signal.addEventListener('abort', onAbort, { once: true });
      const arm = (ms: number, message: string) => {
        clearTimeout(deadline);
        deadline = setTimeout(() => finish(new NodeUnreachableError(this.node, `${what}: ${message}`)), ms);
      };
      arm(this.timeoutMs, `no answer within ${this.timeoutMs} ms`);
      req.on('error', (error) => finish(this.unreachable(what, error)));
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          // The answer's deadline still runs while its body is read.
          void this.readBody(res).then((body) => finish(this.statusError(what, res, body)), (error: Error) => finish(this.unreachable(what, error)));
          return;
        }
        const type = String(res.headers['content-type'] ?? '');
        if (!type.startsWith('text/event-stream')) return finish(new NodeUnreachableError(this.node, `${what}: answered ${type || 'no content type'}, not an event stream`));
        const reader = new SseReader((event) => {
          if (event === 'comment') return onEvent({ type: 'heartbeat' });
          if (event.id !== undefined) this.lastEventId = event.id;
          if (event.type !== 'ledger') return onEvent({ type: 'heartbeat' });
          let data: unknown;
          try {
            data = JSON.parse(event.data);
          } catch {
            throw new NodeUnreachableError(this.node, `${what}: a ledger event's data is not JSON`);
          }
          const parsed = ledgerEventSchema.safeParse(data);
          if (!parsed.success) throw new NodeUnreachableError(this.node, `${what}: a ledger event has no valid head`);
          onEvent({ type: 'ledger', head: parsed.data.head });
        });
        const deadlineMessage = `no data for ${this.readDeadlineMs} ms`;
        arm(this.readDeadlineMs, deadlineMessage);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (settled) return;
          arm(this.readDeadlineMs, deadlineMessage);
          try {
            reader.push(chunk);
          } catch (error) {
            finish(error instanceof LineTooLong ? new NodeUnreachableError(this.node, `${what}: ${error.message}`) : (error as Error));
          }
        });
        res.on('error', (error) => finish(this.unreachable(what, error)));
        res.on('close', () => finish(new NodeUnreachableError(this.node, `${what}: the agent ended the event stream`)));
      });
      req.end();
    });
  }

  /** Closes idle and open connections; every later call fails as unreachable. */
  close(): void {
    this.closed = true;
    this.agent.destroy();
  }

  /** One JSON call: sends `body`, checks the answer with `schema`. */
  private call<T>(method: string, path: string, schema: z.ZodType<T, unknown>, body?: unknown): Promise<T> {
    const what = `${method} ${path.split('?')[0]}`;
    return new Promise<T>((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: OutgoingHttpHeaders = { accept: 'application/json' };
      if (payload) Object.assign(headers, { 'content-type': 'application/json', 'content-length': payload.length });
      const req = this.open(method, path, headers);
      let settled = false;
      const settle = (error: Error | null, value?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) {
          req.destroy();
          reject(error);
        } else resolve(value as T);
      };
      const timer = setTimeout(() => settle(new NodeUnreachableError(this.node, `${what}: no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      req.on('error', (error) => settle(this.unreachable(what, error)));
      req.on('response', (res) => {
        this.readBody(res).then((text) => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) return settle(this.statusError(what, res, text));
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            return settle(new NodeUnreachableError(this.node, `${what}: the agent's answer is not JSON`));
          }
          try {
            settle(null, parseWith(schema, json, 'answer'));
          } catch (error) {
            settle(new NodeUnreachableError(this.node, `${what}: the agent's answer is malformed (${(error as Error).message})`, { cause: error }));
          }
        }, (error: Error) => settle(this.unreachable(what, error)));
      });
      req.end(payload);
    });
  }

  /** Starts a request to the agent with the bearer token. */
  private open(method: string, path: string, headers: OutgoingHttpHeaders) {
    const base = this.url.pathname.replace(/\/+$/, '');
    const options = {
      method,
      protocol: this.url.protocol,
      hostname: this.url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: this.url.port || undefined,
      path: `${base}${path}`,
      agent: this.agent,
      headers: { ...headers, authorization: `Bearer ${this.token}` },
    };
    const req = this.url.protocol === 'https:' ? httpsRequest(options) : httpRequest(options);
    if (this.closed) req.destroy(new NodeUnreachableError(this.node, 'the link is closed'));
    return req;
  }

  /** Reads a whole answer (at most {@link MAX_BODY_BYTES}). */
  private readBody(res: IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
          res.destroy(new Error(`the answer is larger than ${MAX_BODY_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error('the connection closed before the answer ended'));
      });
    });
  }

  /** A non-2xx answer: 4xx refused (with the agent's message and field), anything else unreachable. */
  private statusError(what: string, res: IncomingMessage, body: string): Error {
    const status = res.statusCode ?? 0;
    let message = body.slice(0, 200);
    let field: string | null = null;
    try {
      const parsed = refusalSchema.safeParse(JSON.parse(body));
      if (parsed.success) {
        message = parsed.data.error ?? message;
        field = parsed.data.field ?? null;
      }
    } catch {
      // not JSON: keep the text
    }
    const text = `${what}: ${status}${message ? ` ${message}` : ''}`;
    if (status >= 400 && status < 500) return new NodeRefusedError(this.node, status, text, field);
    return new NodeUnreachableError(this.node, text);
  }

  /** Wraps a transport error (refused, reset, TLS) unless it is already ours. */
  private unreachable(what: string, error: Error): Error {
    if (error instanceof NodeUnreachableError || error instanceof NodeRefusedError) return error;
    const code = (error as NodeJS.ErrnoException).code;
    const detail = code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
    return new NodeUnreachableError(this.node, `${what} at ${this.url.host}: ${detail}`, { cause: error });
  }
}
