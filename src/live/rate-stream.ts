import type { Request, Response } from 'express';
import type { Logger } from '../plugin-api.js';
import type { RateMap } from './live-rates.js';
import { broadcast, idAfterLastEvent, openSse, type SseClient } from './sse.js';

type Client = SseClient;

export interface RateStreamOptions {
  /** Reads the current rates; only called while at least one client listens. */
  sample: () => Promise<RateMap>;
  logger: Logger;
  /** @default 1000 */
  intervalMs?: number;
  /** @default 15000 */
  heartbeatMs?: number;
  /** A client whose buffer stays full this long is disconnected. @default 30000 */
  stallMs?: number;
  /** Called when the last client leaves and sampling stops. */
  onIdle?: () => void;
}

/**
 * One Server-Sent Events stream of every subject's current rates, once a second, sampled only
 * while someone listens. Event ids increase; a reconnect with `Last-Event-ID` continues after it.
 * A slow client has frames dropped (its socket is never written past a full buffer) so it cannot
 * stall the others; closed connections are removed at once.
 */
export class RateStream {
  private readonly clients = new Set<Client>();
  /** A bigint: a client may send any Last-Event-ID, and ids must keep increasing past it. */
  private nextId = 1n;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private sampling = false;
  private lastNonZero = new Set<string>();

  constructor(private readonly options: RateStreamOptions) {}

  get listeners(): number {
    return this.clients.size;
  }

  attach(req: Request, res: Response): void {
    this.nextId = idAfterLastEvent(req, this.nextId);
    const client = openSse<Client>(res, {});
    this.clients.add(client);
    res.on('close', () => this.detach(client));
    this.start();
  }

  private detach(client: Client): void {
    this.clients.delete(client);
    if (this.clients.size === 0) this.stop();
  }

  private start(): void {
    if (this.timer) return;
    this.lastNonZero.clear();
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs ?? 1000);
    this.heartbeat = setInterval(() => this.broadcast(': heartbeat\n\n'), this.options.heartbeatMs ?? 15_000);
    void this.tick();
  }

  private stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    this.timer = undefined;
    this.heartbeat = undefined;
    this.options.onIdle?.();
  }

  private async tick(): Promise<void> {
    if (this.sampling || this.clients.size === 0) return;
    this.sampling = true;
    try {
      const rates = await this.options.sample();
      const payload: Record<string, [number, number]> = {};
      // Rates through each subject's class (null: no class counted in that direction), for utilisation.
      const classRates: Record<string, [number | null, number | null]> = {};
      const nonZero = new Set<string>();
      for (const [key, rate] of rates) {
        const classUp = rate.classUpKbps ?? null;
        const classDown = rate.classDownKbps ?? null;
        if (rate.upKbps === 0 && rate.downKbps === 0 && !classUp && !classDown) continue;
        payload[key] = [rate.upKbps, rate.downKbps];
        if (classUp !== null || classDown !== null) classRates[key] = [classUp, classDown];
        nonZero.add(key);
      }
      // Subjects that went quiet are sent once as zeros, so pages clear them.
      for (const key of this.lastNonZero) if (!nonZero.has(key)) payload[key] = [0, 0];
      this.lastNonZero = nonZero;
      const id = this.nextId++;
      const frame = Object.keys(classRates).length > 0 ? { at: Date.now(), rates: payload, class_rates: classRates } : { at: Date.now(), rates: payload };
      this.broadcast(`id: ${id}\nevent: rates\ndata: ${JSON.stringify(frame)}\n\n`);
    } catch (error) {
      this.options.logger.warn('live rates failed', { error: (error as Error).message });
    } finally {
      this.sampling = false;
    }
  }

  private broadcast(frame: string): void {
    broadcast(this.clients, frame, this.options.stallMs ?? 30_000);
  }

  /** Ends every stream and stops sampling. */
  close(): void {
    this.stop();
    for (const client of this.clients) client.res.end();
    this.clients.clear();
  }
}
