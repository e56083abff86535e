import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerEntry } from '../../../../agent/metadata/types.ts';
import { ProtoWireError } from '../../../../agent/receivers/otlp-http/protowire.ts';
import { spliceJson, spliceProtobuf } from '../../../../agent/receivers/otlp-http/splice.ts';
import {
  decodeToObject,
  ExportLogsServiceRequest,
  ExportTraceServiceRequest,
} from '../../../helpers/otlp-proto.ts';

const CONTAINER_ID = 'a'.repeat(64);

const entry = {
  id: CONTAINER_ID,
  attributes: {
    'container.id': CONTAINER_ID,
    'container.name': 'api-1',
    'container.image.tags': ['2.3.1', 'latest'],
    'service.name': 'api',
    'service.version': '2.3.1',
    'vcs.ref.head.revision': '3f2a9c1d',
    'support.contact': 'oncall-api@example.com',
  },
} as unknown as ContainerEntry;

const str = (key: string, value: string) => ({ key, value: { stringValue: value } });

function traceRequest() {
  const span = (name: string) => ({
    traceId: Buffer.alloc(16, 1),
    spanId: Buffer.alloc(8, 2),
    parentSpanId: Buffer.alloc(8, 3),
    name,
    kind: 2,
    startTimeUnixNano: '1733300000123456789',
    endTimeUnixNano: '1733300000223456789',
    attributes: [str('http.route', '/pay'), { key: 'n', value: { intValue: '42' } }],
    events: [{ timeUnixNano: '1733300000173456789', name: 'retry', attributes: [str('attempt', '2')] }],
    links: [{ traceId: Buffer.alloc(16, 9), spanId: Buffer.alloc(8, 8), attributes: [str('l', 'x')] }],
    status: { code: 2, message: 'boom' },
  });
  return {
    resourceSpans: [
      {
        resource: {
          attributes: [
            str('container.id', CONTAINER_ID),
            str('service.name', 'unknown_service:node'),
            str('service.version', '9.9.9'),
          ],
          droppedAttributesCount: 1,
        },
        scopeSpans: [{ scope: { name: 'lib', version: '1' }, spans: [span('a'), span('b')] }],
        schemaUrl: 'https://opentelemetry.io/schemas/1.26.0',
      },
      {
        resource: { attributes: [str('host.name', 'elsewhere')] },
        scopeSpans: [{ scope: { name: 'other' }, spans: [span('c')] }],
      },
    ],
  };
}

const associate = (attrs: ReadonlyMap<string, string | undefined>) =>
  attrs.get('container.id') === CONTAINER_ID ? entry : undefined;

test('the protobuf splice adds container attributes to the matched Resource and copies spans byte for byte', () => {
  const original = ExportTraceServiceRequest.encode(
    ExportTraceServiceRequest.fromObject(traceRequest()),
  ).finish();
  const result = spliceProtobuf(Buffer.from(original), associate);
  assert.equal(result.matched, 1);
  assert.equal(result.unmatched, 1);

  const before = decodeToObject(ExportTraceServiceRequest, original) as {
    resourceSpans: Record<string, unknown>[];
  };
  const after = decodeToObject(ExportTraceServiceRequest, result.body) as {
    resourceSpans: Record<string, unknown>[];
  };
  const [matched, unmatched] = after.resourceSpans;
  assert.deepEqual(matched?.scopeSpans, before.resourceSpans[0]?.scopeSpans);
  assert.equal(matched?.schemaUrl, 'https://opentelemetry.io/schemas/1.26.0');
  assert.deepEqual(unmatched, before.resourceSpans[1]);

  const resource = matched?.resource as { attributes: { key: string; value: Record<string, unknown> }[] };
  const attrs = Object.fromEntries(resource.attributes.map((kv) => [kv.key, kv.value]));
  assert.deepEqual(attrs['service.name'], { stringValue: 'api' }, 'unknown_service is replaced');
  assert.deepEqual(
    attrs['service.version'],
    { stringValue: '9.9.9' },
    'an application value is never overwritten',
  );
  assert.deepEqual(attrs['support.contact'], { stringValue: 'oncall-api@example.com' });
  assert.deepEqual(attrs['container.image.tags'], {
    arrayValue: { values: [{ stringValue: '2.3.1' }, { stringValue: 'latest' }] },
  });
  assert.equal(
    resource.attributes.length,
    new Set(resource.attributes.map((kv) => kv.key)).size,
    'keys unique',
  );
  assert.equal((resource as unknown as { droppedAttributesCount: number }).droppedAttributesCount, 1);
});

test('the protobuf splice equals a full decode, edit and re-encode of the same request', () => {
  const original = ExportTraceServiceRequest.encode(
    ExportTraceServiceRequest.fromObject(traceRequest()),
  ).finish();
  const spliced = decodeToObject(
    ExportTraceServiceRequest,
    spliceProtobuf(Buffer.from(original), associate).body,
  );
  const json = traceRequestAsJson();
  spliceJson(json, 'resourceSpans', associate);
  const viaJson = decodeToObject(
    ExportTraceServiceRequest,
    ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(json)).finish(),
  );
  assert.deepEqual(spliced, viaJson);
});

function traceRequestAsJson(): Record<string, unknown> {
  const decoded = ExportTraceServiceRequest.decode(
    ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(traceRequest())).finish(),
  );
  return ExportTraceServiceRequest.toObject(decoded, { longs: String, arrays: true });
}

test('a log request with no match passes through unchanged', () => {
  const request = {
    resourceLogs: [
      {
        resource: { attributes: [str('service.name', 'x')] },
        scopeLogs: [
          { logRecords: [{ timeUnixNano: '1', body: { stringValue: 'hello' }, severityNumber: 9 }] },
        ],
      },
    ],
  };
  const original = Buffer.from(
    ExportLogsServiceRequest.encode(ExportLogsServiceRequest.fromObject(request)).finish(),
  );
  const result = spliceProtobuf(original, () => undefined);
  assert.deepEqual(result.body, original);
  assert.equal(result.unmatched, 1);
});

test('a truncated protobuf body is reported as malformed', () => {
  const original = ExportTraceServiceRequest.encode(
    ExportTraceServiceRequest.fromObject(traceRequest()),
  ).finish();
  assert.throws(
    () => spliceProtobuf(Buffer.from(original.subarray(0, original.length - 5)), associate),
    ProtoWireError,
  );
});
