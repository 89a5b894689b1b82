/**
 * `npm run lab` (root): a live WireGuard lab for the running panel. Builds network namespaces with
 * a wireguard-go server interface and three peers, registers them in the panel through its API
 * with different caps, and keeps iperf3 traffic flowing in both directions so the pages show real
 * shaping, live rates and totals. `npm run lab -- --down` removes everything.
 *
 * Environment: PANEL_URL (default http://127.0.0.1:3000), PANEL_API_TOKEN (required).
 * Only 10.x / fd00:: addresses inside the lab's own namespaces are used.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';

const STATE = 'data/lab.json';
const SERVER_NS = 'pbw-lab-srv';
const SERVER_IF = 'wg-pbwlab';
const PEERS = [
  { name: 'lab-alice', address: '10.77.0.2', up: 2_000, down: 8_000 },
  { name: 'lab-bob', address: '10.77.0.3', up: 1_000, down: 3_000 },
  { name: 'lab-carol', address: '10.77.0.4', up: 0, down: 0 },
];
const TIMEOUT = { timeout: 15_000 };

interface State {
  networkId?: number;
  namespaces: string[];
  pids: number[];
}

const run = (file: string, args: string[], input?: string) => execa(file, args, { ...TIMEOUT, ...(input === undefined ? {} : { input }) });
const inNs = (ns: string, args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);

/** Starts a long-running process in a namespace, detached from this script. */
function background(ns: string, argv: string[], state: State): void {
  const child = execa('ip', ['netns', 'exec', ns, ...argv], { detached: true, stdio: 'ignore', cleanup: false, reject: false });
  if (child.pid) state.pids.push(child.pid);
  child.unref();
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const base = process.env.PANEL_URL ?? 'http://127.0.0.1:3000';
  const token = process.env.PANEL_API_TOKEN;
  if (!token) throw new Error('Set PANEL_API_TOKEN to the panel’s API token (printed on its first start)');
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

async function keyPair(): Promise<{ privateKey: string; publicKey: string }> {
  const privateKey = (await run('wg', ['genkey'])).stdout.trim();
  const publicKey = (await run('wg', ['pubkey'], privateKey)).stdout.trim();
  return { privateKey, publicKey };
}

async function up(): Promise<void> {
  if (existsSync(STATE)) throw new Error(`A lab is already running (${STATE}); run \`npm run lab -- --down\` first`);
  mkdirSync('data', { recursive: true });
  const state: State = { namespaces: [], pids: [] };
  const save = () => writeFileSync(STATE, JSON.stringify(state, null, 2));
  try {
    await run('ip', ['netns', 'add', SERVER_NS]);
    state.namespaces.push(SERVER_NS);
    save();
    await run('ip', ['-n', SERVER_NS, 'link', 'set', 'lo', 'up']);
    background(SERVER_NS, ['wireguard-go', '-f', SERVER_IF], state);
    save();
    await waitFor('the server interface', async () => (await run('ip', ['-n', SERVER_NS, 'link', 'show', SERVER_IF])).exitCode === 0);
    const server = await keyPair();
    writeFileSync('data/lab-server.key', server.privateKey, { mode: 0o600 });
    await inNs(SERVER_NS, ['wg', 'set', SERVER_IF, 'listen-port', '51820', 'private-key', 'data/lab-server.key']);
    await run('ip', ['-n', SERVER_NS, 'addr', 'add', '10.77.0.1/24', 'dev', SERVER_IF]);
    await run('ip', ['-n', SERVER_NS, 'link', 'set', SERVER_IF, 'up']);
    const network = (await api('POST', '/api/networks', { name: 'Lab (wireguard-go)', interface: SERVER_IF, netns: SERVER_NS })).network as { id: number };
    state.networkId = network.id;
    save();

    for (const [index, peer] of PEERS.entries()) {
      const i = index + 1;
      const ns = `pbw-lab-p${i}`;
      await run('ip', ['netns', 'add', ns]);
      state.namespaces.push(ns);
      save();
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', SERVER_NS, 'link', 'add', `lab-u${i}`, 'type', 'veth', 'peer', 'name', `lab-u${i}p`, 'netns', ns]);
      await run('ip', ['-n', SERVER_NS, 'addr', 'add', `10.251.${i}.1/30`, 'dev', `lab-u${i}`]);
      await run('ip', ['-n', SERVER_NS, 'link', 'set', `lab-u${i}`, 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `10.251.${i}.2/30`, 'dev', `lab-u${i}p`]);
      await run('ip', ['-n', ns, 'link', 'set', `lab-u${i}p`, 'up']);
      const ifname = `wg-pbwlab${i}`;
      background(ns, ['wireguard-go', '-f', ifname], state);
      save();
      await waitFor(`peer ${i}'s interface`, async () => (await run('ip', ['-n', ns, 'link', 'show', ifname])).exitCode === 0);
      const keys = await keyPair();
      writeFileSync(`data/lab-peer${i}.key`, keys.privateKey, { mode: 0o600 });
      await inNs(ns, ['wg', 'set', ifname, 'private-key', `data/lab-peer${i}.key`, 'peer', server.publicKey, 'endpoint', `10.251.${i}.1:51820`, 'allowed-ips', '10.77.0.0/24', 'persistent-keepalive', '25']);
      await run('ip', ['-n', ns, 'addr', 'add', `${peer.address}/24`, 'dev', ifname]);
      await run('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
      await api('POST', `/api/networks/${network.id}/peers`, {
        name: peer.name, public_key: keys.publicKey, allowed_ips: [`${peer.address}/32`],
        bandwidth_up_kbps: peer.up, bandwidth_down_kbps: peer.down,
      });
      await inNs(SERVER_NS, ['wg', 'set', SERVER_IF, 'peer', keys.publicKey, 'allowed-ips', `${peer.address}/32`]);
      // One flow each way, for a day, paced at 30 Mbit/s (above every cap; keeps the CPU for the panel).
      for (const [port, reverse] of [[5400 + 2 * i, false], [5401 + 2 * i, true]] as const) {
        background(SERVER_NS, ['iperf3', '-s', '-p', String(port)], state);
        save();
        await waitFor('iperf3 server', async () => (await inNs(SERVER_NS, ['ss', '-Hltn', `sport = :${port}`])).stdout.trim() !== '');
        background(ns, ['iperf3', '-c', '10.77.0.1', '-p', String(port), '-t', '86400', '-b', '30M', ...(reverse ? ['-R'] : [])], state);
        save();
      }
      console.log(`${peer.name}: ${peer.address}, caps up ${peer.up || '∞'} / down ${peer.down || '∞'} kbps, traffic flowing`);
    }
    console.log(`Lab up: network ${network.id} (${SERVER_IF} in ${SERVER_NS}). Open /admin/bandwidth. Remove with: npm run lab -- --down`);
  } catch (error) {
    save();
    console.error(`lab: ${(error as Error).message}; cleaning up`);
    await down();
    process.exitCode = 1;
  }
}

async function down(): Promise<void> {
  if (!existsSync(STATE)) {
    console.log('No lab running.');
    return;
  }
  const state = JSON.parse(readFileSync(STATE, 'utf8')) as State;
  for (const pid of state.pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  if (state.networkId !== undefined) {
    await api('DELETE', `/api/networks/${state.networkId}`).catch((error: Error) => console.error(`lab: could not delete the lab network from the panel: ${error.message}`));
  }
  for (const ns of state.namespaces.reverse()) {
    // Processes still inside (wireguard-go, iperf3) go with a SIGKILL before the namespace does.
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
  for (const file of [STATE, 'data/lab-server.key', ...PEERS.map((_, i) => `data/lab-peer${i + 1}.key`)]) rmSync(file, { force: true });
  for (const name of [SERVER_IF, ...PEERS.map((_, i) => `wg-pbwlab${i + 1}`)]) rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
  console.log('Lab removed.');
}

if (process.getuid?.() !== 0) {
  console.error('lab: run as root (network namespaces, wireguard-go and tc need it)');
  process.exit(1);
}
await (process.argv.includes('--down') ? down() : up());
