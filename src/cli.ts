#!/usr/bin/env node
/**
 * `panel-bandwidth <command>`: the plugin's command line. Every command but `agent` reads the same
 * `DATABASE_URL` as the host panel (default `sqlite:./data/panel.sqlite`); the agent keeps its own
 * state and parses its own flags (`src/nodes/agent/flags.ts`).
 */
import { parseArgs } from 'node:util';
import type { Knex } from 'knex';
import { connect } from './db/connect.js';
import { migrateDownAll, migrateLatest, pendingMigrations } from './db/migrate.js';
import { interfacesWithLimits, limitsOnInterface } from './db/limits.js';
import { desiredInterface } from './limits/desired.js';
import { networkCapsOfInterface } from './db/network-caps.js';
import { formatDoctor } from './shaping/doctor.js';
import type { Executor } from './shaping/executor.js';
import { LocalExecutor } from './shaping/local-executor.js';
import { formatOperations } from './shaping/operations.js';
import type { PlanCapabilities } from './shaping/plan.js';
import { probeCapabilities } from './shaping/probe.js';
import { printPlan, planFromKernel } from './shaping/reconcile.js';
import { dryRunExecutor, findTc } from './limits/executor-choice.js';
import { FileLocks, LOCK_DIRECTORY_ENV } from './shaping/file-lock.js';
import { setDefaultFileLocks } from './shaping/lock.js';
import { LimitsService } from './limits/service.js';
import { AgentCore } from './nodes/agent/core.js';
import { LocalLink } from './nodes/link.js';
import { NodeApplier } from './nodes/panel/applier.js';
import { ingestNode } from './nodes/panel/ingest.js';
import { LOCAL_STATE_ENV, localStatePath } from './nodes/panel/local-state.js';
import { runAgent } from './nodes/agent/run.js';

const USAGE = `Usage: panel-bandwidth <command> [options]

Commands:
  migrate            run the plugin's pending migrations
  migrate --status   list pending migrations
  migrate --down     run every plugin migration down (removes the plugin's tables and data)
  doctor             probe what the kernel offers (qdiscs, classifiers, IFB, WireGuard) and what
                     the planner will use, and why
  plan               print the tc commands that would bring each interface to the caps stored in
                     the database, without running them (--offline: from scratch, no kernel reads)
  collect            one tick of this machine's node: read every subject's byte counters into its
                     ledger, then ingest the ledger into the panel's tables (for a systemd timer);
                     the node's state is $${LOCAL_STATE_ENV}, else beside a SQLite
                     database, else /var/lib/panel-bandwidth/local-agent.sqlite
  reconcile          apply them on this machine's node: read the kernel, diff, change only what
                     differs, record statuses (--dry-run: read the kernel, print the commands
                     instead of running them, write nothing).
                     Holds each interface's lock file: waits for the panel, and the panel for it
  agent              run this node's agent (needs no panel database; its own flags:
                     panel-bandwidth agent --help)

Options:
  --database-url URL  database (default: $DATABASE_URL, else sqlite:./data/panel.sqlite)
  --offline           plan: do not read the kernel
  --dry-run           reconcile: change nothing
  --lock-dir DIR      reconcile: the interface lock files' directory; the panel's must be the same
                      (default: $${LOCK_DIRECTORY_ENV}, else /run/panel-bandwidth)
  --vm-source SOURCE  collect: VMs' bytes from sysfs (default) or vnstat
  --billing-bytes B   collect: peers billed by wire bytes (default: WireGuard's counters) or inner
                      (their tc class); use the panel's billing_bytes
  -h, --help          show this help`;

type Command = (db: Knex, flags: Record<string, string | boolean | undefined>) => Promise<number>;

const stderrLogger = {
  debug: () => {},
  info: () => {},
  warn: (message: string, fields?: Record<string, unknown>) => console.error(`warn: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`),
  error: (message: string, fields?: Record<string, unknown>) => console.error(`error: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`),
};

async function planCapabilities(executor: Executor, offline: boolean): Promise<PlanCapabilities> {
  if (offline) return { leaf: 'fq_codel' };
  const caps = await probeCapabilities(executor);
  return { leaf: caps.leaf };
}

