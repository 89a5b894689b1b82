import { isIPv4, isIPv6 } from 'node:net';

/** Limits on failed logins. Kept in this process's memory: several panel processes each count their own. */
export interface LoginLimits {
  /** Failed logins for one user name (known or not) before it is locked. @default 5 */
  accountFailures: number;
  /** Failed logins from one address (an IPv6 address counts as its /64) before it is locked. @default 20 */
  addressFailures: number;
  /** How long failures are counted, from the first one, in ms. @default 900_000 (15 minutes) */
  windowMs: number;
  /** How long a lock lasts, in ms. @default 900_000 (15 minutes) */
  lockMs: number;
  /** Most user names, and most addresses, remembered at once: memory stays bounded under a flood. @default 10_000 */
  maxEntries: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  accountFailures: 5,
  addressFailures: 20,
  windowMs: 15 * 60_000,
  lockMs: 15 * 60_000,
  maxEntries: 10_000,
};

interface Entry {
  failures: number;
  /** Attempts whose password is being checked now: they count against the limit until they end. */
  pending: number;
  since: number;
  lockedUntil: number;
}

/** How many eviction candidates one insert looks at, so a full table costs O(1) per request. */
const EVICTION_SCAN = 64;

/** Failed attempts per key within a window, with a lock once there are too many. */
class FailureCounter {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly limit: number,
    private readonly limits: LoginLimits,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Ms left on the key's lock, 0 when it is not locked. */
  lockedFor(key: string): number {
    const entry = this.entries.get(key);
    return entry ? Math.max(0, entry.lockedUntil - this.now()) : 0;
  }

  /** An attempt starts: true when it may go ahead, false (and locked) when the failures and attempts under way fill the limit. */
  begin(key: string): boolean {
    const now = this.now();
    let entry = this.entries.get(key);
    if (entry && entry.lockedUntil <= now && now - entry.since >= this.limits.windowMs) {
      entry = { failures: 0, pending: entry.pending, since: now, lockedUntil: 0 };
    }
    entry ??= { failures: 0, pending: 0, since: now, lockedUntil: 0 };
    const allowed = entry.failures + entry.pending < this.limit;
    if (allowed) entry.pending += 1;
    else this.lock(entry, now);
    this.remember(key, entry);
    return allowed;
  }

  /** The attempt begun failed: ms of lock when it was the last failure allowed, else 0. */
  failed(key: string): number {
    const now = this.now();
    const entry = this.entries.get(key);
    if (!entry) return 0;
    entry.pending = Math.max(0, entry.pending - 1);
    entry.failures += 1;
    if (entry.failures >= this.limit) this.lock(entry, now);
    return Math.max(0, entry.lockedUntil - now);
  }

  /** The attempt begun succeeded: it is no failure; `forget` drops the key's earlier failures too. */
  succeeded(key: string, forget: boolean): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.pending = Math.max(0, entry.pending - 1);
    if (forget && entry.pending === 0) this.entries.delete(key);
    else if (forget) entry.failures = 0;
  }

  private lock(entry: Entry, now: number): void {
    entry.lockedUntil = Math.max(entry.lockedUntil, now + this.limits.lockMs);
  }

  private remember(key: string, entry: Entry): void {
    // Map order is insertion order: re-inserting keeps the most recently failed keys at the end.
    this.entries.delete(key);
    if (this.entries.size >= this.limits.maxEntries) this.evictOne();
    this.entries.set(key, entry);
  }

  /** Drops the oldest key that is neither locked nor being checked (looking at a few only), else the oldest key. */
  private evictOne(): void {
    const now = this.now();
    let scanned = 0;
    let oldest: string | undefined;
    for (const [key, entry] of this.entries) {
      oldest ??= key;
      if (entry.lockedUntil <= now && entry.pending === 0) {
        this.entries.delete(key);
        return;
      }
      if (++scanned >= EVICTION_SCAN) break;
    }
    if (oldest !== undefined) this.entries.delete(oldest);
  }
}

/** Who is trying to log in: the user name typed and the client's address, as throttle keys. */
export interface LoginAttempt {
  account: string;
  address: string;
}

/** The throttle key of a typed user name: case and surrounding spaces do not make a new account. */
export function accountKey(username: string): string {
  return username.trim().toLowerCase().slice(0, 256);
}

/**
 * The throttle key of a client address (`req.ip`): IPv4 as is (also when IPv4-mapped), IPv6 as its
 * /64, since one client usually holds a whole /64.
 * @example addressKey('2001:db8:1:2:3:4:5:6') // '2001:db8:1:2::/64'
 */
export function addressKey(ip: string | undefined): string {
  const address = (ip ?? '').replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address.slice(0, 64) || 'unknown';
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((group) => group.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** What an attempt may do: go ahead, or wait `retryAfterS` seconds. */
export type Verdict = { locked: false } | { locked: true; retryAfterS: number };

const verdict = (ms: number): Verdict => (ms > 0 ? { locked: true, retryAfterS: Math.ceil(ms / 1000) } : { locked: false });

/**
 * Rate limit of failed logins per user name and per address. An attempt counts against the limit
 * from before its password is checked, so parallel guesses cannot all slip in before the first
 * failure is recorded. Call `begin`, then `failed` or `succeeded` once for each attempt let through.
 */
export class LoginThrottle {
  readonly limits: LoginLimits;
  private readonly accounts: FailureCounter;
  private readonly addresses: FailureCounter;

  constructor(limits: Partial<LoginLimits> = {}, now: () => number = Date.now) {
    this.limits = { ...DEFAULT_LOGIN_LIMITS, ...limits };
    for (const [name, value] of Object.entries(this.limits)) {
      if (!Number.isInteger(value) || value < 1) {
        throw new TypeError(`Expected \`${name}\` to be an integer >= 1, got \`${String(value)}\` (${typeof value})`);
      }
    }
    this.accounts = new FailureCounter(this.limits.accountFailures, this.limits, now);
    this.addresses = new FailureCounter(this.limits.addressFailures, this.limits, now);
  }

  /** User names and addresses remembered now (each at most `maxEntries`). */
  get size(): { accounts: number; addresses: number } {
    return { accounts: this.accounts.size, addresses: this.addresses.size };
  }

  /** Call before checking the password; when locked, refuse without checking it. */
  begin(attempt: LoginAttempt): Verdict {
    const held = Math.max(this.accounts.lockedFor(attempt.account), this.addresses.lockedFor(attempt.address));
    if (held > 0) return verdict(held);
    const account = this.accounts.begin(attempt.account);
    const address = this.addresses.begin(attempt.address);
    if (account && address) return verdict(0);
    // The side that let it through does not wait for an answer that will not come.
    if (account) this.accounts.succeeded(attempt.account, false);
    if (address) this.addresses.succeeded(attempt.address, false);
    return verdict(Math.max(this.accounts.lockedFor(attempt.account), this.addresses.lockedFor(attempt.address)));
  }

  /** The password was wrong; locked when this was the last failure allowed. */
  failed(attempt: LoginAttempt): Verdict {
    return verdict(Math.max(this.accounts.failed(attempt.account), this.addresses.failed(attempt.address)));
  }

  /** The password was right: the account's failures are forgotten, the address's other failures kept. */
  succeeded(attempt: LoginAttempt): void {
    this.accounts.succeeded(attempt.account, true);
    this.addresses.succeeded(attempt.address, false);
  }
}
