import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ActualInterface } from '../../../src/shaping/actual.js';
import { ifbNameFor } from '../../../src/shaping/ifb-name.js';
import type { DesiredInterface } from '../../../src/shaping/model.js';
import { parseClassText } from '../../../src/shaping/parse-class-text.js';
import { parseFilterJson } from '../../../src/shaping/parse-filter-json.js';
import { parseQdiscJson } from '../../../src/shaping/parse-qdisc-json.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/tc');

/**
 * Text of a fixture captured from iproute2 6.1 on this kernel (see test/fixtures/tc/README.md):
 * `class-egress`, or with a variant's prefix `netcap-class-egress`, `pre-root-class-class-ifb`.
 */
export function fixture(name: string): string {
  return readFileSync(join(dir, `${name}.iproute2-6.1.0.${/(^|-)class-/.test(name) ? 'txt' : 'json'}`), 'utf8');
}

/** The desired state the fixtures were captured from (test/fixtures/tc/capture.ts). */
export function fixtureDesired(): DesiredInterface {
  return {
    name: 'fx0',
    netns: 'pbw-fixture',
    kind: 'wireguard',
    subjects: [
      { type: 'peer', id: 'a', classMinor: 2, addresses: ['10.0.0.2/32', 'fd00::2/128'], upKbps: 4000, downKbps: 8000 },
      { type: 'peer', id: 'b', classMinor: 3, addresses: ['10.0.1.0/30', '10.8.0.0/16', 'fd00:1::/64'], upKbps: 0, downKbps: 1234567 },
      { type: 'peer', id: 'c', classMinor: 0x1a, addresses: ['10.0.0.26/32'], upKbps: 1, downKbps: 1 },
    ],
  };
}

/**
 * The desired state of the `netcap-` fixtures: {@link fixtureDesired} under network caps of 30000
 * kbit/s down and 20000 up, peer a bursting at 20000 kbit/s for 2000000 bytes, peer b guaranteed
 * 5000 kbit/s, and peer d (1:4) with no cap of its own.
 */
export function netcapDesired(): DesiredInterface {
  const [a, b, c] = fixtureDesired().subjects;
  return {
    ...fixtureDesired(),
    totalDownKbps: 30_000,
    totalUpKbps: 20_000,
    subjects: [
      { ...a!, burst: { kbps: 20_000, bytes: 2_000_000 } },
      { ...b!, minKbps: 5000 },
      c!,
      { type: 'peer', id: 'd', classMinor: 4, addresses: ['10.0.0.4/32'], upKbps: 0, downKbps: 0 },
    ],
  };
}

export const FIXTURE_IFB = ifbNameFor('fx0', 'pbw-fixture');

/** Which capture: the tree of {@link fixtureDesired}, or of {@link netcapDesired}. */
export type FixtureVariant = '' | 'netcap-';

/** The actual state the kernel reported for {@link fixtureDesired} (or `netcap-`: {@link netcapDesired}), parsed from the fixtures. */
export function fixtureActual(variant: FixtureVariant = ''): ActualInterface {
  return {
    name: 'fx0',
    netns: 'pbw-fixture',
    exists: true,
    egress: {
      device: 'fx0',
      qdiscs: parseQdiscJson(fixture(`${variant}qdisc-egress`)),
      classes: parseClassText(fixture(`${variant}class-egress`)),
      filters: parseFilterJson(fixture(`${variant}filter-egress`)),
    },
    ingressFilters: parseFilterJson(fixture('filter-ingress')),
    ifb: {
      name: FIXTURE_IFB,
      exists: true,
      up: true,
      tree: {
        device: FIXTURE_IFB,
        qdiscs: parseQdiscJson(fixture(`${variant}qdisc-ifb`)),
        classes: parseClassText(fixture(`${variant}class-ifb`)),
        filters: parseFilterJson(fixture(`${variant}filter-ifb`)),
      },
    },
  };
}

/**
 * {@link fixtureDesired}'s tree as the engine built it before issue 14: every class directly under
 * `1:`, no 1:1 (its qdiscs and filters are the same as today's).
 */
export function preRootClassActual(): ActualInterface {
  const actual = fixtureActual();
  actual.egress!.classes = parseClassText(fixture('pre-root-class-class-egress'));
  actual.ifb.tree!.classes = parseClassText(fixture('pre-root-class-class-ifb'));
  return actual;
}
