import { z } from 'zod';

import { TcParseError } from './parse-class-text.js';

/** One qdisc from `tc -j qdisc show dev X`. */
export interface TcQdisc {
  kind: string;
  /** `1:`, `ffff:`, `0:` (noqueue) */
  handle: string;
  /** Numeric major of the handle. */
  major: number;
  /** True for the root qdisc of the device. */
  root: boolean;
  /** Parent class id (`1:2`), `ffff:fff1` for ingress/clsact, `null` at the root. */
  parent: string | null;
  options: Record<string, unknown>;
}

const qdiscSchema = z.looseObject({
  kind: z.string(),
  handle: z.string(),
  root: z.boolean().optional(),
  parent: z.string().optional(),
  options: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Parses `tc -j qdisc show dev X` (iproute2 6.1 output: an array of objects).
 *
 * @throws {TcParseError} when the text is not JSON of that shape.
 */
export function parseQdiscJson(text: string): TcQdisc[] {
  let data: unknown;
  try {
    data = JSON.parse(text.trim() === '' ? '[]' : text);
  } catch (error) {
    throw new TcParseError(`tc -j qdisc show did not print JSON: ${(error as Error).message}`);
  }
  const parsed = z.array(qdiscSchema).safeParse(data);
  if (!parsed.success) throw new TcParseError(`Unexpected tc -j qdisc show output: ${parsed.error.message}`);
  return parsed.data.map((q) => ({
    kind: q.kind,
    handle: q.handle,
    major: parseInt(q.handle.split(':')[0] ?? '0', 16),
    root: q.root === true,
    parent: q.parent ?? null,
    options: q.options ?? {},
  }));
}

/** HTB's `default` option (`"0xffff"` in JSON) as a number, or null for another kind. */
export function htbDefaultMinor(qdisc: TcQdisc): number | null {
  if (qdisc.kind !== 'htb') return null;
  const value = qdisc.options.default;
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return parseInt(value, value.startsWith('0x') ? 16 : 10);
  return null;
}
