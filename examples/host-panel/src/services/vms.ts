import type { Actor, VmRecord } from '../../../../src/plugin-api.js';
import { conflict, notFound } from '../errors.js';
import { interfaceTaken, parseId, toVm } from '../db/records.js';
import { parseBody, vmCreate, vmUpdate } from '../validation.js';
import { HookFailedError } from '../hooks.js';
import { insertId, isUniqueViolation, rejectIssues, undone, type ServiceContext } from './context.js';
import { interfaceClaims } from '../mutex.js';

export async function serializeVms(ctx: ServiceContext, vms: VmRecord[]): Promise<VmRecord[]> {
  if (vms.length === 0) return vms;
  const extra = await ctx.hooks.serialize('vm.serialize', { vms });
  return vms.map((vm) => ({ ...vm, ...extra.get(vm.id) }));
}

export async function listVms(ctx: ServiceContext) {
  return serializeVms(ctx, (await ctx.db('vms').orderBy('id')).map(toVm));
}

export async function getVm(ctx: ServiceContext, idText: string | undefined): Promise<VmRecord> {
  const id = parseId(idText);
  const row = id === undefined ? undefined : await ctx.db('vms').where({ id }).first();
  if (!row) throw notFound('VM', String(idText));
  return toVm(row);
}

function interfaceConflict(iface: string, node: string | null) {
  return conflict(`Interface \`${iface}\` is already used by a network or VM${node ? ` on node \`${node}\`` : ''}`, 'interface');
}

export async function createVm(ctx: ServiceContext, body: unknown, actor: Actor) {
  const input = parseBody(vmCreate, body);
  rejectIssues(await ctx.hooks.validate('vm.validate', { input: body as Record<string, unknown>, existing: null }));
  const node = input.node ?? null;
  const id = await interfaceClaims.run('all', async () => {
    if (await interfaceTaken(ctx.db, input.interface, input.netns ?? null, node)) throw interfaceConflict(input.interface, node);
    const now = Date.now();
    try {
      return await insertId(ctx.db, 'vms', {
        name: input.name, interface: input.interface, netns: input.netns ?? '', node: node ?? '', created_at: now, updated_at: now,
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw interfaceConflict(input.interface, node);
      throw error;
    }
  });
  const vm = toVm(await ctx.db('vms').where({ id }).first());
  try {
    await ctx.hooks.follow('vm.created', { vm, input: body as Record<string, unknown>, actor });
  } catch (error) {
    if (!(error instanceof HookFailedError)) throw error;
    // A plugin could not store its settings for the VM (its caps): no VM rather than an uncapped one.
    await ctx.db('vms').where({ id }).delete();
    await ctx.hooks.emitTo(error.followed, 'vm.deleted', { vm, actor });
    throw undone(error, 'The VM was not created');
  }
  return (await serializeVms(ctx, [vm]))[0]!;
}

export async function updateVm(ctx: ServiceContext, idText: string | undefined, body: unknown, actor: Actor) {
  const previous = await getVm(ctx, idText);
  const input = parseBody(vmUpdate, body, { partial: true });
  const next = {
    name: input.name ?? previous.name,
    interface: input.interface ?? previous.interface,
    netns: input.netns === undefined ? previous.netns : input.netns,
    node: input.node === undefined ? previous.node ?? null : input.node,
  };
  const moved = next.interface !== previous.interface || next.netns !== previous.netns || next.node !== (previous.node ?? null);
  rejectIssues(await ctx.hooks.validate('vm.validate', { input: body as Record<string, unknown>, existing: previous }));
  await interfaceClaims.run('all', async () => {
    if (moved && (await interfaceTaken(ctx.db, next.interface, next.netns, next.node, { table: 'vms', id: previous.id }))) {
      throw interfaceConflict(next.interface, next.node);
    }
    await ctx.db('vms').where({ id: previous.id }).update({ ...next, netns: next.netns ?? '', node: next.node ?? '', updated_at: Date.now() });
  });
  const vm = toVm(await ctx.db('vms').where({ id: previous.id }).first());
  try {
    await ctx.hooks.follow('vm.updated', { vm, previous, input: body as Record<string, unknown>, actor });
  } catch (error) {
    if (!(error instanceof HookFailedError)) throw error;
    // A plugin could not store the new settings: the VM goes back to what it was, so nothing half-applies.
    await ctx.db('vms').where({ id: previous.id }).update({
      name: previous.name, interface: previous.interface, netns: previous.netns ?? '', node: previous.node ?? '', updated_at: Date.now(),
    });
    await ctx.hooks.emitTo(error.followed, 'vm.updated', { vm: previous, previous: vm, input: {}, actor });
    throw undone(error, 'The VM was not changed');
  }
  return (await serializeVms(ctx, [vm]))[0]!;
}

export async function deleteVm(ctx: ServiceContext, idText: string | undefined, actor: Actor) {
  const vm = await getVm(ctx, idText);
  await ctx.db('vms').where({ id: vm.id }).delete();
  await ctx.hooks.emit('vm.deleted', { vm, actor });
  return vm;
}
