// Why: quota notifications go out through an outbox queued in the quota's own transaction, so an event is delivered, retried and logged even when the receiver or this process is down when it happens.
import type { Knex } from 'knex';
import { epochMsColumn } from '../src/db/columns.js';

export async function up(knex: Knex): Promise<void> {
  if (await knex.schema.hasTable('bw_webhook_deliveries')) return;
  await knex.schema.createTable('bw_webhook_deliveries', (table) => {
    table.increments('id').primary();
    // A UUID sent as a header, so receivers can drop a delivery they already have.
    table.string('delivery_id', 36).notNullable();
    table.string('event', 40).notNullable();
    table.string('subject_type', 8).nullable();
    table.string('subject_id', 64).nullable();
    table.string('url', 2048).notNullable();
    // The exact JSON sent: every retry sends the same bytes. MEDIUMTEXT on MariaDB, whose TEXT stops at 64 KiB.
    table.text('body', 'mediumtext').notNullable();
    // pending | delivered | failed (failed: gave up).
    table.string('status', 12).notNullable();
    table.integer('attempts').notNullable().defaultTo(0);
    // Null once the delivery is settled; moved ahead while a panel process holds it.
    epochMsColumn(table, 'next_attempt_at').nullable();
    table.integer('last_status_code').nullable();
    table.string('last_error', 500).nullable();
    epochMsColumn(table, 'created_at').notNullable();
    epochMsColumn(table, 'updated_at').notNullable();
    epochMsColumn(table, 'delivered_at').nullable();
    table.unique(['delivery_id'], { indexName: 'bw_webhook_deliveries_delivery_uq' });
    table.index(['status', 'next_attempt_at'], 'bw_webhook_deliveries_due_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('bw_webhook_deliveries');
}
