import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configSchema } from '../../../agent/config/schema.ts';
import { lokiExporterConfigSchema } from '../../../agent/exporters/loki/config.ts';

const base = { endpoint: 'http://127.0.0.1:3100' };

test('a minimal loki exporter config gets protobuf, the default label allowlist and a 256 KiB line cap', () => {
  const cfg = lokiExporterConfigSchema.parse(base);
  assert.equal(cfg.encoding, 'protobuf');
  assert.equal(cfg.gzip, false);
  assert.deepEqual(cfg.stream_labels, [
    'service.name',
    'service.namespace',
    'container.name',
    'support.contact',
    'team',
  ]);
  assert.deepEqual(cfg.labels, {});
  assert.equal(cfg.max_line_size, 256 * 1024);
  assert.equal(cfg.timeout, 10_000);
  assert.equal(cfg.delivery.max_batch_bytes, 1024 * 1024);
});

test('16 stream labels are refused at config time with the key path and the limit', () => {
  const stream_labels = Array.from({ length: 14 }, (_, i) => `attr.${i}`);
  const result = configSchema.safeParse({
    exporters: { 'loki/eu': { ...base, stream_labels, labels: { job: 'docker', host: 'node-1' } } },
  });
  assert.equal(result.success, false);
  const issue = result.error?.issues.find((i) => i.path.join('.') === 'exporters.loki/eu.stream_labels');
  assert.ok(issue, JSON.stringify(result.error?.issues));
  assert.match(issue.message, /too many stream labels: 16 .*limit of 15/);
});

test('exactly 15 stream labels are accepted', () => {
  const stream_labels = Array.from({ length: 13 }, (_, i) => `attr.${i}`);
  const cfg = lokiExporterConfigSchema.parse({
    ...base,
    stream_labels,
    labels: { job: 'docker', host: 'node-1' },
  });
  assert.equal(cfg.stream_labels.length + Object.keys(cfg.labels).length, 15);
});

test('two attributes that sanitise to one label name are refused', () => {
  const result = lokiExporterConfigSchema.safeParse({
    ...base,
    stream_labels: ['service.name', 'service_name'],
  });
  assert.equal(result.success, false);
  assert.deepEqual(result.error?.issues[0]?.path, ['stream_labels', 1]);
  assert.match(result.error?.issues[0]?.message ?? '', /becomes label service_name/);
});

test('a static label name must be a valid, unreserved Loki label name and must not clash with a stream label', () => {
  for (const labels of [{ 'my.job': 'x' }, { __job: 'x' }, { '1job': 'x' }]) {
    const result = lokiExporterConfigSchema.safeParse({ ...base, labels });
    assert.equal(result.success, false, JSON.stringify(labels));
    assert.equal(result.error?.issues[0]?.path[0], 'labels');
  }
  const clash = lokiExporterConfigSchema.safeParse({ ...base, labels: { team: 'x' } });
  assert.match(clash.error?.issues[0]?.message ?? '', /clashes with stream label/);
});

test('basic auth and a bearer token together, gzip with protobuf, and a lone client cert are refused', () => {
  const both = lokiExporterConfigSchema.safeParse({
    ...base,
    basic_auth: { username: 'u', password: 'p' },
    bearer_token: 't',
  });
  assert.deepEqual(both.error?.issues[0]?.path, ['bearer_token']);
  const gzip = lokiExporterConfigSchema.safeParse({ ...base, gzip: true });
  assert.deepEqual(gzip.error?.issues[0]?.path, ['gzip']);
  assert.equal(lokiExporterConfigSchema.safeParse({ ...base, encoding: 'json', gzip: true }).success, true);
  const cert = lokiExporterConfigSchema.safeParse({ ...base, tls: { cert_file: '/c.pem' } });
  assert.deepEqual(cert.error?.issues[0]?.path, ['tls']);
});

test('a bad endpoint URL and an unknown key are refused with their key paths', () => {
  const result = configSchema.safeParse({
    exporters: { loki: { endpoint: 'loki:3100', stream_label: ['x'] } },
  });
  assert.equal(result.success, false);
  const paths = result.error?.issues.map((i) => i.path.join('.')) ?? [];
  assert.ok(paths.includes('exporters.loki.endpoint'), paths.join(','));
  assert.ok(
    result.error?.issues.some((i) => i.code === 'unrecognized_keys'),
    JSON.stringify(result.error?.issues),
  );
});
