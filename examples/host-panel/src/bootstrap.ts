import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { generateSecret, hashPassword, verifyPassword } from './passwords.js';
import type { PanelConfig } from './config.js';

export interface Secrets {
  /** Verifies a bearer token against the configured or stored one. */
  apiTokenHash: string;
  sessionSecret: string;
  /** Credentials generated on this start, to be printed once. */
  generated: { adminUser?: string; adminPassword?: string; apiToken?: string };
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

async function setting(db: Knex, key: string): Promise<string | undefined> {
  const row = await db('panel_settings').where({ key }).first();
  return row ? String(row.value) : undefined;
}

async function setSetting(db: Knex, key: string, value: string): Promise<void> {
  await db('panel_settings').insert({ key, value }).onConflict('key').merge();
}

/**
 * First-start setup: the admin user, the API token and the session secret. Values from the
 * environment win; missing ones are generated once, stored (tokens hashed) and reported once.
 */
export async function bootstrapSecrets(db: Knex, config: PanelConfig): Promise<Secrets> {
  const generated: Secrets['generated'] = {};
  if (config.adminUser && config.adminPassword) {
    const existing = await db('panel_users').where({ username: config.adminUser }).first();
    // Rehashing an unchanged password would give it a new salt, and so a new credential version
    // that ends every session of the admin on each restart: only a new password does that.
    if (existing && (await verifyPassword(config.adminPassword, String(existing.password_hash)))) {
      if (existing.role !== 'admin') await db('panel_users').where({ id: existing.id }).update({ role: 'admin' });
    } else {
      const hash = await hashPassword(config.adminPassword);
      await db('panel_users')
        .insert({ username: config.adminUser, password_hash: hash, role: 'admin', created_at: Date.now() })
        .onConflict('username')
        .merge(['password_hash', 'role']);
    }
  } else if (!(await db('panel_users').first())) {
    generated.adminUser = 'admin';
    generated.adminPassword = generateSecret(12);
    await db('panel_users').insert({
      username: 'admin', password_hash: await hashPassword(generated.adminPassword), role: 'admin', created_at: Date.now(),
    });
  }

  let apiTokenHash: string;
  if (config.apiToken) {
    apiTokenHash = sha256(config.apiToken);
  } else {
    const stored = await setting(db, 'api_token_sha256');
    if (stored) {
      apiTokenHash = stored;
    } else {
      generated.apiToken = generateSecret(24);
      apiTokenHash = sha256(generated.apiToken);
      await setSetting(db, 'api_token_sha256', apiTokenHash);
    }
  }

  let sessionSecret = config.sessionSecret ?? (await setting(db, 'session_secret'));
  if (!sessionSecret) {
    sessionSecret = generateSecret(32);
    await setSetting(db, 'session_secret', sessionSecret);
  }
  return { apiTokenHash, sessionSecret, generated };
}

export { sha256, setting, setSetting };
