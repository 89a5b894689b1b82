import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadManifest } from '../../../src/manifest/load.js';
import { resolveSettings } from '../../../src/settings.js';

const manifest = loadManifest();

test('settings default to the manifest and take valid overrides', () => {
  const defaults = {
    page_size: 50, reconcile_interval_s: 60, executor: 'auto', collect_interval_s: 60,
    retention_raw_days: 7, retention_hourly_days: 90, retention_daily_days: 730, retention_events_days: 365, ceiling_mbps: 100_000, metrics_token: '',
    metrics_open: false, vm_counter_source: 'sysfs',
    billing_bytes: 'wire', secret_key_file: '/var/lib/panel-bandwidth/secret.key', node_read_deadline_s: 15,
    quota_webhook_url: '', quota_webhook_secret: '',
  };
  assert.deepEqual(resolveSettings(manifest, {}), defaults);
  assert.deepEqual(resolveSettings(manifest, undefined), defaults);
  assert.deepEqual(resolveSettings(manifest, { page_size: 200, executor: 'recording' }), { ...defaults, page_size: 200, executor: 'recording' });
});

test('bad options fail at once with a message naming the key', () => {
  assert.throws(() => resolveSettings(manifest, { pageSize: 10 }), /Unknown panel-bandwidth option `pageSize`; known: page_size, reconcile_interval_s, executor, collect_interval_s/);
  assert.throws(() => resolveSettings(manifest, { executor: 'ssh' }), /Expected `executor` to be one of \["auto","local","recording"\], got `"ssh"`/);
  assert.throws(() => resolveSettings(manifest, { page_size: 5 }), /Expected `page_size` to be an integer from 10 to 500, got `5` \(number\)/);
  assert.throws(() => resolveSettings(manifest, { page_size: '50' }), /got `"50"` \(string\)/);
  assert.throws(() => resolveSettings(manifest, { page_size: 10.5 }), /got `10.5`/);
  assert.throws(() => resolveSettings(manifest, null), /expects options to be an object, instead got a 'null'/);
  assert.throws(() => resolveSettings(manifest, []), /instead got a 'array'/);
});

test('billing_bytes bills wire bytes unless told inner, and refuses anything else naming the field', () => {
  assert.equal(resolveSettings(manifest, {}).billing_bytes, 'wire');
  assert.equal(resolveSettings(manifest, { billing_bytes: 'inner' }).billing_bytes, 'inner');
  assert.throws(() => resolveSettings(manifest, { billing_bytes: 'tc' }), /Expected `billing_bytes` to be one of \["wire","inner"\], got `"tc"` \(string\)/);
  assert.throws(() => resolveSettings(manifest, { billing_bytes: 1 }), /Expected `billing_bytes` to be a string, got `1` \(number\)/);
});

test('a quota webhook is an http(s) URL with a secret of at least 16 characters, each refusal naming the key', () => {
  const secret = 's'.repeat(16);
  assert.equal(resolveSettings(manifest, { quota_webhook_url: 'https://billing.example/hooks', quota_webhook_secret: secret }).quota_webhook_url, 'https://billing.example/hooks');
  assert.throws(() => resolveSettings(manifest, { quota_webhook_url: 'ftp://billing.example/', quota_webhook_secret: secret }), /`quota_webhook_url` to be an http or https URL/);
  assert.throws(() => resolveSettings(manifest, { quota_webhook_url: 'not a url', quota_webhook_secret: secret }), /`quota_webhook_url`/);
  assert.throws(() => resolveSettings(manifest, { quota_webhook_url: 'http://127.0.0.1:9/hook', quota_webhook_secret: 'short' }), /`quota_webhook_secret` to be at least 16 characters/);
  assert.equal(resolveSettings(manifest, { quota_webhook_secret: 'short' }).quota_webhook_url, '', 'a secret alone sends nothing and needs no check');
});

test('/metrics is either open or behind a token: asking for both fails at once', () => {
  assert.equal(resolveSettings(manifest, { metrics_open: true }).metrics_open, true);
  assert.equal(resolveSettings(manifest, { metrics_token: 'x'.repeat(32) }).metrics_open, false);
  assert.throws(() => resolveSettings(manifest, { metrics_open: true, metrics_token: 'x'.repeat(32) }), /either `metrics_open: true` or a `metrics_token`, got both/);
  assert.throws(() => resolveSettings(manifest, { metrics_open: 'yes' }), /Expected `metrics_open` to be a boolean/);
  assert.throws(() => resolveSettings(manifest, { retention_events_days: 0 }), /Expected `retention_events_days` to be an integer from 1 to 36500/);
});
