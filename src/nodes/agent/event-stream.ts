import type { Request, Response } from 'express';

import type { Logger } from '../../plugin-api.js';
import type { AgentCore } from './core.js';
import { broadcast, idAfterLastEvent, openSse, type SseClient } from '../../live/sse.js';

/** Options of {@link AgentEventStream}. */
export interface AgentEventStreamOptions {
  core: AgentCore;
  logger: Logger;
  /** A comment line every this often: the panel's read deadline counts on it. @default 5000 */
  heartbeatMs?: number;
  /** `rates` events this often to clients that asked for them. @default 1000 */
  ratesIntervalMs?: number;
  /** A client whose socket buffer stays full this long is disconnected. @default 30000 */
  stallMs?: number;
}

interface Client extends SseClient {
  /** Asked for `rates` events (`?rates=1`). */
  rates: boolean;
}

/**
 * The agent's Server-Sent Events (`GET /v1/events`): `ledger` events with the ledger's head when a
 * collector tick recorded deltas (and the current head when a client connects), heartbeats, and
 * with `?rates=1` the node's live rates once a second. Event ids increase across the agent's
 * life; a reconnect with `Last-Event-ID` continues after the id it saw. The core's listener and
 * the timers exist only while someone listens.
 *
 * Frames a slow client cannot take are dropped, not queued: a ledger event only says "the head is
 * at least N", and the next one says more, so nothing is lost that the next pull does not get.
 */
export class AgentEventStream {
  private readonly clients = new Set<Client>();
  /** A bigint: a client may send any Last-Event-ID, and ids must keep increasing past it. */
  private nextId = 1n;
  private heartbeat: NodeJS.Timeout | undefined;
  private ratesTimer: NodeJS.Timeout | undefined;
  private sampling = false;
  private readonly onLedger = (event: { head: number }) => this.event('ledger', { head: event.head }, () => true);

  constructor(private readonly options: AgentEventStreamOptions) {}

  get listeners(): number {
    return this.clients.size;
  }

  /** Starts streaming to `res` until the client goes or {@link close} ends it. */
  async attach(req: Request, res: Response, options: { rates: boolean }): Promise<void> {
    this.nextId = idAfterLastEvent(req, this.nextId);
    const head = await this.options.core.ledgerHead();
    if (req.socket.destroyed) return;
    const client = openSse<Client>(res, { rates: options.rates });
    res.write(`id: ${this.nextId++}\nevent: ledger\ndata: ${JSON.stringify({ head })}\n\n`);
    if (this.clients.size === 0) {
      this.options.core.on('ledger', this.onLedger);
      this.heartbeat = setInterval(() => this.broadcast(': heartbeat\n\n', () => true), this.options.heartbeatMs ?? 5000);
    }
    this.clients.add(client);
    if (client.rates) this.startRates();
    res.on('close', () => this.detach(client));
  }

  private detach(client: Client): void {
    if (!this.clients.delete(client)) return;
    if (![...this.clients].some((other) => other.rates)) this.stopRates();
    if (this.clients.size === 0) {
      this.options.core.off('ledger', this.onLedger);
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
    }
  }

  private startRates(): void {
    if (this.ratesTimer) return;
    this.ratesTimer = setInterval(() => void this.sampleRates(), this.options.ratesIntervalMs ?? 1000);
    // The first call only sets the baseline (rates since the previous call).
    void this.sampleRates();
  }

  private stopRates(): void {
    if (!this.ratesTimer) return;
    clearInterval(this.ratesTimer);
    this.ratesTimer = undefined;
    this.options.core.resetLive();
  }

  private async sampleRates(): Promise<void> {
    if (this.sampling || !this.ratesTimer) return;
    this.sampling = true;
    try {
      const rates = await this.options.core.liveRates();
      if (!this.ratesTimer) return;
      this.event('rates', { at: Date.now(), rates }, (client) => client.rates);
    } catch (error) {
      this.options.logger.warn('agent: live rates failed', { error: (error as Error).message });
    } finally {
      this.sampling = false;
    }
  }

  /** Sends one event, with the next id, to every client `to` selects. */
  private event(name: 'ledger' | 'rates', data: unknown, to: (client: Client) => boolean): void {
    this.broadcast(`id: ${this.nextId++}\nevent: ${name}\ndata: ${JSON.stringify(data)}\n\n`, to);
  }

  private broadcast(text: string, to: (client: Client) => boolean): void {
    broadcast(this.clients, text, this.options.stallMs ?? 30_000, to);
  }

  /** Ends every stream, removes the core's listener and stops the timers. */
  close(): void {
    for (const client of [...this.clients]) {
      client.res.end();
      this.detach(client);
    }
  }
}
