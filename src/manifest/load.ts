import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import AjvModule, { type ErrorObject } from 'ajv';
import type { HookName, PluginEventName } from '../plugin-api.js';

/** The project root: where `plugin.json` lives (works from `src/` under tsx and from `dist/src/`). */
export const PLUGIN_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(start: string): string {
  let dir = start;
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(join(dir, 'plugin.json'));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error(`plugin.json not found above ${start}`);
}

export interface SettingSpec {
  type: 'integer' | 'string' | 'boolean';
  default: unknown;
  minimum?: number;
  maximum?: number;
  enum?: unknown[];
  description?: string;
}

/** A validated `plugin.json`. */
export interface Manifest {
  id: string;
  name: string;
  version: string;
  description?: string;
  entry: string;
  hostApi: string;
  hooks: HookName[];
  /** The plugin's own events, which it emits on the host's bus (host API 1.3.0). @default [] */
  events: PluginEventName[];
  adminPages: { path: string; label: string; minRole: 'admin' | 'viewer' }[];
  settings: Record<string, SettingSpec>;
}

/**
 * Every event a plugin may declare in `events`, as plugin.schema.json lists them (a unit test keeps
 * the two equal; the type makes the list complete).
 */
export const PLUGIN_EVENT_NAMES = Object.keys({
  'bandwidth.quota.warning': true,
  'bandwidth.quota.exceeded': true,
  'bandwidth.quota.reset': true,
} satisfies Record<PluginEventName, true>) as PluginEventName[];

/** Thrown when a manifest does not match the schema; the message names the key. */
export class ManifestError extends Error {
  override name = 'ManifestError';
  constructor(
    message: string,
    readonly key: string,
  ) {
    super(message);
  }
}

const Ajv = AjvModule.default;
const schema = JSON.parse(readFileSync(join(PLUGIN_ROOT, 'plugin.schema.json'), 'utf8')) as object;
const validate = new Ajv({ allErrors: false, strict: true }).compile(schema);

function describe(error: ErrorObject, source: string): ManifestError {
  const at = error.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (error.keyword === 'additionalProperties') {
    const extra = String((error.params as { additionalProperty: string }).additionalProperty);
    const key = at ? `${at}.${extra}` : extra;
    return new ManifestError(`${source}: unknown key "${key}"`, key);
  }
  if (error.keyword === 'required') {
    const missing = String((error.params as { missingProperty: string }).missingProperty);
    const key = at ? `${at}.${missing}` : missing;
    return new ManifestError(`${source}: missing key "${key}"`, key);
  }
  // An enum's message alone does not say what would have been accepted.
  const allowed = error.keyword === 'enum' ? `: ${(error.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ')}` : '';
  return new ManifestError(`${source}: "${at}" ${error.message ?? 'is invalid'}${allowed}`, at);
}

/** Validates a parsed manifest; throws a {@link ManifestError} naming the first bad key. */
export function parseManifest(value: unknown, source = 'plugin.json'): Manifest {
  if (!validate(value)) {
    const first = validate.errors?.[0];
    throw first ? describe(first, source) : new ManifestError(`${source}: invalid manifest`, '');
  }
  // `events` came with host API 1.3.0: a manifest without it declares none.
  const manifest = { ...(value as Omit<Manifest, 'events'>), events: (value as Partial<Manifest>).events ?? [] } as Manifest;
  for (const [key, spec] of Object.entries(manifest.settings)) {
    const problem = checkSetting(key, spec, spec.default);
    if (problem) throw new ManifestError(`${source}: default of setting ${problem}`, `settings.${key}.default`);
  }
  return manifest;
}

/** Reads and validates `plugin.json` from a directory (default: this plugin's root). */
export function loadManifest(dir = PLUGIN_ROOT): Manifest {
  const path = join(dir, 'plugin.json');
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ManifestError(`${path}: ${(error as Error).message}`, '');
  }
  return parseManifest(parsed, path);
}

/** Returns a message naming the setting when `value` does not fit `spec`, or undefined when it does. */
export function checkSetting(key: string, spec: SettingSpec, value: unknown): string | undefined {
  const got = `got \`${JSON.stringify(value)}\` (${typeof value})`;
  switch (spec.type) {
    case 'integer': {
      const min = spec.minimum ?? Number.MIN_SAFE_INTEGER;
      const max = spec.maximum ?? Number.MAX_SAFE_INTEGER;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        return `Expected \`${key}\` to be an integer from ${min} to ${max}, ${got}`;
      }
      break;
    }
    case 'string':
      if (typeof value !== 'string') return `Expected \`${key}\` to be a string, ${got}`;
      break;
    case 'boolean':
      if (typeof value !== 'boolean') return `Expected \`${key}\` to be a boolean, ${got}`;
      break;
  }
  if (spec.enum && !spec.enum.includes(value)) return `Expected \`${key}\` to be one of ${JSON.stringify(spec.enum)}, ${got}`;
  return undefined;
}
