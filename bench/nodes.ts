/**
 * `npm run bench:nodes` (tsx bench/nodes.ts): the panel ingesting its nodes' ledgers (issue 10).
 *
 * BENCH_AGENTS agents (default 10), each a child process (bench/nodes-agent.ts, compiled and run by
 * plain node as deployed; BENCH_AGENT_RUNTIME=tsx runs the source) with a real AgentCore in
 * recording mode on its own SQLite state file behind the real agent HTTP server, with
 * BENCH_SUBJECTS peers (default 10,000) pushed through `PUT /v1/interfaces/wg0` and counted from a
 * synthetic source through the real Collector, one tick per (synthetic) minute. One more agent
 * records the backlog, one holds nothing (the RSS baseline). The panel side is this process:
 * RemoteLink + ingestNode into a panel database per engine (BENCH_ENGINES, default `sqlite,mysql`:
 * 5-8 minutes on a 2-core machine, most of it the backlog; `postgres` adds ~2 minutes; a server
 * that does not answer is skipped with a line; BENCH_MYSQL_URL, BENCH_POSTGRES_URL).
 *
 * 1. One minute of ledgers of every agent (agents × subjects entries), pulled at once as the
 *    connection manager does on `ledger` events: this process's CPU time (process.cpuUsage: the
 *    agents run elsewhere; on SQLite the database engine runs in this process, on MariaDB and
 *    PostgreSQL it does not, so their server's CPU is read from /proc beside it), and wall time.
 *    Target ≤ 1 CPU-second. Side by side in the same run:
 *    - the same pages already in memory, through ingestPage only (what HTTP, JSON and checks cost);
 *    - the floor: the in-panel collector's store (writeTick) writing the same minute of the same
 *      subjects into the panel database directly, as before nodes existed.
 * 2. A 1-hour backlog of one node (BENCH_BACKLOG_TICKS ticks, default 60): the panel had its first
 *    minute, then was away; pulled from the panel's cursor: wall time (target ≤ 5 s), entries/s,
 *    page size (BENCH_PAGE_SIZE, default 5000 as NodeAccounting).
 * 3. Agent RSS with its subjects pushed and after its ticks, beside an agent holding nothing.
 *
 * BENCH_PROFILE=1 adds one more (unmeasured) ingestion of the minute per engine under the
 * inspector's CPU profiler and summarises the main thread's self time by package and function.
 *
 * Every database is this benchmark's own: SQLite files in a temporary directory, MariaDB and
 * PostgreSQL databases `pbw_bench_nodes_ingest` and `pbw_bench_nodes_scratch`, dropped at the end.
 * Prints Markdown for docs/performance.md and one JSON line per figure.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Knex } from 'knex';

import { writeTick } from '../src/accounting/store.js';
import { connect } from '../src/db/connect.js';
import { RemoteLink } from '../src/nodes/panel/remote-link.js';
import { ingestNode, ingestPage } from '../src/nodes/panel/ingest.js';
import type { LedgerPage } from '../src/nodes/protocol.js';
import type { AgentReply, AgentStats } from './nodes-agent.js';
import { interfaceState, INTERFACE, samplesOf, TICK_MS } from './nodes-source.js';
import { freshDatabase, median } from './support.js';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 10);
const SUBJECTS = Number(process.env.BENCH_SUBJECTS ?? 10_000);
const BACKLOG_TICKS = Number(process.env.BENCH_BACKLOG_TICKS ?? 60);
const PAGE_SIZE = Number(process.env.BENCH_PAGE_SIZE ?? 5000);
const ENGINES = (process.env.BENCH_ENGINES ?? 'sqlite,mysql').split(',');
const PROFILE = process.env.BENCH_PROFILE === '1';
const AGENT_RUNTIME = process.env.BENCH_AGENT_RUNTIME === 'tsx' ? 'tsx' : 'node';
const MYSQL_URL = process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DATABASES = ['pbw_bench_nodes_ingest', 'pbw_bench_nodes_scratch'] as const;
const TOKEN = 'bench-nodes-token-0123456789abcdef0123456789';
const TARGET_MINUTE_CPU_S = 1;
const TARGET_BACKLOG_S = 5;
const MIB = 1024 * 1024;

/** One machine-readable line per figure, beside the Markdown report. */
function figure(metric: string, value: number, extra: Record<string, number | string | null> = {}): void {
  console.log(JSON.stringify({ bench: 'nodes', metric, value: Math.round(value * 1000) / 1000, ...extra }));
}
const round = (value: number, digits = 3): number => Math.round(value * 10 ** digits) / 10 ** digits;
const fmt = (value: number): string => (value >= 100 ? value.toFixed(0) : value.toFixed(2));
const group = (n: number): string => n.toLocaleString('en-US');

