import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { launchBrowser, logInThroughForm, screenshot, watchedPage } from '../support/browser.js';
import { listen, startPanel } from '../support/panel.js';

test('an admin sees the demo network\'s caps in its form and on the overview, and changes its default', { timeout: 60_000 }, async (t) => {
  const browser = await launchBrowser(t);
  if (!browser) return;
  const host = await startPanel(t, { demo: true });
  const base = await listen(t, host.panel.app);
  const { page, problems } = await watchedPage(browser, base);
  const network = (await host.api.get('/api/networks').expect(200)).body.networks[0] as { id: number; name: string };

  await logInThroughForm(page, `/admin/networks/${network.id}`);
  const form = page.locator('form').filter({ has: page.locator('fieldset.network-fields') });
  assert.equal(await form.count(), 1, 'the network settings form carries the plugin\'s fieldset');
  const field = (label: string) => form.getByLabel(label, { exact: false });
  assert.equal(await field('Network cap, upload').inputValue(), '50000');
  assert.equal(await field('Network cap, download').inputValue(), '100000');
  assert.equal(await field('Default upload cap per peer').inputValue(), '10000');
  assert.equal(await field('Default download cap per peer').inputValue(), '20000');
  assert.equal(await form.locator('[data-mbps-for="bandwidth_total_down_kbps"]').innerText(), '= 100 Mbps', 'the page\'s script ran (CSP allows it)');

  await field('Default download cap per peer').fill('30000');
  assert.equal(await form.locator('[data-mbps-for="bandwidth_default_down_kbps"]').innerText(), '= 30 Mbps');
  await Promise.all([page.waitForURL((url) => url.pathname === `/admin/networks/${network.id}`), form.getByRole('button', { name: 'Save' }).click()]);
  await page.locator('p.flash').waitFor();
  assert.equal(await field('Default download cap per peer').inputValue(), '30000', 'the new default is stored and shown');
  const formShot = await screenshot(page, 'network-form');

  await page.goto('/admin/bandwidth');
  const row = page.locator(`table.networks tr[data-network="${network.id}"]`);
  assert.equal(await row.count(), 1, 'the overview lists the network');
  const cells = await row.locator('td').allInnerTexts();
  assert.deepEqual(cells.slice(0, 5), [network.name, 'wg-demo0', '50 / 100 Mbps', '10 / 30 Mbps', '4']);
  for (const direction of ['up', 'down']) {
    const use = row.locator(`td.network-use[data-direction="${direction}"]`);
    assert.equal(await use.locator('meter').count(), 1, `a fullness meter for ${direction}`);
    assert.equal(await use.getAttribute('data-percent'), '0', 'no traffic yet: 0 % full');
  }
  // A demo peer without caps of its own is shown under the network's default.
  const bob = page.locator('tr[data-subject]').filter({ has: page.getByRole('link', { name: 'bob-phone', exact: true }) });
  const bobCells = await bob.locator('td').allInnerTexts();
  assert.deepEqual([bobCells[3], bobCells[4]], ['10 Mbps default', '30 Mbps default']);
  const overviewShot = await screenshot(page, 'overview-networks');

  await Promise.all([page.waitForURL(/\/admin\/bandwidth\/peer\/\d+$/), bob.getByRole('link', { name: 'bob-phone', exact: true }).click()]);
  const effective = await page.locator('dd.effective').allInnerTexts();
  assert.deepEqual(effective, [`10 Mbps · from the default of network ${network.name}`, `30 Mbps · from the default of network ${network.name}`]);

  t.diagnostic(`screenshots: ${formShot}, ${overviewShot}`);
  for (const shot of [formShot, overviewShot]) assert.ok(statSync(shot).size > 10_000, `${shot} holds a picture`);
  assert.deepEqual(problems, [], 'no console errors, CSP violations or failed requests');
});
