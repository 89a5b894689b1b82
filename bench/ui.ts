/**
 * `npm run bench:ui`: (1) server time of the overview's first page with 10,000 subjects and 30 days
 * of roll-ups, on SQLite and MariaDB, through the real panel and plugin (HTTP on loopback);
 * (2) CPU of the serving process for the live-rates stream with 100 clients and 1,000 subjects at
 * 1 Hz (clients run in a child process, so only the server's CPU is counted).
 *
 * BENCH_SUBJECTS (default 10000), BENCH_MYSQL_URL (default the test server; `skip` leaves it out).
 */
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import express from 'express';
import request from 'supertest';
import { createPanel } from '../examples/host-panel/src/app.js';
import { REPO_ROOT } from '../examples/host-panel/src/config.js';
import { LiveRates } from '../src/live/live-rates.js';
import { RateStream } from '../src/live/rate-stream.js';
import type { Sample } from '../src/accounting/sample.js';
import { freshDatabase, median, seedPeers, seedRollups } from './support.js';

const SUBJECTS = Number(process.env.BENCH_SUBJECTS ?? 10_000);

async function overview(name: string, url: string) {
  const db = await freshDatabase(url);
  // The seeded month and the pages share this clock: every run reads the same 30 days of rows.
  const now = Date.now();
  await seedPeers(db, SUBJECTS, now);
  const rollupRows = await seedRollups(db, SUBJECTS, 30, now, 2);
  await db.destroy();
  const panel = await createPanel(
    {
      port: 0, host: '127.0.0.1', databaseUrl: url, apiToken: 'bench-token-0123456789', adminUser: 'admin', adminPassword: 'bench',
      sessionSecret: 'bench', demo: false, pluginDirs: [REPO_ROOT], pluginOptions: { bandwidth: { executor: 'recording', reconcile_interval_s: 86400, now: () => now } },
    },
    { logLevel: 'silent' },
  );
  try {
    const agent = request.agent(panel.app);
    const login = await agent.get('/login');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(login.text)?.[1] ?? '';
    await agent.post('/login').type('form').send({ _csrf: csrf, username: 'admin', password: 'bench', next: '/admin' });
    const time = async (path: string, runs: number) => {
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        const response = await agent.get(path);
        times.push(performance.now() - t0);
        if (response.status !== 200) throw new Error(`${path}: ${response.status}`);
      }
      return median(times);
    };
    await time('/admin/bandwidth', 2); // warm up
    return {
      name,
      rollupRows,
      byName: await time('/admin/bandwidth', 10),
      by24h: await time('/admin/bandwidth?sort=usage_24h&order=desc', 5),
      search: await time('/admin/bandwidth?q=peer-0999', 10),
      page100: await time('/admin/bandwidth?page=100', 10),
    };
  } finally {
    await panel.close();
  }
}

async function sse(clients: number, subjects: number, seconds: number) {
  let round = 0;
  const samples = (): Sample[] => {
    round++;
    const at = Date.now();
    return Array.from({ length: subjects }, (_, i) => ({
      identity: { node: 'local', source: 'wireguard', interface: 'wg0', seriesKey: `k${i}`, ifindex: 3, bootId: 'b' },
      subjectType: 'peer', subjectId: String(i + 1),
      rxBytes: BigInt(round * (i + 1) * 1250), txBytes: BigInt(round * (i + 1) * 12_500), rxPackets: null, txPackets: null, at,
    }));
  };
  const live = new LiveRates(async () => samples());
  const stream = new RateStream({ sample: () => live.next(), logger: { debug() {}, info() {}, warn() {}, error() {} } });
  const app = express();
  app.get('/events', (req, res) => stream.attach(req, res));
  const server: Server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const script = `
    const http = require('node:http');
    let bytes = 0, frames = 0;
    for (let i = 0; i < ${clients}; i++) http.get('http://127.0.0.1:${port}/events', (res) => res.on('data', (c) => { bytes += c.length; frames += (c.toString().match(/event: rates/g) || []).length; }));
    setTimeout(() => { console.log(JSON.stringify({ bytes, frames })); process.exit(0); }, ${(seconds + 2) * 1000});`;
  const child = execa(process.execPath, ['-e', script], { timeout: (seconds + 20) * 1000 });
  await new Promise((resolve) => setTimeout(resolve, 2000)); // clients connected, sampling running
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  const { stdout } = await child;
  stream.close();
  server.close();
  const received = JSON.parse(stdout) as { bytes: number; frames: number };
  return { listeners: clients, cpuPercent: ((cpu.user + cpu.system) / 1000 / wall) * 100, ...received };
}

const engines: [string, string][] = [['SQLite', `sqlite:${join(mkdtempSync(join(tmpdir(), 'pbw-bench-ui-')), 'ui.sqlite')}`]];
const mysql = process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
if (mysql !== 'skip') engines.push(['MariaDB', mysql]);
console.log(`Overview, ${SUBJECTS} subjects, 30 days of daily + 48 h of hourly roll-ups (median server time over loopback HTTP):\n`);
console.log('| engine | roll-up rows | first page, by name | sorted by 24 h usage | search | page 100 |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [name, url] of engines) {
  const r = await overview(name, url);
  console.log(`| ${r.name} | ${r.rollupRows} | **${r.byName.toFixed(0)} ms** | ${r.by24h.toFixed(0)} ms | ${r.search.toFixed(0)} ms | ${r.page100.toFixed(0)} ms |`);
}
const s = await sse(100, 1000, 10);
console.log(`\nSSE: ${s.listeners} clients × 1,000 subjects at 1 Hz for 10 s: server CPU **${s.cpuPercent.toFixed(1)}%** of one core; ${s.frames} frames, ${(s.bytes / 1048576).toFixed(1)} MiB delivered.`);
