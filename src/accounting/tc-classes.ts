import type { TcClass } from '../shaping/parse-class-text.js';
import type { Sample, SeriesIdentity } from './sample.js';

/** A limited subject and its HTB class minor on one interface. */
export interface ClassedSubject {
  subjectType: 'peer' | 'vm';
  subjectId: string;
  classMinor: number;
}

/** The side of a subject's class: on the interface's egress (`down`) or on its IFB (`up`). */
export type ClassDirection = 'up' | 'down';

/** Series key of one side of a subject's class: `class:1:<minor in hex>:<up|down>`. */
export function classSeriesKey(minor: number, direction: ClassDirection): string {
  return `class:1:${minor.toString(16)}:${direction}`;
}

/**
 * The direction a `tc` series counts, from its key; `null` for any other key (such as the
 * `class:1:<minor>` keys stored before each side became a series of its own).
 */
export function classDirectionOf(seriesKey: string): ClassDirection | null {
  const match = /^class:1:[0-9a-f]{1,4}:(up|down)$/.exec(seriesKey);
  return match ? (match[1] as ClassDirection) : null;
}

/**
 * Samples from HTB class counters (`tc -s class show`, parsed by the shaping engine's class
 * parser), one series per side: a subject's class on the interface's egress counts what it
 * received (`tx`, its down), its class on the IFB what it sent (`rx`, its up). A class the kernel
 * does not have (an unlimited direction, a cap not applied yet) gives no sample at all, so that
 * "no class" is never mistaken for "a class that passed 0 bytes".
 */
export function classSamples(
  egress: TcClass[],
  ifb: TcClass[],
  subjects: ClassedSubject[],
  identity: Omit<SeriesIdentity, 'source' | 'seriesKey'>,
  at: number,
): Sample[] {
  const countersOf = (classes: TcClass[], minor: number) => classes.find((c) => c.major === 1 && c.minor === minor)?.counters;
  return subjects.flatMap((subject) => {
    const samples: Sample[] = [];
    const down = countersOf(egress, subject.classMinor);
    const up = countersOf(ifb, subject.classMinor);
    const base = { subjectType: subject.subjectType, subjectId: subject.subjectId, at };
    if (down) {
      samples.push({
        ...base,
        identity: { ...identity, source: 'tc', seriesKey: classSeriesKey(subject.classMinor, 'down') },
        rxBytes: 0n,
        txBytes: down.bytes,
        rxPackets: null,
        txPackets: down.packets,
      });
    }
    if (up) {
      samples.push({
        ...base,
        identity: { ...identity, source: 'tc', seriesKey: classSeriesKey(subject.classMinor, 'up') },
        rxBytes: up.bytes,
        txBytes: 0n,
        rxPackets: up.packets,
        txPackets: null,
      });
    }
    return samples;
  });
}
