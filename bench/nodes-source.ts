/**
 * The synthetic counter source of `bench/nodes.ts`: one WireGuard interface per node with N peers
 * whose counters grow by a fixed, per-peer amount every minute. The agent reads it through its real
 * Collector (an {@link Executor} that answers `wg show … dump` and the interface's sysfs counters),
 * and the panel-side floor builds the very same readings as {@link Sample}s, so both sides count the
 * same bytes in the same minutes.
 */
import type { Sample } from '../src/accounting/sample.js';
import type { InterfaceState, NodeSubject } from '../src/nodes/protocol.js';
import type { Executor, RunOptions, RunResult } from '../src/shaping/executor.js';

/** A WireGuard-shaped public key for subject n: the same as bench/support.ts, without loading the database helpers into agents. */
export function keyOf(n: number): string {
  return `${Buffer.from(`peer-${n}`.padEnd(31, '.')).toString('base64').slice(0, 42)}A=`;
}

export const INTERFACE = 'wg0';
/** A namespace, so the Collector reads sysfs through the executor instead of this machine's /sys. */
export const NETNS = 'pbwbench';
export const TICK_MS = 60_000;
const IFINDEX = 7;
const BOOT_ID = '00000000-0000-4000-8000-0000000b0de5';

/** Subject ids of different nodes never meet: node n holds n·100,000 + 1 … */
export const globalId = (node: number, i: number): number => node * 100_000 + i + 1;

/** Peer `g`'s host counters at tick `k` (tick 0 is the baseline): up to ~170 Mbit/s, far below the delta ceiling. */
export function countersOf(g: number, k: number): { rx: bigint; tx: bigint } {
  const times = BigInt(k + 1);
  return { rx: times * BigInt(1000 + (g % 10_007)) * 7919n, tx: times * BigInt(2000 + (g % 10_007)) * 104_729n };
}

/** The desired state the panel pushes: every peer with an address, two of three capped. */
export function interfaceState(node: number, subjects: number): InterfaceState {
  return {
    version: 1,
    kind: 'wireguard',
    netns: NETNS,
    subjects: Array.from({ length: subjects }, (_, i): NodeSubject => {
      const g = globalId(node, i);
      const capped = i % 3 !== 0;
      return {
        type: 'peer',
        id: String(g),
        name: `peer-${g}`,
        classMinor: capped ? i + 2 : null,
        addresses: [`10.${node}.${(i >> 8) & 255}.${i & 255}/32`],
        publicKey: keyOf(g),
        upKbps: capped ? 1000 + (i % 50) * 100 : 0,
        downKbps: capped ? 5000 + (i % 50) * 500 : 0,
      };
    }),
  };
}

/** `wg show wg0 dump` at tick `k`. */
export function wgDump(node: number, subjects: number, k: number): string {
  const lines = [`${keyOf(0)}\t${keyOf(0)}\t51820\toff`];
  for (let i = 0; i < subjects; i++) {
    const g = globalId(node, i);
    const { rx, tx } = countersOf(g, k);
    lines.push(`${keyOf(g)}\t(none)\t10.250.0.2:51821\t10.${node}.${(i >> 8) & 255}.${i & 255}/32\t1795300000\t${rx}\t${tx}\toff`);
  }
  return lines.join('\n');
}

/** The same readings as the in-panel collector would have stored them for node `name` (the floor). */
export function samplesOf(name: string, node: number, subjects: number, k: number, at: number): Sample[] {
  return Array.from({ length: subjects }, (_, i) => {
    const g = globalId(node, i);
    const { rx, tx } = countersOf(g, k);
    return {
      identity: { node: name, source: 'wireguard', interface: INTERFACE, seriesKey: keyOf(g), ifindex: IFINDEX, bootId: BOOT_ID },
      subjectType: 'peer',
      subjectId: String(g),
      rxBytes: rx,
      txBytes: tx,
      rxPackets: null,
      txPackets: null,
      at,
    };
  });
}

/**
 * The kernel as the agent's Collector sees it, at the tick `tick()` returns. The node is a dry run
 * (recording mode), so there are no HTB classes: `tc -s class show` prints nothing.
 */
export function syntheticExecutor(node: number, subjects: number, tick: () => number): Executor {
  const answer = (stdout: string): Promise<RunResult> => Promise.resolve({ stdout, stderr: '' });
  return {
    run(argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
      const [program, ...args] = argv;
      if (program === 'wg' && args[0] === 'show' && args[1] === INTERFACE && args[2] === 'dump') return answer(wgDump(node, subjects, tick()));
      if (program === 'cat' && args.every((path) => path.startsWith(`/sys/class/net/${INTERFACE}/`))) {
        return answer(`${IFINDEX}\n${1000 * (tick() + 1)}\n${2000 * (tick() + 1)}\n${tick() + 1}\n${tick() + 1}\n`);
      }
      if (program === 'tc' && args.includes('class')) return answer('');
      return Promise.reject(new TypeError(`the synthetic source does not answer \`${argv.join(' ')}\``));
    },
    batch: () => Promise.reject(new TypeError('the synthetic source changes nothing')),
  };
}

export { BOOT_ID };
