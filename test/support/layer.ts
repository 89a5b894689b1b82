import type { TestContext } from 'node:test';

/** True when running in CI (`CI=true`), where a required test layer may not skip. */
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/**
 * Skips the test with a one-line reason when a requirement is missing, except under `CI=true`,
 * where a missing requirement of a required layer fails the test instead.
 */
export function requireOrSkip(t: TestContext, available: boolean, reason: string): boolean {
  if (available) return true;
  if (inCI) throw new Error(`required in CI but unavailable: ${reason}`);
  t.skip(reason);
  return false;
}
