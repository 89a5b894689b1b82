import { computeDelta } from '../accounting/deltas.js';
import { countTick, DEFAULT_COUNT_OPTIONS, type CountOptions, type SeriesDelta } from '../accounting/billing.js';
import { rateOf } from '../accounting/rates.js';
import { seriesKeyOf, type Sample } from '../accounting/sample.js';

/** A subject's live kbit/s: billed up and down, and through its class where one was counted (else null or absent). */
export interface LiveRate {
  upKbps: number;
  downKbps: number;
  classUpKbps?: number | null;
  classDownKbps?: number | null;
}

/** Live rates per subject key (`peer:12`). */
export type RateMap = Map<string, LiveRate>;

/**
 * Per-second rates from consecutive in-memory samples (nothing is written): the same delta
 * engine and the same counting as accounting ({@link countTick}), divided by the measured time
 * between the two readings.
 */
export class LiveRates {
  private previous = new Map<string, Sample>();

  constructor(
    private readonly read: () => Promise<Sample[]>,
    private readonly counting: CountOptions = DEFAULT_COUNT_OPTIONS,
  ) {}

  async next(): Promise<RateMap> {
    const samples = (await this.read()).filter((s) => s.subjectType && s.subjectId);
    const deltas: SeriesDelta[] = [];
    const seen = new Map<string, Sample>();
    for (const sample of samples) {
      const key = seriesKeyOf(sample.identity);
      seen.set(key, sample);
      const delta = computeDelta(this.previous.get(key), sample);
      if (delta.kind !== 'delta' && delta.kind !== 'reset') continue;
      deltas.push({ sample, kind: delta.kind, rxBytes: delta.rxBytes, txBytes: delta.txBytes, elapsedMs: delta.elapsedMs });
    }
    this.previous = seen;
    const rates: RateMap = new Map();
    for (const [subject, count] of countTick(deltas, this.counting)) {
      const { upKbps, downKbps, classUpKbps, classDownKbps } = rateOf(count);
      rates.set(subject, { upKbps, downKbps, classUpKbps, classDownKbps });
    }
    return rates;
  }

  /** Forget the baseline (nobody listens; the next reading starts fresh). */
  reset(): void {
    this.previous.clear();
  }
}
