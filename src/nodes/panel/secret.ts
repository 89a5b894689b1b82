/**
 * Agent tokens at rest. The panel must send each agent its bearer token, so a hash will not do: the
 * token is encrypted with AES-256-GCM under a key that never sits in the database, taken from
 * `PANEL_BANDWIDTH_SECRET_KEY`, or else from a key file the panel creates the first time it needs a
 * key (mode 0600). A database dump alone then reveals no token.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../plugin-api.js';

/** The environment variable that holds the key (it wins over the key file). */
export const SECRET_KEY_ENV = 'PANEL_BANDWIDTH_SECRET_KEY';

/** Where the key file is when the `secret_key_file` setting does not say. */
export const DEFAULT_SECRET_KEY_FILE = '/var/lib/panel-bandwidth/secret.key';

const VERSION = 'v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
// Binds a ciphertext to its use: a value encrypted for something else under the same key does not decrypt as a token.
const AAD = Buffer.from('panel-bandwidth agent token v1');

/** The key is missing, malformed or not the one a value was encrypted with; the message says which and where. */
export class SecretKeyError extends Error {
  override name = 'SecretKeyError';
}

/**
 * Parses a key: 64 hex digits, or the base64 of 32 bytes (surrounding whitespace ignored).
 * @param source where the text came from, for the error message (`PANEL_BANDWIDTH_SECRET_KEY`, a path)
 * @example parseSecretKey(randomBytes(32).toString('hex'), 'test')
 */
export function parseSecretKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(trimmed)) {
    const key = Buffer.from(trimmed, 'base64');
    if (key.length === KEY_BYTES && key.toString('base64').replace(/=+$/, '') === trimmed.replace(/=+$/, '')) return key;
  }
  throw new SecretKeyError(
    `The secret key in ${source} must be 64 hex digits or the base64 of 32 bytes (got ${trimmed.length} characters); make one with \`openssl rand -hex 32\``,
  );
}

/**
 * Encrypts `plain` under `key`: `v1:` + base64 of iv (12 bytes) | tag (16 bytes) | ciphertext.
 * A fresh random iv each time, so the same token encrypts differently every time.
 */
export function encryptWith(key: Buffer, plain: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(AAD);
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return VERSION + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
}

/**
 * Decrypts what {@link encryptWith} made; a wrong key, an altered text or an unknown format throws
 * a {@link SecretKeyError} naming `source` (where the current key comes from).
 */
export function decryptWith(key: Buffer, text: string, source: string): string {
  if (!text.startsWith(VERSION)) {
    throw new SecretKeyError(`Cannot decrypt a value of unknown format \`${text.slice(0, 8)}…\`: expected \`${VERSION}\` followed by base64`);
  }
  const packed = Buffer.from(text.slice(VERSION.length), 'base64');
  if (packed.length < IV_BYTES + TAG_BYTES) throw new SecretKeyError('Cannot decrypt a value that is too short to hold an iv and a tag');
  const decipher = createDecipheriv('aes-256-gcm', key, packed.subarray(0, IV_BYTES));
  decipher.setAAD(AAD);
  decipher.setAuthTag(packed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(packed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new SecretKeyError(
      `Cannot decrypt an agent token with the secret key from ${source}: it was encrypted with another key (or altered). ` +
        `Restore the key it was encrypted with, or enter the node's token again.`,
      { cause },
    );
  }
}

export interface SecretBoxOptions {
  /** The key file, used when the environment holds no key; created (with its directory) when missing. @default DEFAULT_SECRET_KEY_FILE */
  keyFile?: string;
  /** Where {@link SECRET_KEY_ENV} is read. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Warned when the key file is readable by others, told when one is created. */
  logger?: Pick<Logger, 'info' | 'warn'>;
}

/**
 * Encrypts and decrypts agent tokens with the panel's key. The key is read (or the key file
 * created) on first use, not on construction: a panel with no remote node never needs one.
 * @example const box = new SecretBox({ keyFile: settings.secret_key_file }); const stored = await box.encrypt(token);
 */
export class SecretBox {
  readonly keyFile: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly logger: Pick<Logger, 'info' | 'warn'> | undefined;
  private loading: Promise<Buffer> | undefined;

  constructor(options: SecretBoxOptions = {}) {
    this.keyFile = options.keyFile || DEFAULT_SECRET_KEY_FILE;
    this.env = options.env ?? process.env;
    this.logger = options.logger;
  }

  /** Where the key comes from: the environment variable, or the key file's path. */
  get source(): string {
    return this.env[SECRET_KEY_ENV] ? SECRET_KEY_ENV : this.keyFile;
  }

  /** The key, loaded once; a failure is not kept, so fixing the file and retrying works without a restart. */
  key(): Promise<Buffer> {
    this.loading ??= this.load().catch((error: unknown) => {
      this.loading = undefined;
      throw error;
    });
    return this.loading;
  }

  async encrypt(plain: string): Promise<string> {
    return encryptWith(await this.key(), plain);
  }

  async decrypt(text: string): Promise<string> {
    return decryptWith(await this.key(), text, this.source);
  }

  private async load(): Promise<Buffer> {
    const fromEnv = this.env[SECRET_KEY_ENV];
    if (fromEnv) return parseSecretKey(fromEnv, SECRET_KEY_ENV);
    const existing = await this.readKeyFile();
    if (existing) return existing;
    return this.createKeyFile();
  }

  private async readKeyFile(): Promise<Buffer | undefined> {
    let text: string;
    try {
      text = await readFile(this.keyFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new SecretKeyError(`Cannot read the secret key file ${this.keyFile}: ${(error as Error).message} (or set ${SECRET_KEY_ENV})`, { cause: error });
    }
    const { mode } = await stat(this.keyFile);
    if ((mode & 0o077) !== 0) {
      this.logger?.warn(`the secret key file ${this.keyFile} is readable by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 it`);
    }
    return parseSecretKey(text, this.keyFile);
  }

  private async createKeyFile(): Promise<Buffer> {
    const key = randomBytes(KEY_BYTES);
    // Written whole under a private name, then linked into place: link() never overwrites (a key
    // another panel wrote meanwhile would orphan its tokens), and no reader sees a half-written file.
    const scratch = `${this.keyFile}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(this.keyFile), { recursive: true, mode: 0o700 });
      const handle = await open(scratch, 'wx', 0o600);
      try {
        await handle.writeFile(`${key.toString('hex')}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await link(scratch, this.keyFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        const written = await this.readKeyFile();
        if (written) return written;
      }
      throw new SecretKeyError(
        `Cannot create the secret key file ${this.keyFile}: ${(error as Error).message}. ` +
          `Set the \`secret_key_file\` setting to a writable path, or ${SECRET_KEY_ENV} to 64 hex digits`,
        { cause: error },
      );
    } finally {
      await rm(scratch, { force: true });
    }
    this.logger?.info(`created the secret key file ${this.keyFile}: back it up, agent tokens cannot be read without it`);
    return key;
  }
}
