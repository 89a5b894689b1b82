import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { PLUGIN_ROOT } from '../../manifest/load.js';

/** The package's version, as the agent reports it in /v1/health. */
export const PACKAGE_VERSION: string = (JSON.parse(readFileSync(join(PLUGIN_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
