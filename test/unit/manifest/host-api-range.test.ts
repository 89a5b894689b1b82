import { test } from 'node:test';
import assert from 'node:assert/strict';
import { satisfies } from '../../../src/manifest/host-api-range.js';

test('host API ranges accept compatible versions and refuse the rest', () => {
  const table: [string, string, boolean][] = [
    ['1.0.0', '^1.0.0', true],
    ['1.9.3', '^1.2.0', true],
    ['1.1.9', '^1.2.0', false],
    ['2.0.0', '^1.0.0', false],
    ['0.2.5', '^0.2.0', true],
    ['0.3.0', '^0.2.0', false],
    ['1.2.9', '~1.2.0', true],
    ['1.3.0', '~1.2.0', false],
    ['3.0.0', '>=1.0.0', true],
    ['0.9.9', '>=1.0.0', false],
    ['1.0.0', '1.0.0', true],
    ['1.0.1', '1.0.0', false],
  ];
  for (const [version, range, expected] of table) assert.equal(satisfies(version, range), expected, `${version} in ${range}`);
});

test('a malformed version is an error, not a silent mismatch', () => {
  assert.throws(() => satisfies('1.0', '^1.0.0'), /Expected a version like 1\.2\.3, got `1\.0`/);
});
