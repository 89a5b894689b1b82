import client from 'prom-client';

import type { AgentCore } from './core.js';
import { PACKAGE_VERSION } from './version.js';

const { Registry, Gauge, Counter } = client;

/** Statuses always exported (0 when none), so a dashboard's series never vanish. */
const STATUSES = ['pending', 'applied', 'failed'] as const;

/**
 * The agent's Prometheus metrics, in a registry of its own (never prom-client's global one, which
 * a panel process may share): what it is, how far its ledger goes, its subjects by status, and
 * how its last collector tick went. Read at scrape time; nothing runs between scrapes.
 */
export function createAgentMetrics(core: AgentCore): client.Registry {
  const registry = new Registry();
  const started = Date.now();
  new Gauge({
    name: 'panel_bandwidth_agent_info',
    help: 'Always 1; the agent’s node, version and mode (local runs tc, recording is a dry run) as labels.',
    labelNames: ['node', 'version', 'mode'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.set({ node: core.node, version: PACKAGE_VERSION, mode: core.mode }, 1);
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_uptime_seconds',
    help: 'Seconds since the agent started.',
    registers: [registry],
    collect() {
      this.set((Date.now() - started) / 1000);
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_resident_memory_bytes',
    help: 'Resident set size of the agent’s process.',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_ledger_head',
    help: 'Highest sequence number the ledger has given (the panel’s cursor trails it).',
    registers: [registry],
    async collect() {
      this.set(await core.ledgerHead());
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_interfaces',
    help: 'Interfaces the agent holds a desired state for.',
    registers: [registry],
    async collect() {
      this.set((await core.interfaces()).length);
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_subjects',
    help: 'Subjects of the desired state by status (pending, applied, failed).',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const rows = (await core.db('bw_limits').select('status').count({ n: '*' }).groupBy('status')) as { status: string; n: number | string }[];
      for (const status of STATUSES) this.set({ status }, Number(rows.find((row) => row.status === status)?.n ?? 0));
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_collect_last_timestamp_seconds',
    help: 'When the last collector tick ended (epoch seconds); 0 before the first, and always in a dry run (it counts nothing).',
    registers: [registry],
    collect() {
      this.set((core.collector?.lastTick?.at ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_collect_last_duration_seconds',
    help: 'How long the last collector tick took (0 before the first).',
    registers: [registry],
    collect() {
      this.set((core.collector?.lastTick?.durationMs ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'panel_bandwidth_agent_collect_last_success_timestamp_seconds',
    help: 'When the last collector tick without error ended (epoch seconds); 0 before the first.',
    registers: [registry],
    collect() {
      this.set((core.collector?.lastSuccess ?? 0) / 1000);
    },
  });
  new Counter({
    name: 'panel_bandwidth_agent_collect_errors_total',
    help: 'Collector ticks that failed since the agent started.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(core.collector?.errorCount ?? 0);
    },
  });
  return registry;
}
