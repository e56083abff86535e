import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import {
  otlpHttpExporterConfigSchema,
  parseOtlpHeaders,
  resolveOtlpHttpConfig,
} from '../../../agent/exporters/otlp-http/config.ts';
import { OtlpLogsEncoder } from '../../../agent/exporters/otlp-http/encode.ts';
import { createOtlpHttpExporter } from '../../../agent/exporters/otlp-http/index.ts';
import { parsePartialSuccess } from '../../../agent/exporters/otlp-http/response.ts';
import type { ContainerEntry } from '../../../agent/metadata/types.ts';
import type { LogRecord } from '../../../agent/pipeline/types.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { lifecycleSuite } from '../../helpers/lifecycle.ts';
import { decodeToObject, ExportLogsServiceRequest } from '../../helpers/otlp-proto.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../../helpers/otlp-receiver.ts';

const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);

function entry(id: string, attributes: ContainerEntry['attributes']): ContainerEntry {
  return { id, shortId: id.slice(0, 12), name: `c-${id[0]}`, attributes } as ContainerEntry;
}

const A = entry(ID_A, {
  'container.id': ID_A,
  'container.name': 'api',
  'container.image.tags': ['2.3.1', 'latest'],
  'vcs.ref.head.revision': '3f2a9c1d',
  'support.contact': 'oncall-api@example.com',
});
const B = entry(ID_B, { 'container.id': ID_B, 'container.name': 'worker' });

function record(
  container: ContainerEntry | undefined,
  body: string,
  extra: Partial<LogRecord> = {},
): LogRecord {
  return {
    timeUnixNano: 1733320000123456789n,
    observedUnixNano: 1733320000223456789n,
    body,
    stream: 'stdout',
    severityNumber: 0,
    severityText: undefined,
    attributes: undefined,
    containerId: container?.id ?? 'c'.repeat(64),
    container,
    ...extra,
  };
}

interface DecodedAnyValue {
  stringValue?: string;
  arrayValue?: { values: { stringValue: string }[] };
}
interface DecodedLogs {
  resourceLogs: {
    resource: { attributes: { key: string; value: DecodedAnyValue }[] };
    scopeLogs: {
      scope: { name: string; version: string };
      logRecords: {
        timeUnixNano: string;
        observedTimeUnixNano: string;
        severityNumber?: number;
        severityText?: string;
        body: { stringValue: string };
        attributes: { key: string; value: DecodedAnyValue }[];
      }[];
    }[];
  }[];
}

const decode = (body: Uint8Array) => decodeToObject(ExportLogsServiceRequest, body) as unknown as DecodedLogs;

test('protobuf encoding decodes with the official protos: one ResourceLogs per container, exact attributes and ns timestamps', () => {
  const encoder = new OtlpLogsEncoder();
  const records = [
    record(A, 'first line'),
    record(B, 'from b', { stream: 'stderr', severityNumber: 17, severityText: 'ERROR' }),
    record(A, 'ünïcödé ✓ line', { attributes: { 'log.file.path': '/x.log' } }),
    record(undefined, 'unknown container'),
  ];
  const decoded = decode(encoder.protobuf(records));
  assert.equal(decoded.resourceLogs.length, 3);
  const [ra, rb, rc] = decoded.resourceLogs;
  assert.deepEqual(ra?.resource.attributes, [
    { key: 'container.id', value: { stringValue: ID_A } },
    { key: 'container.name', value: { stringValue: 'api' } },
    {
      key: 'container.image.tags',
      value: { arrayValue: { values: [{ stringValue: '2.3.1' }, { stringValue: 'latest' }] } },
    },
    { key: 'vcs.ref.head.revision', value: { stringValue: '3f2a9c1d' } },
    { key: 'support.contact', value: { stringValue: 'oncall-api@example.com' } },
  ]);
  const scope = ra?.scopeLogs[0];
  assert.equal(scope?.scope.name, 'labelcast');
  assert.deepEqual(
    scope?.logRecords.map((r) => r.body.stringValue),
    ['first line', 'ünïcödé ✓ line'],
  );
  const first = scope?.logRecords[0];
  assert.equal(first?.timeUnixNano, '1733320000123456789');
  assert.equal(first?.observedTimeUnixNano, '1733320000223456789');
  assert.deepEqual(first?.attributes, [{ key: 'log.iostream', value: { stringValue: 'stdout' } }]);
  assert.deepEqual(scope?.logRecords[1]?.attributes, [
    { key: 'log.iostream', value: { stringValue: 'stdout' } },
    { key: 'log.file.path', value: { stringValue: '/x.log' } },
  ]);
  const err = rb?.scopeLogs[0]?.logRecords[0];
  assert.equal(err?.severityNumber, 17);
  assert.equal(err?.severityText, 'ERROR');
  assert.deepEqual(err?.attributes, [{ key: 'log.iostream', value: { stringValue: 'stderr' } }]);
  assert.deepEqual(rc?.resource.attributes, [
    { key: 'container.id', value: { stringValue: 'c'.repeat(64) } },
  ]);
});