// ---------------------------------------------------------------------------------------------
// Agents

class AgentProcess {
  private readonly pending = new Map<number, (reply: AgentReply) => void>();
  private nextId = 1;
  port = 0;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (message: AgentReply | { ready: true; port: number }) => {
      if ('ready' in message) return;
      this.pending.get(message.id)?.(message);
      this.pending.delete(message.id);
    });
  }

  static start(script: string, index: number, name: string, statePath: string, subjects: number, t0: number): Promise<AgentProcess> {
    const child = fork(script, [String(index), name, statePath, TOKEN, String(subjects), String(t0)], {
      execArgv: script.endsWith('.ts') ? ['--import', 'tsx'] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const agent = new AgentProcess(name, child);
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`agent ${name} exited with ${code} before it was ready`)));
      child.on('message', (message: { ready?: true; port?: number }) => {
        if (message.ready) {
          agent.port = message.port ?? 0;
          resolve(agent);
        }
      });
    });
  }

  async request(cmd: 'tick' | 'stats' | 'close', extra: { count?: number } = {}): Promise<AgentReply> {
    const id = this.nextId++;
    const reply = await new Promise<AgentReply>((resolve) => {
      this.pending.set(id, resolve);
      this.child.send({ id, cmd, ...extra });
    });
    if ('error' in reply) throw new Error(`agent ${this.name}: ${reply.error}`);
    return reply;
  }

  async tick(count: number): Promise<{ head: number; tickMs: number[] }> {
    const reply = await this.request('tick', { count });
    if (!('head' in reply)) throw new Error(`agent ${this.name}: no head in ${JSON.stringify(reply)}`);
    return reply;
  }

  async stats(): Promise<AgentStats> {
    const reply = await this.request('stats');
    if (!('stats' in reply)) throw new Error(`agent ${this.name}: no stats in ${JSON.stringify(reply)}`);
    return reply.stats;
  }

  /** Closes the agent; kills only this child if it does not go within 10 s. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.request('close').catch(() => undefined);
    await exited;
    clearTimeout(timer);
  }
}

const REPO = fileURLToPath(new URL('../', import.meta.url));

/**
 * The agent as it is deployed, plain node on compiled JavaScript (tsx alone adds ~40 MiB of RSS):
 * compiles bench/nodes-agent.ts and what it imports into `dir` (no type check: `npm run typecheck`
 * does that) beside the files the package reads at run time. BENCH_AGENT_RUNTIME=tsx skips this.
 */
async function agentScript(dir: string): Promise<string> {
  if (AGENT_RUNTIME === 'tsx') return join(REPO, 'bench', 'nodes-agent.ts');
  const out = join(dir, 'build');
  await execa(process.execPath, [
    join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '--noCheck', '--target', 'ES2022', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
    '--skipLibCheck', '--esModuleInterop', '--resolveJsonModule', '--rootDir', REPO, '--outDir', out, join(REPO, 'bench', 'nodes-agent.ts'),
  ], { cwd: REPO, timeout: 180_000 });
  for (const file of ['package.json', 'plugin.json', 'plugin.schema.json']) copyFileSync(join(REPO, file), join(out, file));
  symlinkSync(join(REPO, 'node_modules'), join(out, 'node_modules'));
  return join(out, 'bench', 'nodes-agent.js');
}

const agentCpuUs = (stats: AgentStats[]): number => stats.reduce((sum, s) => sum + s.cpuUserUs + s.cpuSystemUs, 0);

// ---------------------------------------------------------------------------------------------
// Databases

/** CPU time (ms) of every process with one of these names (a database server), from /proc. */
function serverCpuMs(names: readonly string[]): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!names.includes(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process ended meanwhile
    }
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

interface EngineDbs {
  id: string;
  label: string;
  ingest: Knex;
  scratch: Knex;
  /** CPU of the database server's processes (ms), or null when it runs in this process (SQLite). */
  serverCpu: () => number | null;
  close(): Promise<void>;
}

