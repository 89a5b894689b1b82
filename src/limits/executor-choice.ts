import { accessSync, constants, readFileSync } from 'node:fs';
import { LocalExecutor } from '../shaping/local-executor.js';
import { RecordingExecutor } from '../shaping/recording-executor.js';
import type { Executor } from '../shaping/executor.js';

export type ExecutorSetting = 'auto' | 'local' | 'recording';

export interface ExecutorChoice {
  executor: Executor;
  mode: 'local' | 'recording';
  /** Why this executor: shown on the admin page and logged at start. */
  reason: string;
}

/** Whether a capability bit is in the effective set (linux/capability.h numbering). */
function hasCapability(bit: bigint, status: string): boolean {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return match?.[1] !== undefined && ((BigInt(`0x${match[1]}`) >> bit) & 1n) === 1n;
}

/** CAP_NET_ADMIN (bit 12): change qdiscs, classes, filters and links. */
export function hasNetAdmin(status = readProcStatus()): boolean {
  return hasCapability(12n, status);
}

/** CAP_SYS_ADMIN (bit 21): `tc -n`/`ip netns exec` enter other network namespaces. */
export function hasSysAdmin(status = readProcStatus()): boolean {
  return hasCapability(21n, status);
}

function readProcStatus(): string {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return '';
  }
}

/** Where `tc` is: on PATH, else in `/usr/sbin` or `/sbin` (a user's PATH often lacks them). */
export function findTc(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    try {
      accessSync(`${dir}/tc`, constants.X_OK);
      return `${dir}/tc`;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A dry run's executor. It keeps only the latest plan of each interface (a panel reconciles every
 * minute for months), and given the `tc` to run it plans against what the kernel has now:
 * iproute2's reads (`tc -j qdisc show`, `ip -j link show`) need no CAP_NET_ADMIN, only changes do.
 * @param tc - the tc program for reads (see {@link findTc}); `null`: hermetic, every read answers empty.
 */
export function dryRunExecutor(tc: string | null): RecordingExecutor {
  if (tc === null) return new RecordingExecutor({ history: 'latest' });
  const local = new LocalExecutor();
  const reads: Executor = {
    // A user's PATH often lacks /usr/sbin, where tc lives: run the one found. A namespace needs
    // CAP_SYS_ADMIN to enter, so there the read fails whichever tc runs and the plan starts empty.
    run: (argv, options = {}) => local.run(argv[0] === 'tc' && options.netns === undefined ? [tc, ...argv.slice(1)] : argv, options),
    batch: () => Promise.reject(new TypeError('a dry run reads the kernel but never changes it')),
  };
  return new RecordingExecutor({ history: 'latest', reads });
}

/**
 * Picks the executor: `local` runs tc for real, `recording` runs nothing (a dry run that records
 * the plan, hermetic: reads answer empty). `auto` is local when this process may change the kernel
 * (CAP_NET_ADMIN and tc found); without CAP_NET_ADMIN it is a dry run that reads the real kernel.
 */
export function chooseExecutor(
  setting: ExecutorSetting,
  probe: { netAdmin: boolean; tc: string | undefined; sysAdmin?: boolean } = { netAdmin: hasNetAdmin(), sysAdmin: hasSysAdmin(), tc: findTc() },
): ExecutorChoice {
  if (setting === 'recording') {
    return { executor: dryRunExecutor(null), mode: 'recording', reason: 'the `executor` option is `recording` (dry run)' };
  }
  if (setting === 'local') return { executor: new LocalExecutor(), mode: 'local', reason: 'the `executor` option is `local`' };
  if (!probe.netAdmin) {
    return {
      executor: dryRunExecutor(probe.tc ?? null),
      mode: 'recording',
      reason: 'this process lacks CAP_NET_ADMIN (run the panel as root or grant the capability), so caps are recorded but not applied',
    };
  }
  if (!probe.tc) {
    return { executor: dryRunExecutor(null), mode: 'recording', reason: '`tc` (iproute2) was not found on PATH, so caps are recorded but not applied' };
  }
  const namespaces = probe.sysAdmin === false ? '; without CAP_SYS_ADMIN, interfaces inside network namespaces will fail' : '';
  return { executor: new LocalExecutor(), mode: 'local', reason: `running with CAP_NET_ADMIN; tc at ${probe.tc}${namespaces}` };
}
