import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  decryptWith, encryptWith, parseSecretKey, SecretBox, SecretKeyError, SECRET_KEY_ENV,
} from '../../../src/nodes/panel/secret.js';

const TOKEN = 'agent-token-0123456789abcdef0123456789';

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'pbw-secret-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const silent = () => {
  const warnings: string[] = [];
  return { warnings, logger: { info: () => {}, warn: (message: string) => warnings.push(message) } };
};

test('a key is 64 hex digits or the base64 of 32 bytes; anything else is refused naming where it came from', () => {
  const bytes = randomBytes(32);
  assert.deepEqual(parseSecretKey(bytes.toString('hex'), 'x'), bytes);
  assert.deepEqual(parseSecretKey(bytes.toString('hex').toUpperCase(), 'x'), bytes);
  assert.deepEqual(parseSecretKey(`${bytes.toString('base64')}\n`, 'x'), bytes, 'a trailing newline is fine');
  assert.deepEqual(parseSecretKey(bytes.toString('base64').replace(/=$/, ''), 'x'), bytes, 'unpadded base64');

  for (const bad of ['', 'secret', 'ab'.repeat(31), 'ab'.repeat(33), 'zz'.repeat(32), randomBytes(31).toString('base64'), randomBytes(33).toString('base64')]) {
    assert.throws(() => parseSecretKey(bad, SECRET_KEY_ENV), (error: unknown) => {
      assert.ok(error instanceof SecretKeyError);
      assert.match(error.message, /^The secret key in PANEL_BANDWIDTH_SECRET_KEY must be 64 hex digits or the base64 of 32 bytes/);
      return true;
    }, `refuses ${JSON.stringify(bad)}`);
  }
});

test('a token encrypts to a versioned text that differs every time and decrypts back', () => {
  const key = randomBytes(32);
  const first = encryptWith(key, TOKEN);
  const second = encryptWith(key, TOKEN);

  assert.match(first, /^v1:[A-Za-z0-9+/]+=*$/);
  assert.notEqual(first, second, 'a fresh iv each time');
  assert.ok(!first.includes(TOKEN) && !Buffer.from(first.slice(3), 'base64').includes(TOKEN), 'the token is not in the ciphertext');
  assert.equal(Buffer.from(first.slice(3), 'base64').length, 12 + 16 + TOKEN.length, 'iv | tag | ciphertext');
  assert.equal(decryptWith(key, first, 'test'), TOKEN);
  assert.equal(decryptWith(key, second, 'test'), TOKEN);
  assert.equal(decryptWith(key, encryptWith(key, 'ünïcode ✓'), 'test'), 'ünïcode ✓');
});

