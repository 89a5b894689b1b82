import express, { type Request, type Response, type Router } from 'express';
import type { Knex } from 'knex';
import type { HostAuth } from '../../../../src/plugin-api.js';
import { HttpError } from '../errors.js';
import type { PluginManager } from '../plugins.js';
import type { ServiceContext } from '../services/context.js';
import { createNetwork, deleteNetwork, listNetworks, serializeNetworks, updateNetwork } from '../services/networks.js';
import { createPeer, deletePeer, getPeer, listPeers, serializePeers, updatePeer } from '../services/peers.js';
import { createVm, deleteVm, getVm, listVms, serializeVms, updateVm } from '../services/vms.js';
import type { ViewRegistry } from '../views.js';

/** Form bodies → the API's shapes: allowed IPs come as one comma/space/newline separated field. */
function peerBody(body: Record<string, unknown>): Record<string, unknown> {
  const { _csrf: _ignored, ...rest } = body;
  if (typeof rest.allowed_ips === 'string') {
    rest.allowed_ips = rest.allowed_ips.split(/[\s,]+/).filter((part) => part !== '');
  }
  return rest;
}

function formBody(body: Record<string, unknown>): Record<string, unknown> {
  const { _csrf: _ignored, ...rest } = body;
  return rest;
}

/** A route parameter as a string (Express 5 types allow arrays for wildcards). */
function param(req: Request, name: string): string {
  const value = req.params[name];
  return Array.isArray(value) ? value.join('/') : String(value ?? '');
}

function flash(req: Request, message: string): void {
  req.session.flash = message;
}