test('the Resource is encoded once per container entry and reused', () => {
  const encoder = new OtlpLogsEncoder();
  const r1 = encoder.protoResource(record(A, 'x'));
  encoder.protobuf([record(A, 'y'), record(B, 'z')]);
  assert.equal(encoder.protoResource(record(A, 'again')), r1);
  // A new entry version (rename, update) gets its own encoding.
  const renamed = entry(ID_A, { ...A.attributes, 'container.name': 'api-2' });
  assert.notEqual(encoder.protoResource(record(renamed, 'x')), r1);
});

test('JSON encoding follows the OTLP JSON mapping: int64 as strings, integer enums, lowerCamelCase', () => {
  const encoder = new OtlpLogsEncoder();
  const text = encoder
    .json([record(A, 'say "hi"\n', { severityNumber: 9, severityText: 'INFO' }), record(B, 'b')])
    .toString();
  const parsed = JSON.parse(text);
  const lr = parsed.resourceLogs[0].scopeLogs[0].logRecords[0];
  assert.equal(lr.timeUnixNano, '1733320000123456789');
  assert.equal(lr.observedTimeUnixNano, '1733320000223456789');
  assert.equal(lr.severityNumber, 9);
  assert.equal(lr.body.stringValue, 'say "hi"\n');
  // And the official protos accept it.
  const viaProtos = decodeToObject(
    ExportLogsServiceRequest,
    ExportLogsServiceRequest.encode(ExportLogsServiceRequest.fromObject(parsed)).finish(),
  ) as unknown as DecodedLogs;
  assert.deepEqual(
    viaProtos,
    decode(
      encoder.protobuf([
        record(A, 'say "hi"\n', { severityNumber: 9, severityText: 'INFO' }),
        record(B, 'b'),
      ]),
    ),
  );
});

test('config falls back to OTEL_EXPORTER_OTLP_* variables only for unset keys', () => {
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otlp.example.com:4318/',
    OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s%3Dcret, x-tenant = acme',
    OTEL_EXPORTER_OTLP_COMPRESSION: 'none',
    OTEL_EXPORTER_OTLP_TIMEOUT: '2500',
  };
  const fromEnv = resolveOtlpHttpConfig('otlp_http', otlpHttpExporterConfigSchema.parse({}), env);
  assert.equal(fromEnv.urls.logs, 'https://otlp.example.com:4318/v1/logs');
  assert.equal(fromEnv.urls.traces, 'https://otlp.example.com:4318/v1/traces');
  assert.deepEqual(fromEnv.headers, { 'api-key': 's=cret', 'x-tenant': 'acme' });
  assert.equal(fromEnv.compression, 'none');
  assert.equal(fromEnv.timeoutMs, 2500);

  const perSignal = resolveOtlpHttpConfig('otlp_http', otlpHttpExporterConfigSchema.parse({}), {
    ...env,
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'http://logs.example.com/custom/path',
  });
  assert.equal(perSignal.urls.logs, 'http://logs.example.com/custom/path');

  const configured = resolveOtlpHttpConfig(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({
      endpoint: 'http://collector:4318',
      compression: 'gzip',
      timeout: '1s',
      headers: { 'X-Tenant': 'other' },
    }),
    { ...env, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'http://ignored/' },
  );
  assert.equal(configured.urls.logs, 'http://collector:4318/v1/logs');
  assert.equal(configured.compression, 'gzip');
  assert.equal(configured.timeoutMs, 1000);
  assert.equal(configured.headers['x-tenant'], 'other');
  assert.equal(configured.encoding, 'protobuf');

  const defaults = resolveOtlpHttpConfig(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({ endpoint: 'http://c:4318' }),
    {},
  );
  assert.equal(defaults.compression, 'gzip');
  assert.equal(defaults.timeoutMs, 10_000);
});

