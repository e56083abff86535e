import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lokiExporterConfigSchema } from '../../../agent/exporters/loki/config.ts';
import { createLabelPolicy, sanitizeLabelName } from '../../../agent/exporters/loki/labels.ts';
import { APP_ATTRIBUTES, APP_STREAM_METADATA, containerEntry } from './loki-fixtures.ts';

const policyConfig = (extra: Record<string, unknown> = {}) =>
  lokiExporterConfigSchema.parse({ endpoint: 'http://127.0.0.1:3100', ...extra });

test('attribute names are sanitised into Loki label names like the Prometheus OTLP translator', () => {
  assert.equal(sanitizeLabelName('container.label.team'), 'container_label_team');
  assert.equal(sanitizeLabelName('support.contact'), 'support_contact');
  assert.equal(sanitizeLabelName('com.example/db-password'), 'com_example_db_password');
  assert.equal(sanitizeLabelName('2fa.enabled'), 'key_2fa_enabled');
  assert.equal(sanitizeLabelName('__reserved'), 'key__reserved');
  assert.equal(sanitizeLabelName('_private'), '_private');
  assert.equal(sanitizeLabelName('équipe'), '_quipe');
  assert.equal(sanitizeLabelName('a😀b'), 'a_b');
});

test('the default policy makes service, container name, contact and team stream labels and everything else structured metadata', () => {
  const stream = createLabelPolicy(policyConfig()).streamFor(containerEntry());
  assert.deepEqual(stream.labels, [
    ['container_name', 'api-1'],
    ['service_name', 'api'],
    ['support_contact', 'oncall-api@example.com'],
    ['team', 'payments'],
  ]);
  assert.equal(
    stream.key,
    '{container_name="api-1", service_name="api", support_contact="oncall-api@example.com", team="payments"}',
  );
  assert.deepEqual(stream.metadata, APP_STREAM_METADATA);
  assert.equal(
    stream.jsonPrefix,
    '{"stream":{"container_name":"api-1","service_name":"api","support_contact":"oncall-api@example.com","team":"payments"},"values":[',
  );
});

test('a container version is turned into labels once and reused for every record', () => {
  const policy = createLabelPolicy(policyConfig());
  const entry = containerEntry();
  const first = policy.streamFor(entry);
  assert.equal(policy.streamFor(entry), first);
  // A rename produces a new entry object, which gets its own stream.
  const renamed = containerEntry({ ...APP_ATTRIBUTES, 'container.name': 'api-2' });
  assert.notEqual(policy.streamFor(renamed), first);
  assert.match(policy.streamFor(renamed).key, /container_name="api-2"/);
});

test('static labels join every stream and configured attributes replace the default allowlist', () => {
  const policy = createLabelPolicy(
    policyConfig({
      stream_labels: ['service.name', 'vcs.ref.head.revision'],
      labels: { job: 'docker', host: 'node-1' },
    }),
  );
  const stream = policy.streamFor(containerEntry());
  assert.equal(
    stream.key,
    '{host="node-1", job="docker", service_name="api", vcs_ref_head_revision="3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"}',
  );
  assert.ok(stream.metadata.some(([n, v]) => n === 'support_contact' && v === 'oncall-api@example.com'));
  assert.ok(!stream.metadata.some(([n]) => n === 'vcs_ref_head_revision'));
});

test('records without container metadata share a service_name="unknown_service" stream, as Loki itself would name them', () => {
  const policy = createLabelPolicy(policyConfig());
  const stream = policy.streamFor(undefined);
  assert.equal(stream.key, '{service_name="unknown_service"}');
  assert.deepEqual(stream.metadata, []);
  const withJob = createLabelPolicy(policyConfig({ labels: { job: 'docker' } })).streamFor(undefined);
  assert.equal(withJob.key, '{job="docker"}');
});

test('label values are escaped as in a LogQL selector', () => {
  const stream = createLabelPolicy(policyConfig()).streamFor(
    containerEntry({ 'container.name': 'odd', 'support.contact': 'Ops "Team" <ops\\@example.com>\n' }),
  );
  assert.equal(
    stream.key,
    '{container_name="odd", support_contact="Ops \\"Team\\" <ops\\\\@example.com>\\n"}',
  );
});

test('attributes that sanitise to one name are merged with a semicolon', () => {
  const stream = createLabelPolicy(policyConfig()).streamFor(
    containerEntry({ 'container.name': 'x', 'container.label.a.b': '1', 'container.label.a_b': '2' }),
  );
  assert.deepEqual(
    stream.metadata.filter(([n]) => n === 'container_label_a_b'),
    [['container_label_a_b', '1;2']],
  );
});

test("a container with more attributes than Loki's per-line metadata limit keeps the first ones and reports the rest", () => {
  const attributes: Record<string, string> = { 'container.name': 'many' };
  for (let i = 0; i < 150; i++) attributes[`container.label.l${i}`] = `v${i}`;
  const reports: number[] = [];
  const stream = createLabelPolicy(policyConfig(), (_c, dropped) => reports.push(dropped)).streamFor(
    containerEntry(attributes),
  );
  assert.equal(stream.metadata.length, 100);
  assert.equal(stream.metadataDropped, 50);
  assert.deepEqual(reports, [50]);
});
