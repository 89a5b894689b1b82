/**
 * One agent of `bench/nodes.ts`, in its own process so the panel's CPU time is the panel's alone:
 * a real {@link AgentCore} (recording mode, a SQLite state file) behind the real agent HTTP server,
 * counting a synthetic source through the real Collector (see nodes-source.ts).
 *
 * argv: node-index node-name state-path token subjects t0-ms. Talks to the parent over IPC:
 * `{ id, cmd: 'tick', count }` → `{ id, head, tickMs[] }`; `{ id, cmd: 'stats' }` → memory and CPU;
 * `{ id, cmd: 'close' }` → closes the server and the state, then exits.
 */
import { Collector } from '../src/accounting/collector.js';
import { RecordingExecutor } from '../src/shaping/recording-executor.js';
import { AgentCore } from '../src/nodes/agent/core.js';
import { createAgentServer } from '../src/nodes/agent/server.js';
import type { Logger } from '../src/plugin-api.js';
import { BOOT_ID, syntheticExecutor, TICK_MS } from './nodes-source.js';

export interface AgentStats {
  rssBytes: number;
  maxRssBytes: number;
  heapUsedBytes: number;
  cpuUserUs: number;
  cpuSystemUs: number;
}

export type AgentReply =
  | { id: number; head: number; tickMs: number[] }
  | { id: number; stats: AgentStats }
  | { id: number; closed: true }
  | { id: number; error: string };

const [nodeArg, name, statePath, token, subjectsArg, t0Arg] = process.argv.slice(2);
const node = Number(nodeArg);
const subjects = Number(subjectsArg);
const t0 = Number(t0Arg);
if (!name || !statePath || !token || !Number.isInteger(node) || !Number.isInteger(subjects) || !Number.isFinite(t0)) {
  throw new TypeError(`usage: nodes-agent.ts node-index node-name state-path token subjects t0-ms, got ${JSON.stringify(process.argv.slice(2))}`);
}

const quiet: Logger = {
  debug: () => {},
  info: () => {},
  warn: (message, fields) => console.error(`agent ${name}: warn: ${message} ${JSON.stringify(fields ?? {})}`),
  error: (message, fields) => console.error(`agent ${name}: error: ${message} ${JSON.stringify(fields ?? {})}`),
};

let tick = -1;
const clock = () => t0 + Math.max(tick, 0) * TICK_MS;
const core = await AgentCore.open({ node: name, statePath, executor: new RecordingExecutor({ history: 'latest' }), mode: 'recording', logger: quiet });
// A dry-run core has no collector: the synthetic source gets the real one, on the core's own state.
const collector = new Collector({
  db: core.db,
  executor: syntheticExecutor(node, subjects, () => tick),
  logger: quiet,
  now: clock,
  bootId: async () => BOOT_ID,
  retention: { rawDays: 30, hourlyDays: 30, dailyDays: 30 },
});
const server = createAgentServer({ core, token, logger: quiet });
const bound = await server.listen('127.0.0.1', 0);

async function handle(message: { id: number; cmd: string; count?: number }): Promise<AgentReply> {
  switch (message.cmd) {
    case 'tick': {
      const tickMs: number[] = [];
      for (let i = 0; i < (message.count ?? 1); i++) {
        tick++;
        const started = performance.now();
        await collector.tick();
        tickMs.push(performance.now() - started);
      }
      return { id: message.id, head: await core.ledgerHead(), tickMs };
    }
    case 'stats': {
      const memory = process.memoryUsage();
      const cpu = process.cpuUsage();
      return {
        id: message.id,
        stats: { rssBytes: memory.rss, maxRssBytes: process.resourceUsage().maxRSS * 1024, heapUsedBytes: memory.heapUsed, cpuUserUs: cpu.user, cpuSystemUs: cpu.system },
      };
    }
    case 'close':
      await server.close();
      await core.close();
      return { id: message.id, closed: true };
    default:
      return { id: message.id, error: `unknown command ${message.cmd}` };
  }
}

process.on('message', (message: { id: number; cmd: string; count?: number }) => {
  handle(message)
    .catch((error: unknown) => ({ id: message.id, error: (error as Error).stack ?? String(error) }))
    .then((reply) => {
      process.send?.(reply);
      if ('closed' in reply) process.disconnect();
    });
});
// The parent's end of the channel closing means the bench is over (also when it failed).
process.on('disconnect', () => {
  void server.close().then(() => core.close()).finally(() => process.exit(0));
});
process.send?.({ ready: true, port: bound.port });
