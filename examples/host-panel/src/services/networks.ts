import type { Actor, NetworkRecord } from '../../../../src/plugin-api.js';
import { conflict, notFound } from '../errors.js';
import { findNetwork, interfaceTaken, parseId, toNetwork, toPeer } from '../db/records.js';
import { networkCreate, networkUpdate, parseBody } from '../validation.js';
import { HookFailedError } from '../hooks.js';
import { insertId, isUniqueViolation, rejectIssues, undone, type ServiceContext } from './context.js';
import { interfaceClaims } from '../mutex.js';

/** Networks with the fields plugins add through `network.serialize` (host API 1.4.0), such as a network's caps. */
export async function serializeNetworks<N extends NetworkRecord>(ctx: ServiceContext, networks: N[]): Promise<N[]> {
  if (networks.length === 0) return networks;
  const extra = await ctx.hooks.serialize('network.serialize', { networks });
  return networks.map((network) => ({ ...network, ...extra.get(network.id) }));
}

export async function listNetworks(ctx: ServiceContext) {
  return serializeNetworks(ctx, (await ctx.db('networks').orderBy('id')).map(toNetwork));
}

export async function getNetwork({ db }: ServiceContext, idText: string | undefined) {
  const id = parseId(idText);
  const network = id === undefined ? undefined : await findNetwork(db, id);
  if (!network) throw notFound('network', String(idText));
  return network;
}

function interfaceConflict(iface: string, netns: string | null, node: string | null) {
  return conflict(`Interface \`${iface}\` is already used by a network or VM${netns ? ` in namespace \`${netns}\`` : ''}${node ? ` on node \`${node}\`` : ''}`, 'interface');
}

/**
 * Creates a network: plugins check the body (`network.validate`) before anything is written, and
 * follow the write (`network.created` with the body as `input`, where a plugin reads its fields such
 * as the network's caps); when one cannot, the network is deleted again and the answer is 503.
 */
export async function createNetwork(ctx: ServiceContext, body: unknown, actor: Actor) {
  const input = parseBody(networkCreate, body);
  const network = await interfaceClaims.run('all', async () => {
    rejectIssues(await ctx.hooks.validate('network.validate', { input: body as Record<string, unknown>, existing: null }));
    return insertNetwork(ctx, input);
  });
  try {
    await ctx.hooks.follow('network.created', { network, actor, input: body as Record<string, unknown> });
  } catch (error) {
    if (!(error instanceof HookFailedError)) throw error;
    // A plugin could not store its settings for the network (its caps): no network rather than an uncapped one.
    await ctx.db('networks').where({ id: network.id }).delete();
    await ctx.hooks.emitTo(error.followed, 'network.deleted', { network, actor });
    throw undone(error, 'The network was not created');
  }
  return (await serializeNetworks(ctx, [network]))[0]!;
}

async function insertNetwork(ctx: ServiceContext, input: { name: string; interface: string; netns?: string | null; node?: string | null }) {
  const netns = input.netns ?? null;
  const node = input.node ?? null;
  if (await interfaceTaken(ctx.db, input.interface, netns, node)) throw interfaceConflict(input.interface, netns, node);
  const now = Date.now();
  let id: number;
  try {
    id = await insertId(ctx.db, 'networks', {
      name: input.name, interface: input.interface, netns: netns ?? '', node: node ?? '', created_at: now, updated_at: now,
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw interfaceConflict(input.interface, netns, node);
    throw error;
  }
  return (await findNetwork(ctx.db, id))!;
}

/**
 * Updates a network: `network.validate` before the write; after it, `network.deleted` and
 * `network.created` when its interface moved (the old interface goes, the new one comes), then
 * `network.updated` with the body as `input`, which plugins follow; when one cannot, the network
 * goes back to what it was and the answer is 503.
 */
export async function updateNetwork(ctx: ServiceContext, idText: string | undefined, body: unknown, actor: Actor) {
  const existing = await getNetwork(ctx, idText);
  const input = parseBody(networkUpdate, body, { partial: true });
  const next = {
    name: input.name ?? existing.name,
    interface: input.interface ?? existing.interface,
    netns: input.netns === undefined ? existing.netns : input.netns,
    node: input.node === undefined ? existing.node ?? null : input.node,
  };
  const moved = next.interface !== existing.interface || next.netns !== existing.netns || next.node !== (existing.node ?? null);
  await interfaceClaims.run('all', async () => {
    if (moved && (await interfaceTaken(ctx.db, next.interface, next.netns, next.node, { table: 'networks', id: existing.id }))) {
      throw interfaceConflict(next.interface, next.netns, next.node);
    }
    rejectIssues(await ctx.hooks.validate('network.validate', { input: body as Record<string, unknown>, existing }));
    await ctx.db('networks').where({ id: existing.id }).update({ ...next, netns: next.netns ?? '', node: next.node ?? '', updated_at: Date.now() });
  });
  const network = (await findNetwork(ctx.db, existing.id))!;
  if (moved) {
    // The kernel interface changed (or moved to another node): to plugins this is the old interface going and a new one coming.
    await ctx.hooks.emit('network.deleted', { network: existing, actor });
    await ctx.hooks.emit('network.created', { network, actor, input: {} });
  }
  try {
    await ctx.hooks.follow('network.updated', { network, previous: existing, input: body as Record<string, unknown>, actor });
  } catch (error) {
    if (!(error instanceof HookFailedError)) throw error;
    // A plugin could not store the new settings: the network goes back to what it was, so nothing half-applies.
    await ctx.db('networks').where({ id: existing.id }).update({
      name: existing.name, interface: existing.interface, netns: existing.netns ?? '', node: existing.node ?? '', updated_at: Date.now(),
    });
    if (moved) {
      await ctx.hooks.emit('network.deleted', { network, actor });
      await ctx.hooks.emit('network.created', { network: existing, actor, input: {} });
    }
    await ctx.hooks.emitTo(error.followed, 'network.updated', { network: existing, previous: network, input: {}, actor });
    throw undone(error, 'The network was not changed');
  }
  return (await serializeNetworks(ctx, [network]))[0]!;
}

/** Deletes a network and its peers; plugins hear `peer.deleted` for each, then `network.deleted`. */
export async function deleteNetwork(ctx: ServiceContext, idText: string | undefined, actor: Actor) {
  const network = await getNetwork(ctx, idText);
  const peers = (await ctx.db('peers').where({ network_id: network.id }).orderBy('id')).map(toPeer);
  await ctx.db.transaction(async (trx) => {
    await trx('peers').where({ network_id: network.id }).delete();
    await trx('networks').where({ id: network.id }).delete();
  });
  for (const peer of peers) await ctx.hooks.emit('peer.deleted', { peer, network, actor });
  await ctx.hooks.emit('network.deleted', { network, actor });
  return network;
}

