/**
 * The agent's HTTP API (DESIGN.md "Nodes"): the panel pushes desired state, pulls the ledger and
 * follows events; Prometheus scrapes `/metrics`; masters of the VM-side design post jobs.
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /v1/health` (no token) | {@link NodeHealth}: no subject appears in it |
 * | `GET /v1/interfaces` | `{ interfaces: [{ interface, netns, kind, version }] }` |
 * | `GET /v1/interfaces/:name?netns=` | the held {@link InterfaceState}, 404 when none |
 * | `PUT /v1/interfaces/:name` | body {@link InterfaceState} → {@link InterfaceReport} (`stale: true`: older than held, nothing changed) |
 * | `DELETE /v1/interfaces/:name?netns=` | {@link InterfaceReport}; removes the engine's tree |
 * | `GET /v1/ledger?after=SEQ&limit=N` | {@link LedgerPage} (after ≥ 0, default 0; limit 1-10000, default 1000) |
 * | `GET /v1/rates` | `{ tick: NodeRates }`: the last collector tick's rates |
 * | `GET /v1/rates/live` | {@link NodeRates} since the previous call |
 * | `GET /v1/events[?rates=1]` | SSE: `ledger` `{head}`, `rates` `{at, rates}`, `: heartbeat` |
 * | `GET /metrics` | Prometheus text |
 * | `POST /v1/jobs` | the VM-side design's jobs (see `jobs.ts`) |
 *
 * Every route but health needs `Authorization: Bearer <token>` (401 otherwise, before the body is
 * read). Malformed input, unknown query parameters included, is 400 `{ error, field }` and changes
 * nothing; an unknown route 404 `{ error }`; anything unexpected 500 `{ error }`, logged.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type ErrorRequestHandler, type Express, type Request } from 'express';

import { ConflictError, InputError, NotFoundError } from '../../errors.js';
import type { Logger } from '../../plugin-api.js';
import { interfaceNameSchema, netnsSchema, parseInterfaceState, parseWith, ProtocolError } from '../protocol.js';
import { bearerAuth } from './bearer-auth.js';
import type { AgentCore } from './core.js';
import { AgentEventStream } from './event-stream.js';
import { collectJobJson, jobSchema, mbpsToKbps, setDownloadCap } from './jobs.js';
import { createAgentMetrics } from './metrics.js';

/** Options of {@link createAgentServer}. */
export interface AgentServerOptions {
  core: AgentCore;
  /** The bearer token every route but health requires (at least 32 characters). */
  token: string;
  /** Serve HTTPS with this PEM certificate and key; plain HTTP without. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  logger: Logger;
  /** SSE heartbeat interval: the panel's read deadline counts on it. @default 5000 */
  heartbeatMs?: number;
  /** SSE `rates` interval for `?rates=1`. @default 1000 */
  ratesIntervalMs?: number;
  /** Largest request body (a wireguard interface with many peers is big). @default '16mb' */
  bodyLimit?: string;
}

export interface AgentServer {
  app: Express;
  /** Listens; resolves with the bound address (port 0 picks a free port). */
  listen(host: string, port: number): Promise<{ host: string; port: number }>;
  /** Ends event streams, stops accepting, lets requests in flight finish (5 s at most). Idempotent. */
  close(): Promise<void>;
}

/** How long `close()` lets requests in flight finish before it cuts their connections. */
const CLOSE_GRACE_MS = 5000;

/** Query parameters of a request, refusing any not in `allowed` and any given twice. */
function queryOf(req: Request, allowed: readonly string[]): Record<string, string | undefined> {
  const query = req.query as Record<string, unknown>;
  for (const [key, value] of Object.entries(query)) {
    if (!allowed.includes(key)) {
      throw new InputError(key.slice(0, 64), `Unknown query parameter \`${key.slice(0, 64)}\`${allowed.length > 0 ? ` (known: ${allowed.join(', ')})` : ''}`);
    }
    if (typeof value !== 'string') throw new InputError(key, `\`${key}\` must be given once`);
  }
  return query as Record<string, string | undefined>;
}

/** A whole number query parameter within [min, max]. */
function intParam(value: string | undefined, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!/^\d{1,16}$/.test(value) || number < min || number > max) throw new InputError(field, `\`${field}\` must be a whole number from ${min} to ${max}, got \`${value.slice(0, 40)}\``);
  return number;
}

const nameParam = (req: Request): string => parseWith(interfaceNameSchema, req.params.name, 'name');
const netnsParam = (value: string | undefined): string | null => parseWith(netnsSchema, value ?? null, 'netns');

/** The JSON body, or a 400 naming `body` when there is none (wrong or missing Content-Type). */
function bodyOf(req: Request): unknown {
  if (req.body === undefined) throw new InputError('body', 'Expected a JSON body (Content-Type: application/json)');
  return req.body;
}

/** What an error becomes: status, message and the field at fault. */
function answerOf(error: unknown): { status: number; error: string; field?: string } {
  if (error instanceof ProtocolError || error instanceof InputError) return { status: 400, error: error.message, field: error.field };
  if (error instanceof NotFoundError) {
    const field = (error as { field?: unknown }).field;
    return { status: 404, error: error.message, ...(typeof field === 'string' ? { field } : {}) };
  }
  if (error instanceof ConflictError) return { status: 409, error: error.message, ...(error.field ? { field: error.field } : {}) };
  // body-parser's errors: malformed JSON, too large, unsupported charset or encoding.
  const parser = error as { type?: unknown; status?: unknown; expose?: unknown; message?: unknown };
  if (typeof parser.type === 'string' && typeof parser.status === 'number' && parser.status >= 400 && parser.status < 500 && parser.expose) {
    const what = parser.type === 'entity.parse.failed' ? 'body: not valid JSON' : 'body';
    return { status: parser.status, error: `${what}: ${String(parser.message)}`, field: 'body' };
  }
  return { status: 500, error: `internal error: ${(error as Error)?.message ?? String(error)}` };
}

