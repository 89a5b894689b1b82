import { createHash } from 'node:crypto';
import { accessSync, constants, lstatSync, mkdirSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, ExecaError } from 'execa';

/** Where lock files live unless configured: tmpfs, emptied at boot with the kernel state it guards. */
export const DEFAULT_LOCK_DIRECTORY = '/run/panel-bandwidth';
/** The environment variable that sets the lock directory for the panel and the CLI alike. */
export const LOCK_DIRECTORY_ENV = 'PANEL_BANDWIDTH_LOCK_DIR';

/** `flock --conflict-exit-code`: tells "another process kept it" from flock's own errors (1, 64…). */
const CONFLICT_EXIT_CODE = 75;

/** Options of {@link FileLocks}. */
export interface FileLocksOptions {
  /**
   * Directory of the lock files (one per key). Every process that changes the same interfaces must
   * use the same directory. Created with mode 0700 when missing; an unusable configured directory
   * is an error. When none is configured and `/run/panel-bandwidth` cannot be used (a process that
   * is not root), the per-user `$XDG_RUNTIME_DIR/panel-bandwidth`, else `<tmpdir>/panel-bandwidth-<uid>`,
   * with a warning: it excludes only processes of the same user.
   * @default process.env.PANEL_BANDWIDTH_LOCK_DIR, else '/run/panel-bandwidth'
   */
  directory?: string;
  /**
   * How long to wait for a lock another process holds, in milliseconds.
   * @default 120000
   */
  waitMs?: number;
  /** Told once when the per-user fallback directory is used. @default process.emitWarning */
  warn?: (message: string) => void;
}

/** A lock this process holds; `release()` closes the file, which drops the lock. */
export interface HeldFileLock {
  path: string;
  release(): Promise<void>;
}

/** A lock could not be taken: the directory is unusable, flock is missing, or the wait timed out. */
export class LockError extends Error {
  override name = 'LockError';
  /** The lock file or directory concerned. */
  readonly path: string;

  constructor(message: string, path: string, options?: { cause?: unknown }) {
    super(message, options);
    this.path = path;
  }
}

/**
 * Exclusive locks shared by every process on this machine: `flock(2)` on one file per key. The
 * kernel ties a flock to the open file, so a holder that crashes or is killed releases it as its
 * files close: no stale lock to detect, no PID to trust. Node has no flock(2), so `flock(1)` from
 * util-linux takes it on a descriptor of ours and exits: the lock then stays with our open file
 * until {@link HeldFileLock.release}. A waiting flock is a child process, not a libuv thread, so
 * waiting never starves the thread pool that fs and sqlite3 share.
 *
 * Two opens of one file conflict even within one process: callers serialise within the process
 * first (see `KeyedMutex`).
 */
export class FileLocks {
  private readonly configured: string | undefined;
  private readonly waitMs: number;
  private readonly warn: (message: string) => void;
  private resolved: string | undefined;

  constructor(options: FileLocksOptions = {}) {
    const waitMs = options.waitMs ?? 120_000;
    if (!Number.isFinite(waitMs) || waitMs <= 0) {
      throw new TypeError(`Expected \`waitMs\` to be a finite number > 0, got \`${String(waitMs)}\` (${typeof waitMs})`);
    }
    const directory = options.directory ?? (process.env[LOCK_DIRECTORY_ENV] || undefined);
    if (directory !== undefined && (typeof directory !== 'string' || !directory.startsWith('/'))) {
      throw new TypeError(`Expected \`directory\` to be an absolute path, got \`${String(directory)}\` (${typeof directory})`);
    }
    this.configured = directory;
    this.waitMs = waitMs;
    this.warn = options.warn ?? ((message) => process.emitWarning(message, { code: 'PANEL_BANDWIDTH_LOCK_DIR' }));
  }

  /**
   * The directory in use, created on first use (synchronously, once: a few calls on tmpfs, and a
   * caller can tell at once whether it already holds a key). A failure is retried on the next call.
   * @throws {LockError} when no directory can be used.
   */
  directory(): string {
    this.resolved ??= this.resolveDirectory();
    return this.resolved;
  }

  /** The lock file of `key`: readable names for interface keys, a hash for anything too long. */
  pathOf(key: string): string {
    const encoded = encodeURIComponent(key);
    const name = encoded.length <= 200 ? encoded : createHash('sha256').update(key).digest('hex');
    return join(this.directory(), `${name}.lock`);
  }

