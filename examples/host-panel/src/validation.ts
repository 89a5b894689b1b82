import { z } from 'zod';
import { InputError } from './errors.js';
import { parseCidr } from './cidr.js';

/** Kernel interface names: at most 15 characters (IFNAMSIZ − 1) of `[A-Za-z0-9_.-]`, not `.` or `..`. */
export const INTERFACE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/;
/** Network namespace names are file names under /var/run/netns. */
export const NETNS_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$/;
/** Node names, as the bandwidth plugin's agents are registered: 1-64 characters of `[A-Za-z0-9_.-]`. */
export const NODE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** A WireGuard public key: 32 bytes in base64, 44 characters ending in `=`. */
export const WG_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const required = (kind: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? 'is required' : `must be ${kind}, got ${describe(issue.input)}`;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `\`${value.slice(0, 40)}\``;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

const name = z
  .string({ error: required('a string') })
  .trim()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters');

const interfaceName = z
  .string({ error: required('a string') })
  .regex(INTERFACE_NAME, 'must be a kernel interface name: 1 to 15 characters of A-Z a-z 0-9 _ . -');

const netns = z.preprocess(
  (value) => (value === '' ? null : value),
  z
    .string({ error: required('a string or null') })
    .regex(NETNS_NAME, 'must be a network namespace name: 1 to 64 characters of A-Z a-z 0-9 _ . -')
    .nullable()
    .optional(),
);

/** Where an interface is: a node's name; '', null or `local` is the panel's own machine (null). */
const node = z.preprocess(
  (value) => (value === '' || value === 'local' ? null : value),
  z
    .string({ error: required('a string or null') })
    .regex(NODE_NAME, 'must be a node name: 1 to 64 characters of A-Z a-z 0-9 _ . -')
    .nullable()
    .optional(),
);

const publicKey = z
  .string({ error: required('a string') })
  .trim()
  .regex(WG_KEY, 'must be a WireGuard public key: 44 characters of base64 ending in "="');

const allowedIps = z
  .array(z.string({ error: required('a CIDR string') }), { error: required('an array of CIDR strings') })
  .min(1, 'must list at least one address')
  .max(32, 'must list at most 32 addresses')
  .transform((list, ctx) => {
    const canonical: string[] = [];
    list.forEach((text, index) => {
      const parsed = parseCidr(text.trim());
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed, path: [index] });
      else if (!canonical.includes(parsed.text)) canonical.push(parsed.text);
    });
    return canonical;
  });

export const networkCreate = z.looseObject({ name, interface: interfaceName, netns, node });
export const networkUpdate = networkCreate.partial();
export const peerCreate = z.looseObject({ name, public_key: publicKey, allowed_ips: allowedIps });
export const peerUpdate = peerCreate.partial();
export const vmCreate = z.looseObject({ name, interface: interfaceName, netns, node });
export const vmUpdate = vmCreate.partial();

/** Host-owned keys of each resource; anything else in a body belongs to plugins (their validate hooks). */
export const HOST_FIELDS = {
  network: ['name', 'interface', 'netns', 'node'],
  peer: ['name', 'public_key', 'allowed_ips'],
  vm: ['name', 'interface', 'netns', 'node'],
} as const;

/**
 * Validates a request body against a schema; throws an {@link InputError} naming the first bad field.
 * @example parseBody(peerCreate, req.body)
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown, { partial = false } = {}): z.output<S> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InputError('body', 'The request body must be a JSON object');
  }
  if (partial && Object.keys(body).length === 0) throw new InputError('body', 'The request body names no field to change');
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue?.path.map(String).join('.') ?? 'body';
  const fieldName = issue?.path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${String(part)}`)).join('') ?? 'body';
  throw new InputError(field || 'body', `\`${fieldName}\` ${issue?.message ?? 'is invalid'}`);
}
