import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import { REPO_ROOT } from '../../examples/host-panel/src/config.js';
import { requireOrSkip } from './layer.js';
import { ADMIN } from './panel.js';

/** Debian's Chromium; playwright-core drives it and downloads nothing. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Where screenshots go (git-ignored). */
export const RESULTS_DIR = join(REPO_ROOT, 'test-results');

/**
 * Flags for a headless Chromium in a container or CI: no sandbox (it needs user namespaces, often
 * missing there), no GPU, and none of the background traffic (updates, sync, QUIC probes) that would
 * reach out of the machine or slow the start.
 */
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Launches headless Chromium (a fresh temporary profile each time), or skips the test with a
 * one-line reason when it is not installed (a failure under CI=true). Closed when `t` ends.
 * @example const browser = await launchBrowser(t); if (!browser) return;
 */
export async function launchBrowser(t: TestContext): Promise<Browser | undefined> {
  if (!requireOrSkip(t, existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`)) return undefined;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 20_000 });
  t.after(() => browser.close());
  return browser;
}

/** A page and every problem its console or scripts reported (CSP violations land here). */
export interface WatchedPage {
  page: Page;
  problems: string[];
}

/**
 * Opens a page in a fresh context that records console errors, uncaught exceptions and failed
 * requests. The browser's automatic `/favicon.ico` request is not the panel's doing and is ignored.
 */
export async function watchedPage(browser: Browser, baseURL: string): Promise<WatchedPage> {
  const context = await browser.newContext({ baseURL, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems: string[] = [];
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() !== 'error') return;
    if (message.location().url.endsWith('/favicon.ico')) return;
    problems.push(`console: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  page.on('requestfailed', (request) => {
    const failure = request.failure()?.errorText ?? '';
    // Navigating away aborts the page's live-rates stream: that is the browser closing it, not an error.
    if (failure === 'net::ERR_ABORTED' && request.url().endsWith('/admin/bandwidth/events')) return;
    problems.push(`request failed: ${request.url()} ${failure}`);
  });
  return { page, problems };
}

/** Logs ADMIN in through the login form and waits for the page it lands on. */
export async function logInThroughForm(page: Page, next = '/admin/bandwidth'): Promise<void> {
  await page.goto(`/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel('User name').fill(ADMIN.username);
  await page.getByLabel('Password').fill(ADMIN.password);
  await Promise.all([page.waitForURL((url) => url.pathname === next), page.getByRole('button', { name: 'Log in' }).click()]);
}

/** Saves a full-page screenshot as `test-results/<name>.png` and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
