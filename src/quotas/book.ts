import type { QuotaRow } from '../db/quotas.js';
import { subjectKey } from '../db/quota-cycles.js';
import { effectiveQuota } from './rules.js';

/** Inheritance as lookups: each subject's own row, each network's, the default. */
export class QuotaBook {
  private readonly own = new Map<string, QuotaRow>();
  private readonly networks = new Map<string, QuotaRow>();
  private fallback: QuotaRow | undefined;

  constructor(rows: QuotaRow[]) {
    for (const row of rows) {
      if (row.target.type === 'default') this.fallback = row;
      else if (row.target.type === 'network') this.networks.set(row.target.id, row);
      else this.own.set(subjectKey(row.target.type, row.target.id), row);
    }
  }

  /** A subject's effective quota and where it comes from (null: none applies). */
  of(subject: { subjectType: string; subjectId: string; networkId: string | null }) {
    const network = subject.subjectType === 'peer' && subject.networkId !== null ? this.networks.get(subject.networkId) : undefined;
    return effectiveQuota(this.own.get(subjectKey(subject.subjectType, subject.subjectId)), network, this.fallback);
  }
}
