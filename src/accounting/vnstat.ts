import { z } from 'zod';

/** Interface totals from `vnstat --json` (JSON version 2: bytes). */
export interface VnstatTotals {
  name: string;
  rxBytes: bigint;
  txBytes: bigint;
  updatedAt: number;
}

const counter = z.union([z.number().int().nonnegative(), z.string().regex(/^\d+$/)]);
const schema = z.looseObject({
  jsonversion: z.string(),
  interfaces: z.array(
    z.looseObject({
      name: z.string(),
      updated: z.looseObject({ timestamp: z.number().int() }),
      traffic: z.looseObject({ total: z.looseObject({ rx: counter, tx: counter }) }),
    }),
  ),
});

export class VnstatError extends Error {
  override name = 'VnstatError';
}

/**
 * Parses `vnstat --json` for hosts that already run vnStat. Only JSON version 2 (vnStat 2.x,
 * byte counts) is accepted: version 1 counted KiB and would import numbers 1024× too small.
 * Numbers past 2^53 are read exactly from the text.
 */
export function parseVnstatJson(text: string): VnstatTotals[] {
  let parsed: unknown;
  try {
    // vnStat prints integers; keep big ones exact by quoting digits before JSON.parse.
    parsed = JSON.parse(text.replace(/("(?:rx|tx)":)(\d{16,})/g, '$1"$2"'));
  } catch (error) {
    throw new VnstatError(`vnstat --json printed invalid JSON: ${(error as Error).message}`);
  }
  const result = schema.safeParse(parsed);
  if (!result.success) throw new VnstatError(`Unexpected vnstat --json shape: ${result.error.issues[0]?.path.join('.') ?? ''} ${result.error.issues[0]?.message ?? ''}`);
  if (result.data.jsonversion !== '2') throw new VnstatError(`vnstat --json version ${result.data.jsonversion} is not supported (need 2, vnStat 2.x)`);
  return result.data.interfaces.map((iface) => ({
    name: iface.name,
    rxBytes: BigInt(iface.traffic.total.rx),
    txBytes: BigInt(iface.traffic.total.tx),
    updatedAt: iface.updated.timestamp * 1000,
  }));
}
