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

/** Text of a fixture captured from iproute2 6.1 on this kernel (see test/fixtures/tc/README.md). */
export function fixture(name: string): string {
  return readFileSync(join(dir, `${name}.iproute2-6.1.0.${name.startsWith('class') ? 'txt' : 'json'}`), 'utf8');
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

export const FIXTURE_IFB = ifbNameFor('fx0', 'pbw-fixture');

/** The actual state the kernel reported for {@link fixtureDesired}, parsed from the fixtures. */
export function fixtureActual(): ActualInterface {
  return {
    name: 'fx0',
    netns: 'pbw-fixture',
    exists: true,
    egress: {
      device: 'fx0',
      qdiscs: parseQdiscJson(fixture('qdisc-egress')),
      classes: parseClassText(fixture('class-egress')),
      filters: parseFilterJson(fixture('filter-egress')),
    },
    ingressFilters: parseFilterJson(fixture('filter-ingress')),
    ifb: {
      name: FIXTURE_IFB,
      exists: true,
      up: true,
      tree: {
        device: FIXTURE_IFB,
        qdiscs: parseQdiscJson(fixture('qdisc-ifb')),
        classes: parseClassText(fixture('class-ifb')),
        filters: parseFilterJson(fixture('filter-ifb')),
      },
    },
  };
}
