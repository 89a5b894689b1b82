/**
 * A promise-chain mutex per key: calls with the same key run one after another, in call order;
 * different keys run concurrently. A failing call does not block the next one.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every earlier call with the same key has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const current = previous.then(fn, fn);
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
