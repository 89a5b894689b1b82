import type { Knex } from 'knex';
import * as m0001 from '../../migrations/0001_create_bw_limits.js';
import * as m0002 from '../../migrations/0002_create_bw_counters.js';
import * as m0003 from '../../migrations/0003_create_bw_usage.js';
import * as m0004 from '../../migrations/0004_create_bw_usage_hourly.js';
import * as m0005 from '../../migrations/0005_create_bw_usage_daily.js';
import * as m0006 from '../../migrations/0006_create_bw_quotas.js';
import * as m0007 from '../../migrations/0007_create_bw_agents.js';
import * as m0008 from '../../migrations/0008_create_bw_events.js';
import * as m0009 from '../../migrations/0009_add_bw_limits_network_and_class_index.js';
import * as m0010 from '../../migrations/0010_add_bw_limits_public_key.js';
import * as m0011 from '../../migrations/0011_create_bw_locks.js';
import * as m0012 from '../../migrations/0012_cover_usage_rollup_ranges.js';
import * as m0013 from '../../migrations/0013_add_outcome_reason.js';
import * as m0014 from '../../migrations/0014_add_bw_counters_last_delta.js';
import * as m0015 from '../../migrations/0015_create_bw_node_cursors.js';
import * as m0016 from '../../migrations/0016_add_bw_agents_token_ciphertext.js';
import * as m0017 from '../../migrations/0017_create_bw_class_allocators.js';
import * as m0018 from '../../migrations/0018_create_bw_usage_totals.js';
import * as m0019 from '../../migrations/0019_add_bw_events_repeats.js';
import * as m0020 from '../../migrations/0020_create_bw_credentials.js';
import * as m0021 from '../../migrations/0021_reshape_bw_quotas.js';
import * as m0022 from '../../migrations/0022_create_bw_quota_cycles.js';
import * as m0023 from '../../migrations/0023_add_bw_limits_throttle.js';
import * as m0024 from '../../migrations/0024_create_bw_webhook_deliveries.js';
import * as m0025 from '../../migrations/0025_add_network_caps.js';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/** Every plugin migration, in order; listed statically so they load the same under tsx and from dist/. */
const MIGRATIONS: [string, Migration][] = [
  ['0001_create_bw_limits', m0001],
  ['0002_create_bw_counters', m0002],
  ['0003_create_bw_usage', m0003],
  ['0004_create_bw_usage_hourly', m0004],
  ['0005_create_bw_usage_daily', m0005],
  ['0006_create_bw_quotas', m0006],
  ['0007_create_bw_agents', m0007],
  ['0008_create_bw_events', m0008],
  ['0009_add_bw_limits_network_and_class_index', m0009],
  ['0010_add_bw_limits_public_key', m0010],
  ['0011_create_bw_locks', m0011],
  ['0012_cover_usage_rollup_ranges', m0012],
  ['0013_add_outcome_reason', m0013],
  ['0014_add_bw_counters_last_delta', m0014],
  ['0015_create_bw_node_cursors', m0015],
  ['0016_add_bw_agents_token_ciphertext', m0016],
  ['0017_create_bw_class_allocators', m0017],
  ['0018_create_bw_usage_totals', m0018],
  ['0019_add_bw_events_repeats', m0019],
  ['0020_create_bw_credentials', m0020],
  ['0021_reshape_bw_quotas', m0021],
  ['0022_create_bw_quota_cycles', m0022],
  ['0023_add_bw_limits_throttle', m0023],
  ['0024_create_bw_webhook_deliveries', m0024],
  ['0025_add_network_caps', m0025],
];

/** The plugin's own migration table, so its history never mixes with the host's. */
export const MIGRATION_TABLE = 'bw_knex_migrations';

/** Names of every plugin table, in creation order. */
export const PLUGIN_TABLES = [
  'bw_limits',
  'bw_counters',
  'bw_usage',
  'bw_usage_hourly',
  'bw_usage_daily',
  'bw_quotas',
  'bw_agents',
  'bw_events',
  'bw_locks',
  'bw_node_cursors',
  'bw_class_allocators',
  'bw_usage_totals',
  'bw_credentials',
  'bw_quota_cycles',
  'bw_webhook_deliveries',
  'bw_network_caps',
] as const;

const source: Knex.MigrationSource<string> = {
  getMigrations: () => Promise.resolve(MIGRATIONS.map(([name]) => name)),
  getMigrationName: (name) => name,
  getMigration: (name) => {
    const found = MIGRATIONS.find(([candidate]) => candidate === name);
    if (!found) throw new Error(`Unknown plugin migration \`${name}\``);
    return Promise.resolve(found[1]);
  },
};

const config: Knex.MigratorConfig = { tableName: MIGRATION_TABLE, migrationSource: source };

/** Runs every pending plugin migration; returns the names it ran. */
export async function migrateLatest(knex: Knex): Promise<string[]> {
  const [, names] = (await knex.migrate.latest(config)) as [number, string[]];
  return names;
}

/** Runs every plugin migration down (uninstall); the plugin's tables, migration tables included, are gone afterwards. */
export async function migrateDownAll(knex: Knex): Promise<string[]> {
  const [, names] = (await knex.migrate.rollback(config, true)) as [number, string[]];
  await knex.schema.dropTableIfExists(`${MIGRATION_TABLE}_lock`);
  await knex.schema.dropTableIfExists(MIGRATION_TABLE);
  return names;
}

/** Names of migrations that have not run yet. */
export async function pendingMigrations(knex: Knex): Promise<string[]> {
  const [, pending] = (await knex.migrate.list(config)) as [unknown[], { file: string }[] | string[]];
  return pending.map((entry) => (typeof entry === 'string' ? entry : entry.file));
}
