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

/** CAP_NET_ADMIN is bit 12 of the effective capability set (linux/capability.h). */
export function hasNetAdmin(status = readProcStatus()): boolean {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return match?.[1] !== undefined && ((BigInt(`0x${match[1]}`) >> 12n) & 1n) === 1n;
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
export function chooseExecutor(setting: ExecutorSetting, probe = { netAdmin: hasNetAdmin(), tc: findTc() }): ExecutorChoice {
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
  return { executor: new LocalExecutor(), mode: 'local', reason: `running with CAP_NET_ADMIN; tc at ${probe.tc}` };
}
