import { computeDelta } from '../accounting/deltas.js';
import { kbpsOf, seriesKeyOf, subjectDirections, type Sample } from '../accounting/sample.js';

/** kbit/s up and down per subject key (`peer:12`). */
export type RateMap = Map<string, { upKbps: number; downKbps: number }>;

/**
 * Per-second rates from consecutive in-memory samples (nothing is written): the same delta
 * engine as accounting, divided by the measured time between the two readings.
 */
export class LiveRates {
  private previous = new Map<string, Sample>();

  constructor(private readonly read: () => Promise<Sample[]>) {}

  async next(): Promise<RateMap> {
    const samples = (await this.read()).filter((s) => s.identity.source !== 'tc' && s.subjectType && s.subjectId);
    const rates: RateMap = new Map();
    const seen = new Map<string, Sample>();
    for (const sample of samples) {
      const key = seriesKeyOf(sample.identity);
      seen.set(key, sample);
      const delta = computeDelta(this.previous.get(key), sample);
      if (delta.kind !== 'delta' && delta.kind !== 'reset') continue;
      const { up, down } = subjectDirections({ rx: delta.rxBytes, tx: delta.txBytes });
      const subject = `${sample.subjectType}:${sample.subjectId}`;
      const sum = rates.get(subject) ?? { upKbps: 0, downKbps: 0 };
      sum.upKbps += kbpsOf(up, delta.elapsedMs);
      sum.downKbps += kbpsOf(down, delta.elapsedMs);
      rates.set(subject, sum);
    }
    this.previous = seen;
    return rates;
  }

  /** Forget the baseline (nobody listens; the next reading starts fresh). */
  reset(): void {
    this.previous.clear();
  }
}
