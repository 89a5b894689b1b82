import { test } from 'node:test';
import assert from 'node:assert/strict';
import { knexConfigFromUrl } from '../../src/db/connect.js';
import { toBigInt } from '../../src/db/bigint.js';

test('DATABASE_URL picks the knex client and connection', () => {
  const mysql = knexConfigFromUrl('mysql://root:p%40ss@db.local:3307/panel');
  assert.equal(mysql.client, 'mysql2');
  assert.deepEqual(
    { ...(mysql.connection as Record<string, unknown>) },
    {
      host: 'db.local', port: 3307, user: 'root', password: 'p@ss', database: 'panel', charset: 'utf8mb4',
      timezone: 'Z', supportBigNumbers: true, bigNumberStrings: true,
    },
  );
  const pg = knexConfigFromUrl('postgres://postgres@127.0.0.1:5432/test');
  assert.equal(pg.client, 'pg');
  assert.equal(knexConfigFromUrl('sqlite::memory:').client, 'sqlite3');
});

test('a bad DATABASE_URL names the variable', () => {
  assert.throws(() => knexConfigFromUrl('oracle://x/y'), /Expected `DATABASE_URL` to be sqlite:…, mysql:\/\/… or postgres:\/\/…, got protocol `oracle:`/);
  assert.throws(() => knexConfigFromUrl('not a url'), /Expected `DATABASE_URL`/);
  assert.throws(() => knexConfigFromUrl('sqlite:'), /empty path/);
});

test('64-bit values from any driver become exact bigints', () => {
  assert.equal(toBigInt('18446744073709551615'), 2n ** 64n - 1n);
  assert.equal(toBigInt('9007199254740993.000'), 2n ** 53n + 1n);
  assert.equal(toBigInt(42), 42n);
  assert.equal(toBigInt(null), null);
  assert.throws(() => toBigInt(2 ** 60), /unsafe number/);
  assert.throws(() => toBigInt('12abc'), /Expected a 64-bit integer/);
});
