import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostRows, rowCounts, seedHost, startPanel, wgKey, type SeededHost } from '../support/panel.js';

type Method = 'get' | 'post' | 'put' | 'delete';

interface Case {
  title: string;
  method: Method;
  path: (ids: SeededHost) => string;
  /** A JSON body; `raw` sends text as application/json instead. */
  body?: unknown;
  raw?: string;
  status: 400 | 404;
  code: 'invalid_input' | 'invalid_json' | 'not_found';
  /** The `error.field` the answer must name (absent: the answer names no field). */
  field?: string;
  message: RegExp;
}

const networks = () => '/api/networks';
const network = (ids: SeededHost) => `/api/networks/${ids.networkId}`;
const peers = (ids: SeededHost) => `/api/networks/${ids.networkId}/peers`;
const peer = (ids: SeededHost) => `/api/networks/${ids.networkId}/peers/${ids.peerId}`;
const vms = () => '/api/vms';
const vm = (ids: SeededHost) => `/api/vms/${ids.vmId}`;

const newPeer = (changes: Record<string, unknown>) => ({ name: 'phone', public_key: wgKey(2), allowed_ips: ['10.8.0.3/32'], ...changes });
const without = (key: string, body: Record<string, unknown>) => Object.fromEntries(Object.entries(body).filter(([k]) => k !== key));

const invalid = (title: string, method: Method, path: Case['path'], body: unknown, field: string, message: RegExp): Case => ({
  title, method, path, body, status: 400, code: 'invalid_input', field, message,
});
const cidr = (text: string, message: RegExp): Case =>
  invalid(`allowed IP ${JSON.stringify(text)}`, 'post', peers, newPeer({ allowed_ips: [text] }), 'allowed_ips.0', message);
const iface = (text: string): Case =>
  invalid(`interface ${JSON.stringify(text)}`, 'post', networks, { name: 'branch', interface: text }, 'interface',
    /^`interface` must be a kernel interface name: 1 to 15 characters of A-Z a-z 0-9 _ \. -$/);
const netns = (text: string): Case =>
  invalid(`namespace ${JSON.stringify(text)}`, 'post', vms, { name: 'db-01', interface: 'tap-db01', netns: text }, 'netns',
    /^`netns` must be a network namespace name: 1 to 64 characters of A-Z a-z 0-9 _ \. -$/);
const key = (title: string, text: string): Case =>
  invalid(`public key ${title}`, 'post', peers, newPeer({ public_key: text }), 'public_key',
    /^`public_key` must be a WireGuard public key: 44 characters of base64 ending in "="$/);
const unknownId = (method: Method, path: string, id: string, what: string): Case => ({
  title: `${method.toUpperCase()} ${path}`, method, path: () => path, body: method === 'put' ? { name: 'x' } : undefined,
  status: 404, code: 'not_found', message: new RegExp(`^No ${what} with id \`${id.replace(/[.]/g, '\\.')}\`$`),
});

