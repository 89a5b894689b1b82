import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { created, wgKey } from '../support/panel.js';
import { waitFor } from '../support/lab.js';
import { AGENTS_API, NODES_PAGE, startNodesPanel, type NodesPanel } from '../support/nodes-harness.js';
import { AgentRegistry } from '../../src/nodes/panel/registry.js';
import { SecretBox } from '../../src/nodes/panel/secret.js';

const TOKEN = 'page-token-0123456789abcdef0123456789abcdef';
const text = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
const unescape = (html: string) => html.replaceAll('&#39;', "'").replaceAll('&amp;', '&').replaceAll('&#34;', '"');

/** The node cards of the page: node → its state and the text of each fact. */
function cards(html: string): Map<string, { state: string; title: string; facts: Record<string, string>; html: string }> {
  return new Map(
    [...html.matchAll(/<section class="card node" data-node="([^"]+)" data-state="([^"]+)">([\s\S]*?)<\/section>/g)].map((m) => {
      const facts = Object.fromEntries([...m[3]!.matchAll(/<dt>([\s\S]*?)<\/dt><dd[^>]*>([\s\S]*?)<\/dd>/g)].map((f) => [text(f[1]!), unescape(text(f[2]!))]));
      return [m[1]!, { state: m[2]!, title: text(/<h2>([\s\S]*?)<\/h2>/.exec(m[3]!)![1]!), facts, html: m[3]! }];
    }),
  );
}

/** The text of the refusal on a form page, and the field it names. */
function refusal(html: string): { field: string; message: string } | undefined {
  const match = /<p class="error" role="alert" data-field="([^"]*)">([^<]*)<\/p>/.exec(html);
  return match ? { field: match[1]!, message: unescape(match[2]!) } : undefined;
}

const inputValue = (html: string, name: string) => unescape(new RegExp(`<input name="${name}"[^>]*value="([^"]*)"`).exec(html)?.[1] ?? '');

async function registered(panel: NodesPanel, name: string, url = `http://${name}:9731`) {
  return created(panel.api.post(AGENTS_API).send({ name, url, token: TOKEN }), 'agent');
}

async function whenState(panel: NodesPanel, id: number, state: string): Promise<void> {
  await waitFor(`agent ${id} to be ${state}`, async () => (await panel.api.get(`${AGENTS_API}/${id}/status`)).body.status?.state === state);
}

