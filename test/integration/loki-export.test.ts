import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import { lokiExporterConfigSchema } from '../../agent/exporters/loki/config.ts';
import { createLokiExporter } from '../../agent/exporters/loki/index.ts';
import type { Metadata } from '../../agent/metadata/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { runCli } from '../helpers/cli.ts';
import { engineLines, runApp } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine } from '../helpers/dockerd.ts';
import { startLogPath } from '../helpers/log-path.ts';
import { type LokiReceiver, startLokiReceiver } from '../helpers/loki-receiver.ts';
import { engineClient, startMetadata } from '../helpers/metadata.ts';

let engine: Engine;
let docker: Docker;
let metadata: Metadata;
let dir: string;

before(async () => {
  engine = await startEngine();
  dir = await mkdtemp(join(tmpdir(), 'lc-loki-it-'));
  docker = engineClient(engine);
  metadata = await startMetadata(docker);
});

after(async () => {
  await metadata?.watcher.shutdown();
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Pipeline {
  readonly receiver: LokiReceiver;
  readonly metrics: Registry;
  close(): Promise<void>;
}

/** json_file → enrich → loki → the spec Loki receiver: the agent's real log path, on the private engine. */
async function startPipeline(loki: Record<string, unknown> = {}): Promise<Pipeline> {
  const receiver = await startLokiReceiver();
  const metrics = new Registry();
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const exporter = createLokiExporter(
    'loki',
    lokiExporterConfigSchema.parse({
      endpoint: receiver.url,
      labels: { job: 'docker' },
      ...loki,
      delivery: { max_delay: '50ms', retry: { initial_interval: '100ms' }, ...(loki.delivery as object) },
    }),
    { logger: silentLogger(), metrics, stateDir },
  );
  const path = await startLogPath({ engine, docker, metadata, exporter, metrics, stateDir });
  return {
    receiver,
    metrics,
    async close() {
      await path.close();
      await receiver.close();
    },
  };
}

const DEFAULT_STREAM_ATTRIBUTES = new Set([
  'service.name',
  'service.namespace',
  'container.name',
  'support.contact',
  'team',
]);

/** What the label policy promises, written out independently of agent/exporters/loki/labels.ts. */
function expectedContainerMetadata(attributes: Readonly<Record<string, string | readonly string[]>>) {
  return Object.fromEntries(
    Object.entries(attributes)
      .filter(([k]) => !DEFAULT_STREAM_ATTRIBUTES.has(k))
      .map(([k, v]) => [k.replace(/[^a-zA-Z0-9_]/g, '_'), typeof v === 'string' ? v : JSON.stringify(v)]),
  );
}

for (const encoding of ['protobuf', 'json'] as const) {
  test(`${encoding}: a real container's lines reach Loki with exact stream labels, structured metadata and nanosecond timestamps`, async (t) => {
    const pipeline = await startPipeline({ encoding, max_line_size: '1KiB' });
    t.after(() => pipeline.close());
    const name = `api-${encoding}`;
    const id = await runApp(
      engine,
      name,
      `seq 1 200 | sed 's/^/line /'; printf '%03000d\\n' 7; echo 'disk full' >&2`,
      120,
    );
    await pipeline.receiver.waitForEntries(202, 60_000);

    const entry = await metadata.store.resolve(id);
    assert.ok(entry, 'the container is known to the store');
    const { receiver } = pipeline;
    // Stream labels: the default allowlist, sanitised, plus the static job label.
    const streams = new Set(receiver.entries.map((e) => JSON.stringify(e.labels)));
    assert.deepEqual(
      [...streams].map((s) => JSON.parse(s)),
      [
        {
          container_name: name,
          job: 'docker',
          service_name: 'api',
          support_contact: 'oncall-api@example.com',
          team: 'payments',
        },
      ],
    );

    const truth = engineLines(engine, id);
    assert.equal(truth.length, 202);
    assert.deepEqual(
      receiver.entries.map((e) => e.line.slice(0, 20)),
      truth.map((l) => l.line.slice(0, 20)),
    );
    assert.deepEqual(
      receiver.entries.map((e) => e.timestampNs),
      truth.map((l) => l.ns),
      'timestamps are the engine’s, to the nanosecond',
    );

    const containerMeta = expectedContainerMetadata(entry.attributes);
    assert.equal(containerMeta.vcs_ref_head_revision, APP_REVISION);
    assert.equal(containerMeta.vcs_repository_url_full, 'https://github.com/acme/api');
    assert.equal(containerMeta.container_id, id);
    assert.equal(containerMeta.container_image_name, 'labelcast-test/app');
    assert.equal(containerMeta.container_label_com_example_db_password, '[REDACTED]');
    // The engine copies stdout and stderr separately: find lines by content, not position.
    const byLine = (line: string) => receiver.entries.find((e) => e.line.startsWith(line));
    const first = byLine('line 1');
    assert.deepEqual(first?.structuredMetadata, { ...containerMeta, log_iostream: 'stdout' });
    assert.equal(first?.line, 'line 1');

    // The 3000-character line was cut to max_line_size and marked; the rest is untouched.
    const long = byLine('0000');
    assert.equal(long?.line, '0'.repeat(1024));
    assert.deepEqual(long?.structuredMetadata, {
      ...containerMeta,
      log_iostream: 'stdout',
      labelcast_truncated: 'true',
    });

    const stderr = byLine('disk full');
    assert.equal(stderr?.line, 'disk full');
    assert.equal(stderr?.structuredMetadata.log_iostream, 'stderr');
    assert.ok(stderr?.structuredMetadata.severity_text, 'stderr lines carry a severity');

    const expectedType = encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    assert.ok(receiver.requests.every((r) => r.headers['content-type'] === expectedType && r.status === 204));
  });
}

test('429 answers are retried with backoff and every line of a real container still arrives once', async (t) => {
  // One request at a time, so the retries of the first payload are the first requests.
  const pipeline = await startPipeline({ delivery: { concurrency: 1 } });
  t.after(() => pipeline.close());
  const { receiver } = pipeline;
  receiver.enqueue({ status: 429, body: 'Ingestion rate limit exceeded' }, { status: 429 }, { status: 503 });
  const id = await runApp(engine, 'api-429', 'seq 1 100', 120);
  await receiver.waitForEntries(100, 60_000);
  assert.deepEqual(
    receiver.requests.slice(0, 4).map((r) => r.status),
    [429, 429, 503, 204],
  );
  const at = receiver.requests.map((r) => r.at);
  const gaps = at.slice(1, 4).map((t, i) => t - (at[i] as number));
  // Each retry waits at least retry.initial_interval (100 ms) less its 20 % jitter.
  assert.ok(
    gaps.every((gap) => gap >= 80),
    `retries came after ${gaps.join(', ')} ms`,
  );
  assert.deepEqual(
    receiver.entries.map((e) => e.line),
    engineLines(engine, id).map((l) => l.line),
  );
  const retries = (await pipeline.metrics.getSingleMetric('labelcast_exporter_retries_total')?.get())?.values;
  assert.equal(retries?.[0]?.value, 3);
});

test('a 400 is not retried: the batch is dropped and counted by Loki’s reason', async (t) => {
  const pipeline = await startPipeline();
  t.after(() => pipeline.close());
  const { receiver } = pipeline;
  receiver.override({
    status: 400,
    body: 'entry for stream \'{service_name="api"}\' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-27T00:00:00Z',
  });
  await runApp(engine, 'api-400', 'seq 1 20', 120);
  const dropped = async () =>
    (await pipeline.metrics.getSingleMetric('labelcast_exporter_dropped_records_total')?.get())?.values.find(
      (v) => v.labels.reason === 'greater_than_max_sample_age',
    )?.value ?? 0;
  const deadline = Date.now() + 30_000;
  while ((await dropped()) < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await dropped(), 20);
  const requests = receiver.requests.length;
  await new Promise((r) => setTimeout(r, 500)); // longer than the first backoff: a retry would show here
  assert.equal(receiver.requests.length, requests, 'no retry after a 400');
  assert.ok(receiver.requests.every((r) => r.status === 400));
  assert.equal(receiver.entries.length, 0);
});

/** Runs `labelcast check-config` as the operator would. */
const checkConfig = (file: string) => runCli(engine, ['check-config', '--config', file]);

test('a config with 16 stream labels is refused at startup with the key path and the limit', async () => {
  const file = join(dir, 'sixteen.yaml');
  const attrs = Array.from({ length: 15 }, (_, i) => `      - attr.${i}`).join('\n');
  await writeFile(
    file,
    `exporters:\n  loki:\n    endpoint: http://127.0.0.1:3100\n    labels:\n      job: docker\n    stream_labels:\n${attrs}\n`,
  );
  const run = await checkConfig(file);
  assert.equal(run.code, 1, run.stdout);
  assert.match(
    run.stderr,
    /Invalid config .*sixteen\.yaml: exporters\.loki\.stream_labels: .*too many stream labels: 16 .*limit of 15/,
  );
});

test('config/examples/loki.yaml is a valid config', async () => {
  const run = await checkConfig('config/examples/loki.yaml');
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /exporters loki/);
});
