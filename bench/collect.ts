/**
 * `npm run bench:collect`: one collector tick with 10,000 subjects — a synthetic `wg show dump`
 * through the real parser, the delta engine and the store — on SQLite and MariaDB: wall time, rows
 * written, peak RSS; then the 30-day totals query for 10,000 subjects over 30 days of hourly (and
 * daily) roll-ups. Prints a Markdown table for docs/performance.md.
 *
 * BENCH_SUBJECTS (default 10000), BENCH_DAYS (default 30), BENCH_MYSQL_URL (default the test
 * server; `skip` to leave MariaDB out).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWgDump } from '../src/accounting/wg-dump.js';
import { writeTick } from '../src/accounting/store.js';
import { totalsBySubject } from '../src/accounting/queries.js';
import type { Sample } from '../src/accounting/sample.js';
import { DAY, freshDatabase, keyOf, median, seedPeers, seedRollups } from './support.js';

const SUBJECTS = Number(process.env.BENCH_SUBJECTS ?? 10_000);
const DAYS = Number(process.env.BENCH_DAYS ?? 30);
const BOOT = '00000000-0000-4000-8000-00000000b007';

function dump(round: number): string {
  const lines = [`${keyOf(0)}\t${keyOf(0)}\t51820\toff`];
  for (let i = 1; i <= SUBJECTS; i++) {
    lines.push(`${keyOf(i)}\t(none)\t10.250.0.2:51821\t10.0.0.${i % 250}/32\t1795300000\t${round * (1000 + i) * 7_919}\t${round * (2000 + i) * 104_729}\toff`);
  }
  return lines.join('\n');
}

function samplesFrom(text: string, at: number, ids: Map<string, string>): Sample[] {
  return parseWgDump(text).peers.map((peer) => ({
    identity: { node: 'local', source: 'wireguard', interface: 'wg0', seriesKey: peer.publicKey, ifindex: 7, bootId: BOOT },
    subjectType: 'peer',
    subjectId: ids.get(peer.publicKey) ?? null,
    rxBytes: peer.rxBytes,
    txBytes: peer.txBytes,
    rxPackets: null,
    txPackets: null,
    at,
  }));
}

async function benchEngine(name: string, url: string) {
  const db = await freshDatabase(url);
  const now = Date.now();
  await seedPeers(db, SUBJECTS, now);
  const ids = new Map(Array.from({ length: SUBJECTS }, (_, i) => [keyOf(i + 1), String(i + 1)]));
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const probe = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const first = performance.now();
  await writeTick(db, samplesFrom(dump(1), now - 60_000, ids));
  const firstMs = performance.now() - first;
  const started = performance.now();
  const text = dump(2);
  const parsed = samplesFrom(text, now, ids);
  const parseMs = performance.now() - started;
  const result = await writeTick(db, parsed);
  const tickMs = performance.now() - started;
  clearInterval(probe);
  peak = Math.max(peak, process.memoryUsage().rss);

  // The tick's own roll-up rows make way for the seeded month.
  await db('bw_usage_hourly').delete();
  await db('bw_usage_daily').delete();
  const seeded = await seedRollups(db, SUBJECTS, DAYS, now);
  const times: number[] = [];
  let subjects = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const totals = await totalsBySubject(db, now - 30 * DAY, now, { subjectType: 'peer' });
    times.push(performance.now() - t0);
    subjects = totals.size;
  }
  await db.destroy();
  return {
    name, firstMs, parseMs, tickMs, rows: result.usageRows * 3 + SUBJECTS, usageRows: result.usageRows,
    peakMb: peak / 1048576, deltaMb: (peak - rssBefore) / 1048576, seeded, totalsMs: median(times), subjects,
  };
}

const engines: [string, string][] = [['SQLite', `sqlite:${join(mkdtempSync(join(tmpdir(), 'pbw-bench-')), 'bench.sqlite')}`]];
const mysql = process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
if (mysql !== 'skip') engines.push(['MariaDB', mysql]);
console.log(`| engine | first tick (baseline) | tick: parse + deltas + store | of which parse | rows written | peak RSS (Δ during tick) | 30-day totals, ${SUBJECTS} subjects (median of 5) | roll-up rows |`);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [name, url] of engines) {
  const r = await benchEngine(name, url);
  console.log(
    `| ${r.name} | ${r.firstMs.toFixed(0)} ms | **${r.tickMs.toFixed(0)} ms** | ${r.parseMs.toFixed(0)} ms | ${r.rows} (${r.usageRows} usage, ${r.usageRows} hourly, ${r.usageRows} daily, ${SUBJECTS} counters) | ${r.peakMb.toFixed(0)} MB (+${r.deltaMb.toFixed(0)}) | **${r.totalsMs.toFixed(0)} ms** (${r.subjects} subjects) | ${r.seeded} |`,
  );
}