describe('the Nodes page', () => {
  test('shows this machine and each node as a card with its state, version, ledger lag and last error', async (t) => {
    const panel = await startNodesPanel(t);
    panel.agents.set('hv-01', { token: TOKEN, version: '2.0.1', ledgerHead: 10 });
    panel.agents.set('gw-2', { token: TOKEN, up: false });
    await panel.db('bw_node_cursors').insert({ node: 'hv-01', ledger_id: 'ledger-hv-01', seq: 4, updated_at: 0 });
    const hv = await registered(panel, 'hv-01', 'https://hv-01.example:9731');
    const gw = await registered(panel, 'gw-2');
    await whenState(panel, hv.id, 'connected');
    await whenState(panel, gw.id, 'unreachable');
    const admin = await panel.login();

    const page = await admin.agent.get(NODES_PAGE);

    assert.equal(page.status, 200);
    const found = cards(page.text);
    assert.deepEqual([...found.keys()], ['local', 'gw-2', 'hv-01'], 'this machine first, then by name');
    assert.equal(found.get('local')!.title, 'local this machine connected');
    assert.equal(found.get('hv-01')!.title, 'hv-01 https://hv-01.example:9731 connected');
    assert.equal(found.get('hv-01')!.facts['Agent version'], '2.0.1 protocol 1');
    assert.equal(found.get('hv-01')!.facts['Ledger lag'], '6 entries (head 10, ingested up to 4)');
    assert.equal(found.get('hv-01')!.facts['Last error'], '—');
    assert.equal(found.get('gw-2')!.state, 'unreachable');
    assert.match(found.get('gw-2')!.facts['Last error']!, /ECONNREFUSED/);
    assert.equal(found.get('gw-2')!.facts['Last seen (UTC)'], 'never');
    assert.ok(found.get('hv-01')!.html.includes(`action="${NODES_PAGE}/${hv.id}/disable"`), 'an enabled node can be disabled');
    assert.ok(!found.get('local')!.html.includes('<form'), 'this machine cannot be edited, disabled or deleted');
    assert.ok(!page.text.includes(TOKEN));

    assert.match(page.text, /<a href="\/admin\/bandwidth\/nodes" class="">Nodes<\/a>/, 'the plugin adds its Nodes page to the nav');

    const visitor = await panel.visitor().get(NODES_PAGE);
    assert.equal(visitor.status, 303, 'a visitor is sent to log in');
  });

  test('adding a node needs the session\'s CSRF token; a refused form keeps what was typed but never the token', async (t) => {
    const panel = await startNodesPanel(t);
    panel.agents.set('hv-01', { token: TOKEN });
    const admin = await panel.login();
    const fields = { name: 'hv-01', url: 'http://hv-01:9731', token: TOKEN, tls_fingerprint: '', enabled: 'on' };

    const forged = await admin.agent.post(NODES_PAGE).type('form').send(fields);
    assert.equal(forged.status, 403);
    const wrongToken = await admin.agent.post(NODES_PAGE).type('form').send({ ...fields, _csrf: 'not-the-token' });
    assert.equal(wrongToken.status, 403);
    assert.equal((await panel.api.get(AGENTS_API)).body.agents.length, 0);

    const refused = await admin.form(NODES_PAGE, { ...fields, url: 'http://hv-01:9731/agent' });
    assert.equal(refused.status, 400);
    assert.deepEqual(refusal(refused.text), { field: 'url', message: '`url` must be only http(s)://host:port, without a path, query or fragment' });
    assert.equal(inputValue(refused.text, 'name'), 'hv-01', 'what was typed is kept');
    assert.equal(inputValue(refused.text, 'url'), 'http://hv-01:9731/agent');
    assert.ok(!refused.text.includes(TOKEN), 'the token is not sent back');
    assert.ok(/<input name="url"[^>]*aria-invalid="true"/.test(refused.text));

    const short = await admin.form(NODES_PAGE, { ...fields, token: 'short' });
    assert.equal(refusal(short.text)?.field, 'token');

    const added = await admin.form(NODES_PAGE, fields);
    assert.equal(added.status, 303, added.text.slice(0, 300));
    assert.equal(added.headers.location, NODES_PAGE);
    const page = await admin.agent.get(NODES_PAGE);
    assert.match(page.text, /<p class="flash" role="status">Node hv-01 added<\/p>/);
    assert.ok(cards(page.text).has('hv-01'));
    const [row] = await panel.db('bw_agents').select('*');
    assert.ok(!Object.values(row).some((value) => String(value).includes(TOKEN)), 'stored encrypted');

    const duplicate = await admin.form(NODES_PAGE, fields);
    assert.equal(duplicate.status, 409);
    assert.deepEqual(refusal(duplicate.text), { field: 'name', message: 'A node named `hv-01` is already registered' });
  });

  test('editing keeps the token when left empty; disable, enable, and delete after a confirmation page', async (t) => {
    const panel = await startNodesPanel(t);
    const agent = await registered(panel, 'hv-01');
    const admin = await panel.login();

    const edit = await admin.agent.get(`${NODES_PAGE}/${agent.id}/edit`);
    assert.equal(edit.status, 200);
    assert.deepEqual([inputValue(edit.text, 'name'), inputValue(edit.text, 'url'), inputValue(edit.text, 'token')], ['hv-01', 'http://hv-01:9731', '']);
    assert.ok(/<input type="checkbox" name="enabled" value="on" checked>/.test(edit.text));

    const saved = await admin.form(`${NODES_PAGE}/${agent.id}/edit`, { name: 'hv-01', url: 'https://hv-01.example:9443', token: '', tls_fingerprint: 'ab'.repeat(32), enabled: 'on' });
    assert.equal(saved.status, 303, saved.text.slice(0, 300));
    const after = (await panel.api.get(`${AGENTS_API}/${agent.id}`)).body.agent;
    assert.deepEqual([after.url, after.tls_fingerprint, after.enabled], ['https://hv-01.example:9443', 'ab'.repeat(32), true]);
    const registry = new AgentRegistry({ db: panel.db, secrets: new SecretBox({ keyFile: panel.keyFile, env: {} }) });
    assert.equal((await registry.records())[0]?.token, TOKEN, 'an empty token field keeps the stored token');

    const badEdit = await admin.form(`${NODES_PAGE}/${agent.id}/edit`, { name: 'hv-01', url: 'http://hv-01.example:9443', token: '', tls_fingerprint: 'ab'.repeat(32), enabled: 'on' });
    assert.equal(badEdit.status, 400);
    assert.equal(refusal(badEdit.text)?.field, 'tls_fingerprint');

    assert.equal((await admin.form(`${NODES_PAGE}/${agent.id}/disable`)).status, 303);
    assert.equal((await panel.api.get(`${AGENTS_API}/${agent.id}`)).body.agent.enabled, false);
    await whenState(panel, agent.id, 'disabled');
    const disabled = cards((await admin.agent.get(NODES_PAGE)).text).get('hv-01')!;
    assert.equal(disabled.state, 'disabled');
    assert.ok(disabled.html.includes(`action="${NODES_PAGE}/${agent.id}/enable"`));
    assert.equal((await admin.form(`${NODES_PAGE}/${agent.id}/enable`)).status, 303);
    assert.equal((await panel.api.get(`${AGENTS_API}/${agent.id}`)).body.agent.enabled, true);

    const confirm = await admin.agent.get(`${NODES_PAGE}/${agent.id}/delete`);
    assert.equal(confirm.status, 200);
    assert.match(confirm.text, /<h1>Delete node hv-01\?<\/h1>/);
    assert.ok(confirm.text.includes(`<form method="post" action="${NODES_PAGE}/${agent.id}/delete"`));
    assert.equal((await panel.api.get(AGENTS_API)).body.agents.length, 1, 'asking is not deleting');
    assert.equal((await admin.agent.post(`${NODES_PAGE}/${agent.id}/delete`).type('form').send({})).status, 403, 'no deletion without the CSRF token');

    const deleted = await admin.form(`${NODES_PAGE}/${agent.id}/delete`);
    assert.equal(deleted.status, 303);
    assert.match((await admin.agent.get(NODES_PAGE)).text, /<p class="flash" role="status">Node hv-01 deleted<\/p>/);
    assert.deepEqual((await panel.api.get(AGENTS_API)).body.agents, []);
    assert.equal((await admin.agent.get(`${NODES_PAGE}/${agent.id}/edit`)).status, 404);
    assert.deepEqual(await panel.db('bw_events').orderBy('id').pluck('action'), ['node.created', 'node.updated', 'node.stopped', 'node.started', 'node.deleted']);
  });

  test('a node that holds subjects is not deleted: the confirmation page says why', async (t) => {
    const panel = await startNodesPanel(t);
    const agent = await registered(panel, 'hv-01');
    await created(panel.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01', node: 'hv-01' }), 'vm');
    const admin = await panel.login();

    const refused = await admin.form(`${NODES_PAGE}/${agent.id}/delete`);

    assert.equal(refused.status, 409);
    assert.equal(refusal(refused.text)?.field, 'name');
    assert.match(refusal(refused.text)!.message, /cannot be deleted while 1 subject is on it/);
    assert.equal((await panel.api.get(AGENTS_API)).body.agents.length, 1);
  });
});

describe('the overview\'s node column and filter', () => {
  /** The subjects listed on an overview page, by key, with the node cell's text when there is one. */
  const listed = (html: string) =>
    [...html.matchAll(/<tr data-subject="([^"]+)"[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => [m[1]!, /<td class="node" data-node="([^"]+)">/.exec(m[2]!)?.[1] ?? null]);

  test('appear once there is more than this machine, and the filter lists one node\'s subjects', async (t) => {
    const panel = await startNodesPanel(t);
    const admin = await panel.login();
    const vm = await created(panel.api.post('/api/vms').send({ name: 'web-01', interface: 'tap-web01' }), 'vm');

    const alone = await admin.agent.get('/admin/bandwidth');
    assert.equal(alone.status, 200);
    assert.ok(!alone.text.includes('<select name="node">'), 'one machine: no node filter');
    assert.ok(!/<a href="[^"]*">Node<\/a><\/th>/.test(alone.text), 'one machine: no node column');
    assert.deepEqual(listed(alone.text), [[`vm:${vm.id}`, null]]);

    await registered(panel, 'gw-1');
    const network = await created(panel.api.post('/api/networks').send({ name: 'branch', interface: 'wg0', node: 'gw-1' }), 'network');
    const peer = await created(panel.api.post(`/api/networks/${network.id}/peers`).send({ name: 'laptop', public_key: wgKey(1), allowed_ips: ['10.8.0.2/32'] }), 'peer');

    const all = await admin.agent.get('/admin/bandwidth');
    assert.ok(/<a href="[^"]*">Node<\/a><\/th>/.test(all.text), 'a node column');
    assert.deepEqual(listed(all.text).sort(), [[`peer:${peer.id}`, 'gw-1'], [`vm:${vm.id}`, 'local']]);
    assert.match(all.text, /<select name="node"><option value="">all<\/option><option value="local" >local<\/option><option value="gw-1" >gw-1<\/option><\/select>/);

    const onGateway = await admin.agent.get('/admin/bandwidth?node=gw-1');
    assert.deepEqual(listed(onGateway.text), [[`peer:${peer.id}`, 'gw-1']]);
    assert.match(onGateway.text, /<option value="gw-1" selected>gw-1<\/option>/);
    assert.ok(onGateway.text.includes('href="/admin/bandwidth?node=gw-1&amp;sort=type"'), 'sorting keeps the node filter');
    assert.deepEqual(listed((await admin.agent.get('/admin/bandwidth?node=local')).text), [[`vm:${vm.id}`, 'local']]);
    assert.deepEqual(listed((await admin.agent.get('/admin/bandwidth?node=nowhere')).text), [], 'a node with no subjects lists none');
    assert.equal(listed((await admin.agent.get('/admin/bandwidth?node=bad%20name')).text).length, 2, 'a malformed node is no filter');

    const nodesPage = cards((await admin.agent.get(NODES_PAGE)).text);
    assert.ok(nodesPage.get('gw-1')!.html.includes('<a href="/admin/bandwidth?node=gw-1">1</a>'), 'a card links to its subjects');
  });
});
