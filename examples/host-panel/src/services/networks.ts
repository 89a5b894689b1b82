import type { Actor } from '../../../../src/plugin-api.js';
import { conflict, notFound } from '../errors.js';
import { findNetwork, interfaceTaken, parseId, toNetwork, toPeer } from '../db/records.js';
import { networkCreate, networkUpdate, parseBody } from '../validation.js';
import { insertId, isUniqueViolation, type ServiceContext } from './context.js';
import { interfaceClaims } from '../mutex.js';

export async function listNetworks({ db }: ServiceContext) {
  return (await db('networks').orderBy('id')).map(toNetwork);
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

export async function createNetwork(ctx: ServiceContext, body: unknown, actor: Actor) {
  const input = parseBody(networkCreate, body);
  const network = await interfaceClaims.run('all', () => insertNetwork(ctx, input));
  await ctx.hooks.emit('network.created', { network, actor });
  return network;
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
    await ctx.db('networks').where({ id: existing.id }).update({ ...next, netns: next.netns ?? '', node: next.node ?? '', updated_at: Date.now() });
  });
  const network = (await findNetwork(ctx.db, existing.id))!;
  if (moved) {
    // The kernel interface changed (or moved to another node): to plugins this is the old interface going and a new one coming.
    await ctx.hooks.emit('network.deleted', { network: existing, actor });
    await ctx.hooks.emit('network.created', { network, actor });
  }
  return network;
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