async function openEngine(id: string, dir: string): Promise<EngineDbs | string> {
  if (id === 'sqlite') {
    const [ingest, scratch] = await Promise.all(DATABASES.map((name) => freshDatabase(`sqlite:${join(dir, `${name}.sqlite`)}`)));
    return { id, label: 'SQLite', ingest: ingest!, scratch: scratch!, serverCpu: () => null, close: async () => void (await Promise.all([ingest!.destroy(), scratch!.destroy()])) };
  }
  if (id !== 'mysql' && id !== 'postgres') return `unknown engine \`${id}\` (sqlite, mysql, postgres)`;
  const adminUrl = id === 'mysql' ? MYSQL_URL : POSTGRES_URL;
  const admin = connect(adminUrl);
  try {
    await admin.raw('select 1');
  } catch (error) {
    await admin.destroy();
    return `${id} skipped: ${adminUrl.replace(/:[^:@/]*@/, ':***@')} does not answer (${(error as Error).message})`;
  }
  const answer = (await admin.raw('select version() as v')) as { rows?: { v: string }[] } & { v: string }[][];
  const version = String((id === 'mysql' ? answer[0]?.[0]?.v : answer.rows?.[0]?.v) ?? '?');
  const dbs: Knex[] = [];
  for (const name of DATABASES) {
    if (id === 'mysql') await admin.raw('CREATE DATABASE IF NOT EXISTS ??', [name]);
    else if (!(await admin('pg_database').where({ datname: name }).first())) await admin.raw('CREATE DATABASE ??', [name]);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    dbs.push(await freshDatabase(url.toString()));
  }
  const names = id === 'mysql' ? ['mariadbd', 'mysqld'] : ['postgres'];
  return {
    id,
    label: id === 'mysql' ? `MariaDB (${version.split('-')[0]})` : `PostgreSQL (${version.split(' ')[1] ?? version})`,
    ingest: dbs[0]!,
    scratch: dbs[1]!,
    serverCpu: () => serverCpuMs(names),
    close: async () => {
      await Promise.all(dbs.map((db) => db.destroy()));
      for (const name of DATABASES) await admin.raw('DROP DATABASE IF EXISTS ??', [name]);
      await admin.destroy();
    },
  };
}

async function emptyUsage(db: Knex): Promise<void> {
  for (const table of ['bw_usage', 'bw_usage_hourly', 'bw_usage_daily', 'bw_usage_totals', 'bw_counters', 'bw_node_cursors']) await db(table).truncate();
}

/** Rows and byte sums of the raw usage table (what must match between ingestion and the floor). */
async function usageTotals(db: Knex): Promise<string> {
  const row = (await db('bw_usage').count({ n: '*' }).sum({ up: 'up_bytes', down: 'down_bytes' }).first()) as Record<string, unknown>;
  return `${String(row.n)} rows, up ${BigInt(String(row.up ?? 0))}, down ${BigInt(String(row.down ?? 0))}`;
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Measured<T> {
  value: T;
  wallMs: number;
  cpuMs: number;
  /** Database server processes (MariaDB, PostgreSQL); null for SQLite (in `cpuMs`). */
  serverCpuMs: number | null;
  /** The agents' processes (serving pages), when asked for. */
  agentsCpuMs: number | null;
}

async function measure<T>(engine: EngineDbs, agents: AgentProcess[] | null, work: () => Promise<T>): Promise<Measured<T>> {
  const agentsBefore = agents ? await Promise.all(agents.map((agent) => agent.stats())) : null;
  const serverBefore = engine.serverCpu();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const value = await work();
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const serverAfter = engine.serverCpu();
  const agentsAfter = agents ? await Promise.all(agents.map((agent) => agent.stats())) : null;
  return {
    value,
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    serverCpuMs: serverBefore === null || serverAfter === null ? null : serverAfter - serverBefore,
    agentsCpuMs: agentsBefore && agentsAfter ? (agentCpuUs(agentsAfter) - agentCpuUs(agentsBefore)) / 1000 : null,
  };
}

/** Every ledger page of a link from 0, as ingestNode would ask for them. */
async function fetchPages(link: RemoteLink): Promise<LedgerPage[]> {
  const pages: LedgerPage[] = [];
  for (let after = 0; ;) {
    const page = await link.ledger(after, PAGE_SIZE);
    pages.push(page);
    after = page.entries.at(-1)?.seq ?? after;
    if (page.entries.length < PAGE_SIZE || after >= page.head) return pages;
  }
}

/** Main-thread self time of a CPU profile, by package or source file, and the top functions. */
function summarise(profile: { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[]; startTime: number; endTime: number; samples?: number[] }): string[] {
  const sampleUs = (profile.endTime - profile.startTime) / Math.max(1, profile.samples?.length ?? 1);
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = (node.hitCount ?? 0) * sampleUs;
    if (us === 0 || node.callFrame.functionName === '(idle)') continue;
    const { url, functionName, lineNumber } = node.callFrame;
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
    const area = pkg ?? (url.includes('/src/') ? `src/${url.split('/src/')[1]}` : url.includes('/bench/') ? 'bench' : url.startsWith('node:') ? 'node: core modules' : url === '' ? `native ${functionName || '(anonymous)'}` : url);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const where = url ? `${url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${lineNumber + 1}` : 'native';
    const key = `${functionName || '(anonymous)'} (${where})`;
    functions.set(key, (functions.get(key) ?? 0) + us);
    total += us;
  }
  const top = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, us]) => `${name} ${(us / 1000).toFixed(0)} ms (${((us / total) * 100).toFixed(0)}%)`);
  return [`main thread busy ${(total / 1000).toFixed(0)} ms; by area: ${top(areas, 10).join('; ')}`, `top functions: ${top(functions, 12).join('; ')}`];
}