test('a missing endpoint or a malformed variable is a clear config error', () => {
  const cfg = otlpHttpExporterConfigSchema.parse({});
  assert.throws(() => resolveOtlpHttpConfig('otlp_http/eu', cfg, {}), {
    code: 'LABELCAST_ERR_CONFIG_INVALID',
    message:
      /^Cannot configure exporters\.otlp_http\/eu: no endpoint \(set exporters\.otlp_http\/eu\.endpoint/,
  });
  assert.throws(() => resolveOtlpHttpConfig('otlp_http', cfg, { OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x' }), {
    message: /^Invalid OTEL_EXPORTER_OTLP_ENDPOINT: got "ftp:\/\/x": expected an http/,
  });
  const withEndpoint = otlpHttpExporterConfigSchema.parse({ endpoint: 'http://c:4318' });
  assert.throws(
    () => resolveOtlpHttpConfig('otlp_http', withEndpoint, { OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' }),
    {
      message: /^Invalid OTEL_EXPORTER_OTLP_COMPRESSION: got "zstd": expected gzip or none/,
    },
  );
  assert.throws(() => parseOtlpHeaders('novalue'), /is not key=value/);
  const bad = otlpHttpExporterConfigSchema.safeParse({ endpoint: 'not a url' });
  assert.equal(bad.success, false);
  assert.deepEqual(bad.error?.issues[0]?.path, ['endpoint']);
  const unknown = otlpHttpExporterConfigSchema.safeParse({ endpoint: 'http://c', compresion: 'gzip' });
  assert.equal(unknown.success, false);
  const halfTls = otlpHttpExporterConfigSchema.safeParse({
    endpoint: 'http://c',
    tls: { cert_file: '/c.pem' },
  });
  assert.deepEqual(halfTls.error?.issues[0]?.path, ['tls', 'key_file']);
});

test('partial_success is read from protobuf and JSON responses', () => {
  // ExportLogsServiceResponse{partial_success{rejected_log_records=3, error_message="bad"}}
  const proto = Buffer.from([0x0a, 0x07, 0x08, 0x03, 0x12, 0x03, 0x62, 0x61, 0x64]);
  assert.deepEqual(parsePartialSuccess(proto, 'application/x-protobuf'), { rejected: 3, message: 'bad' });
  assert.equal(parsePartialSuccess(Buffer.alloc(0), 'application/x-protobuf'), undefined);
  assert.deepEqual(
    parsePartialSuccess(
      Buffer.from('{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"x"}}'),
      'application/json',
    ),
    { rejected: 2, message: 'x' },
  );
  assert.equal(parsePartialSuccess(Buffer.from('{}'), 'application/json'), undefined);
});

interface Setup {
  receiver: OtlpReceiver;
  metrics: Registry;
  stateDir: string;
  exporter: ReturnType<typeof createOtlpHttpExporter>;
}

async function setup(
  t: { after(fn: () => Promise<void>): void },
  config: Record<string, unknown> = {},
): Promise<Setup> {
  const receiver = await startOtlpReceiver();
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-otlp-'));
  const metrics = new Registry();
  const exporter = createOtlpHttpExporter(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({
      endpoint: receiver.url,
      delivery: { max_delay: '20ms', retry: { initial_interval: '50ms', max_interval: '200ms' } },
      ...config,
    }),
    { logger: silentLogger(), metrics, stateDir },
    {},
  );
  t.after(async () => {
    await exporter.shutdown();
    await receiver.close();
    await rm(stateDir, { recursive: true, force: true });
  });
  return { receiver, metrics, stateDir, exporter };
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return ((m?.values ?? []) as { value: number; labels: Record<string, string> }[])
    .filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))
    .reduce((s, v) => s + v.value, 0);
}

test('sends gzip protobuf with custom headers and acks the batch after the 200', async (t) => {
  const s = await setup(t, { headers: { authorization: 'Bearer t0k' } });
  await s.exporter.start();
  let acked = 0;
  await s.exporter.consume({ records: [record(A, 'one'), record(B, 'two')], ack: () => acked++ });
  await until('the ack', () => acked === 1);
  const req = s.receiver.requests[0];
  assert.equal(req?.path, '/v1/logs');
  assert.equal(req?.contentType, 'application/x-protobuf');
  assert.equal(req?.contentEncoding, 'gzip');
  assert.equal(req?.headers.authorization, 'Bearer t0k');
  assert.deepEqual(
    s.receiver.logRecords().map((r) => [r.resource['container.name'], r.body]),
    [
      ['api', 'one'],
      ['worker', 'two'],
    ],
  );
  assert.equal(await metric(s.metrics, 'labelcast_exporter_sent_records_total'), 2);
});

test('JSON encoding without compression arrives intact', async (t) => {
  const s = await setup(t, { encoding: 'json', compression: 'none' });
  await s.exporter.start();
  let acked = 0;
  await s.exporter.consume({ records: [record(A, 'json line')], ack: () => acked++ });
  await until('the ack', () => acked === 1);
  assert.equal(s.receiver.requests[0]?.contentType, 'application/json');
  assert.equal(s.receiver.requests[0]?.contentEncoding, undefined);
  const [r] = s.receiver.logRecords();
  assert.equal(r?.body, 'json line');
  assert.equal(r?.timeUnixNano, '1733320000123456789');
  assert.deepEqual(r?.resource['container.image.tags'], ['2.3.1', 'latest']);
});

test('429 with Retry-After: 2 waits about 2 s before the retry', async (t) => {
  const s = await setup(t);
  s.receiver.respond(({ index }) => (index === 0 ? { status: 429, retryAfter: '2' } : { status: 200 }));
  await s.exporter.start();
  await s.exporter.consume({ records: [record(A, 'x')], ack: () => {} });
  await until('the retry', () => s.receiver.logRecords().length === 1);
  const [first, second] = s.receiver.requests;
  assert.ok(first && second);
  const waited = second.at - first.at;
  assert.ok(waited >= 1900 && waited < 4000, `waited ${waited} ms`);
  assert.equal(await metric(s.metrics, 'labelcast_exporter_retries_total'), 1);
});

test('503 without Retry-After is retried with backoff until it succeeds', async (t) => {
  const s = await setup(t);
  s.receiver.respond(({ index }) => (index < 3 ? { status: 503 } : { status: 200 }));
  await s.exporter.start();
  let acked = 0;
  await s.exporter.consume({ records: [record(A, 'x')], ack: () => acked++ });
  await until('the success', () => s.receiver.logRecords().length === 1);
  assert.equal(acked, 1, 'acked once: when spooled during the failure');
  assert.equal(s.receiver.requests.length, 4);
  assert.equal(s.receiver.logRecords().length, 1);
});

test('a 400 is not retried: the batch is dropped, counted and acked', async (t) => {
  const s = await setup(t);
  s.receiver.respond(() => ({ status: 400, message: 'invalid log record' }));
  await s.exporter.start();
  let acked = 0;
  await s.exporter.consume({ records: [record(A, 'x'), record(A, 'y')], ack: () => acked++ });
  await until('the ack', () => acked === 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(s.receiver.requests.length, 1);
  assert.equal(
    await metric(s.metrics, 'labelcast_exporter_dropped_records_total', { reason: 'http_400' }),
    2,
  );
});

test('partial_success is counted as dropped and not retried', async (t) => {
  const s = await setup(t);
  s.receiver.respond(() => ({ status: 200, partialSuccess: { rejected: 1, message: 'one too old' } }));
  await s.exporter.start();
  let acked = 0;
  await s.exporter.consume({ records: [record(A, 'x'), record(A, 'y')], ack: () => acked++ });
  await until('the ack', () => acked === 1);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(s.receiver.requests.length, 1);
  assert.equal(
    await metric(s.metrics, 'labelcast_exporter_dropped_records_total', { reason: 'partial_success' }),
    1,
  );
});

test('forward() sends an already-encoded body to the signal endpoint', async (t) => {
  const s = await setup(t);
  await s.exporter.start();
  const body = new OtlpLogsEncoder().protobuf([record(A, 'forwarded')]);
  let acked = 0;
  await s.exporter.forward('logs', body, 'protobuf', 1, () => acked++);
  await until('the ack', () => acked === 1);
  assert.equal(s.receiver.logRecords()[0]?.body, 'forwarded');
});

lifecycleSuite('otlp_http exporter', async () => {
  const receiver = await startOtlpReceiver();
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-otlp-lc-'));
  const exporter = createOtlpHttpExporter(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({ endpoint: receiver.url }),
    { logger: silentLogger(), metrics: new Registry(), stateDir },
    {},
  );
  return {
    component: exporter,
    async send() {
      const records = Array.from({ length: 100 }, (_, i) => record(A, `line ${i}`));
      await exporter.consume({ records, ack: () => {} });
      return records.length;
    },
    received: () => receiver.logRecords().length,
    async close() {
      await receiver.close();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
});

test('streamed records are grouped per container across add() calls, and buffers are reused between batches', () => {
  const encoder = new OtlpLogsEncoder();
  const first = [record(A, 'a1'), record(B, 'b1')];
  const second = [record(A, 'a2'), record(undefined, 'bare')];
  encoder.addProtobuf(first, 0, 2);
  encoder.addProtobuf(second, 0, 1);
  const one = decode(Buffer.from(encoder.finishProtobuf()));
  assert.deepEqual(
    one.resourceLogs.map((rl) => rl.scopeLogs[0]?.logRecords.map((r) => r.body.stringValue)),
    [['a1', 'a2'], ['b1']],
  );
  // The next batch starts empty, with nothing left over from the first.
  encoder.addProtobuf(second, 1, 2);
  const two = decode(encoder.finishProtobuf());
  assert.equal(two.resourceLogs.length, 1);
  assert.deepEqual(
    two.resourceLogs[0]?.scopeLogs[0]?.logRecords.map((r) => r.body.stringValue),
    ['bare'],
  );
  // A record far larger than a pooled buffer grows it.
  const big = 'x'.repeat(300_000);
  encoder.addProtobuf([record(A, big)], 0, 1);
  assert.equal(
    decode(encoder.finishProtobuf()).resourceLogs[0]?.scopeLogs[0]?.logRecords[0]?.body.stringValue,
    big,
  );
});