  /**
   * Waits (up to `waitMs`) until no other open file holds the lock of `key`, then holds it.
   * @throws {LockError} when the wait times out (naming the holder's PID), flock(1) is missing or
   *   the directory cannot be used.
   */
  async acquire(key: string): Promise<HeldFileLock> {
    const path = this.pathOf(key);
    // O_NOFOLLOW: a symlink planted in the directory is refused instead of followed.
    const file = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600).catch((error: unknown) => {
      throw new LockError(`cannot open the lock file ${path}: ${(error as Error).message}`, path, { cause: error });
    });
    try {
      await execa('flock', ['--exclusive', '--wait', String(this.waitMs / 1000), '--conflict-exit-code', String(CONFLICT_EXIT_CODE), '3'], {
        // Our open file becomes flock's fd 3. execa's types list only the literals 3-9 here; at run
        // time any open descriptor is accepted (Node's spawn dup2()s it).
        stdio: ['ignore', 'ignore', 'pipe', file.fd as 3],
        timeout: this.waitMs + 10_000,
      });
    } catch (error) {
      await file.close();
      throw await this.failure(path, error);
    }
    // Who holds it, for the message of whoever times out waiting (never trusted for anything else).
    await file.truncate(0);
    await file.write(`pid ${process.pid} since ${new Date().toISOString()}\n`, 0);
    return { path, release: () => file.close() };
  }

  private async failure(path: string, error: unknown): Promise<LockError> {
    if (error instanceof ExecaError && error.code === 'ENOENT') {
      return new LockError(`cannot lock ${path}: flock(1) from util-linux was not found on PATH`, path, { cause: error });
    }
    if (error instanceof ExecaError && (error.exitCode === CONFLICT_EXIT_CODE || error.timedOut)) {
      const holder = (await readFile(path, 'utf8').catch(() => '')).trim();
      return new LockError(
        `another process holds ${path}${holder ? ` (${holder})` : ''}; gave up after waiting ${this.waitMs / 1000} s`,
        path,
        { cause: error },
      );
    }
    const detail = error instanceof ExecaError ? error.stderr || error.shortMessage : (error as Error).message;
    return new LockError(`cannot lock ${path}: ${String(detail).trim()}`, path, { cause: error });
  }

  private resolveDirectory(): string {
    if (this.configured !== undefined) {
      try {
        prepareDirectory(this.configured, false);
      } catch (error) {
        throw new LockError(`cannot use the lock directory ${this.configured}: ${(error as Error).message}`, this.configured, { cause: error });
      }
      return this.configured;
    }
    try {
      prepareDirectory(DEFAULT_LOCK_DIRECTORY, false);
      return DEFAULT_LOCK_DIRECTORY;
    } catch (first) {
      const uid = process.getuid?.() ?? 0;
      const runtime = process.env.XDG_RUNTIME_DIR;
      const fallback = runtime ? join(runtime, 'panel-bandwidth') : join(tmpdir(), `panel-bandwidth-${uid}`);
      try {
        prepareDirectory(fallback, true);
      } catch (second) {
        throw new LockError(
          `no usable lock directory: ${DEFAULT_LOCK_DIRECTORY}: ${(first as Error).message}; ${fallback}: ${(second as Error).message}; set ${LOCK_DIRECTORY_ENV}`,
          fallback,
          { cause: second },
        );
      }
      this.warn(
        `interface locks are in ${fallback} (${DEFAULT_LOCK_DIRECTORY}: ${(first as Error).message}): they exclude only processes of user ${uid}; ` +
          `set ${LOCK_DIRECTORY_ENV} to one directory for the panel and its timers`,
      );
      return fallback;
    }
  }
}

/**
 * Creates `directory` (mode 0700) if missing and checks it is a writable directory, not a symlink.
 * A per-user directory in a shared place must also be ours and closed to others, or another user
 * could hold (or remove) our locks.
 */
function prepareDirectory(directory: string, perUser: boolean): void {
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const stat = lstatSync(directory);
  if (!stat.isDirectory()) throw new Error('not a directory');
  accessSync(directory, constants.W_OK | constants.X_OK);
  if (perUser && (stat.uid !== process.getuid?.() || (stat.mode & 0o077) !== 0)) {
    throw new Error(`owned by uid ${stat.uid} with mode ${(stat.mode & 0o777).toString(8)}: expected ours, 700`);
  }
}
