import type { Host, SubjectType } from '../plugin-api.js';
import type { SubjectLimit } from '../db/limits.js';
import { peerSubject, vmSubject } from '../hooks/subjects.js';
import { notFound, parseId, inputError } from './errors.js';

/** Finds a peer or VM in the host by route parameters, as the limits store describes it. */
export async function lookupSubject(
  host: Host,
  type: unknown,
  idText: unknown,
  fields: { type: string; id: string; badIdIsInput: boolean } = { type: 'type', id: 'id', badIdIsInput: false },
): Promise<SubjectLimit> {
  const caps = { upKbps: 0, downKbps: 0 };
  if (type !== 'peer' && type !== 'vm') {
    throw inputError(fields.type, `\`${fields.type}\` must be \`peer\` or \`vm\`, got \`${String(type).slice(0, 20)}\``);
  }
  const id = parseId(idText);
  // In a query string a malformed id is bad input; in a path it simply names nothing.
  if (id === undefined && fields.badIdIsInput) throw inputError(fields.id, `\`${fields.id}\` must be a positive integer`);
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
