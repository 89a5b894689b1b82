import type { Host, SubjectType } from '../plugin-api.js';
import type { SubjectLimit } from '../db/limits.js';
import { peerSubject, vmSubject } from '../hooks/subjects.js';
import { notFound, parseId, inputError } from './errors.js';

/** Finds a peer or VM in the host by route parameters, as the limits store describes it. */
export async function lookupSubject(host: Host, type: unknown, idText: unknown, caps = { upKbps: 0, downKbps: 0 }): Promise<SubjectLimit> {
  if (type !== 'peer' && type !== 'vm') throw inputError('type', `\`type\` must be \`peer\` or \`vm\`, got \`${String(type).slice(0, 20)}\``);
  const id = parseId(idText);
  if (type === 'peer') {
    const found = id === undefined ? undefined : await host.records.peer(id);
    if (!found) throw notFound('peer', String(idText));
    return peerSubject(found.peer, found.network, caps);
  }
  const vm = id === undefined ? undefined : await host.records.vm(id);
  if (!vm) throw notFound('VM', String(idText));
  return vmSubject(vm, caps);
}

export const subjectTypes: readonly SubjectType[] = ['peer', 'vm'];
