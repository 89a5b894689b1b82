import type { Actor, NetworkRecord, PeerRecord } from '../../../../src/plugin-api.js';
import { conflict, notFound } from '../errors.js';
import { parseId, toPeer } from '../db/records.js';
import { overlaps, parseCidr, type Cidr } from '../cidr.js';
import { parseBody, peerCreate, peerUpdate } from '../validation.js';
import { HookFailedError } from '../hooks.js';
import { insertId, isUniqueViolation, rejectIssues, undone, type ServiceContext } from './context.js';
import { getNetwork } from './networks.js';
import { networkPeers } from '../mutex.js';

/** Peers with the fields plugins add through `peer.serialize`. */
export async function serializePeers(ctx: ServiceContext, peers: PeerRecord[]): Promise<PeerRecord[]> {
  if (peers.length === 0) return peers;
  const extra = await ctx.hooks.serialize('peer.serialize', { peers });
  return peers.map((peer) => ({ ...peer, ...extra.get(peer.id) }));
}

export async function listPeers(ctx: ServiceContext, networkIdText: string | undefined) {
  const network = await getNetwork(ctx, networkIdText);
  const peers = (await ctx.db('peers').where({ network_id: network.id }).orderBy('id')).map(toPeer);
  return { network, peers: await serializePeers(ctx, peers) };
}

export async function getPeer(ctx: ServiceContext, networkIdText: string | undefined, peerIdText: string | undefined) {
  const network = await getNetwork(ctx, networkIdText);
  const id = parseId(peerIdText);
  const row = id === undefined ? undefined : await ctx.db('peers').where({ id, network_id: network.id }).first();
  if (!row) throw notFound('peer', String(peerIdText));
  return { network, peer: toPeer(row) };
}

/** WireGuard routes each address to one peer: overlapping allowed IPs would silently move traffic. */
async function assertNoOverlap(ctx: ServiceContext, network: NetworkRecord, allowedIps: string[], exceptId?: number) {
  const others = (await ctx.db('peers').where({ network_id: network.id })).map(toPeer).filter((p) => p.id !== exceptId);
  const mine = allowedIps.map((text) => parseCidr(text) as Cidr);
  for (const other of others) {
    for (const theirs of other.allowed_ips.map((text) => parseCidr(text) as Cidr)) {
      const clash = mine.find((cidr) => overlaps(cidr, theirs));
      if (clash) throw conflict(`Allowed IP \`${clash.text}\` overlaps \`${theirs.text}\` of peer \`${other.name}\``, 'allowed_ips');
    }
  }
}

async function assertKeyFree(ctx: ServiceContext, network: NetworkRecord, key: string, exceptId?: number) {
  const query = ctx.db('peers').where({ network_id: network.id, public_key: key });
  if (exceptId !== undefined) query.whereNot({ id: exceptId });
  if (await query.first()) throw conflict('Another peer of this network has this public key', 'public_key');
}

export async function createPeer(ctx: ServiceContext, networkIdText: string | undefined, body: unknown, actor: Actor) {
  const network = await getNetwork(ctx, networkIdText);
  const input = parseBody(peerCreate, body);
  const id = await networkPeers.run(String(network.id), async () => {
    await assertKeyFree(ctx, network, input.public_key);
    await assertNoOverlap(ctx, network, input.allowed_ips);
    rejectIssues(await ctx.hooks.validate('peer.validate', { input: body as Record<string, unknown>, existing: null, network }));
    const now = Date.now();
    try {
      return await insertId(ctx.db, 'peers', {
        network_id: network.id, name: input.name, public_key: input.public_key,
        allowed_ips: JSON.stringify(input.allowed_ips), created_at: now, updated_at: now,
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw conflict('Another peer of this network has this public key', 'public_key');
      throw error;
    }
  });
  const peer = toPeer(await ctx.db('peers').where({ id }).first());
  try {
    await ctx.hooks.follow('peer.created', { peer, network, input: body as Record<string, unknown>, actor });
  } catch (error) {
    if (!(error instanceof HookFailedError)) throw error;
    // A plugin could not store its settings for the peer (its caps): no peer rather than an uncapped one.
    await ctx.db('peers').where({ id }).delete();
    await ctx.hooks.emitTo(error.followed, 'peer.deleted', { peer, network, actor });
    throw undone(error, 'The peer was not created');
  }
  return { network, peer: (await serializePeers(ctx, [peer]))[0]! };
}

export async function updatePeer(
  ctx: ServiceContext,
  networkIdText: string | undefined,
  peerIdText: string | undefined,
  body: unknown,
  actor: Actor,
) {
  const { network, peer: previous } = await getPeer(ctx, networkIdText, peerIdText);
  const input = parseBody(peerUpdate, body, { partial: true });
  await networkPeers.run(String(network.id), async () => {
    if (input.public_key !== undefined) await assertKeyFree(ctx, network, input.public_key, previous.id);
    if (input.allowed_ips !== undefined) await assertNoOverlap(ctx, network, input.allowed_ips, previous.id);
    rejectIssues(await ctx.hooks.validate('peer.validate', { input: body as Record<string, unknown>, existing: previous, network }));
    const changes: Record<string, unknown> = {};
    if (input.name !== undefined) changes.name = input.name;
    if (input.public_key !== undefined) changes.public_key = input.public_key;
    if (input.allowed_ips !== undefined) changes.allowed_ips = JSON.stringify(input.allowed_ips);
    if (Object.keys(changes).length > 0) {
      await ctx.db('peers').where({ id: previous.id }).update({ ...changes, updated_at: Date.now() });
    }
  });
  const peer = toPeer(await ctx.db('peers').where({ id: previous.id }).first());
  try {
    await ctx.hooks.follow('peer.updated', { peer, previous, network, input: body as Record<string, unknown>, actor });
  } catch (error) {
    if (!(error instanceof HookFailedError)) throw error;
    // A plugin could not store the new settings: the peer goes back to what it was, so nothing half-applies.
    await ctx.db('peers').where({ id: previous.id }).update({
      name: previous.name, public_key: previous.public_key, allowed_ips: JSON.stringify(previous.allowed_ips), updated_at: Date.now(),
    });
    await ctx.hooks.emitTo(error.followed, 'peer.updated', { peer: previous, previous: peer, network, input: {}, actor });
    throw undone(error, 'The peer was not changed');
  }
  return { network, peer: (await serializePeers(ctx, [peer]))[0]! };
}

export async function deletePeer(ctx: ServiceContext, networkIdText: string | undefined, peerIdText: string | undefined, actor: Actor) {
  const { network, peer } = await getPeer(ctx, networkIdText, peerIdText);
  await ctx.db('peers').where({ id: peer.id }).delete();
  await ctx.hooks.emit('peer.deleted', { peer, network, actor });
  return { network, peer };
}
