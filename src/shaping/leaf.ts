/** Leaf qdiscs the engine can put under a subject's class, best first. */
export type LeafKind = 'fq_codel' | 'sfq' | 'pfifo';

/** Packets a pfifo leaf holds: 200 × 1500 B is 0.3 s at 8 Mbit/s and 2.4 ms at 1 Gbit/s. Fixed, so a rate change never touches the leaf. */
export const PFIFO_LIMIT_PACKETS = 200;

/**
 * The qdisc spec of a leaf (after `handle <minor>:`). fq_codel gets 128 flows instead of 1024:
 * one subject's traffic needs no more, and its flow table is allocated up front (≈64 KiB at 1024 flows,
 * × 2 directions × 10,000 subjects would be over a gigabyte).
 */
export function leafArgs(kind: LeafKind): string[] {
  switch (kind) {
    case 'fq_codel':
      return ['fq_codel', 'limit', '1000', 'flows', '128'];
    case 'sfq':
      return ['sfq', 'perturb', '10'];
    case 'pfifo':
      return ['pfifo', 'limit', String(PFIFO_LIMIT_PACKETS)];
  }
}
