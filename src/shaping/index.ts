/**
 * The shaping engine: per-subject upload/download caps in the kernel with tc (HTB + u32 hash tables,
 * IFB for ingress). Pure planner, thin executor shell. See docs/shaping.md.
 */
export type { ActualInterface, ActualTree } from './actual.js';
export { emptyActual } from './actual.js';
export { formatPrefix, parseCidr, type Prefix } from './addresses.js';
export { isAssignableClassMinor, MAX_CLASS_MINOR, nextClassMinor, RESERVED_CLASS_MINORS, ClassMinorsExhaustedError } from './class-ids.js';
export { capOn, directionOf, placementOf, type Direction, type MatchKey, type TreeSide } from './directions.js';
export { formatDoctor } from './doctor.js';
export { isNoSuchDevice, KernelError, type KernelErrorDetails } from './errors.js';
export type { Executor, RunOptions, RunResult } from './executor.js';
export { ifbNameFor, isEngineIfbName } from './ifb-name.js';
export { leafArgs, PFIFO_LIMIT_PACKETS, type LeafKind } from './leaf.js';
export { LocalExecutor, type LocalExecutorOptions } from './local-executor.js';
export { interfaceLockKey, interfaceLocks, KeyedMutex } from './lock.js';
export {
  desiredInterfaceSchema,
  DesiredStateError,
  parseDesiredInterface,
  type DesiredInterface,
  type DesiredSubject,
  type InterfaceKind,
  type SubjectType,
} from './model.js';
export { commandLine, formatOperations, type Operation, type Tool } from './operations.js';
export { parseClassText, parseTcRate, parseTcSize, TcParseError, type ClassCounters, type TcClass } from './parse-class-text.js';
export { parseFilterJson, type TcFilter, type U32Key } from './parse-filter-json.js';
export { parseQdiscJson, type TcQdisc } from './parse-qdisc-json.js';
export { planInterface, PlanError, type PlanCapabilities } from './plan.js';
export { probeCapabilities, type Capabilities, type ProbeOptions } from './probe.js';
export { burstBytes, quantumBytes, UNLIMITED_KBPS } from './rates.js';
export { changeSubjectRate, type RateChangeResult } from './rate-change.js';
export { readActual, readTree } from './read.js';
export {
  planFromKernel,
  printPlan,
  reconcileInterface,
  removeInterface,
  type ReconcileOptions,
  type ReconcileResult,
} from './reconcile.js';
export { RecordingExecutor, type CannedResponse, type RecordedCall, type RecordingExecutorOptions } from './recording-executor.js';
