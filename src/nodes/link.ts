/**
 * How the panel talks to one node's agent. The panel's own machine is a node like any other: its
 * agent runs in the panel's process and is reached through {@link LocalLink}; a remote agent
 * through RemoteLink (HTTP). Both answer the same calls, so shaping, accounting and live rates
 * have one code path whatever the node.
 */
import type { AgentCore } from './agent/core.js';
import type { InterfaceReport, InterfaceState, LedgerPage, NodeHealth, NodeRates } from './protocol.js';

/** An interface whose state an agent holds. */
export interface HeldInterface {
  interface: string;
  netns: string | null;
  kind: 'wireguard' | 'vm';
  version: number;
}

/** An event a node sends on its stream: the ledger's head moved, or a heartbeat (liveness only). */
export type NodeEvent = { type: 'ledger'; head: number } | { type: 'heartbeat' };

/** Thrown when a node cannot be reached (refused, timed out, TLS refused, 5xx): the call may be retried. */
export class NodeUnreachableError extends Error {
  override name = 'NodeUnreachableError';
  constructor(
    readonly node: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Thrown when a node answered but refused the call (4xx): retrying the same call will not help. */
export class NodeRefusedError extends Error {
  override name = 'NodeRefusedError';
  constructor(
    readonly node: string,
    readonly status: number,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

export interface NodeLink {
  readonly node: string;
  /** `local`: the agent runs in this process. */
  readonly kind: 'local' | 'remote';
  health(): Promise<NodeHealth>;
  putInterface(name: string, state: InterfaceState): Promise<InterfaceReport>;
  deleteInterface(name: string, netns: string | null): Promise<InterfaceReport>;
  ledger(after: number, limit: number): Promise<LedgerPage>;
  /** Every interface the agent holds a state for (version 0: made by a job, not by a panel). */
  interfaces(): Promise<HeldInterface[]>;
  /** Rates of the node's last collector tick. */
  tickRates(): Promise<NodeRates>;
  /** Rates since the previous call (a live page asks once a second). */
  liveRates(): Promise<NodeRates>;
  /**
   * Follows the node's event stream until `signal` aborts or the stream breaks (then it rejects with
   * {@link NodeUnreachableError}); every event, heartbeats included, goes to `onEvent`.
   */
  follow(onEvent: (event: NodeEvent) => void, signal: AbortSignal): Promise<void>;
}

/** The panel machine's node: an {@link AgentCore} in this process. */
export class LocalLink implements NodeLink {
  readonly kind = 'local' as const;

  constructor(readonly core: AgentCore) {}

  get node(): string {
    return this.core.node;
  }

  health(): Promise<NodeHealth> {
    return this.core.health();
  }

  putInterface(name: string, state: InterfaceState): Promise<InterfaceReport> {
    return this.core.putInterface(name, state);
  }

  deleteInterface(name: string, netns: string | null): Promise<InterfaceReport> {
    return this.core.deleteInterface(name, netns);
  }

  ledger(after: number, limit: number): Promise<LedgerPage> {
    return this.core.ledger(after, limit);
  }

  interfaces(): Promise<HeldInterface[]> {
    return this.core.interfaces();
  }

  tickRates(): Promise<NodeRates> {
    return Promise.resolve(this.core.tickRates());
  }

  liveRates(): Promise<NodeRates> {
    return this.core.liveRates();
  }

  follow(onEvent: (event: NodeEvent) => void, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const listener = (event: { head: number }) => onEvent({ type: 'ledger', head: event.head });
      this.core.on('ledger', listener);
      const stop = () => {
        this.core.off('ledger', listener);
        resolve();
      };
      if (signal.aborted) stop();
      else signal.addEventListener('abort', stop, { once: true });
    });
  }
}
