import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import snappy from 'snappyjs';
import { lokiExporterConfigSchema } from '../../../agent/exporters/loki/config.ts';
import { createLokiEncoder } from '../../../agent/exporters/loki/encode.ts';
import { createLabelPolicy } from '../../../agent/exporters/loki/labels.ts';
import type { LogRecord } from '../../../agent/pipeline/types.ts';
import { decodePushRequest } from '../../helpers/loki-receiver.ts';
import { APP_ATTRIBUTES, APP_STREAM_METADATA, containerEntry, logRecord } from './loki-fixtures.ts';

const config = lokiExporterConfigSchema.parse({ endpoint: 'http://127.0.0.1:3100' });
const encoder = (encoding: 'protobuf' | 'json', gzip = false, maxLineSize = 256 * 1024) => {
  const truncated: number[] = [];
  const enc = createLokiEncoder({
    encoding,
    gzip,
    maxLineSize,
    policy: createLabelPolicy(config),
    onTruncated: (n) => truncated.push(n),
  });
  return { enc, truncated };
};

const app = containerEntry();
const worker = containerEntry(
  { ...APP_ATTRIBUTES, 'container.name': 'worker-1', 'container.id': 'b'.repeat(64) },
  'b'.repeat(64),
);
const T0 = 1_764_860_400_123_456_789n; // nanosecond precision that a float64 would lose

function sampleRecords(): LogRecord[] {
  return [
    logRecord('GET /health 200', T0, app),
    logRecord('worker started', T0 + 1n, worker),
    logRecord('{"level":"error","msg":"boom ✗"}', T0 + 2n, app, {
      stream: 'stderr',
      severityText: 'error',
      severityNumber: 17,
      attributes: { 'log.file.path': '/var/lib/docker/containers/x/x-json.log', 'com.example.tag': 'x' },
    }),
    logRecord('', 1_000_000_000n, app),
  ];
}

function assertSample(streams: ReturnType<typeof decodePushRequest>): void {
  assert.equal(streams.length, 2, 'one stream per container');
  const [a, w] = streams;
  assert.deepEqual(Object.fromEntries(a?.pairs ?? []), {
    container_name: 'api-1',
    service_name: 'api',
    support_contact: 'oncall-api@example.com',
    team: 'payments',
  });
  assert.equal(Object.fromEntries(w?.pairs ?? []).container_name, 'worker-1');
  assert.deepEqual(
    a?.entries.map((e) => [e.ts, e.line]),
    [
      [T0, 'GET /health 200'],
      [T0 + 2n, '{"level":"error","msg":"boom ✗"}'],
      [1_000_000_000n, ''],
    ],
  );
  assert.deepEqual(a?.entries[0]?.meta, [...APP_STREAM_METADATA, ['log_iostream', 'stdout']]);
  assert.deepEqual(a?.entries[1]?.meta, [
    ...APP_STREAM_METADATA,
    ['log_iostream', 'stderr'],
    ['severity_text', 'error'],
    ['log_file_path', '/var/lib/docker/containers/x/x-json.log'],
    ['com_example_tag', 'x'],
  ]);
  assert.deepEqual(
    w?.entries.map((e) => e.ts),
    [T0 + 1n],
  );
}

test('protobuf push bodies are raw-block snappy PushRequests that an independent decoder reads back exactly', () => {
  const payload = encoder('protobuf').enc.encode(sampleRecords());
  assert.deepEqual(payload.headers, { 'content-type': 'application/x-protobuf' });
  assert.equal(payload.records, 4);
  assert.equal(payload.route, 'logs');
  // Raw block format: starts with the uncompressed length varint, no stream identifier chunk (0xff).
  assert.notEqual(payload.body[0], 0xff);
  assert.ok(snappy.uncompress(new Uint8Array(payload.body)).length > 0);
  assertSample(decodePushRequest(Buffer.from(payload.body), 'application/x-protobuf'));
});

test('JSON push bodies carry the same streams, nanosecond string timestamps and structured metadata', () => {
  const payload = encoder('json').enc.encode(sampleRecords());
  assert.deepEqual(payload.headers, { 'content-type': 'application/json' });
  const doc = JSON.parse(Buffer.from(payload.body).toString('utf8'));
  assert.equal(doc.streams[0].values[0][0], String(T0));
  assertSample(decodePushRequest(Buffer.from(payload.body), 'application/json'));
});

test('a record without a stream (an OTLP log) carries no log_iostream metadata', () => {
  for (const encoding of ['protobuf', 'json'] as const) {
    const { enc } = encoder(encoding);
    const r = logRecord('from the SDK', T0, app);
    r.stream = undefined;
    const payload = enc.encode([r]);
    const contentType = encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    const [stream] = decodePushRequest(Buffer.from(payload.body), contentType);
    assert.deepEqual(stream?.entries[0]?.meta, APP_STREAM_METADATA, encoding);
  }
});

test('gzip JSON push bodies say so and decompress to the same request', () => {
  const payload = encoder('json', true).enc.encode(sampleRecords());
  assert.deepEqual(payload.headers, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
  JSON.parse(gunzipSync(payload.body).toString('utf8'));
  assertSample(decodePushRequest(Buffer.from(payload.body), 'application/json', 'gzip'));
});

for (const encoding of ['protobuf', 'json'] as const) {
  test(`${encoding}: lines longer than max_line_size are cut on a character boundary and marked`, () => {
    const { enc, truncated } = encoder(encoding, false, 1000);
    const long = `${'a'.repeat(999)}é${'b'.repeat(5000)}`; // é would straddle byte 1000
    const fits = 'x'.repeat(1000);
    const payload = enc.encode([logRecord(long, T0, app), logRecord(fits, T0 + 1n, app)]);
    const contentType = encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    const [stream] = decodePushRequest(Buffer.from(payload.body), contentType);
    const [cut, kept] = stream?.entries ?? [];
    assert.equal(cut?.line, 'a'.repeat(999));
    assert.deepEqual(cut?.meta.at(-1), ['labelcast_truncated', 'true']);
    assert.equal(kept?.line, fits);
    assert.ok(!kept?.meta.some(([n]) => n === 'labelcast_truncated'));
    assert.deepEqual(truncated, [1]);
  });

  test(`${encoding}: a record whose container is unknown goes out under unknown_service with its container id`, () => {
    const orphan = logRecord('late line', T0, undefined, { containerId: 'c'.repeat(64) });
    const payload = encoder(encoding).enc.encode([orphan]);
    const contentType = encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    const [stream] = decodePushRequest(Buffer.from(payload.body), contentType);
    assert.deepEqual(stream?.pairs, [['service_name', 'unknown_service']]);
    assert.deepEqual(stream?.entries[0]?.meta, [
      ['log_iostream', 'stdout'],
      ['container_id', 'c'.repeat(64)],
    ]);
  });
}