const CASES: Case[] = [
  // wrong types
  invalid('network name is a number', 'post', networks, { name: 42, interface: 'wg1' }, 'name', /^`name` must be a string, got a number$/),
  invalid('VM name is an array', 'post', vms, { name: ['web'], interface: 'tap-db01' }, 'name', /^`name` must be a string, got an array$/),
  invalid('network interface is an object', 'post', networks, { name: 'branch', interface: { name: 'wg1' } }, 'interface', /^`interface` must be a string, got a/),
  invalid('allowed IPs are one string', 'post', peers, newPeer({ allowed_ips: '10.8.0.3/32' }), 'allowed_ips',
    /^`allowed_ips` must be an array of CIDR strings, got `10\.8\.0\.3\/32`$/),
  invalid('allowed IPs hold a number', 'post', peers, newPeer({ allowed_ips: [167772163] }), 'allowed_ips.0', /^`allowed_ips\[0\]` must be a CIDR string, got a number$/),
  invalid('a name set to null', 'put', network, { name: null }, 'name', /^`name` must be a string, got null$/),
  invalid('a namespace set to true', 'post', vms, { name: 'db-01', interface: 'tap-db01', netns: true }, 'netns', /^`netns` must be a string or null, got a boolean$/),
  invalid('a public key set to a number', 'put', peer, { public_key: 1 }, 'public_key', /^`public_key` must be a string, got a number$/),
  // missing fields
  invalid('network without a name', 'post', networks, { interface: 'wg1' }, 'name', /^`name` is required$/),
  invalid('peer without a public key', 'post', peers, without('public_key', newPeer({})), 'public_key', /^`public_key` is required$/),
  invalid('peer without allowed IPs', 'post', peers, without('allowed_ips', newPeer({})), 'allowed_ips', /^`allowed_ips` is required$/),
  invalid('VM without an interface', 'post', vms, { name: 'db-01' }, 'interface', /^`interface` is required$/),
  // empty strings
  invalid('an empty network name', 'post', networks, { name: '', interface: 'wg1' }, 'name', /^`name` must not be empty$/),
  invalid('a VM name of spaces', 'post', vms, { name: '   ', interface: 'tap-db01' }, 'name', /^`name` must not be empty$/),
  iface(''),
  key('that is empty', ''),
  // over-long names and control characters
  invalid('a network name of 65 characters', 'post', networks, { name: 'n'.repeat(65), interface: 'wg1' }, 'name', /^`name` must be at most 64 characters$/),
  invalid('a peer renamed to 65 characters', 'put', peer, { name: 'p'.repeat(65) }, 'name', /^`name` must be at most 64 characters$/),
  invalid('a peer name with a NUL', 'post', peers, newPeer({ name: 'lap\u0000top' }), 'name', /^`name` must not contain control characters$/),
  invalid('a VM name with a terminal escape', 'post', vms, { name: '\u001b[31mred', interface: 'tap-db01' }, 'name', /^`name` must not contain control characters$/),
  invalid('a network name with a newline inside', 'post', networks, { name: 'a\nb', interface: 'wg1' }, 'name', /^`name` must not contain control characters$/),
  // CIDRs
  cidr('10.0.0.256/32', /^`allowed_ips\[0\]` `10\.0\.0\.256\/32` is not an IPv4 or IPv6 address$/),
  cidr('10.0.0.1/33', /^`allowed_ips\[0\]` `10\.0\.0\.1\/33` has a prefix longer than 32$/),
  cidr('fd00::/129', /^`allowed_ips\[0\]` `fd00::\/129` has a prefix longer than 128$/),
  cidr('10.0.0.1/24', /^`allowed_ips\[0\]` `10\.0\.0\.1\/24` has host bits set: did you mean `10\.0\.0\.0\/24`\?$/),
  cidr('not-an-ip', /^`allowed_ips\[0\]` `not-an-ip` is not an IPv4 or IPv6 address$/),
  cidr('10.0.0.1/8/8', /^`allowed_ips\[0\]` `10\.0\.0\.1\/8\/8` is not a CIDR \(more than one "\/"\)$/),
  cidr('10.0.0.1/', /^`allowed_ips\[0\]` `10\.0\.0\.1\/` has an invalid prefix length$/),
  invalid('a bad second allowed IP', 'put', peer, { allowed_ips: ['10.8.0.2/32', 'fe80::1%eth0'] }, 'allowed_ips.1', /^`allowed_ips\[1\]` `fe80::1%eth0` is not an IPv4 or IPv6 address$/),
  invalid('no allowed IPs', 'post', peers, newPeer({ allowed_ips: [] }), 'allowed_ips', /^`allowed_ips` must list at least one address$/),
  invalid('33 allowed IPs', 'post', peers, newPeer({ allowed_ips: Array.from({ length: 33 }, (_, i) => `10.9.${i}.1/32`) }), 'allowed_ips',
    /^`allowed_ips` must list at most 32 addresses$/),
  // interface names
  iface('wg0123456789abcd'),
  iface('wg 0'),
  iface('wg0/..'),
  iface('..'),
  iface('wg0;rm -rf /'),
  iface('wgé0'),
  invalid('SQL as a VM interface', 'post', vms, { name: 'db-01', interface: "'; DROP TABLE peers; --" }, 'interface', /^`interface` must be a kernel interface name/),
  invalid('a VM moved to a bad interface', 'put', vm, { interface: 'tap web' }, 'interface', /^`interface` must be a kernel interface name/),
  // namespaces
  netns('blue net'),
  netns('../../etc'),
  netns('..'),
  netns('n'.repeat(65)),
  // WireGuard keys
  key('of 43 characters', wgKey(3).slice(1)),
  key('of 45 characters', `A${wgKey(3)}`),
  key('that is not base64', `!@#$${wgKey(3).slice(4)}`),
  key('not ending in "="', `${wgKey(3).slice(0, 43)}A`),
  key('that is a private-key-sized hex string', 'a'.repeat(64)),
  // bodies that are not JSON objects
  { title: 'a body that is not valid JSON', method: 'post', path: networks, raw: '{"name": "branch",', status: 400, code: 'invalid_json', message: /^The request body is not valid JSON$/ },
  { title: 'a JSON array body', method: 'post', path: peers, raw: JSON.stringify([newPeer({})]), status: 400, code: 'invalid_input', field: 'body', message: /^The request body must be a JSON object$/ },
  { title: 'a JSON string body', method: 'post', path: vms, raw: '"tap-db01"', status: 400, code: 'invalid_input', field: 'body', message: /^The request body must be a JSON object$/ },
  { title: 'a JSON null body', method: 'put', path: vm, raw: 'null', status: 400, code: 'invalid_input', field: 'body', message: /^The request body must be a JSON object$/ },
  { title: 'no body at all', method: 'post', path: networks, status: 400, code: 'invalid_input', field: 'body', message: /^The request body must be a JSON object$/ },
  // PUT that names no field
  invalid('PUT of an empty network body', 'put', network, {}, 'body', /^The request body names no field to change$/),
  invalid('PUT of an empty peer body', 'put', peer, {}, 'body', /^The request body names no field to change$/),
  invalid('PUT of an empty VM body', 'put', vm, {}, 'body', /^The request body names no field to change$/),
  // unknown ids
  unknownId('get', '/api/vms/999999', '999999', 'VM'),
  unknownId('get', '/api/vms/abc', 'abc', 'VM'),
  unknownId('get', '/api/vms/1.5', '1.5', 'VM'),
  unknownId('get', '/api/vms/-1', '-1', 'VM'),
  unknownId('put', '/api/vms/1e0', '1e0', 'VM'),
  unknownId('delete', '/api/vms/01', '01', 'VM'),
  unknownId('delete', '/api/vms/99999999999', '99999999999', 'VM'),
  unknownId('get', '/api/networks/0/peers', '0', 'network'),
  unknownId('put', '/api/networks/1/peers/abc', 'abc', 'peer'),
];

