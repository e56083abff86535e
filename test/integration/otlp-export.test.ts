import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import { otlpHttpExporterConfigSchema } from '../../agent/exporters/otlp-http/config.ts';
import { createOtlpHttpExporter } from '../../agent/exporters/otlp-http/index.ts';
import type { Metadata } from '../../agent/metadata/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { runCli } from '../helpers/cli.ts';
import { engineLines, runApp } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine } from '../helpers/dockerd.ts';
import { startLogPath } from '../helpers/log-path.ts';
import { engineClient, startMetadata } from '../helpers/metadata.ts';
import { type OtlpReceiver, type ReceivedLogRecord, startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { until } from '../helpers/wait.ts';

let engine: Engine;
let docker: Docker;
let metadata: Metadata;
let dir: string;

before(async () => {
  engine = await startEngine();
  dir = await mkdtemp(join(tmpdir(), 'lc-otlp-it-'));
  docker = engineClient(engine);
  metadata = await startMetadata(docker);
});

after(async () => {
  await metadata?.watcher.shutdown();
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

/** json_file → enrich → otlp_http → the spec OTLP receiver, in this process. */
async function startPipeline(
  receiver: OtlpReceiver,
  exporter: Record<string, unknown> = {},
): Promise<{ metrics: Registry; close(): Promise<void> }> {
  const metrics = new Registry();
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const otlp = createOtlpHttpExporter(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({
      endpoint: receiver.url,
      delivery: { max_delay: '50ms', retry: { initial_interval: '100ms' } },
      ...exporter,
    }),
    { logger: silentLogger(), metrics, stateDir },
    {},
  );
  const path = await startLogPath({ engine, docker, metadata, exporter: otlp, metrics, stateDir });
  return {
    metrics,
    async close() {
      await path.close();
    },
  };
}

const ofContainer = (receiver: OtlpReceiver, id: string): ReceivedLogRecord[] =>
  receiver.logRecords().filter((r) => r.resource['container.id'] === id);

for (const encoding of ['protobuf', 'json'] as const) {
  test(`${encoding}: a real container's lines arrive enriched, with the exact Resource and nanosecond timestamps`, async (t) => {
    const receiver = await startOtlpReceiver();
    const pipeline = await startPipeline(receiver, { encoding });
    t.after(async () => {
      await pipeline.close();
      await receiver.close();
    });
    const name = `api-${encoding}`;
    const id = await runApp(engine, name, `seq 1 300 | sed 's/^/line /'; echo 'disk full' >&2`, 300);
    await until('301 records', () => ofContainer(receiver, id).length >= 301, 30_000);

    const entry = await metadata.store.resolve(id);
    assert.ok(entry);
    const records = ofContainer(receiver, id);
    const expectedResource = Object.fromEntries(
      Object.entries(entry.attributes).map(([k, v]) => [k, typeof v === 'string' ? v : [...v]]),
    );
    for (const r of records) assert.deepEqual(r.resource, expectedResource);
    // Spot-check the Resource against the image labels themselves, not only against the store.
    const resource = records[0]?.resource ?? {};
    assert.equal(resource['container.id'], id);
    assert.equal(resource['container.name'], name);
    assert.equal(resource['vcs.ref.head.revision'], APP_REVISION);
    assert.equal(resource['vcs.repository.url.full'], 'https://github.com/acme/api');
    assert.equal(resource['service.name'], 'api');
    assert.equal(resource['service.version'], '2.3.1');
    assert.equal(resource['support.contact'], 'oncall-api@example.com');
    assert.equal(resource['container.label.com.example.db-password'], '[REDACTED]');
    assert.equal(resource['container.image.name'], 'labelcast-test/app');
    assert.deepEqual(resource['container.image.tags'], ['2.3.1']);

    const truth = engineLines(engine, id);
    assert.equal(records.length, truth.length);
    assert.deepEqual(
      records.map((r) => [r.body, r.attributes['log.iostream'], r.timeUnixNano]),
      truth.map((l) => [l.line, l.stream, String(l.ns)]),
      'bodies, streams and nanosecond timestamps are the engine’s',
    );
    // The receiver stamps observed time at millisecond precision: it may trail the engine's by < 1 ms.
    assert.ok(records.every((r) => BigInt(r.observedTimeUnixNano) + 1_000_000n > BigInt(r.timeUnixNano)));
    const stderr = records.find((r) => r.attributes['log.iostream'] === 'stderr');
    assert.equal(stderr?.body, 'disk full');
    assert.ok(stderr?.severityNumber, 'stderr lines carry a severity');
    assert.equal(records[0]?.scope.name, 'labelcast');
    const type = encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    assert.ok(receiver.requests.every((r) => r.contentType === type && r.contentEncoding === 'gzip'));
  });
}

interface Child {
  readonly process: ChildProcess;
  readonly status: { queueBytes: number; spoolBytes: number; sent: number; rss: number }[];
  readonly exited: Promise<number | null>;
}

/** Starts test/helpers/otlp-export-child.ts: the same log path in its own process, so it can be killed. */
function startChild(
  stateDir: string,
  endpoint: string,
  exporter: Record<string, unknown>,
  startAt: 'beginning' | 'end' = 'beginning',
): Child {
  const child = spawn(
    'node_modules/.bin/node',
    [
      'test/helpers/otlp-export-child.ts',
      JSON.stringify({ dataRoot: engine.dataRoot, stateDir, endpoint, exporter, startAt }),
    ],
    { env: { ...process.env, DOCKER_HOST: engine.host }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const status: Child['status'] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const parsed = JSON.parse(line) as Child['status'][number] & { exited?: boolean };
    if (!parsed.exited) status.push(parsed);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { process: child, status, exited };
}

const OUTAGE_MS = 60_000;
const QUEUE_BYTES = 32 * 1024;

test('a 60 s outage with a SIGKILL in the middle: the spool bounds memory, survives the restart, and every line arrives', async (t) => {
  const receiver = await startOtlpReceiver();
  const stateDir = await mkdtemp(join(dir, 'outage-'));
  const outageEnds = Date.now() + OUTAGE_MS;
  receiver.respond(() => (Date.now() < outageEnds ? { status: 503 } : { status: 200 }));
  const exporter = {
    delivery: {
      max_batch_bytes: '16KiB',
      max_delay: '100ms',
      queue_bytes: QUEUE_BYTES,
      spool: { segment_bytes: '64KiB' },
      retry: { initial_interval: '200ms', max_interval: '1s' },
    },
  };
  let child = startChild(stateDir, receiver.url, exporter);
  t.after(async () => {
    child.process.kill('SIGKILL');
    await child.exited;
    await receiver.close();
  });
  await until('the child to start', () => child.status.length > 0, 30_000);
  // 20,000 lines over about 20 s, while the sink answers 503.
  const id = await runApp(
    engine,
    'api-outage',
    `seq 1 20 | while read b; do seq $((b*1000-999)) $((b*1000)) | sed 's/^/line /'; sleep 1; done`,
    300,
  );

  await new Promise((r) => setTimeout(r, 25_000));
  const before = child.status;
  assert.ok(receiver.requests.length > 0 && receiver.requests.every((r) => r.reply.status === 503));
  assert.equal(receiver.logRecords().length, 0);
  const spooled = Math.max(...before.map((s) => s.spoolBytes));
  assert.ok(spooled > 0, 'the spool took what memory could not hold');
  const maxQueue = Math.max(...before.map((s) => s.queueBytes));
  assert.ok(maxQueue <= QUEUE_BYTES, `memory queue peaked at ${maxQueue} bytes (bound ${QUEUE_BYTES})`);
  const segments = (await readdir(join(stateDir, 'spool', 'otlp_http'))).filter((f) => f.endsWith('.seg'));
  assert.ok(segments.length > 0);

  child.process.kill('SIGKILL');
  assert.equal(await child.exited, null);
  child = startChild(stateDir, receiver.url, exporter);

  const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i + 1}`);
  await until(
    'every line after recovery',
    () => new Set(ofContainer(receiver, id).map((r) => r.body)).size >= lines.length,
    OUTAGE_MS + 60_000,
  );
  const received = ofContainer(receiver, id);
  const firstAccepted = receiver.requests.find((r) => r.reply.status === 200);
  assert.ok(firstAccepted && firstAccepted.at >= outageEnds, 'nothing was accepted during the outage');
  assert.deepEqual([...new Set(received.map((r) => r.body))].sort(), [...lines].sort());
  // Spooled batches are acknowledged, so the restart re-reads only what was not yet durable: the
  // batches in flight between the receiver and the spool when the process was killed.
  const duplicates = received.length - lines.length;
  assert.ok(duplicates <= 2000, `duplicates: ${duplicates}`);
  assert.ok((child.status[0]?.spoolBytes ?? 0) > 0, 'the restarted process found the spool and replayed it');
  const maxQueueAfter = Math.max(...child.status.map((s) => s.queueBytes));
  assert.ok(maxQueueAfter <= QUEUE_BYTES, `memory queue peaked at ${maxQueueAfter} bytes after restart`);
  assert.ok(received.every((r) => r.resource['vcs.ref.head.revision'] === APP_REVISION));
});

test('SIGTERM flushes: a batch still waiting for max_delay is sent before the process exits 0', async (t) => {
  const receiver = await startOtlpReceiver();
  const stateDir = await mkdtemp(join(dir, 'flush-'));
  const child = startChild(stateDir, receiver.url, { delivery: { max_delay: '1h' } }, 'end');
  t.after(async () => {
    child.process.kill('SIGKILL');
    await child.exited;
    await receiver.close();
  });
  await until('the child to start', () => child.status.length > 0, 30_000);
  const id = await runApp(engine, 'api-flush', 'seq 1 500 | sed "s/^/flush /"', 300);
  await until('the container to log', () => engineLines(engine, id).length === 500, 10_000);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(ofContainer(receiver, id).length, 0, 'nothing is sent before max_delay');
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
  assert.deepEqual(
    ofContainer(receiver, id).map((r) => r.body),
    engineLines(engine, id).map((l) => l.line),
  );
});

/** Runs `labelcast check-config` as the operator would. */
const checkConfig = (file: string) => runCli(engine, ['check-config', '--config', file]);

test('an otlp_http exporter with a bad URL, or a pipeline naming an unknown exporter, is refused with the key path', async () => {
  const badUrl = join(dir, 'bad-url.yaml');
  await writeFile(
    badUrl,
    'exporters:\n  otlp_http:\n    endpoint: collector:4318\npipelines:\n  logs:\n    receivers: [json_file]\n    exporters: [otlp_http]\nreceivers:\n  json_file: {}\n',
  );
  const url = await checkConfig(badUrl);
  assert.equal(url.code, 1, url.stdout);
  assert.match(url.stderr, /exporters\.otlp_http\.endpoint: .*collector:4318.*http:\/\/ or https:\/\//);

  const unknown = join(dir, 'unknown-exporter.yaml');
  await writeFile(
    unknown,
    'receivers:\n  json_file: {}\nexporters:\n  otlp_http:\n    endpoint: http://collector:4318\npipelines:\n  logs:\n    receivers: [json_file]\n    exporters: [otlp_http/eu]\n',
  );
  const missing = await checkConfig(unknown);
  assert.equal(missing.code, 1, missing.stdout);
  assert.match(missing.stderr, /pipelines\.logs\.exporters\.0: .*otlp_http\/eu.*unknown exporter/);
});

test('config/examples/otlp.yaml is a valid config', async () => {
  const run = await checkConfig('config/examples/otlp.yaml');
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /exporters otlp_http/);
});