const commands: Record<string, Command> = {
  async migrate(db, flags) {
    if (flags.status) {
      const pending = await pendingMigrations(db);
      console.log(pending.length === 0 ? 'up to date' : `pending:\n${pending.map((name) => `  ${name}`).join('\n')}`);
      return 0;
    }
    const names = flags.down ? await migrateDownAll(db) : await migrateLatest(db);
    console.log(names.length === 0 ? 'nothing to do' : `${flags.down ? 'reverted' : 'ran'}:\n${names.map((n) => `  ${n}`).join('\n')}`);
    return 0;
  },

  async doctor() {
    const caps = await probeCapabilities(new LocalExecutor());
    console.log(formatDoctor(caps));
    return caps.canShape ? 0 : 1;
  },

  async plan(db, flags) {
    const offline = Boolean(flags.offline);
    const executor = new LocalExecutor();
    const caps = await planCapabilities(executor, offline);
    const refs = await interfacesWithLimits(db);
    if (refs.length === 0) console.log('# no subjects in bw_limits: nothing to shape');
    for (const ref of refs) {
      const rows = await limitsOnInterface(db, ref.node, ref.interface, ref.netns);
      const desired = desiredInterface(ref, rows, await networkCapsOfInterface(db, ref, rows));
      const where = `${ref.interface}${ref.netns ? ` (netns ${ref.netns})` : ''}`;
      const text = offline ? printPlan(desired, caps) : formatOperations(await planFromKernel(desired, executor, caps));
      console.log(`# ${where}: ${desired.subjects.length} limited subject(s), leaf ${caps.leaf}`);
      console.log(text === '' ? '# in step with the kernel: nothing to do' : text);
    }
    return 0;
  },

  async collect(db, flags) {
    const vmSource = flags['vm-source'] ?? 'sysfs';
    if (vmSource !== 'sysfs' && vmSource !== 'vnstat') throw new Error(`Expected \`--vm-source\` to be sysfs or vnstat, got \`${String(vmSource)}\``);
    const billing = flags['billing-bytes'] ?? 'wire';
    if (billing !== 'wire' && billing !== 'inner') throw new Error(`Expected \`--billing-bytes\` to be wire or inner, got \`${String(billing)}\``);
    // The panel machine's node, as the panel runs it: one tick into its ledger, then the ledger into the panel's tables.
    const core = await AgentCore.open({ node: 'local', statePath: localStatePath(db, 'local'), executor: new LocalExecutor(), mode: 'local', logger: stderrLogger, vmSource, billing });
    try {
      const collected = await core.collect();
      const ingested = await ingestNode(db, new LocalLink(core), { logger: stderrLogger });
      const tick = collected?.tick;
      console.log(
        `collected ${tick?.samples ?? 0} series: ${tick?.deltas ?? 0} deltas, ${tick?.resets ?? 0} resets, ${tick?.discarded ?? 0} discarded, ` +
          `${tick?.usageRows ?? 0} ledger entries (head ${ingested.head}); ingested ${ingested.written}`,
      );
    } finally {
      await core.close();
    }
    return 0;
  },

  async reconcile(db, flags) {
    const dryRun = Boolean(flags['dry-run']);
    const executor: Executor = dryRun ? dryRunExecutor(findTc() ?? null) : new LocalExecutor();
    // The panel machine's node through its agent, as the panel does it; a dry run plans against the
    // real kernel in a throwaway state and records nothing in the database. Other nodes are
    // reconciled by their own agents and by the panel's connections to them.
    const core = await AgentCore.open({
      node: 'local',
      statePath: dryRun ? ':memory:' : localStatePath(db, 'local'),
      executor,
      mode: dryRun ? 'recording' : 'local',
      modeReason: dryRun ? 'reconcile --dry-run' : 'reconcile',
      logger: stderrLogger,
      ...(dryRun ? { dryRunCapabilities: await planCapabilities(executor, false).catch(() => ({ leaf: 'fq_codel' as const })) } : {}),
    });
    const local = new LocalLink(core);
    const nodeApplier = new NodeApplier({ db, link: (node) => (node === 'local' ? local : undefined), logger: stderrLogger, mode: core.mode, record: !dryRun });
    const applier = { mode: nodeApplier.mode, applyInterface: nodeApplier.applyInterface.bind(nodeApplier), removeInterface: nodeApplier.removeInterface.bind(nodeApplier), reconcileAll: () => nodeApplier.reconcileAll('local') };
    let outcomes;
    try {
      outcomes = dryRun ? await applier.reconcileAll() : await new LimitsService(db, applier, stderrLogger).reconcileAll('cli');
    } finally {
      await core.close();
    }
    let failed = 0;
    for (const outcome of outcomes) {
      if (outcome.status === 'failed') failed++;
      console.log(
        `${outcome.interface}${outcome.netns ? ` (netns ${outcome.netns})` : ''}: ${outcome.status}, ${outcome.operations.length} operation(s)${outcome.error ? ` — ${outcome.error}` : ''}`,
      );
      for (const line of outcome.operations) console.log(`  ${line}`);
    }
    if (outcomes.length === 0) console.log('no subjects of this machine in bw_limits: nothing to reconcile');
    return failed > 0 ? 1 : 0;
  },
};

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'agent') return runAgent(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'database-url': { type: 'string' },
        status: { type: 'boolean' },
        down: { type: 'boolean' },
        offline: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        'vm-source': { type: 'string' },
        'lock-dir': { type: 'string' },
        'billing-bytes': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [name, ...rest] = parsed.positionals;
  if (parsed.values.help || !name) {
    console.log(USAGE);
    return name || parsed.values.help ? 0 : 2;
  }
  const command = commands[name];
  if (!command || rest.length > 0) {
    console.error(`${command ? `Unexpected argument \`${rest[0]}\`` : `Unknown command \`${name}\``}\n\n${USAGE}`);
    return 2;
  }
  try {
    if (parsed.values['lock-dir'] !== undefined) setDefaultFileLocks(new FileLocks({ directory: parsed.values['lock-dir'] }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const db = connect(parsed.values['database-url'] ?? process.env.DATABASE_URL ?? 'sqlite:./data/panel.sqlite');
  try {
    return await command(db, parsed.values);
  } catch (error) {
    console.error(`panel-bandwidth ${name}: ${(error as Error).message}`);
    return 1;
  } finally {
    await db.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli.ts') || process.argv[1]?.endsWith('/panel-bandwidth')) {
  process.exitCode = await main(process.argv.slice(2));
}