describe('malformed input is refused with a clear error and writes nothing', () => {
  test('the table has at least 25 cases', () => {
    assert.ok(CASES.length >= 25, `${CASES.length} cases`);
  });

  for (const c of CASES) {
    test(`${c.title} → ${c.status}${c.field ? ` naming \`${c.field}\`` : ''}`, async (t) => {
      const host = await startPanel(t);
      const ids = await seedHost(host.api);
      const counts = await rowCounts(host.db);
      const before = await hostRows(host.db);

      let request = host.api[c.method](c.path(ids));
      if (c.raw !== undefined) request = request.set('Content-Type', 'application/json').send(c.raw);
      else if (c.body !== undefined) request = request.send(c.body as object);
      const response = await request;

      assert.equal(response.status, c.status, response.text);
      assert.match(String(response.headers['content-type']), /^application\/json/);
      assert.equal(response.body.error?.code, c.code);
      if (c.code === 'invalid_json') {
        // A body that does not parse has no field to name; `body` would do as well.
        assert.ok([undefined, 'body'].includes(response.body.error.field), `field: ${response.body.error.field}`);
      } else {
        assert.equal(response.body.error.field, c.field);
      }
      assert.match(response.body.error.message, c.message);
      assert.deepEqual(await rowCounts(host.db), counts);
      assert.deepEqual(await hostRows(host.db), before);
    });
  }
});

describe('SQL-looking text is data', () => {
  test('a peer, network and VM named like an SQL injection are stored literally and every table survives', async (t) => {
    const { api, db } = await startPanel(t);
    const name = "'; DROP TABLE peers; --";

    const net = await api.post('/api/networks').send({ name: `${name} net`, interface: 'wg0' });
    assert.equal(net.status, 201);
    const created = await api.post(`/api/networks/${net.body.network.id}/peers`).send(newPeer({ name }));
    assert.equal(created.status, 201);
    assert.equal(created.body.peer.name, name);
    const machine = await api.post('/api/vms').send({ name: "Robert'); DROP TABLE vms;--", interface: 'tap-db01' });
    assert.equal(machine.status, 201);

    for (const table of ['networks', 'peers', 'vms']) assert.equal(await db.schema.hasTable(table), true, table);
    assert.equal((await db('peers').where({ id: created.body.peer.id }).first()).name, name);
    const fetched = await api.get(`/api/networks/${net.body.network.id}/peers/${created.body.peer.id}`);
    assert.equal(fetched.body.peer.name, name);
    assert.equal((await api.get('/api/vms')).body.vms[0].name, "Robert'); DROP TABLE vms;--");
    assert.equal((await api.get('/api/networks')).body.networks[0].name, `${name} net`);
  });
});
