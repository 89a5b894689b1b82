import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { launchBrowser, logInThroughForm, screenshot, watchedPage } from '../support/browser.js';
import { listen, startPanel } from '../support/panel.js';

test('an admin caps a demo peer from the overview and sees the cap in the table and on its page', { timeout: 60_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const host = await startPanel(t, { demo: true });
  const base = await listen(t, host.panel.app);
  const { page, problems } = await watchedPage(browser, base);

  await logInThroughForm(page, '/admin/bandwidth');
  assert.equal(await page.title(), 'Bandwidth · Panel');
  const alice = page.locator('tr[data-subject]').filter({ has: page.getByRole('link', { name: 'alice-laptop', exact: true }) });
  assert.equal(await alice.count(), 1, 'the demo peer has a row');
  await alice.getByLabel('Upload cap of alice-laptop in kbps').fill('10000');
  await alice.getByLabel('Download cap of alice-laptop in kbps').fill('50000');
  await alice.getByRole('button', { name: 'Save' }).click();

  const flash = page.locator('p.flash');
  await flash.waitFor();
  assert.match(await flash.innerText(), /^alice-laptop: 10 \/ 50 Mbps\b/);
  const cells = await alice.locator('td').allInnerTexts();
  assert.deepEqual([cells[3], cells[4]], ['10 Mbps', '50 Mbps'], 'her row shows the caps');
  assert.equal(await alice.getByLabel('Upload cap of alice-laptop in kbps').inputValue(), '10000');
  assert.equal(await alice.getAttribute('data-cap-down'), '50000');
  const overviewShot = await screenshot(page, 'overview');

  await Promise.all([page.waitForURL(/\/admin\/bandwidth\/peer\/\d+$/), alice.getByRole('link', { name: 'alice-laptop', exact: true }).click()]);

  assert.equal(await page.locator('h1').innerText(), 'Peer alice-laptop wg-demo0');
  assert.equal(await page.locator('dd.limit').innerText(), '10 / 50 Mbps');
  assert.equal(await page.locator('svg.bw-chart').count(), 2);
  assert.equal(await page.locator('svg.bw-chart line.cap').count(), 4, 'both caps drawn on both charts');
  assert.equal(await page.locator('[data-mbps-for="bandwidth_down_kbps"]').innerText(), '= 50 Mbps', 'the page\'s script ran (CSP allows it)');
  const events = await page.locator('table.events tbody tr').allInnerTexts();
  assert.match(events[0] ?? '', /admin\s+limit\.set\s+peer \d+\s+Unlimited → 10 \/ 50 Mbps/);
  const subjectShot = await screenshot(page, 'subject');

  t.diagnostic(`screenshots: ${overviewShot}, ${subjectShot}`);
  for (const shot of [overviewShot, subjectShot]) assert.ok(statSync(shot).size > 10_000, `${shot} holds a picture`);
  assert.deepEqual(problems, [], 'no console errors, CSP violations or failed requests');
});