async function profiled<T>(work: () => Promise<T>, file: string): Promise<string[]> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 500 });
    await session.post('Profiler.start');
    await work();
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    return summarise(profile as Parameters<typeof summarise>[0]);
  } finally {
    session.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-bench-nodes-'));
  // Profiles outlive the run (the state files do not).
  const profileDir = PROFILE ? mkdtempSync(join(tmpdir(), 'pbw-bench-nodes-profile-')) : dir;
  const everyAgent: AgentProcess[] = [];
  const links: RemoteLink[] = [];
  const engines: EngineDbs[] = [];
  const benchStarted = performance.now();
  // The backlog's last tick ends about now: a baseline, one minute and the backlog, all in the past.
  const t0 = Math.floor(Date.now() / TICK_MS) * TICK_MS - (BACKLOG_TICKS + 2) * TICK_MS;
  const minuteOf = (k: number) => t0 + k * TICK_MS;
  try {
    console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), Linux ${release()}, node ${process.version}; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log(`${AGENTS} agents × ${group(SUBJECTS)} subjects (+ 1 backlog agent, 1 empty agent), page size ${PAGE_SIZE}, backlog ${BACKLOG_TICKS} ticks; state and SQLite files in ${dir}\n`);

    // Agents: processes, their subjects pushed over HTTP, a baseline tick and one minute each. The
    // backlog node records its hour meanwhile (nothing is measured before all of them are done).
    let started = performance.now();
    const script = await agentScript(dir);
    console.log(`agent runtime: ${AGENT_RUNTIME === 'tsx' ? 'tsx' : 'node on compiled JavaScript'} (${fmt((performance.now() - started) / 1000)} s to prepare)`);
    started = performance.now();
    const start = async (index: number, name: string, subjects: number) => {
      const agent = await AgentProcess.start(script, index, name, join(dir, `${name}.sqlite`), subjects, t0);
      everyAgent.push(agent);
      const link = new RemoteLink({ node: name, url: `http://127.0.0.1:${agent.port}`, token: TOKEN, timeoutMs: 600_000 });
      links.push(link);
      return { agent, link };
    };
    const backlogNode = await start(AGENTS, 'node-backlog', SUBJECTS);
    const nodes: { agent: AgentProcess; link: RemoteLink }[] = [];
    for (let n = 0; n < AGENTS; n++) nodes.push(await start(n, `node-${String(n).padStart(2, '0')}`, SUBJECTS));
    const empty = await start(AGENTS + 1, 'node-empty', 0);
    console.log(`agents started in ${fmt((performance.now() - started) / 1000)} s`);

    started = performance.now();
    const push = async (index: number, link: RemoteLink) => {
      const report = await link.putInterface(INTERFACE, interfaceState(index, SUBJECTS));
      if (report.subjects.length !== SUBJECTS) throw new Error(`${link.node}: the push reported ${report.subjects.length} subjects`);
    };
    await push(AGENTS, backlogNode.link);
    // The panel has pulled the backlog node before (its link knows the ledger, as a connection's
    // link does across reconnects); then the node records an hour while the panel is away.
    await backlogNode.agent.tick(2);
    const throwaway = await freshDatabase('sqlite::memory:');
    await ingestNode(throwaway, backlogNode.link, { pageSize: PAGE_SIZE });
    await throwaway.destroy();
    const generating = backlogNode.agent.tick(BACKLOG_TICKS);
    // Two pushes at a time (2 cores), then the baseline and one minute on every agent at once.
    const queue = [...nodes.entries()];
    await Promise.all([0, 1].map(async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await push(next[0], next[1].link);
    }));
    const firstTicks = await Promise.all(nodes.map(({ agent }) => agent.tick(2)));
    await empty.agent.tick(2);
    for (const [n, ticked] of firstTicks.entries()) {
      if (ticked.head !== SUBJECTS) throw new Error(`${nodes[n]!.agent.name}: ledger head ${ticked.head} after one minute, expected ${SUBJECTS}`);
    }
    const generated = await generating;
    if (generated.head !== (BACKLOG_TICKS + 1) * SUBJECTS) throw new Error(`node-backlog: ledger head ${generated.head}, expected ${(BACKLOG_TICKS + 1) * SUBJECTS}`);
    const preparedS = (performance.now() - started) / 1000;
    console.log(`${AGENTS + 1} pushes, 2 ticks on every agent and ${BACKLOG_TICKS} more on the backlog node: ${fmt(preparedS)} s`);
    const statsAfterMinute = await Promise.all(nodes.map(({ agent }) => agent.stats()));
    const backlogStats = await backlogNode.agent.stats();
    const emptyStats = await empty.agent.stats();
    await empty.agent.close();
    const rss = statsAfterMinute.map((s) => s.rssBytes / MIB);
    const tickMs = [...firstTicks.map((t) => t.tickMs[1]!), ...generated.tickMs];
    figure('agent_rss_mib', median(rss), {
      subjects: SUBJECTS, max: round(Math.max(...rss), 1), peak_max: round(Math.max(...statsAfterMinute.map((s) => s.maxRssBytes)) / MIB, 1),
      heap_mib: round(median(statsAfterMinute.map((s) => s.heapUsedBytes)) / MIB, 1), empty_agent: round(emptyStats.rssBytes / MIB, 1),
      backlog_agent: round(backlogStats.rssBytes / MIB, 1), backlog_agent_ledger_rows: (BACKLOG_TICKS + 1) * SUBJECTS, runtime: AGENT_RUNTIME,
    });
    figure('agent_tick_ms', median(tickMs), { subjects: SUBJECTS, ticks: tickMs.length, max: round(Math.max(...tickMs), 0), note: 'concurrent with other agents on 2 cores' });

    for (const id of ENGINES) {
      const opened = await openEngine(id, dir);
      if (typeof opened === 'string') console.log(opened);
      else engines.push(opened);
    }

    const minute: { engine: EngineDbs; ingest: Measured<number>; pages: Measured<number>; floor: Measured<number>; same: boolean; profile: string[] }[] = [];
    const backlog: { engine: EngineDbs; pull: Measured<{ written: number; pages: number }> }[] = [];
    const minuteAgents = nodes.map(({ agent }) => agent);
    const minuteLinks = nodes.map(({ link }) => link);
    for (const engine of engines) {
      // 1. One minute of every node's ledger, and what it is compared with.
      await engine.ingest.raw('select 1');
      const ingest = await measure(engine, minuteAgents, async () => {
        const results = await Promise.all(minuteLinks.map((link) => ingestNode(engine.ingest, link, { pageSize: PAGE_SIZE })));
        return results.reduce((sum, result) => sum + result.written, 0);
      });
      if (ingest.value !== AGENTS * SUBJECTS) throw new Error(`${engine.label}: ingested ${ingest.value} entries, expected ${AGENTS * SUBJECTS}`);

      // The same pages, already in memory: the database side of ingestion alone.
      const pagesByNode = await Promise.all(minuteLinks.map((link) => fetchPages(link)));
      const pages = await measure(engine, null, async () => {
        const written = await Promise.all(pagesByNode.map(async (list, n) => {
          let sum = 0;
          for (const page of list) sum += (await ingestPage(engine.scratch, minuteLinks[n]!.node, page)).written;
          return sum;
        }));
        return written.reduce((a, b) => a + b, 0);
      });
      pagesByNode.length = 0;

      // The floor: the in-panel collector's store writing the same minute (after its baseline tick).
      await emptyUsage(engine.scratch);
      for (const [n, agent] of minuteAgents.entries()) await writeTick(engine.scratch, samplesOf(agent.name, n, SUBJECTS, 0, minuteOf(0)));
      const readings = minuteAgents.map((agent, n) => samplesOf(agent.name, n, SUBJECTS, 1, minuteOf(1)));
      const floor = await measure(engine, null, async () => {
        let rows = 0;
        for (const samples of readings) rows += (await writeTick(engine.scratch, samples)).usageRows;
        return rows;
      });
      readings.length = 0;
      const [ingested, stored] = [await usageTotals(engine.ingest), await usageTotals(engine.scratch)];
      const same = ingested === stored;
      if (!same) console.log(`${engine.label}: ingestion and the floor disagree: ${ingested} vs ${stored}`);

      let profile: string[] = [];
      if (PROFILE) {
        await emptyUsage(engine.scratch);
        profile = await profiled(() => Promise.all(minuteLinks.map((link) => ingestNode(engine.scratch, link, { pageSize: PAGE_SIZE }))), join(profileDir, `ingest-${engine.id}.cpuprofile`));
      }
      minute.push({ engine, ingest, pages, floor, same, profile });
      const entries = AGENTS * SUBJECTS;
      figure('ingest_minute_cpu_s', ingest.cpuMs / 1000, {
        engine: engine.id, agents: AGENTS, subjects: SUBJECTS, entries, page_size: PAGE_SIZE, target: TARGET_MINUTE_CPU_S,
        ratio_to_target: round(ingest.cpuMs / 1000 / TARGET_MINUTE_CPU_S, 2), wall_ms: round(ingest.wallMs, 0),
        db_server_cpu_s: ingest.serverCpuMs === null ? null : round(ingest.serverCpuMs / 1000), agents_cpu_s: round((ingest.agentsCpuMs ?? 0) / 1000),
        ratio_to_floor: round(ingest.cpuMs / floor.cpuMs, 2),
      });
      figure('ingest_pages_in_memory_cpu_s', pages.cpuMs / 1000, {
        engine: engine.id, entries, wall_ms: round(pages.wallMs, 0), db_server_cpu_s: pages.serverCpuMs === null ? null : round(pages.serverCpuMs / 1000),
        share_of_ingest: round(pages.cpuMs / ingest.cpuMs, 2),
      });
      figure('store_floor_cpu_s', floor.cpuMs / 1000, {
        engine: engine.id, entries: floor.value, wall_ms: round(floor.wallMs, 0), db_server_cpu_s: floor.serverCpuMs === null ? null : round(floor.serverCpuMs / 1000),
        same_totals: same ? 'yes' : 'no',
      });

      // 2. The backlog node's hour, from the panel's cursor: its first minute is in, then the panel was away.
      for (let after = 0; after < SUBJECTS;) {
        const page = await backlogNode.link.ledger(after, Math.min(PAGE_SIZE, SUBJECTS - after));
        after = (await ingestPage(engine.ingest, backlogNode.link.node, page)).cursor;
      }
      const pull = await measure(engine, [backlogNode.agent], async () => {
        const result = await ingestNode(engine.ingest, backlogNode.link, { pageSize: PAGE_SIZE });
        return { written: result.written, pages: result.pages };
      });
      if (pull.value.written !== BACKLOG_TICKS * SUBJECTS) throw new Error(`${engine.label}: the backlog pull wrote ${pull.value.written}, expected ${BACKLOG_TICKS * SUBJECTS}`);
      backlog.push({ engine, pull });
      figure('backlog_pull_s', pull.wallMs / 1000, {
        engine: engine.id, entries: pull.value.written, ticks: BACKLOG_TICKS, page_size: PAGE_SIZE, pages: pull.value.pages, target: TARGET_BACKLOG_S,
        ratio_to_target: round(pull.wallMs / 1000 / TARGET_BACKLOG_S, 2), entries_per_s: round(pull.value.written / (pull.wallMs / 1000), 0),
        cpu_s: round(pull.cpuMs / 1000), db_server_cpu_s: pull.serverCpuMs === null ? null : round(pull.serverCpuMs / 1000), agent_cpu_s: round((pull.agentsCpuMs ?? 0) / 1000),
      });
    }

    // Report.
    const server = (m: Measured<unknown>) => (m.serverCpuMs === null ? 'in process' : `${fmt(m.serverCpuMs / 1000)} s`);
    console.log(`\n### One minute of ledgers: ${AGENTS} agents × ${group(SUBJECTS)} subjects = ${group(AGENTS * SUBJECTS)} entries, page size ${group(PAGE_SIZE)}\n`);
    console.log(`| engine | ingestion over HTTP: panel CPU (target ≤ ${TARGET_MINUTE_CPU_S} s) | ratio to target | wall | DB server CPU | agents' CPU | same pages from memory (ingestPage only): CPU | floor: in-panel store (writeTick), same minute: CPU | ingestion / floor (CPU) | rows and sums equal |`);
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const { engine, ingest, pages, floor, same } of minute) {
      console.log(
        `| ${engine.label} | **${fmt(ingest.cpuMs / 1000)} s** | ${(ingest.cpuMs / 1000 / TARGET_MINUTE_CPU_S).toFixed(2)}× | ${fmt(ingest.wallMs / 1000)} s | ${server(ingest)} | ${fmt((ingest.agentsCpuMs ?? 0) / 1000)} s | ${fmt(pages.cpuMs / 1000)} s (wall ${fmt(pages.wallMs / 1000)} s, DB server ${server(pages)}) | ${fmt(floor.cpuMs / 1000)} s (wall ${fmt(floor.wallMs / 1000)} s, DB server ${server(floor)}) | ${(ingest.cpuMs / floor.cpuMs).toFixed(2)}× | ${same ? 'yes' : '**no**'} |`,
      );
    }
    for (const { engine, profile } of minute) for (const line of profile) console.log(`\n${engine.label} profile (an extra, unmeasured ingestion): ${line}`);
    if (PROFILE) console.log(`\n(profiles: ${profileDir})`);
    console.log(`\n### 1-hour backlog of one node: ${BACKLOG_TICKS} ticks × ${group(SUBJECTS)} = ${group(BACKLOG_TICKS * SUBJECTS)} entries from the cursor\n`);
    console.log(`| engine | pull wall time (target ≤ ${TARGET_BACKLOG_S} s) | ratio to target | entries/s | pages | panel CPU | DB server CPU | agent CPU |`);
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const { engine, pull } of backlog) {
      console.log(
        `| ${engine.label} | **${fmt(pull.wallMs / 1000)} s** | ${(pull.wallMs / 1000 / TARGET_BACKLOG_S).toFixed(2)}× | ${group(Math.round(pull.value.written / (pull.wallMs / 1000)))} | ${pull.value.pages} × ${group(PAGE_SIZE)} | ${fmt(pull.cpuMs / 1000)} s | ${server(pull)} | ${fmt((pull.agentsCpuMs ?? 0) / 1000)} s |`,
      );
    }
    console.log(`\n### Agent memory\n`);
    console.log(`RSS of an agent process (${AGENT_RUNTIME === 'tsx' ? 'tsx' : 'node, compiled'}) holding ${group(SUBJECTS)} subjects after its push and 2 ticks: median **${fmt(median(rss))} MiB** (max ${fmt(Math.max(...rss))}, peak ${fmt(Math.max(...statsAfterMinute.map((s) => s.maxRssBytes)) / MIB)} MiB, JS heap ${fmt(median(statsAfterMinute.map((s) => s.heapUsedBytes)) / MIB)} MiB); an agent holding nothing: ${fmt(emptyStats.rssBytes / MIB)} MiB; the backlog node after ${BACKLOG_TICKS + 2} ticks (${group((BACKLOG_TICKS + 1) * SUBJECTS)} ledger rows): ${fmt(backlogStats.rssBytes / MIB)} MiB.`);
    console.log(`Agent collector tick with ${group(SUBJECTS)} subjects (synthetic dump, deltas, ledger write; several agents at once on 2 cores): median ${fmt(median(tickMs))} ms over ${tickMs.length} ticks.`);
    console.log(`\nload average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; bench took ${fmt((performance.now() - benchStarted) / 1000)} s`);
  } finally {
    for (const link of links) link.close();
    await Promise.all(everyAgent.map((agent) => agent.close()));
    for (const engine of engines) await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