export function createAdminRouter(ctx: ServiceContext, db: Knex, auth: HostAuth, views: ViewRegistry, plugins: PluginManager): Router {
  const router = express.Router();
  const viewer = auth.admin('viewer');
  const admin = auth.admin('admin');
  const render = (req: Request, res: Response, template: string, locals: Record<string, unknown> & { title: string }) =>
    views.render(req, res, template, locals);

  /** Re-renders a form with the user's input and the error when a write is refused. */
  async function orForm(req: Request, res: Response, action: () => Promise<void>, form: (error: HttpError) => Promise<void>) {
    try {
      await action();
    } catch (error) {
      if (!(error instanceof HttpError) || error.status === 404 || error.status === 403) throw error;
      res.status(error.status);
      await form(error);
    }
  }

  router.get('/', (_req, res) => res.redirect(303, '/admin'));
  router.get('/admin', viewer, (_req, res) => res.redirect(303, '/admin/networks'));

  // Networks
  const networksPage = async (req: Request, res: Response, error: HttpError | null = null, values: Record<string, unknown> = {}) => {
    const networks = await listNetworks(ctx);
    const counts = await db('peers').select('network_id').count({ n: '*' }).groupBy('network_id');
    const peerCounts = new Map((counts as { network_id: number; n: number | string }[]).map((c) => [Number(c.network_id), Number(c.n)]));
    await render(req, res, 'networks', { title: 'Networks', networks, peerCounts, error, values });
  };
  router.get('/admin/networks', viewer, (req, res) => networksPage(req, res));
  router.post('/admin/networks', admin, auth.verifyCsrf, async (req, res) => {
    await orForm(req, res, async () => {
      const network = await createNetwork(ctx, formBody(req.body), auth.actor(req));
      flash(req, `Network ${network.name} created`);
      res.redirect(303, `/admin/networks/${network.id}`);
    }, (error) => networksPage(req, res, error, req.body));
  });

  const networkPage = async (
    req: Request,
    res: Response,
    state: { peerError?: HttpError; peerValues?: Record<string, unknown>; networkError?: HttpError; networkValues?: Record<string, unknown> } = {},
  ) => {
    const { network: stored, peers } = await listPeers(ctx, param(req, 'id'));
    // With the fields plugins add (`network.serialize`): the network form's slot shows what they store.
    const [network] = await serializeNetworks(ctx, [stored]);
    await render(req, res, 'network', {
      title: `Network ${network!.name}`,
      network,
      peers,
      peerError: state.peerError ?? null,
      peerValues: state.peerValues ?? {},
      networkError: state.networkError ?? null,
      networkValues: state.networkValues ?? network,
    });
  };
  router.get('/admin/networks/:id', viewer, (req, res) => networkPage(req, res));
  router.post('/admin/networks/:id', admin, auth.verifyCsrf, async (req, res) => {
    await orForm(req, res, async () => {
      const network = await updateNetwork(ctx, param(req, 'id'), formBody(req.body), auth.actor(req));
      flash(req, `Network ${network.name} saved`);
      res.redirect(303, `/admin/networks/${network.id}`);
    }, (error) => networkPage(req, res, { networkError: error, networkValues: req.body }));
  });
  router.post('/admin/networks/:id/delete', admin, auth.verifyCsrf, async (req, res) => {
    const network = await deleteNetwork(ctx, param(req, 'id'), auth.actor(req));
    flash(req, `Network ${network.name} and its peers deleted`);
    res.redirect(303, '/admin/networks');
  });

  // Peers
  router.post('/admin/networks/:id/peers', admin, auth.verifyCsrf, async (req, res) => {
    await orForm(req, res, async () => {
      const { network, peer } = await createPeer(ctx, param(req, 'id'), peerBody(req.body), auth.actor(req));
      flash(req, `Peer ${peer.name} added`);
      res.redirect(303, `/admin/networks/${network.id}`);
    }, (error) => networkPage(req, res, { peerError: error, peerValues: req.body }));
  });
  const peerPage = async (req: Request, res: Response, error: HttpError | null = null, values?: Record<string, unknown>) => {
    const { network: stored, peer } = await getPeer(ctx, param(req, 'id'), param(req, 'pid'));
    const [serialized] = await serializePeers(ctx, [peer]);
    // With its network.serialize fields: a plugin's peer fields may say what the network gives a peer by default.
    const [network] = await serializeNetworks(ctx, [stored]);
    await render(req, res, 'peer', {
      title: `Peer ${peer.name}`,
      network,
      peer: serialized,
      error,
      values: values ?? { ...serialized, allowed_ips: peer.allowed_ips.join(', ') },
    });
  };
  router.get('/admin/networks/:id/peers/:pid', viewer, (req, res) => peerPage(req, res));
  router.post('/admin/networks/:id/peers/:pid', admin, auth.verifyCsrf, async (req, res) => {
    await orForm(req, res, async () => {
      const { network, peer } = await updatePeer(ctx, param(req, 'id'), param(req, 'pid'), peerBody(req.body), auth.actor(req));
      flash(req, `Peer ${peer.name} saved`);
      res.redirect(303, `/admin/networks/${network.id}`);
    }, (error) => peerPage(req, res, error, req.body));
  });
  router.post('/admin/networks/:id/peers/:pid/delete', admin, auth.verifyCsrf, async (req, res) => {
    const { network, peer } = await deletePeer(ctx, param(req, 'id'), param(req, 'pid'), auth.actor(req));
    flash(req, `Peer ${peer.name} deleted`);
    res.redirect(303, `/admin/networks/${network.id}`);
  });

  // VMs
  const vmsPage = async (req: Request, res: Response, error: HttpError | null = null, values: Record<string, unknown> = {}) => {
    await render(req, res, 'vms', { title: 'VMs', vms: await listVms(ctx), error, values });
  };
  router.get('/admin/vms', viewer, (req, res) => vmsPage(req, res));
  router.post('/admin/vms', admin, auth.verifyCsrf, async (req, res) => {
    await orForm(req, res, async () => {
      const vm = await createVm(ctx, formBody(req.body), auth.actor(req));
      flash(req, `VM ${vm.name} created`);
      res.redirect(303, '/admin/vms');
    }, (error) => vmsPage(req, res, error, req.body));
  });
  const vmPage = async (req: Request, res: Response, error: HttpError | null = null, values?: Record<string, unknown>) => {
    const [vm] = await serializeVms(ctx, [await getVm(ctx, param(req, 'id'))]);
    await render(req, res, 'vm', { title: `VM ${vm!.name}`, vm, error, values: values ?? { ...vm, netns: vm!.netns ?? '' } });
  };
  router.get('/admin/vms/:id', viewer, (req, res) => vmPage(req, res));
  router.post('/admin/vms/:id', admin, auth.verifyCsrf, async (req, res) => {
    await orForm(req, res, async () => {
      const vm = await updateVm(ctx, param(req, 'id'), formBody(req.body), auth.actor(req));
      flash(req, `VM ${vm.name} saved`);
      res.redirect(303, '/admin/vms');
    }, (error) => vmPage(req, res, error, req.body));
  });
  router.post('/admin/vms/:id/delete', admin, auth.verifyCsrf, async (req, res) => {
    const vm = await deleteVm(ctx, param(req, 'id'), auth.actor(req));
    flash(req, `VM ${vm.name} deleted`);
    res.redirect(303, '/admin/vms');
  });

  // Plugins
  router.get('/admin/plugins', admin, async (req, res) => {
    await render(req, res, 'plugins', { title: 'Plugins', plugins: await plugins.list() });
  });
  for (const action of ['enable', 'disable', 'uninstall'] as const) {
    router.post(`/admin/plugins/:id/${action}`, admin, auth.verifyCsrf, async (req, res) => {
      try {
        const outcome = await plugins[action](param(req, 'id'));
        // What an uninstall could not undo (a node that did not answer keeps its caps) is said, not hidden.
        const left = outcome?.warnings.length ? `. It could not undo everything: ${outcome.warnings.join('; ')}` : '';
        flash(req, `Plugin ${param(req, 'id')} ${action === 'enable' ? 'enabled' : action === 'disable' ? 'disabled' : 'uninstalled'}${left}`);
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) throw error;
        flash(req, `Could not ${action} plugin ${param(req, 'id')}: ${(error as Error).message}`);
      }
      res.redirect(303, '/admin/plugins');
    });
  }
  return router;
}
