import { AsyncLocalStorage } from 'node:async_hooks';
import { FileLocks } from './file-lock.js';

/** Options of {@link KeyedMutex}. */
export interface KeyedMutexOptions {
  /**
   * Also holds the key's lock file while `fn` runs, so that other processes (`panel-bandwidth
   * reconcile` from a timer, a second panel) wait too; `null`: this process only.
   * @default the process-wide {@link defaultFileLocks} (`/run/panel-bandwidth`, or `PANEL_BANDWIDTH_LOCK_DIR`)
   */
  fileLocks?: FileLocks | null;
}

/**
 * A promise-chain mutex per key: calls with the same key run one after another, in call order;
 * different keys run concurrently. A failing call does not block the next one. Each call also
 * holds the key's lock file (see {@link KeyedMutexOptions.fileLocks}), taken inside the chain.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly fileLocks: FileLocks | null | undefined;

  constructor(options: KeyedMutexOptions = {}) {
    this.fileLocks = options.fileLocks;
  }

  /**
   * Runs `fn` once every earlier call with the same key has settled, holding the key's lock file.
   * Called from inside a call that holds the same file (the applier's lock around the engine's), it
   * runs `fn` at once: the file is ours already, and waiting behind it would wait for ourselves.
   * @throws {LockError} when the lock file cannot be taken (`fn` does not run).
   */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const files = this.fileLocks === undefined ? defaultFileLocks() : this.fileLocks;
    const path = files?.pathOf(key);
    if (path !== undefined && held.getStore()?.get(path)?.released === false) return fn();
    const previous = this.tails.get(key) ?? Promise.resolve();
    const exclusive = files === null || path === undefined ? fn : () => holdFile(files, key, path, fn);
    const current = previous.then(exclusive, exclusive);
    const tail = current.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await current;
    } finally {
      // Forget the key once nobody queued behind us, so the map does not grow with every interface ever seen.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Number of keys with a call running or queued (for tests). */
  get size(): number {
    return this.tails.size;
  }
}

/** The lock key of an interface: changes to the same netns+ifname are serialised. */
export function interfaceLockKey(ifname: string, netns?: string): string {
  return `${netns ?? ''}/${ifname}`;
}

/** The process-wide lock shared by every reconcile of this engine. */
export const interfaceLocks = new KeyedMutex();

let shared: FileLocks | null | undefined;

/** The lock files every {@link KeyedMutex} holds unless given others (created on first use). */
export function defaultFileLocks(): FileLocks | null {
  if (shared === undefined) shared = new FileLocks();
  return shared;
}

/**
 * Sets the lock files of every {@link KeyedMutex} built without its own (the CLI's `--lock-dir`);
 * `null` turns cross-process locking off.
 */
export function setDefaultFileLocks(locks: FileLocks | null): void {
  shared = locks;
}

/** Lock files the current async call chain holds, by path; a token is marked when released. */
const held = new AsyncLocalStorage<ReadonlyMap<string, { released: boolean }>>();
/** Different mutexes of one process (the applier's, the engine's) queue here for the same file. */
const withinProcess = new KeyedMutex({ fileLocks: null });

/** Runs `fn` holding the lock file `path` of `key`, after any other mutex of this process that wants it. */
async function holdFile<T>(files: FileLocks, key: string, path: string, fn: () => Promise<T>): Promise<T> {
  const outer = held.getStore();
  return withinProcess.run(path, async () => {
    const lock = await files.acquire(key);
    const token = { released: false };
    try {
      return await held.run(new Map([...(outer ?? []), [path, token]]), fn);
    } finally {
      token.released = true;
      await lock.release();
    }
  });
}
