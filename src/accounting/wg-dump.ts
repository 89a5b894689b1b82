/** One peer line of `wg show <if> dump`. */
export interface WgPeerCounters {
  publicKey: string;
  endpoint: string | null;
  allowedIps: string[];
  latestHandshake: number;
  /** transfer-rx: bytes the server received from the peer (the peer's `up`). */
  rxBytes: bigint;
  /** transfer-tx: bytes the server sent to the peer (the peer's `down`). */
  txBytes: bigint;
}

export class WgDumpError extends Error {
  override name = 'WgDumpError';
}

const KEY = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Parses `wg show <if> dump`: a first line for the interface (private key, public key, port,
 * fwmark — the private key is dropped here and never kept) and one tab-separated line per peer:
 * public key, preshared key, endpoint, allowed IPs, latest handshake, transfer-rx, transfer-tx,
 * persistent keepalive.
 */
export function parseWgDump(text: string): { publicKey: string; listenPort: number | null; peers: WgPeerCounters[] } {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const [head, ...rest] = lines;
  if (head === undefined) throw new WgDumpError('wg show dump printed nothing');
  const headFields = head.split('\t');
  if (headFields.length !== 4 || !KEY.test(headFields[1] ?? '')) {
    throw new WgDumpError(`Unexpected interface line in wg show dump (${headFields.length} fields)`);
  }
  const peers = rest.map((line, index) => {
    const fields = line.split('\t');
    if (fields.length !== 8) throw new WgDumpError(`Peer line ${index + 1} of wg show dump has ${fields.length} fields, expected 8`);
    const [publicKey = '', , endpoint = '', allowed = '', handshake = '', rx = '', tx = ''] = fields;
    if (!KEY.test(publicKey)) throw new WgDumpError(`Peer line ${index + 1} of wg show dump has no public key`);
    if (!/^\d+$/.test(rx) || !/^\d+$/.test(tx) || !/^\d+$/.test(handshake)) {
      throw new WgDumpError(`Peer line ${index + 1} of wg show dump has non-numeric counters`);
    }
    return {
      publicKey,
      endpoint: endpoint === '(none)' ? null : endpoint,
      allowedIps: allowed === '(none)' || allowed === '' ? [] : allowed.split(','),
      latestHandshake: Number(handshake),
      rxBytes: BigInt(rx),
      txBytes: BigInt(tx),
    };
  });
  const port = headFields[2] ?? '';
  return { publicKey: headFields[1] as string, listenPort: /^\d+$/.test(port) ? Number(port) : null, peers };
}
