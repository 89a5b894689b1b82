import { join } from 'node:path';
import type { Request, Response } from 'express';
import type { Host } from '../plugin-api.js';
import type { NodeAdmin, NodeReport } from '../nodes/panel/node-admin.js';
import { SecretKeyError } from '../nodes/panel/secret.js';
import { ConflictError, InputError } from '../errors.js';
import { httpAnswer, notFound, parseId } from './errors.js';
import { PLUGIN_VIEWS } from './admin-overview.js';

const VIEWS = join(PLUGIN_VIEWS, 'bandwidth');

/** What a refused form shows: the message and, for input errors, the field. */
interface FormError {
  field: string | null;
  message: string;
}

/** A form's fields as typed (never the token: a refused form asks for it again). */
type FormValues = Record<string, string | boolean>;

/** The badge tone of each state (the host's badge colours). */
export const STATE_TONE = { connected: 'applied', connecting: 'pending', unreachable: 'failed', disabled: 'off' } as const;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString().replace('T', ' ').slice(0, 19));

/** The form's fields → the API's shape: an empty token keeps the stored one, an empty fingerprint removes the pin. */
function formBody(body: Record<string, unknown>, mode: 'create' | 'edit'): Record<string, unknown> {
  const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string).trim() : '');
  const input: Record<string, unknown> = { name: text('name'), url: text('url'), enabled: body.enabled === 'on' || body.enabled === 'true' };
  const token = typeof body.token === 'string' ? body.token : '';
  if (mode === 'create' || token !== '') input.token = token;
  const fingerprint = text('tls_fingerprint');
  if (mode === 'edit') input.tls_fingerprint = fingerprint === '' ? null : fingerprint;
  else if (fingerprint !== '') input.tls_fingerprint = fingerprint;
  return input;
}

function formValues(body: Record<string, unknown>): FormValues {
  const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string) : '');
  return { name: text('name'), url: text('url'), tls_fingerprint: text('tls_fingerprint'), enabled: body.enabled === 'on' || body.enabled === 'true' };
}

/** A refusal the form can show, or undefined for anything else (thrown on). */
function refusal(error: unknown): { status: number; error: FormError } | undefined {
  if (error instanceof InputError) return { status: 400, error: { field: error.field, message: error.message } };
  if (error instanceof ConflictError) return { status: 409, error: { field: error.field ?? null, message: error.message } };
  if (error instanceof SecretKeyError) return { status: 500, error: { field: null, message: error.message } };
  return undefined;
}

/**
 * `/admin/bandwidth/nodes`: one card per node (this machine first) with its state, ledger lag,
 * version and last error; forms to add a node, edit, enable or disable one, and delete one after a
 * confirmation page. Per-node pages live at `…/nodes/:id/edit` and `…/nodes/:id/delete` (three
 * segments, clear of the subject page's `/admin/bandwidth/:type/:id`).
 */
export function mountNodesPage(
  host: Host,
  nodes: NodeAdmin,
  page: { path: string; minRole: 'admin' | 'viewer'; overviewPath?: string },
): void {
  const { router, auth, views } = host;
  const admin = auth.admin('admin');
  // The overview its cards link to (filtered by node). @default the page's parent path
  const overviewPath = page.overviewPath ?? page.path.replace(/\/[^/]+$/, '');
  const actor = (req: Request) => auth.actor(req).name;

  async function listPage(req: Request, res: Response, form: { error: FormError | null; values: FormValues } = { error: null, values: { enabled: true } }) {
    await views.render(req, res, join(VIEWS, 'nodes.ejs'), {
      title: 'Nodes',
      reports: await nodes.reports(),
      basePath: page.path,
      overviewPath,
      form,
      tone: STATE_TONE,
      iso,
      canEdit: auth.role(req) === 'admin',
    });
  }

  async function editPage(req: Request, res: Response, report: NodeReport, form: { error: FormError | null; values: FormValues } | null = null) {
    const agent = report.agent!;
    await views.render(req, res, join(VIEWS, 'node-edit.ejs'), {
      title: `Node ${agent.name}`,
      report,
      agent,
      basePath: page.path,
      form: form ?? { error: null, values: { name: agent.name, url: agent.url, tls_fingerprint: agent.tlsFingerprint ?? '', enabled: agent.enabled } },
      tone: STATE_TONE,
      iso,
    });
  }

  /** The report of the node in the route, or a 404 page (undefined). */
  async function found(req: Request, res: Response): Promise<NodeReport | undefined> {
    try {
      const id = parseId(req.params.id);
      if (id === undefined) throw notFound('node agent', String(req.params.id));
      return await nodes.report(id);
    } catch (error) {
      const answer = httpAnswer(error);
      if (!answer) throw error;
      res.status(answer.status);
      await views.render(req, res, join(VIEWS, 'not-found.ejs'), { title: 'Not found', message: answer.message });
      return undefined;
    }
  }

  router.get(page.path, auth.admin(page.minRole), (req, res) => listPage(req, res));

  router.post(page.path, admin, auth.verifyCsrf, async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    try {
      const agent = await nodes.create(formBody(body, 'create'), actor(req));
      views.flash(req, `Node ${agent.name} added`);
      res.redirect(303, page.path);
    } catch (error) {
      const refused = refusal(error);
      if (!refused) throw error;
      res.status(refused.status);
      await listPage(req, res, { error: refused.error, values: formValues(body) });
    }
  });

  router.get(`${page.path}/:id/edit`, admin, async (req, res) => {
    const report = await found(req, res);
    if (report) await editPage(req, res, report);
  });

  router.post(`${page.path}/:id/edit`, admin, auth.verifyCsrf, async (req, res) => {
    const report = await found(req, res);
    if (!report) return;
    const body = (req.body ?? {}) as Record<string, unknown>;
    try {
      const agent = await nodes.update(report.agent!.id, formBody(body, 'edit'), actor(req));
      views.flash(req, `Node ${agent.name} saved`);
      res.redirect(303, page.path);
    } catch (error) {
      const refused = refusal(error);
      if (!refused) throw error;
      res.status(refused.status);
      await editPage(req, res, report, { error: refused.error, values: formValues(body) });
    }
  });

  for (const action of ['enable', 'disable'] as const) {
    router.post(`${page.path}/:id/${action}`, admin, auth.verifyCsrf, async (req, res) => {
      const report = await found(req, res);
      if (!report) return;
      const agent = action === 'enable' ? await nodes.start(report.agent!.id, actor(req)) : await nodes.stop(report.agent!.id, actor(req));
      views.flash(req, `Node ${agent.name} ${action}d`);
      res.redirect(303, page.path);
    });
  }

  router.get(`${page.path}/:id/delete`, admin, async (req, res) => {
    const report = await found(req, res);
    if (report) await views.render(req, res, join(VIEWS, 'node-delete.ejs'), { title: `Delete node ${report.agent!.name}`, report, basePath: page.path, error: null });
  });

  router.post(`${page.path}/:id/delete`, admin, auth.verifyCsrf, async (req, res) => {
    const report = await found(req, res);
    if (!report) return;
    try {
      const agent = await nodes.remove(report.agent!.id, actor(req));
      views.flash(req, `Node ${agent.name} deleted`);
      res.redirect(303, page.path);
    } catch (error) {
      const refused = refusal(error);
      if (!refused) throw error;
      res.status(refused.status);
      await views.render(req, res, join(VIEWS, 'node-delete.ejs'), { title: `Delete node ${report.agent!.name}`, report, basePath: page.path, error: refused.error });
    }
  });
}
