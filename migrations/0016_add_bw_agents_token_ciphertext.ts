// Why: the panel calls each node's agent with its bearer token, so it keeps the token encrypted (a hash cannot be sent), with an optional pinned TLS fingerprint and the agent's last version.
import type { Knex } from 'knex';

// token_hash stays (SHA-256 of the token, written beside the ciphertext): rows from before this
// migration have only the hash and no usable token; they are listed as needing a new token.
const COLUMNS = ['token_ciphertext', 'tls_fingerprint', 'last_version'] as const;

export async function up(knex: Knex): Promise<void> {
  if (await knex.schema.hasColumn('bw_agents', 'token_ciphertext')) return;
  await knex.schema.alterTable('bw_agents', (table) => {
    // `v1:` + base64 of iv | tag | ciphertext (src/nodes/panel/secret.ts).
    table.text('token_ciphertext').nullable();
    // SHA-256 of the agent's certificate, 64 hex digits, stored without colons.
    table.string('tls_fingerprint', 64).nullable();
    table.string('last_version', 64).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  if (!(await knex.schema.hasColumn('bw_agents', 'token_ciphertext'))) return;
  await knex.schema.alterTable('bw_agents', (table) => {
    table.dropColumns(...COLUMNS);
  });
}
