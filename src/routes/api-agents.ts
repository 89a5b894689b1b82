import type { Request, Response } from 'express';
import type { Host } from '../plugin-api.js';
import type { Clock } from '../clock.js';
import { agentJson } from '../nodes/panel/registry.js';
import type { NodeAdmin, NodeReport } from '../nodes/panel/node-admin.js';
import { nodeSeries, nodeTotals } from '../nodes/panel/node-usage.js';
import { SecretKeyError } from '../nodes/panel/secret.js';
import { notFound, parseId } from './errors.js';
import { sendJson } from './json.js';
import { parseRange } from './time-params.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The JSON of a node's state (`GET /api/bandwidth/agents/:id/status`). */
export function statusJson(report: NodeReport) {
  return {
    id: report.agent?.id ?? null,
    node: report.node,
    state: report.state,
    since: iso(report.since),
    last_seen_at: iso(report.lastSeen),
    version: report.version,
    protocol: report.protocol,
    capabilities: report.capabilities,
    last_error: report.lastError,
    ledger_head: report.ledgerHead,
    ledger_cursor: report.ledgerCursor,
    ledger_lag: report.ledgerLag,
    subjects: report.subjects,
  };
}

function agentId(req: Request): number {
  const id = parseId(req.params.id);
  if (id === undefined) throw notFound('node agent', String(req.params.id));
  return id;
}

/**
 * The key is the server's business, not the caller's: say what is wrong with it (which file or
 * variable) as a 500 the admin can act on, instead of the host's bare "Internal error".
 */
async function withSecretKey(res: Response, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof SecretKeyError)) throw error;
    res.status(500).json({ error: { code: 'secret_key', message: error.message } });
  }
}

export interface AgentsApiOptions {
  /** Where the routes go (under `/api/`, where errors are answered as JSON). @default '/api/bandwidth/agents' */
  basePath?: string;
  /** The clock a bandwidth range defaults against. @default Date.now */
  now?: Clock;
}

/**
 * The node registry's API, behind the host's bearer token: `GET/POST /api/bandwidth/agents`,
 * `GET/PUT/DELETE /api/bandwidth/agents/:id`, `GET …/:id/status`, `GET …/:id/bandwidth` and
 * `POST …/:id/start|stop`. A token is accepted on POST and PUT and never returned.
 * @example mountAgentsApi(host, nodes, { now });
 */
export function mountAgentsApi(host: Host, nodes: NodeAdmin, options: AgentsApiOptions = {}): void {
  const { router, auth } = host;
  const actor = (req: Request) => auth.actor(req).name;
  const base = options.basePath ?? '/api/bandwidth/agents';
  const clock = options.now ?? Date.now;

  router.get(base, auth.api, async (_req, res) => {
    res.json({ agents: (await nodes.registry.list()).map(agentJson) });
  });

  router.post(base, auth.api, (req, res) =>
    withSecretKey(res, async () => {
      res.status(201).json({ agent: agentJson(await nodes.create(req.body, actor(req))) });
    }),
  );

  router.get(`${base}/:id`, auth.api, async (req, res) => {
    res.json({ agent: agentJson(await nodes.registry.get(agentId(req))) });
  });

  router.put(`${base}/:id`, auth.api, (req, res) =>
    withSecretKey(res, async () => {
      res.json({ agent: agentJson(await nodes.update(agentId(req), req.body, actor(req))) });
    }),
  );

  router.delete(`${base}/:id`, auth.api, async (req, res) => {
    await nodes.remove(agentId(req), actor(req));
    res.status(204).end();
  });

  router.get(`${base}/:id/status`, auth.api, async (req, res) => {
    res.json({ status: statusJson(await nodes.report(agentId(req))) });
  });

  router.get(`${base}/:id/bandwidth`, auth.api, async (req, res) => {
    const agent = await nodes.registry.get(agentId(req));
    const query = req.query as Record<string, unknown>;
    const { step, from, to } = parseRange(query, clock());
    const [totals, series] = await Promise.all([nodeTotals(host.db, agent.name, from, to), nodeSeries(host.db, agent.name, from, to, step)]);
    sendJson(res, {
      id: agent.id,
      node: agent.name,
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      step,
      totals: { up_bytes: totals.upBytes, down_bytes: totals.downBytes },
      series: series.map((point) => ({ start: new Date(point.start).toISOString(), up_bytes: point.upBytes, down_bytes: point.downBytes })),
    });
  });

  router.post(`${base}/:id/start`, auth.api, async (req, res) => {
    res.json({ agent: agentJson(await nodes.start(agentId(req), actor(req))) });
  });

  router.post(`${base}/:id/stop`, auth.api, async (req, res) => {
    res.json({ agent: agentJson(await nodes.stop(agentId(req), actor(req))) });
  });
}
