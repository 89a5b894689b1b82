/**
 * Serialises async sections by key within this process. The reference panel is one process, so
 * "check, then write" sections that span two tables (an interface is unique across networks AND
 * VMs; allowed IPs must not overlap within a network) run one at a time per key.
 */
export class KeyedMutex {
  private tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, section: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const current = previous.then(section, section);
    const tail = current.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await current;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** Interface names are claimed by networks and VMs alike. */
export const interfaceClaims = new KeyedMutex();
/** Allowed IPs are checked for overlap per network. */
export const networkPeers = new KeyedMutex();