/**
 * Builds the agent's HTTP(S) server around a core. The app is separate from `listen`, so tests
 * can drive it in process.
 */
export function createAgentServer(options: AgentServerOptions): AgentServer {
  const { core, token, logger } = options;
  if (typeof token !== 'string' || token.length < 32) {
    throw new TypeError(`Expected \`token\` to be a string of at least 32 characters, got ${typeof token === 'string' ? `${token.length} characters` : typeof token}`);
  }
  for (const [name, value] of [['heartbeatMs', options.heartbeatMs], ['ratesIntervalMs', options.ratesIntervalMs]] as const) {
    if (value !== undefined && (!Number.isFinite(value) || value <= 0)) {
      throw new TypeError(`Expected \`${name}\` to be a finite number > 0, got \`${value}\` (${typeof value})`);
    }
  }
  const events = new AgentEventStream({ core, logger, heartbeatMs: options.heartbeatMs ?? 5000, ratesIntervalMs: options.ratesIntervalMs ?? 1000 });
  const metrics = createAgentMetrics(core);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/v1/health', async (req, res) => {
    queryOf(req, []);
    res.json(await core.health());
  });

  // Nothing below runs, not even body parsing, without the token.
  app.use(bearerAuth(token));
  app.use(express.json({ limit: options.bodyLimit ?? '16mb', strict: true }));

  app.get('/v1/interfaces', async (req, res) => {
    queryOf(req, []);
    res.json({ interfaces: await core.interfaces() });
  });

  app.get('/v1/interfaces/:name', async (req, res) => {
    const name = nameParam(req);
    const netns = netnsParam(queryOf(req, ['netns']).netns);
    const state = await core.interfaceState(name, netns);
    if (!state) throw Object.assign(new NotFoundError(`No state held for interface \`${name}\`${netns ? ` in netns \`${netns}\`` : ''}`), { field: 'name' });
    res.json(state);
  });

  app.put('/v1/interfaces/:name', async (req, res) => {
    const name = nameParam(req);
    queryOf(req, []);
    const state = parseInterfaceState(bodyOf(req));
    const report = await core.putInterface(name, state);
    logger.info(`agent: interface ${name}${state.netns ? ` (netns ${state.netns})` : ''} version ${state.version}: ${report.stale ? 'stale, unchanged' : report.status}`);
    res.json(report);
  });

  app.delete('/v1/interfaces/:name', async (req, res) => {
    const name = nameParam(req);
    const netns = netnsParam(queryOf(req, ['netns']).netns);
    const report = await core.deleteInterface(name, netns);
    logger.info(`agent: interface ${name}${netns ? ` (netns ${netns})` : ''} removed: ${report.status}`);
    res.json(report);
  });

  app.get('/v1/ledger', async (req, res) => {
    const query = queryOf(req, ['after', 'limit']);
    const after = intParam(query.after, 'after', 0, Number.MAX_SAFE_INTEGER, 0);
    const limit = intParam(query.limit, 'limit', 1, 10_000, 1000);
    res.json(await core.ledger(after, limit));
  });

  app.get('/v1/rates', (req, res) => {
    queryOf(req, []);
    res.json({ tick: core.tickRates() });
  });

  app.get('/v1/rates/live', async (req, res) => {
    queryOf(req, []);
    res.json(await core.liveRates());
  });

  app.get('/v1/events', async (req, res) => {
    const { rates } = queryOf(req, ['rates']);
    if (rates !== undefined && rates !== '0' && rates !== '1') throw new InputError('rates', `\`rates\` must be 0 or 1, got \`${rates.slice(0, 40)}\``);
    await events.attach(req, res, { rates: rates === '1' });
  });

  app.get('/metrics', async (req, res) => {
    queryOf(req, []);
    res.type(metrics.contentType).send(await metrics.metrics());
  });

  app.post('/v1/jobs', async (req, res) => {
    queryOf(req, []);
    const job = parseWith(jobSchema, bodyOf(req));
    if (job.type === 'BANDWIDTH_COLLECT') {
      res.type('application/json').send(await collectJobJson(core));
      return;
    }
    const answer = await setDownloadCap(core, job, job.type === 'NET_EGRESS_CAP_SET' ? mbpsToKbps(job.mbps) : 0);
    logger.info(`agent: job ${job.type} ${answer.name} on ${answer.if}: download ${answer.down_kbps} kbit/s, ${answer.report.status}`);
    res.json(answer);
  });

  app.use((req, res) => {
    res.status(404).json({ error: `No route ${req.method} ${req.path.slice(0, 200)}` });
  });

  const errors: ErrorRequestHandler = (error, req, res, _next) => {
    const answer = answerOf(error);
    if (answer.status >= 500) logger.error(`agent: ${req.method} ${req.path} failed`, { error: (error as Error)?.message, stack: (error as Error)?.stack });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { status, ...body } = answer;
    res.status(status).json(body);
  };
  app.use(errors);

  const server: Server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, app) : createHttpServer(app);
  let closing: Promise<void> | undefined;

  return {
    app,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          const address = server.address() as AddressInfo;
          resolve({ host: address.address, port: address.port });
        });
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        events.close();
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
