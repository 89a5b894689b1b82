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

function findTc(): string | undefined {
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
 * Picks the executor: `local` runs tc for real, `recording` runs nothing (a dry run that records
 * the plan). `auto` is local when this process may change the kernel (CAP_NET_ADMIN and tc found).
 */
export function chooseExecutor(
  setting: ExecutorSetting,
  probe: { netAdmin: boolean; tc: string | undefined; sysAdmin?: boolean } = { netAdmin: hasNetAdmin(), sysAdmin: hasSysAdmin(), tc: findTc() },
): ExecutorChoice {
  if (setting === 'recording') {
    return { executor: new RecordingExecutor(), mode: 'recording', reason: 'the `executor` option is `recording` (dry run)' };
  }
  if (setting === 'local') return { executor: new LocalExecutor(), mode: 'local', reason: 'the `executor` option is `local`' };
  if (!probe.netAdmin) {
    return {
      executor: new RecordingExecutor(),
      mode: 'recording',
      reason: 'this process lacks CAP_NET_ADMIN (run the panel as root or grant the capability), so caps are recorded but not applied',
    };
  }
  if (!probe.tc) {
    return { executor: new RecordingExecutor(), mode: 'recording', reason: '`tc` (iproute2) was not found on PATH, so caps are recorded but not applied' };
  }
  const namespaces = probe.sysAdmin === false ? '; without CAP_SYS_ADMIN, interfaces inside network namespaces will fail' : '';
  return { executor: new LocalExecutor(), mode: 'local', reason: `running with CAP_NET_ADMIN; tc at ${probe.tc}${namespaces}` };
}
