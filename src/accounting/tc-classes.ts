import type { TcClass } from '../shaping/parse-class-text.js';
import type { Sample, SeriesIdentity } from './sample.js';

/** A limited subject and its HTB class minor on one interface. */
export interface ClassedSubject {
  subjectType: 'peer' | 'vm';
  subjectId: string;
  classMinor: number;
}

/**
 * Samples from HTB class counters (`tc -s class show`, parsed by the shaping engine's class
 * parser): a subject's class on the interface's egress counts what it received (`tx`, its down),
 * its class on the IFB what it sent (`rx`, its up). A class the tree does not have yet counts 0.
 */
export function classSamples(
  egress: TcClass[],
  ifb: TcClass[],
  subjects: ClassedSubject[],
  identity: Omit<SeriesIdentity, 'source' | 'seriesKey'>,
  at: number,
): Sample[] {
  const bytesOf = (classes: TcClass[], minor: number) => classes.find((c) => c.major === 1 && c.minor === minor)?.counters;
  return subjects.map((subject) => {
    const down = bytesOf(egress, subject.classMinor);
    const up = bytesOf(ifb, subject.classMinor);
    return {
      identity: { ...identity, source: 'tc', seriesKey: `class:1:${subject.classMinor.toString(16)}` },
      subjectType: subject.subjectType,
      subjectId: subject.subjectId,
      rxBytes: up?.bytes ?? 0n,
      txBytes: down?.bytes ?? 0n,
      rxPackets: up?.packets ?? null,
      txPackets: down?.packets ?? null,
      at,
    };
  });
}
