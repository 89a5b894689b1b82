/**
 * How a subject's share and burst, and a network's defaults, must fit the caps around them. Pure:
 * the hooks, the JSON API and the admin pages reach these through {@link LimitsService}, each issue
 * naming the host field to fix.
 */
import { maxBurstBytes } from '../shaping/tree-shape.js';
import type { ValidationIssue } from '../plugin-api.js';
import {
  BURST_BYTES_FIELD, BURST_KBPS_FIELD, DEFAULT_DOWN_FIELD, DEFAULT_UP_FIELD, DOWN_FIELD, MIN_FIELD, UP_FIELD,
} from '../hooks/bandwidth-fields.js';

/** A subject's caps, guarantee and burst as they will be stored (kbit/s, bytes; 0 = none). */
export interface SubjectShape {
  upKbps: number;
  downKbps: number;
  minKbps: number;
  burstKbps: number;
  burstBytes: number;
}

/** A network's caps (kbit/s; 0 = none). */
export interface NetworkShape {
  totalUpKbps: number;
  totalDownKbps: number;
  defaultUpKbps: number;
  defaultDownKbps: number;
}

const DIRECTIONS = [
  { name: 'upload', own: 'upKbps', fallback: 'defaultUpKbps', total: 'totalUpKbps', field: UP_FIELD },
  { name: 'download', own: 'downKbps', fallback: 'defaultDownKbps', total: 'totalDownKbps', field: DOWN_FIELD },
] as const;

/**
 * The problems of a subject's guarantee and burst under its network: a guarantee above the network
 * cap; a burst rate without a size or a size without a rate; a burst for a subject with no cap at all
 * (own or the network's default), or not above its cap in a capped direction.
 */
export function subjectShapeIssues(subject: SubjectShape, network: NetworkShape): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const direction of DIRECTIONS) {
    const total = network[direction.total];
    if (subject.minKbps > 0 && total > 0 && subject.minKbps > total) {
      issues.push({ field: MIN_FIELD, message: `\`${MIN_FIELD}\` (${subject.minKbps} kbit/s) is above the network's ${direction.name} cap of ${total} kbit/s` });
      break;
    }
  }
  const { burstKbps, burstBytes } = subject;
  if (burstKbps > 0 && burstBytes === 0) {
    issues.push({ field: BURST_BYTES_FIELD, message: `A burst needs a size: set \`${BURST_BYTES_FIELD}\` with \`${BURST_KBPS_FIELD}\`` });
  } else if (burstBytes > 0 && burstKbps === 0) {
    issues.push({ field: BURST_KBPS_FIELD, message: `A burst needs a rate: set \`${BURST_KBPS_FIELD}\` with \`${BURST_BYTES_FIELD}\`` });
  } else if (burstKbps > 0) {
    const capped = DIRECTIONS.map((direction) => {
      const own = subject[direction.own];
      return { direction, kbps: own > 0 ? own : network[direction.fallback], fromDefault: own === 0 };
    }).filter((cap) => cap.kbps > 0);
    if (capped.length === 0) {
      issues.push({ field: BURST_KBPS_FIELD, message: `A burst needs a cap to burst above: set \`${UP_FIELD}\` or \`${DOWN_FIELD}\` (or a network default)` });
    } else {
      const below = capped.find((cap) => burstKbps <= cap.kbps);
      if (below) {
        const whose = below.fromDefault ? "the network's default" : 'its';
        issues.push({ field: BURST_KBPS_FIELD, message: `\`${BURST_KBPS_FIELD}\` (${burstKbps} kbit/s) must be above ${whose} ${below.direction.name} cap of ${below.kbps} kbit/s` });
      } else {
        // The kernel's tbf bucket holds at most ~273 s of the cap (src/shaping/tree-shape.ts).
        const most = Math.min(...capped.map((cap) => maxBurstBytes(cap.kbps, burstKbps)));
        if (burstBytes > most) {
          issues.push({ field: BURST_BYTES_FIELD, message: `\`${BURST_BYTES_FIELD}\` (${burstBytes}) is more than the kernel can hold at these caps: at most ${most} bytes at ${burstKbps} kbit/s` });
        }
      }
    }
  }
  return issues;
}

/** The problems of a network's caps: a default above the network cap of its direction. */
export function networkShapeIssues(network: NetworkShape): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const [field, name, fallback, total] of [
    [DEFAULT_UP_FIELD, 'upload', network.defaultUpKbps, network.totalUpKbps],
    [DEFAULT_DOWN_FIELD, 'download', network.defaultDownKbps, network.totalDownKbps],
  ] as const) {
    if (fallback > 0 && total > 0 && fallback > total) {
      issues.push({ field, message: `\`${field}\` (${fallback} kbit/s) is above the network's ${name} cap of ${total} kbit/s` });
    }
  }
  return issues;
}
