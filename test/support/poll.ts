import assert from 'node:assert/strict';

/**
 * Polls `read` every 50 ms until `done` holds of what it returned, for work the running panel does
 * on a timer of its own (the reconcile loop, the webhook deliverer); fails naming `what` and the
 * last value read.
 */
export async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
