import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import supertest from 'supertest';

import { ifbNameFor } from '../../src/shaping/ifb-name.js';
import { requireOrSkip } from '../support/layer.js';
import {
  applyPatch,
  copyFixture,
  createVethNamespace,
  importPatchedPanel,
  kitRequirements,
  patchFiles,
  patchLeftovers,
  REPO_ROOT,
  wgKey,
  type PatchedPanel,
  type VethNamespace,
} from '../support/plain-panel.js';

const { available, reason } = kitRequirements();

const API_TOKEN = 'integration-kit-token-0123456789';
const PASSWORD = 'integration kit password';

test('a plain Express panel patched with patches/ hosts the plugin and shapes the peers created through it', { timeout: 180_000 }, async (t) => {
  if (!requireOrSkip(t, available, reason)) return;
  const cleanup: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const step of cleanup.reverse()) await step().catch((error: unknown) => t.diagnostic(`cleanup: ${(error as Error).message}`));
  });

  const copy = await copyFixture();
  cleanup.push(copy.remove);
  let patched = false;
  await t.test('every patch applies in order with patch -p1 --forward --batch: no offset, no fuzz, no reject', async () => {
    const files = await patchFiles();
    assert.ok(files.length >= 2 && files.length <= 4, `2 to 4 patches, found ${files.length}`);
    for (const file of files) {
      const result = await applyPatch(copy.dir, file);
      assert.equal(result.exitCode, 0, `${file}:\n${result.output}`);
      assert.doesNotMatch(result.output, /offset|fuzz|FAILED|Reversed|malformed/i, `${file} applied inexactly:\n${result.output}`);
    }
    assert.deepEqual(await patchLeftovers(copy.dir), []);
    patched = true;
  });
  assert.ok(patched, 'the patches did not apply; nothing else can run');

  const lab: VethNamespace = await createVethNamespace();
  cleanup.push(() => lab.close());
  const createApp = await importPatchedPanel(copy.dir);
  const start = () =>
    createApp({
      databaseFile: join(copy.dir, 'panel.sqlite'),
      interface: lab.ifname,
      netns: lab.netns,
      adminPassword: PASSWORD,
      apiToken: API_TOKEN,
      plugins: [{ dir: REPO_ROOT, options: { executor: 'local' } }],
      logLevel: 'warn',
    });
  let panel: PatchedPanel = await start();
  cleanup.push(() => panel.close());

  const db = () => panel.db;
  const api = {
    get: (path: string) => supertest(panel.app).get(path).set('Authorization', `Bearer ${API_TOKEN}`),
    post: (path: string, body: object) => supertest(panel.app).post(path).set('Authorization', `Bearer ${API_TOKEN}`).send(body),
  };
  // A browser with a cookie jar; sessions live in the panel's memory, so a restart needs a new login.
  let browser = supertest.agent(panel.app);
  const csrfOf = (html: string) => {
    const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
    assert.ok(token, `a CSRF field in:\n${html.slice(0, 400)}`);
    return token;
  };
  let csrf = '';
  const logIn = async () => {
    browser = supertest.agent(panel.app);
    csrf = csrfOf((await browser.get('/login')).text);
    assert.equal((await browser.post('/login').type('form').send({ _csrf: csrf, password: PASSWORD })).status, 303);
  };
  await logIn();
  const form = (path: string, fields: Record<string, string>) => browser.post(path).type('form').send({ _csrf: csrf, ...fields });

  const classes = async (dev: string) => lab.tc(['-s', 'class', 'show', 'dev', dev]);
  const classLines = (text: string) => text.split('\n').filter((line) => line.startsWith('class '));
  const ifbs = async () => (JSON.parse((await lab.ip(['-j', 'link', 'show', 'type', 'ifb'])) || '[]') as { ifname: string }[]).map((link) => link.ifname);
  const count = async (table: string) => Number((await db()(table).count({ n: '*' }))[0]?.n ?? 0);
  const peer = { name: 'laptop', public_key: wgKey(7), allowed_ips: ['10.77.0.2/32'] };
  let peerId = 0;

  await t.test('the form shows the plugin fields, and the plugin page renders inside the panel layout', async () => {
    const page = await browser.get('/peers/new');
    assert.equal(page.status, 200);
    assert.match(page.text, /name="bandwidth_up_kbps"/);
    assert.match(page.text, /name="bandwidth_down_kbps"/);
    const overview = await browser.get('/admin/bandwidth');
    assert.equal(overview.status, 200);
    assert.match(overview.text, /<title>Bandwidth · WireGuard panel<\/title>/);
    assert.match(overview.text, /<a href="\/admin\/bandwidth">Bandwidth<\/a>/, 'the navigation entry the plugin added');
    assert.doesNotMatch(overview.text, /data-executor="recording"/, 'no dry-run banner: the local executor runs tc');
  });

  await t.test('a peer created with 2000/8000 kbps through the JSON API is stored, applied and shown as "2 / 8 Mbps"', async () => {
    const created = await api.post('/api/peers', { ...peer, bandwidth_up_kbps: 2000, bandwidth_down_kbps: 8000 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    peerId = created.body.peer.id;
    assert.equal(created.body.peer.bandwidth_up_kbps, 2000);
    assert.equal(created.body.peer.bandwidth_down_kbps, 8000);
    assert.equal(created.body.peer.bandwidth_status, 'applied');

    const limit = await db()('bw_limits').where({ subject_type: 'peer', subject_id: String(peerId) }).first();
    assert.ok(limit, 'a bw_limits row');
    assert.deepEqual(
      { up: Number(limit.up_kbps), down: Number(limit.down_kbps), status: limit.status, interface: limit.interface, netns: limit.netns },
      { up: 2000, down: 8000, status: 'applied', interface: lab.ifname, netns: lab.netns },
    );

    // down (to the peer) on the interface's egress, up (from the peer) on the IFB behind its ingress.
    assert.match(await classes(lab.ifname), /class htb 1:[0-9a-f]+ .*rate 8Mbit/);
    const [ifb, ...more] = await ifbs();
    assert.equal(ifb, ifbNameFor(lab.ifname, lab.netns), 'the IFB the plugin named');
    assert.deepEqual(more, []);
    assert.match(await classes(ifb), /class htb 1:[0-9a-f]+ .*rate 2Mbit/);

    const listed = (await api.get('/api/peers')).body.peers as Record<string, unknown>[];
    assert.deepEqual(
      listed.map((p) => [p.id, p.bandwidth_up_kbps, p.bandwidth_down_kbps, p.bandwidth_status]),
      [[peerId, 2000, 8000, 'applied']],
    );
    const table = await browser.get('/peers');
    assert.match(table.text, /<th>Limit<\/th>/);
    assert.match(table.text, new RegExp(`<tr data-peer="${peerId}">[\\s\\S]*?<td>2 / 8 Mbps</td>`));
  });

  await t.test('"10 mbit" is a 400 naming bandwidth_down_kbps, from the API and from the form; nothing is written', async () => {
    const before = { peers: await count('peers'), limits: await count('bw_limits'), classes: await classes(lab.ifname) };
    const second = { name: 'phone', public_key: wgKey(8), allowed_ips: ['10.77.0.3/32'] };

    const fromApi = await api.post('/api/peers', { ...second, bandwidth_up_kbps: 2000, bandwidth_down_kbps: '10 mbit' });
    assert.equal(fromApi.status, 400);
    assert.equal(fromApi.body.error.field, 'bandwidth_down_kbps');
    assert.match(fromApi.body.error.message, /bandwidth_down_kbps/);

    const fromForm = await form('/peers', { ...second, allowed_ips: '10.77.0.3/32', bandwidth_up_kbps: '2000', bandwidth_down_kbps: '10 mbit' });
    assert.equal(fromForm.status, 400);
    assert.match(fromForm.text, /data-field="bandwidth_down_kbps"/);
    assert.match(fromForm.text, /value="10 mbit"/, 'the form comes back with what was typed');

    assert.equal(await count('peers'), before.peers, 'no new peer row');
    assert.equal(await count('bw_limits'), before.limits, 'no new limit row');
    assert.deepEqual(classLines(await classes(lab.ifname)), classLines(before.classes), 'the kernel is untouched');
  });

  await t.test('changing the download cap through the edit form changes the class', async () => {
    const edit = await browser.get(`/peers/${peerId}`);
    assert.match(edit.text, /name="bandwidth_down_kbps" value="8000"/, 'the form shows the stored cap');
    const saved = await form(`/peers/${peerId}`, { ...peer, allowed_ips: '10.77.0.2/32', bandwidth_up_kbps: '2000', bandwidth_down_kbps: '16000' });
    assert.equal(saved.status, 303, saved.text);
    assert.match(await classes(lab.ifname), /class htb 1:[0-9a-f]+ .*rate 16Mbit/);
    assert.match((await browser.get('/peers')).text, /<td>2 \/ 16 Mbps<\/td>/);
  });

  await t.test('after a restart on an interface the kernel forgot (a reboot), the caps are back once the panel has started', async () => {
    await panel.close();
    await lab.tc(['qdisc', 'del', 'dev', lab.ifname, 'root']);
    await lab.tc(['qdisc', 'del', 'dev', lab.ifname, 'ingress']);
    await lab.ip(['link', 'del', ifbNameFor(lab.ifname, lab.netns)]);
    assert.doesNotMatch(await classes(lab.ifname), /class htb/);
    panel = await start();
    await logIn();
    assert.match(await classes(lab.ifname), /class htb 1:[0-9a-f]+ .*rate 16Mbit/);
    assert.match(await classes(ifbNameFor(lab.ifname, lab.netns)), /class htb 1:[0-9a-f]+ .*rate 2Mbit/);
  });

  await t.test('deleting the peer removes its class, then the plugin leaves the interface as it found it', async () => {
    const deleted = await form(`/peers/${peerId}/delete`, {});
    assert.equal(deleted.status, 303);
    assert.equal(await db()('bw_limits').where({ subject_type: 'peer', subject_id: String(peerId) }).first(), undefined);
    assert.doesNotMatch(await classes(lab.ifname), /class htb/);
    const qdiscs = await lab.tc(['qdisc', 'show', 'dev', lab.ifname]);
    assert.doesNotMatch(qdiscs, /htb|ingress/, qdiscs);
    assert.deepEqual(await ifbs(), [], 'the IFB is gone');
  });
});
