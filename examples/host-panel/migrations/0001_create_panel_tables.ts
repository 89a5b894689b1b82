// Why: the reference host's own data — users, sessions, settings, networks, peers, VMs, plugin states.
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('panel_users', (table) => {
    table.increments('id').primary();
    table.string('username', 64).notNullable();
    table.string('password_hash', 255).notNullable();
    table.string('role', 16).notNullable().defaultTo('admin');
    table.bigInteger('created_at').notNullable();
    table.unique(['username'], { indexName: 'panel_users_username_uq' });
  });
  await knex.schema.createTable('panel_settings', (table) => {
    table.string('key', 64).primary();
    table.text('value').notNullable();
  });
  await knex.schema.createTable('panel_sessions', (table) => {
    table.string('sid', 128).primary();
    table.text('data').notNullable();
    table.bigInteger('expires_at').notNullable();
    table.index(['expires_at'], 'panel_sessions_expires_ix');
  });
  await knex.schema.createTable('networks', (table) => {
    table.increments('id').primary();
    table.string('name', 64).notNullable();
    table.string('interface', 15).notNullable();
    // '' is the root namespace: a unique index cannot see NULLs as equal.
    table.string('netns', 64).notNullable().defaultTo('');
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
    table.unique(['netns', 'interface'], { indexName: 'networks_interface_uq' });
  });
  await knex.schema.createTable('peers', (table) => {
    table.increments('id').primary();
    table.integer('network_id').unsigned().notNullable();
    table.string('name', 64).notNullable();
    table.string('public_key', 44).notNullable();
    table.text('allowed_ips').notNullable();
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
    table.foreign('network_id', 'peers_network_fk').references('networks.id').onDelete('CASCADE');
    table.unique(['network_id', 'public_key'], { indexName: 'peers_key_uq' });
  });
  await knex.schema.createTable('vms', (table) => {
    table.increments('id').primary();
    table.string('name', 64).notNullable();
    table.string('interface', 15).notNullable();
    table.string('netns', 64).notNullable().defaultTo('');
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
    table.unique(['netns', 'interface'], { indexName: 'vms_interface_uq' });
  });
  await knex.schema.createTable('panel_plugins', (table) => {
    table.string('id', 32).primary();
    table.boolean('enabled').notNullable();
    table.bigInteger('updated_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['panel_plugins', 'vms', 'peers', 'networks', 'panel_sessions', 'panel_settings', 'panel_users']) {
    await knex.schema.dropTableIfExists(table);
  }
}
