/**
 * What every Server-Sent Events stream of the plugin does the same way: the response headers, ids
 * that keep increasing past a client's `Last-Event-ID`, and writes that never queue behind a slow
 * client (its frames are skipped while its socket buffer is full, and it is dropped after a stall).
 */
import type { Request, Response } from 'express';

/** One listening client. */
export interface SseClient {
  res: Response;
  /** True while the socket's buffer is full: frames are skipped, never queued. */
  blocked: boolean;
  blockedSince: number;
}

/** Sends the stream's headers and the client's reconnect delay; returns the client, unblocked when its buffer drains. */
export function openSse<C extends SseClient>(res: Response, client: Omit<C, 'res' | 'blocked' | 'blockedSince'>): C {
  res.status(200).set({
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  res.write('retry: 2000\n\n');
  const opened = { ...client, res, blocked: false, blockedSince: 0 } as C;
  res.on('drain', () => (opened.blocked = false));
  return opened;
}

/** The next event id after a client's `Last-Event-ID` (a bigint: a client may send any number). */
export function idAfterLastEvent(req: Request, next: bigint): bigint {
  const header = req.get('last-event-id') ?? '';
  return /^\d{1,40}$/.test(header) && BigInt(header) >= next ? BigInt(header) + 1n : next;
}

/** Writes `frame` to every client `to` selects; a client blocked longer than `stallMs` is disconnected. */
export function broadcast<C extends SseClient>(clients: Iterable<C>, frame: string, stallMs: number, to: (client: C) => boolean = () => true): void {
  const now = Date.now();
  for (const client of clients) {
    if (!to(client)) continue;
    if (client.blocked) {
      if (now - client.blockedSince > stallMs) client.res.destroy();
      continue;
    }
    if (!client.res.write(frame)) {
      client.blocked = true;
      client.blockedSince = now;
    }
  }
}
