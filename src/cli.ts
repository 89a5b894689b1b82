#!/usr/bin/env node
/**
 * `panel-bandwidth <command>`: the plugin's command line. Every command reads the same
 * `DATABASE_URL` as the host panel (default `sqlite:./data/panel.sqlite`).
 */
import { parseArgs } from 'node:util';
import type { Knex } from 'knex';
import { connect } from './db/connect.js';
import { migrateDownAll, migrateLatest, pendingMigrations } from './db/migrate.js';

const USAGE = `Usage: panel-bandwidth <command> [options]

Commands:
  migrate            run the plugin's pending migrations
  migrate --status   list pending migrations
  migrate --down     run every plugin migration down (removes the plugin's tables and data)

Options:
  --database-url URL  database (default: $DATABASE_URL, else sqlite:./data/panel.sqlite)
  -h, --help          show this help`;

type Command = (db: Knex, flags: Record<string, string | boolean | undefined>) => Promise<number>;

const commands: Record<string, Command> = {
  async migrate(db, flags) {
    if (flags.status) {
      const pending = await pendingMigrations(db);
      console.log(pending.length === 0 ? 'up to date' : `pending:\n${pending.map((name) => `  ${name}`).join('\n')}`);
      return 0;
    }
    const names = flags.down ? await migrateDownAll(db) : await migrateLatest(db);
    console.log(names.length === 0 ? 'nothing to do' : `${flags.down ? 'reverted' : 'ran'}:\n${names.map((n) => `  ${n}`).join('\n')}`);
    return 0;
  },
};

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'database-url': { type: 'string' },
        status: { type: 'boolean' },
        down: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [name, ...rest] = parsed.positionals;
  if (parsed.values.help || !name) {
    console.log(USAGE);
    return name || parsed.values.help ? 0 : 2;
  }
  const command = commands[name];
  if (!command || rest.length > 0) {
    console.error(`${command ? `Unexpected argument \`${rest[0]}\`` : `Unknown command \`${name}\``}\n\n${USAGE}`);
    return 2;
  }
  const db = connect(parsed.values['database-url'] ?? process.env.DATABASE_URL ?? 'sqlite:./data/panel.sqlite');
  try {
    return await command(db, parsed.values);
  } catch (error) {
    console.error(`panel-bandwidth ${name}: ${(error as Error).message}`);
    return 1;
  } finally {
    await db.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli.ts') || process.argv[1]?.endsWith('/panel-bandwidth')) {
  process.exitCode = await main(process.argv.slice(2));
}