test('decrypting with another key, an altered text or an unknown format fails with a clear error', () => {
  const key = randomBytes(32);
  const sealed = encryptWith(key, TOKEN);

  assert.throws(() => decryptWith(randomBytes(32), sealed, '/etc/pbw/secret.key'), (error: unknown) => {
    assert.ok(error instanceof SecretKeyError);
    assert.match(error.message, /^Cannot decrypt an agent token with the secret key from \/etc\/pbw\/secret\.key: it was encrypted with another key/);
    assert.ok(error.cause, 'the crypto error is kept as the cause');
    return true;
  });
  const packed = Buffer.from(sealed.slice(3), 'base64');
  packed[packed.length - 1]! ^= 1;
  assert.throws(() => decryptWith(key, `v1:${packed.toString('base64')}`, 'k'), /encrypted with another key \(or altered\)/);
  assert.throws(() => decryptWith(key, `v2:${sealed.slice(3)}`, 'k'), /unknown format `v2:/);
  assert.throws(() => decryptWith(key, TOKEN, 'k'), SecretKeyError, 'a plain token is not mistaken for a ciphertext');
  assert.throws(() => decryptWith(key, 'v1:AAAA', 'k'), /too short/);
});

test('the key from PANEL_BANDWIDTH_SECRET_KEY wins, and no key file is created', async (t) => {
  const dir = scratch(t);
  const keyFile = join(dir, 'secret.key');
  const key = randomBytes(32);
  const box = new SecretBox({ keyFile, env: { [SECRET_KEY_ENV]: key.toString('hex') } });

  const sealed = await box.encrypt(TOKEN);

  assert.equal(box.source, SECRET_KEY_ENV);
  assert.equal(decryptWith(key, sealed, 'test'), TOKEN);
  assert.equal(existsSync(keyFile), false);
});

test('a malformed PANEL_BANDWIDTH_SECRET_KEY fails with a message naming it, and the key file is not used instead', async (t) => {
  const dir = scratch(t);
  const box = new SecretBox({ keyFile: join(dir, 'secret.key'), env: { [SECRET_KEY_ENV]: 'hunter2' } });
  await assert.rejects(box.encrypt(TOKEN), /The secret key in PANEL_BANDWIDTH_SECRET_KEY must be 64 hex digits/);
  assert.equal(existsSync(join(dir, 'secret.key')), false);
});

test('without the variable, the first use creates the key file (mode 0600, its directory too) and later panels read it', async (t) => {
  const dir = scratch(t);
  const keyFile = join(dir, 'deep', 'er', 'secret.key');
  const { logger, warnings } = silent();
  const box = new SecretBox({ keyFile, env: {}, logger });
  assert.equal(existsSync(keyFile), false, 'constructing a box creates nothing');

  const sealed = await box.encrypt(TOKEN);

  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.match(readFileSync(keyFile, 'utf8'), /^[0-9a-f]{64}\n$/);
  const restarted = new SecretBox({ keyFile, env: {}, logger });
  assert.equal(await restarted.decrypt(sealed), TOKEN, 'a restarted panel reads the same key');
  assert.deepEqual(warnings, []);
});

test('two panels starting together on an empty key file path end up with one key', async (t) => {
  const keyFile = join(scratch(t), 'secret.key');
  const boxes = Array.from({ length: 4 }, () => new SecretBox({ keyFile, env: {} }));
  const keys = await Promise.all(boxes.map((box) => box.key()));
  for (const key of keys) assert.deepEqual(key, keys[0]);
  assert.equal(readFileSync(keyFile, 'utf8').trim(), keys[0]!.toString('hex'));
});

test('a key file with no key in it, or one that cannot be created, fails naming the path', async (t) => {
  const dir = scratch(t);
  const garbage = join(dir, 'garbage.key');
  writeFileSync(garbage, 'not a key\n', { mode: 0o600 });
  await assert.rejects(new SecretBox({ keyFile: garbage, env: {} }).key(), (error: unknown) => {
    assert.ok(error instanceof SecretKeyError);
    assert.ok(error.message.startsWith(`The secret key in ${garbage} must be`), error.message);
    return true;
  });

  // A regular file where the key file's directory should be: ENOTDIR even for root.
  const blocker = join(dir, 'blocker');
  writeFileSync(blocker, '');
  const unwritable = join(blocker, 'secret.key');
  await assert.rejects(new SecretBox({ keyFile: unwritable, env: {} }).key(), (error: unknown) => {
    assert.ok(error instanceof SecretKeyError);
    assert.match(error.message, new RegExp(`^Cannot (create|read) the secret key file ${unwritable.replaceAll('/', '\\/')}`));
    assert.match(error.message, /secret_key_file|PANEL_BANDWIDTH_SECRET_KEY/);
    return true;
  });
});

test('a failed load is not kept: fixing the key file works without a restart', async (t) => {
  const dir = scratch(t);
  const keyFile = join(dir, 'secret.key');
  writeFileSync(keyFile, 'oops', { mode: 0o600 });
  const box = new SecretBox({ keyFile, env: {} });
  await assert.rejects(box.key(), SecretKeyError);

  const key = randomBytes(32);
  writeFileSync(keyFile, key.toString('hex'));
  assert.deepEqual(await box.key(), key);
});

test('a key file readable by others is used, with a warning to chmod it', async (t) => {
  const keyFile = join(scratch(t), 'secret.key');
  const key = randomBytes(32);
  writeFileSync(keyFile, key.toString('base64'));
  chmodSync(keyFile, 0o644);
  const { logger, warnings } = silent();

  assert.deepEqual(await new SecretBox({ keyFile, env: {}, logger }).key(), key);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /readable by other users \(mode 644\): chmod 600 it/);
});
