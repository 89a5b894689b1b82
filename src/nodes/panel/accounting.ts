/**
 * Accounting as the panel sees it across its nodes: it pulls each node's ledger into the usage
 * tables (exactly once, see ingest.ts), keeps each node's rates of its last tick for pages, the
 * API and metrics, and asks the nodes for per-second rates while a live page listens.
 */
import type { Knex } from 'knex';

import type { CollectorView, Rate } from '../../accounting/collector.js';
import type { RateMap } from '../../live/live-rates.js';
import type { Logger } from '../../plugin-api.js';
import { KeyedMutex } from '../../shaping/lock.js';
import type { AgentCore } from '../agent/core.js';
import type { NodeLink } from '../link.js';
import { ingestNode, type IngestResult } from './ingest.js';

export interface NodeAccountingOptions {
  db: Knex;
  /** The panel machine's own agent (its collector's health is the panel's tick health). */
  local: AgentCore;
  /** The link to a node (undefined: not registered, disabled). */
  link: (node: string) => NodeLink | undefined;
  /** Every node whose live rates a page shows. */
  nodes: () => string[];
  logger: Logger;
  now?: () => number;
  /** Ledger entries per request. @default 5000 */
  pageSize?: number;
}

export class NodeAccounting implements CollectorView {
  private readonly pulls = new KeyedMutex({ fileLocks: null });
  private readonly ratesByNode = new Map<string, Map<string, Rate>>();

  constructor(private readonly options: NodeAccountingOptions) {}

  /** Rates of every node's last tick, by subject key. */
  rates(): ReadonlyMap<string, Rate> {
    if (this.ratesByNode.size === 1) return this.ratesByNode.values().next().value!;
    const merged = new Map<string, Rate>();
    for (const rates of this.ratesByNode.values()) for (const [key, rate] of rates) merged.set(key, rate);
    return merged;
  }

  get lastTick(): CollectorView['lastTick'] {
    return this.options.local.collector?.lastTick ?? null;
  }

  get lastSuccess(): number | null {
    return this.options.local.collector?.lastSuccess ?? null;
  }

  get errorCount(): number {
    return this.options.local.collector?.errorCount ?? 0;
  }

  /**
   * Catches up with one node's ledger, then refreshes its rates. Pulls of one node never overlap
   * (one asked for meanwhile runs after, and finds little or nothing left).
   */
  async pull(node: string): Promise<IngestResult | null> {
    return this.pulls.run(node, async () => {
      const link = this.options.link(node);
      if (!link) return null;
      const result = await ingestNode(this.options.db, link, {
        logger: this.options.logger,
        ...(this.options.now ? { now: this.options.now } : {}),
        ...(this.options.pageSize ? { pageSize: this.options.pageSize } : {}),
      });
      try {
        this.ratesByNode.set(node, new Map(Object.entries(await link.tickRates())));
      } catch (error) {
        this.options.logger.debug('cannot read the node\u2019s rates', { node, error: (error as Error).message });
      }
      return result;
    });
  }

  /** Forgets a node's rates (it was removed or went away). */
  forget(node: string): void {
    this.ratesByNode.delete(node);
  }

  /** Per-second rates of every reachable node (a node that fails to answer is left out). */
  async live(): Promise<RateMap> {
    const merged: RateMap = new Map();
    await Promise.all(this.options.nodes().map(async (node) => {
      const link = this.options.link(node);
      if (!link) return;
      try {
        for (const [key, rate] of Object.entries(await link.liveRates())) merged.set(key, rate);
      } catch (error) {
        this.options.logger.debug('cannot read live rates', { node, error: (error as Error).message });
      }
    }));
    return merged;
  }

  /** Nobody listens: the local node forgets its live baseline (remote ones keep theirs per caller). */
  resetLive(): void {
    this.options.local.resetLive();
  }
}
