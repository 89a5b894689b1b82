/**
 * The integration kit's lab: a copy of the plain panel fixture (`test/fixtures/plain-panel/`), the
 * diffs of `patches/` applied to it with `patch`, and a network namespace holding a veth pair for
 * the patched panel to shape. Every command runs through execa with an argv array and a timeout.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import type { Express } from 'express';
import type { Knex } from 'knex';
import { onPath } from './lab.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURE_DIR = join(REPO_ROOT, 'test', 'fixtures', 'plain-panel');
export const PATCHES_DIR = join(REPO_ROOT, 'patches');

const TIMEOUT_MS = 15_000;

/** Whether this machine can run the kit's test, and if not, why (one line). */
export function kitRequirements(): { available: boolean; reason: string } {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  for (const program of ['patch', 'tc', 'ip']) if (!onPath(program)) missing.push(program);
  return { available: missing.length === 0, reason: `the integration kit test needs ${missing.join(', ')}` };
}

/** The patches, in the order they apply (`0001-…`, `0002-…`). */
export async function patchFiles(): Promise<string[]> {
  return (await readdir(PATCHES_DIR)).filter((name) => name.endsWith('.diff')).sort().map((name) => join(PATCHES_DIR, name));
}

/** A copy of the fixture in a temporary directory, removed by `remove()`. */
export interface FixtureCopy {
  dir: string;
  remove(): Promise<void>;
}

/**
 * Copies the fixture to a temporary directory. Its `node_modules` links to the repository's, so the
 * copy runs where it is (and loads the same express as the plugin).
 */
export async function copyFixture(): Promise<FixtureCopy> {
  const root = await mkdtemp(join(tmpdir(), 'pbw-kit-'));
  const dir = join(root, 'panel');
  await cp(FIXTURE_DIR, dir, { recursive: true });
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return { dir, remove: () => rm(root, { recursive: true, force: true }) };
}

/** What `patch` said about one diff. */
export interface PatchResult {
  patch: string;
  exitCode: number | undefined;
  /** stdout and stderr, interleaved. */
  output: string;
}

/** `patch -p1 --forward --batch -i <file>` in `dir`. */
export async function applyPatch(dir: string, file: string): Promise<PatchResult> {
  const result = await execa('patch', ['-p1', '--forward', '--batch', '-i', file], { cwd: dir, timeout: TIMEOUT_MS, reject: false, all: true, stdin: 'ignore' });
  return { patch: file, exitCode: result.exitCode, output: result.all ?? '' };
}

/** Files `patch` leaves behind when a hunk fails (`.rej`) or applies inexactly (`.orig`). */
export async function patchLeftovers(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((path) => !path.startsWith('node_modules') && /\.(rej|orig)$/.test(path));
}

/** A plugin as the patched panel loads it (`patches/0001-plugin-host.diff`). */
export interface PluginSource {
  dir: string;
  entry?: string;
  options?: Record<string, unknown>;
}

/** Options of the patched panel's `createApp` (the fixture's, plus what the patches add). */
export interface PatchedPanelOptions {
  databaseFile: string;
  interface: string;
  netns?: string | null;
  adminPassword?: string;
  apiToken?: string;
  plugins?: PluginSource[];
  logLevel?: string;
}

export interface PatchedPanel {
  app: Express;
  db: Knex;
  close(): Promise<void>;
}

/** Imports `createApp` from the patched copy (the patches are not type-checked with the repo, so the shape is stated here). */
export async function importPatchedPanel(dir: string): Promise<(options: PatchedPanelOptions) => Promise<PatchedPanel>> {
  const module = (await import(pathToFileURL(join(dir, 'app.ts')).href)) as { createApp?: unknown };
  if (typeof module.createApp !== 'function') throw new TypeError(`${dir}/app.ts exports no createApp function`);
  return module.createApp as (options: PatchedPanelOptions) => Promise<PatchedPanel>;
}

/** A namespace with a veth pair, the panel's "WireGuard interface" (the dummy module is not available here). */
export interface VethNamespace {
  netns: string;
  ifname: string;
  /** `tc -n <netns> …` */
  tc(args: string[]): Promise<string>;
  /** `ip -n <netns> …` */
  ip(args: string[]): Promise<string>;
  /** Deletes the namespace (and the pair with it). Never throws. */
  close(): Promise<void>;
}

/** Creates `pbw-kit-<random>` with `<ifname>` and its peer `<ifname>-p`, both up. */
export async function createVethNamespace(): Promise<VethNamespace> {
  const id = randomBytes(4).toString('hex');
  const netns = `pbw-kit-${id}`;
  const ifname = `kit${id}`;
  const run = async (argv: string[]) => (await execa(argv[0] ?? '', argv.slice(1), { timeout: TIMEOUT_MS, stdin: 'ignore' })).stdout;
  const lab: VethNamespace = {
    netns,
    ifname,
    tc: (args) => run(['tc', '-n', netns, ...args]),
    ip: (args) => run(['ip', '-n', netns, ...args]),
    close: async () => {
      await run(['ip', 'netns', 'del', netns]).catch(() => undefined);
    },
  };
  await run(['ip', 'netns', 'add', netns]);
  try {
    await lab.ip(['link', 'add', ifname, 'type', 'veth', 'peer', 'name', `${ifname}-p`]);
    await lab.ip(['link', 'set', ifname, 'up']);
    await lab.ip(['link', 'set', `${ifname}-p`, 'up']);
  } catch (error) {
    await lab.close();
    throw error;
  }
  return lab;
}

/**
 * A valid WireGuard public key that differs for each `seed` (32 bytes of `seed`, in base64).
 * @example wgKey(1) // 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE='
 */
export function wgKey(seed: number): string {
  return Buffer.alloc(32, seed).toString('base64');
}
