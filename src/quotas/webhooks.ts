import { createHmac, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { IntervalLoop } from '../interval-loop.js';
import type { Logger } from '../plugin-api.js';

/**
 * Quota notifications as outgoing webhooks, through an outbox: `enqueueWebhook` writes a delivery
 * row in the caller's transaction, `WebhookDeliverer` POSTs due rows, signed, and records each
 * attempt on the row, which is the delivery log. Delivery is at least once: receivers de-duplicate
 * by the `x-panel-bandwidth-delivery` header.
 */

const TABLE = 'bw_webhook_deliveries';
const AREA = 'webhooks';
/** The largest body queued, the same on every engine (MariaDB's MEDIUMTEXT would take 16 MiB). */
export const MAX_BODY_BYTES = 1024 * 1024;

export const QUOTA_EVENT_NAMES = ['bandwidth.quota.warning', 'bandwidth.quota.exceeded', 'bandwidth.quota.reset'] as const;
export type QuotaEventName = (typeof QUOTA_EVENT_NAMES)[number];

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
/** `failed` means the deliverer gave up on it. */
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** The JSON every receiver gets. */
export interface WebhookBody {
  /** The delivery id, also sent as `x-panel-bandwidth-delivery`. */
  id: string;
  event: QuotaEventName;
  /** When the event happened (ISO 8601, UTC). */
  created_at: string;
  data: Record<string, unknown>;
}

/** One delivery as the admin log shows it. Times are epoch milliseconds. */
export interface DeliveryRow {
  id: number;
  deliveryId: string;
  event: QuotaEventName;
  subjectType: string | null;
  subjectId: string | null;
  /** Where the delivery was queued for, then where its last attempt went. */
  url: string;
  body: WebhookBody;
  status: DeliveryStatus;
  attempts: number;
  /** When it is due next; null once delivered or failed. */
  nextAttemptAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
  deliveredAt: number | null;
}

/** A 64-bit byte count in a payload goes out as its decimal string: JSON numbers lose precision past 2^53. */
const bigintAsString = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

/**
 * Queues one event for delivery, inside the caller's transaction when given one, so the event
 * exists exactly when the quota change that caused it commits. Call `WebhookDeliverer.kick()`
 * after the commit to send it without waiting for the interval.
 * @param target - the configured webhook; null (or an empty URL) when none is, and then nothing is queued.
 * @param now - the event time in epoch ms: the body's `created_at`, and when the delivery is first due.
 * @returns the delivery id (a UUID), or null when nothing was queued.
 * @example await enqueueWebhook(trx, settings.webhook, { name: 'bandwidth.quota.exceeded', subjectType: 'peer', subjectId: '42', payload: { usedBytes: 10n ** 12n } }, Date.now());
 */
export async function enqueueWebhook(
  db: Knex | Knex.Transaction,
  target: { url: string } | null,
  event: { name: QuotaEventName; subjectType?: string; subjectId?: string; payload: Record<string, unknown> },
  now: number,
): Promise<string | null> {
  if (!target?.url) return null;
  if (!QUOTA_EVENT_NAMES.includes(event.name)) {
    throw new TypeError(`Expected \`event.name\` to be one of ${QUOTA_EVENT_NAMES.join(', ')}, got \`${String(event.name)}\``);
  }
  if (event.subjectType !== undefined && event.subjectType.length > 8) {
    throw new TypeError(`Expected \`event.subjectType\` to be at most 8 characters, got \`${event.subjectType}\``);
  }
  if (event.subjectId !== undefined && event.subjectId.length > 64) {
    throw new TypeError(`Expected \`event.subjectId\` to be at most 64 characters, got ${event.subjectId.length}`);
  }
  if (!Number.isSafeInteger(now)) throw new TypeError(`Expected \`now\` to be epoch milliseconds, got \`${now}\` (${typeof now})`);
  const deliveryId = randomUUID();
  const body: WebhookBody = { id: deliveryId, event: event.name, created_at: new Date(now).toISOString(), data: event.payload };
  const json = JSON.stringify(body, bigintAsString);
  if (Buffer.byteLength(json) > MAX_BODY_BYTES) {
    throw new TypeError(`Expected the webhook body to be at most ${MAX_BODY_BYTES} bytes, got ${Buffer.byteLength(json)} (event \`${event.name}\`)`);
  }
  await db(TABLE).insert({
    delivery_id: deliveryId,
    event: event.name,
    subject_type: event.subjectType ?? null,
    subject_id: event.subjectId ?? null,
    url: target.url,
    body: json,
    status: 'pending',
    attempts: 0,
    next_attempt_at: now,
    last_status_code: null,
    last_error: null,
    created_at: now,
    updated_at: now,
    delivered_at: null,
  });
  return deliveryId;
}

/** The `x-panel-bandwidth-signature` header: `sha256=` and the hex HMAC-SHA256 of `${timestamp}.${body}`. */
export function signatureOf(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * The default wait after the `attempt`-th failed attempt: 10 s, tripled each time, capped at 1 h,
 * then ±20 % jitter so deliveries that failed together do not retry together. With the default 8
 * attempts the retries come after about 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min, 40.5 min and 1 h:
 * about 2 h from the first attempt to giving up.
 * @param random - a source of numbers in [0, 1).
 */
export function defaultBackoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(10_000 * 3 ** Math.max(0, attempt - 1), 3_600_000);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export interface WebhookDelivererOptions {
  /** The database holding `bw_webhook_deliveries` (other panel processes may share it). */
  db: Knex;
  /**
   * Where every attempt goes, also for deliveries queued while another URL was configured: after
   * a wrong URL is fixed, the pending retries reach the right receiver. Each row records the URL
   * of its last attempt.
   */
  url: string;
  /** The HMAC-SHA256 key; attempts are signed with the secret configured at the time of the attempt. */
  secret: string;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
  /** How long one attempt may take, connection to response headers (and the start of an error body). @default 10000 */
  timeoutMs?: number;
  /** Attempts before a delivery is `failed`. @default 8 */
  maxAttempts?: number;
  /** The wait after the `attempt`-th failed attempt (1-based). @default defaultBackoffMs */
  backoffMs?: (attempt: number) => number;
}

/** How long past its timeout an attempt keeps its claim, for recording the outcome. */
const CLAIM_MARGIN_MS = 30_000;
/** Due deliveries read per query, and sent at the same time. */
const PAGE_SIZE = 16;
const CONCURRENCY = 4;
const ERROR_BODY_CHARS = 200;
const LAST_ERROR_CHARS = 500;

interface DueRow {
  id: number;
  deliveryId: string;
  event: string;
  body: string;
  attempts: number;
  nextAttemptAt: number;
}

type Outcome =
  | { kind: 'answered'; statusCode: number; error: string | null }
  | { kind: 'unreachable'; error: string };

/**
 * Sends due webhook deliveries and records each attempt. Any number of deliverers may work on one
 * database: each claims a delivery with a conditional UPDATE before sending it, so a delivery is
 * never sent by two at once. 2xx is delivered; any other status (3xx included: redirects are not
 * followed), a network error or a timeout is a failed attempt, retried after `backoffMs`; a 410
 * Gone is final (the receiver says the endpoint is gone, so retrying is pointless) and marks the
 * delivery `failed` at once, as does the `maxAttempts`-th failure.
 */
export class WebhookDeliverer {
  private readonly db: Knex;
  private readonly url: string;
  private readonly secret: string;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: (attempt: number) => number;
  private closed = false;
  private readonly runs = new Set<Promise<number>>();
  private loop: IntervalLoop | undefined;
  private kicked = false;

  constructor(o: WebhookDelivererOptions) {
    if (typeof o?.db !== 'function') throw new TypeError(`Expected \`db\` to be a knex instance, got \`${typeof o?.db}\``);
    let parsed: URL | undefined;
    try {
      parsed = new URL(o.url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new TypeError(`Expected \`url\` to be an http:// or https:// URL, got \`${String(o.url)}\``);
    }
    if (typeof o.secret !== 'string' || o.secret === '') {
      throw new TypeError(`Expected \`secret\` to be a non-empty string, got \`${typeof o.secret === 'string' ? '' : typeof o.secret}\``);
    }
    const timeoutMs = o.timeoutMs ?? 10_000;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new TypeError(`Expected \`timeoutMs\` to be a finite number > 0, got \`${timeoutMs}\` (${typeof timeoutMs})`);
    }
    const maxAttempts = o.maxAttempts ?? 8;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new TypeError(`Expected \`maxAttempts\` to be an integer >= 1, got \`${maxAttempts}\` (${typeof maxAttempts})`);
    }
    if (o.backoffMs !== undefined && typeof o.backoffMs !== 'function') {
      throw new TypeError(`Expected \`backoffMs\` to be a function, got \`${typeof o.backoffMs}\``);
    }
    this.db = o.db;
    this.url = o.url;
    this.secret = o.secret;
    this.logger = o.logger;
    this.now = o.now ?? Date.now;
    this.timeoutMs = timeoutMs;
    this.maxAttempts = maxAttempts;
    this.backoffMs = o.backoffMs ?? ((attempt) => defaultBackoffMs(attempt));
  }

  /**
   * Sends every delivery due now once, oldest first, a few at a time, and records the outcomes.
   * Never throws: failures are logged (`area: 'webhooks'`) and retried on a later run.
   * @returns how many deliveries were attempted (claimed and sent) by this call.
   */
  deliverDue(): Promise<number> {
    if (this.closed) return Promise.resolve(0);
    const run = this.sendDue().finally(() => this.runs.delete(run));
    this.runs.add(run);
    return run;
  }

  /** Runs `deliverDue` now and then every `intervalMs`, and again right after each `kick()`. */
  start(intervalMs: number): void {
    if (this.loop) throw new Error('The webhook deliverer is already started');
    if (this.closed) throw new Error('The webhook deliverer is closed');
    this.loop = new IntervalLoop('webhook delivery', async () => {
      // A kick during a run may come after that run read the due rows: run once more for it.
      do {
        this.kicked = false;
        await this.deliverDue();
      } while (this.kicked && !this.closed);
    }, intervalMs, this.logger);
    this.loop.start();
  }

  /** Delivers what is due without waiting for the interval (after queueing an event). No-op unless started. */
  kick(): void {
    if (!this.loop || this.closed) return;
    this.kicked = true;
    void this.loop.runOnce();
  }

  /**
   * Stops the timer and claims nothing more, then waits for the attempts in flight to end and be
   * recorded (at most `timeoutMs`: aborting them would send those deliveries twice). Idempotent.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.loop?.stop();
    await Promise.allSettled([...this.runs]);
  }

  private async sendDue(): Promise<number> {
    let attempted = 0;
    let afterId = 0;
    while (!this.closed) {
      let page: DueRow[];
      try {
        page = await this.readDue(afterId);
      } catch (error) {
        this.logger.warn('reading due webhook deliveries failed', { area: AREA, error: messageOf(error) });
        break;
      }
      if (page.length === 0) break;
      afterId = page.at(-1)!.id;
      let next = 0;
      const worker = async () => {
        while (next < page.length && !this.closed) {
          if (await this.attempt(page[next++]!)) attempted++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, page.length) }, worker));
    }
    return attempted;
  }

  private async readDue(afterId: number): Promise<DueRow[]> {
    const rows: Record<string, unknown>[] = await this.db(TABLE)
      .select('id', 'delivery_id', 'event', 'body', 'attempts', 'next_attempt_at')
      .where('status', 'pending')
      .where('next_attempt_at', '<=', this.now())
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(PAGE_SIZE);
    return rows.map((row) => ({
      id: Number(row.id),
      deliveryId: String(row.delivery_id),
      event: String(row.event),
      body: String(row.body),
      attempts: Number(row.attempts),
      nextAttemptAt: Number(row.next_attempt_at),
    }));
  }

  /** Claims, sends and records one delivery; true when it was sent. Never throws. */
  private async attempt(row: DueRow): Promise<boolean> {
    const fields = { area: AREA, deliveryId: row.deliveryId, event: row.event };
    // The claim moves next_attempt_at past the attempt's timeout: another deliverer that read the
    // same row finds it changed and skips it; one that crashed mid-attempt releases it by expiry.
    // `attempts` only grows, so a read from before an earlier attempt never matches either.
    const claimedUntil = this.now() + this.timeoutMs + CLAIM_MARGIN_MS;
    try {
      const claimed = await this.db(TABLE)
        .where({ id: row.id, status: 'pending', next_attempt_at: row.nextAttemptAt, attempts: row.attempts })
        .update({ next_attempt_at: claimedUntil });
      if (claimed !== 1) return false;
    } catch (error) {
      this.logger.warn('claiming a webhook delivery failed', { ...fields, error: messageOf(error) });
      return false;
    }
    const outcome = await this.send(row);
    try {
      await this.record(row, claimedUntil, outcome);
    } catch (error) {
      this.logger.warn('recording a webhook attempt failed; the delivery is due again when its claim expires', { ...fields, error: messageOf(error) });
    }
    return true;
  }

  private async send(row: DueRow): Promise<Outcome> {
    const timestamp = String(Math.floor(this.now() / 1000));
    try {
      const response = await fetch(this.url, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'panel-bandwidth-webhooks',
          'x-panel-bandwidth-event': row.event,
          'x-panel-bandwidth-delivery': row.deliveryId,
          'x-panel-bandwidth-timestamp': timestamp,
          'x-panel-bandwidth-signature': signatureOf(this.secret, timestamp, row.body),
        },
        body: row.body,
      });
      if (response.status >= 200 && response.status < 300) {
        await response.body?.cancel().catch(() => undefined);
        return { kind: 'answered', statusCode: response.status, error: null };
      }
      const start = await startOfBody(response);
      const redirect = response.status >= 300 && response.status < 400 ? ` (redirects are not followed; location: ${response.headers.get('location') ?? 'none'})` : '';
      const error = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${redirect}${start ? `: ${start}` : ''}`;
      return { kind: 'answered', statusCode: response.status, error };
    } catch (error) {
      if (error instanceof Error && error.name === 'TimeoutError') return { kind: 'unreachable', error: `timed out after ${this.timeoutMs} ms` };
      const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
      return { kind: 'unreachable', error: `${messageOf(error)}${cause}` };
    }
  }

  private async record(row: DueRow, claimedUntil: number, outcome: Outcome): Promise<void> {
    const now = this.now();
    const attempts = row.attempts + 1;
    const statusCode = outcome.kind === 'answered' ? outcome.statusCode : null;
    const fields = { area: AREA, deliveryId: row.deliveryId, event: row.event, attempts, statusCode };
    let update: Record<string, unknown>;
    if (outcome.error === null) {
      update = { status: 'delivered', next_attempt_at: null, last_error: null, delivered_at: now };
      this.logger.debug('webhook delivered', fields);
    } else {
      const gone = statusCode === 410;
      const error = outcome.error.slice(0, LAST_ERROR_CHARS);
      if (gone || attempts >= this.maxAttempts) {
        update = { status: 'failed', next_attempt_at: null, last_error: error };
        this.logger.warn(gone ? 'webhook receiver answered 410 Gone; not retrying' : 'webhook delivery failed; giving up', { ...fields, error });
      } else {
        const wait = this.backoffMs(attempts);
        const nextAttemptAt = now + (Number.isFinite(wait) && wait > 0 ? Math.round(wait) : 0);
        update = { status: 'pending', next_attempt_at: nextAttemptAt, last_error: error };
        this.logger.warn('webhook delivery failed; retrying later', { ...fields, error, nextAttemptAt: new Date(nextAttemptAt).toISOString() });
      }
    }
    const changed = await this.db(TABLE)
      .where({ id: row.id, next_attempt_at: claimedUntil })
      .update({ ...update, attempts, last_status_code: statusCode, url: this.url, updated_at: now });
    if (changed !== 1) {
      this.logger.warn('a webhook attempt outlived its claim; another panel process retries the delivery', fields);
    }
  }
}

/**
 * The deliveries, newest first, for the admin log.
 * @param options.limit - 1 to 1000.
 * @param options.status - only deliveries in this status.
 */
export async function listDeliveries(db: Knex, options: { limit: number; status?: DeliveryStatus }): Promise<DeliveryRow[]> {
  if (!Number.isInteger(options.limit) || options.limit < 1 || options.limit > 1000) {
    throw new TypeError(`Expected \`limit\` to be an integer from 1 to 1000, got \`${options.limit}\` (${typeof options.limit})`);
  }
  if (options.status !== undefined && !DELIVERY_STATUSES.includes(options.status)) {
    throw new TypeError(`Expected \`status\` to be one of ${DELIVERY_STATUSES.join(', ')}, got \`${String(options.status)}\``);
  }
  const query = db(TABLE).select('*').orderBy('id', 'desc').limit(options.limit);
  if (options.status) query.where('status', options.status);
  const rows: Record<string, unknown>[] = await query;
  return rows.map((row) => ({
    id: Number(row.id),
    deliveryId: String(row.delivery_id),
    event: row.event as QuotaEventName,
    subjectType: (row.subject_type as string | null) ?? null,
    subjectId: (row.subject_id as string | null) ?? null,
    url: String(row.url),
    body: JSON.parse(String(row.body)) as WebhookBody,
    status: row.status as DeliveryStatus,
    attempts: Number(row.attempts),
    nextAttemptAt: epochMsOrNull(row.next_attempt_at),
    lastStatusCode: row.last_status_code === null || row.last_status_code === undefined ? null : Number(row.last_status_code),
    lastError: (row.last_error as string | null) ?? null,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    deliveredAt: epochMsOrNull(row.delivered_at),
  }));
}

/** BIGINT epoch ms: a number on SQLite, a decimal string on MariaDB and PostgreSQL. */
const epochMsOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The first characters of an error response, for the log; a receiver's error page may be large. */
async function startOfBody(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length < ERROR_BODY_CHARS) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // A body cut short by the timeout still leaves the status code to report.
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, ERROR_BODY_CHARS);
}
