import express, { type Router } from 'express';
import type { HostAuth } from '../../../../src/plugin-api.js';
import type { PluginManager } from '../plugins.js';
import type { ServiceContext } from '../services/context.js';
import { createNetwork, deleteNetwork, getNetwork, listNetworks, serializeNetworks, updateNetwork } from '../services/networks.js';
import { createPeer, deletePeer, getPeer, listPeers, serializePeers, updatePeer } from '../services/peers.js';
import { createVm, deleteVm, getVm, listVms, serializeVms, updateVm } from '../services/vms.js';

/** The JSON API under /api, behind the bearer token. Express 5 forwards rejected promises to the error middleware. */
export function createApiRouter(ctx: ServiceContext, auth: HostAuth, plugins: PluginManager): Router {
  const router = express.Router();
  router.use(auth.api);

  router.get('/networks', async (_req, res) => {
    res.json({ networks: await listNetworks(ctx) });
  });
  router.post('/networks', async (req, res) => {
    res.status(201).json({ network: await createNetwork(ctx, req.body, auth.actor(req)) });
  });
  router.get('/networks/:id', async (req, res) => {
    res.json({ network: (await serializeNetworks(ctx, [await getNetwork(ctx, req.params.id)]))[0] });
  });
  router.put('/networks/:id', async (req, res) => {
    res.json({ network: await updateNetwork(ctx, req.params.id, req.body, auth.actor(req)) });
  });
  router.delete('/networks/:id', async (req, res) => {
    await deleteNetwork(ctx, req.params.id, auth.actor(req));
    res.status(204).end();
  });

  router.get('/networks/:id/peers', async (req, res) => {
    const { peers } = await listPeers(ctx, req.params.id);
    res.json({ peers });
  });
  router.post('/networks/:id/peers', async (req, res) => {
    const { peer } = await createPeer(ctx, req.params.id, req.body, auth.actor(req));
    res.status(201).json({ peer });
  });
  router.get('/networks/:id/peers/:pid', async (req, res) => {
    const { peer } = await getPeer(ctx, req.params.id, req.params.pid);
    res.json({ peer: (await serializePeers(ctx, [peer]))[0] });
  });
  router.put('/networks/:id/peers/:pid', async (req, res) => {
    const { peer } = await updatePeer(ctx, req.params.id, req.params.pid, req.body, auth.actor(req));
    res.json({ peer });
  });
  router.delete('/networks/:id/peers/:pid', async (req, res) => {
    await deletePeer(ctx, req.params.id, req.params.pid, auth.actor(req));
    res.status(204).end();
  });

  router.get('/vms', async (_req, res) => {
    res.json({ vms: await listVms(ctx) });
  });
  router.post('/vms', async (req, res) => {
    res.status(201).json({ vm: await createVm(ctx, req.body, auth.actor(req)) });
  });
  router.get('/vms/:id', async (req, res) => {
    res.json({ vm: (await serializeVms(ctx, [await getVm(ctx, req.params.id)]))[0] });
  });
  router.put('/vms/:id', async (req, res) => {
    res.json({ vm: await updateVm(ctx, req.params.id, req.body, auth.actor(req)) });
  });
  router.delete('/vms/:id', async (req, res) => {
    await deleteVm(ctx, req.params.id, auth.actor(req));
    res.status(204).end();
  });

  router.get('/plugins', async (_req, res) => {
    res.json({ plugins: await plugins.list() });
  });
  router.post('/plugins/:id/enable', async (req, res) => {
    await plugins.enable(req.params.id);
    res.json({ plugin: (await plugins.list()).find((p) => p.id === req.params.id) });
  });
  router.post('/plugins/:id/disable', async (req, res) => {
    await plugins.disable(req.params.id);
    res.json({ plugin: (await plugins.list()).find((p) => p.id === req.params.id) });
  });
  router.post('/plugins/:id/uninstall', async (req, res) => {
    const { warnings } = await plugins.uninstall(req.params.id);
    const plugin = (await plugins.list()).find((p) => p.id === req.params.id);
    // `warnings` only when the uninstall left something behind (a node that did not answer keeps its caps).
    res.json(warnings.length > 0 ? { plugin, warnings } : { plugin });
  });
  return router;
}
