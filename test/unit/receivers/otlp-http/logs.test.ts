import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerEntry } from '../../../../agent/metadata/types.ts';
import { logRecordsFromJson, logRecordsFromProtobuf } from '../../../../agent/receivers/otlp-http/logs.ts';
import { ExportLogsServiceRequest } from '../../../helpers/otlp-proto.ts';

const entry = { id: 'e'.repeat(64) } as unknown as ContainerEntry;
const associate = (r: ReadonlyMap<string, string | undefined>) =>
  r.get('container.id') === 'e'.repeat(12) ? entry : undefined;

const request = {
  resourceLogs: [
    {
      resource: { attributes: [{ key: 'container.id', value: { stringValue: 'e'.repeat(12) } }] },
      scopeLogs: [
        {
          scope: { name: 'app' },
          logRecords: [
            {
              timeUnixNano: '1733300000123456789',
              observedTimeUnixNano: '1733300000223456789',
              severityNumber: 13,
              severityText: 'WARN',
              body: { stringValue: 'disk almost full' },
              attributes: [
                { key: 'disk', value: { stringValue: '/dev/sda1' } },
                { key: 'pct', value: { intValue: '93' } },
                { key: 'ok', value: { boolValue: false } },
              ],
              traceId: Buffer.from('0af7651916cd43dd8448eb211c80319c', 'hex'),
              spanId: Buffer.from('b7ad6b7169203331', 'hex'),
            },
            { body: { kvlistValue: { values: [{ key: 'a', value: { doubleValue: 1.5 } }] } } },
          ],
        },
      ],
    },
    { resource: {}, scopeLogs: [{ logRecords: [{ timeUnixNano: '5', body: { stringValue: 'other' } }] }] },
  ],
};

const expected = [
  {
    timeUnixNano: 1733300000123456789n,
    observedUnixNano: 1733300000223456789n,
    severityNumber: 13,
    severityText: 'WARN',
    body: 'disk almost full',
    attributes: {
      disk: '/dev/sda1',
      pct: '93',
      ok: 'false',
      trace_id: '0af7651916cd43dd8448eb211c80319c',
      span_id: 'b7ad6b7169203331',
    },
    container: entry,
    containerId: entry.id,
  },
  { body: '{"a":1.5}', container: entry, severityNumber: 0, attributes: undefined },
  { body: 'other', timeUnixNano: 5n, container: undefined, containerId: '' },
];

function check(records: ReturnType<typeof logRecordsFromJson>): void {
  assert.equal(records.length, 3);
  records.forEach((r, i) => {
    for (const [key, value] of Object.entries(expected[i] as object))
      assert.deepEqual(r[key as keyof typeof r], value, `record ${i} ${key}`);
    assert.equal(r.stream, undefined, 'an OTLP log has no stdout/stderr stream');
  });
  // A record without a time takes its observed time.
  assert.equal(records[1]?.timeUnixNano, records[1]?.observedUnixNano);
}

test('protobuf OTLP logs decode into LogRecords with the associated container', () => {
  const body = Buffer.from(
    ExportLogsServiceRequest.encode(ExportLogsServiceRequest.fromObject(request)).finish(),
  );
  check(logRecordsFromProtobuf(body, associate));
});

test('OTLP/JSON logs decode into the same LogRecords', () => {
  const json = JSON.parse(
    JSON.stringify(request, (key, value) =>
      key === 'traceId' || key === 'spanId' ? Buffer.from(value.data).toString('hex') : value,
    ),
  );
  check(logRecordsFromJson(json, associate));
});
