import { randomBytes } from 'node:crypto';
import type { Actor } from '../../../src/plugin-api.js';
import { setSetting, setting } from './bootstrap.js';
import type { ServiceContext } from './services/context.js';
import { createNetwork } from './services/networks.js';
import { createPeer } from './services/peers.js';
import { createVm } from './services/vms.js';

const DEMO: Actor = { kind: 'api', name: 'demo' };

/** A random WireGuard-shaped public key (demo peers have no private side). */
function demoKey(): string {
  const bytes = randomBytes(32);
  return bytes.toString('base64');
}

/**
 * Seeds a fresh database with a demo network, a few peers and VMs, through the same services as
 * the API (so plugins hear the hooks). Runs once: an operator who deletes the demo keeps it deleted.
 */
export async function seedDemo(ctx: ServiceContext): Promise<boolean> {
  if (await setting(ctx.db, 'demo_seeded')) return false;
  if ((await ctx.db('networks').first()) || (await ctx.db('vms').first())) return false;
  // A network cap (what the office line carries) shared fairly by the peers, and a default cap for
  // each peer without one of its own (fields a plugin reads from the body through host API 1.4.0).
  const network = await createNetwork(ctx, {
    name: 'Office VPN',
    interface: 'wg-demo0',
    bandwidth_total_up_kbps: 50_000,
    bandwidth_total_down_kbps: 100_000,
    bandwidth_default_up_kbps: 10_000,
    bandwidth_default_down_kbps: 20_000,
  }, DEMO);
  // A few monthly allowances (fields a plugin reads from the body; other plugins ignore them).
  const peers: [string, string[], Record<string, unknown>][] = [
    ['alice-laptop', ['10.66.0.2/32', 'fd00:66::2/128'], { quota_allowance_bytes: 12_000_000_000 }],
    ['bob-phone', ['10.66.0.3/32'], {}],
    ['branch-router', ['10.66.0.4/32', '192.168.50.0/24'], { quota_allowance_bytes: 2_000_000_000_000, quota_cycle_day: 15, quota_time_zone: 'Europe/Berlin' }],
    ['ci-runner', ['10.66.0.5/32'], {}],
  ];
  for (const [name, allowed_ips, extra] of peers) {
    await createPeer(ctx, String(network.id), { name, public_key: demoKey(), allowed_ips, ...extra }, DEMO);
  }
  const vms: [string, string, Record<string, unknown>][] = [
    ['web-01', 'tap-web01', { quota_allowance_bytes: 500_000_000_000, quota_action: 'notify' }],
    ['db-01', 'tap-db01', {}],
    ['build-01', 'tap-build01', {}],
  ];
  for (const [name, iface, extra] of vms) {
    await createVm(ctx, { name, interface: iface, ...extra }, DEMO);
  }
  await setSetting(ctx.db, 'demo_seeded', new Date().toISOString());
  return true;
}
