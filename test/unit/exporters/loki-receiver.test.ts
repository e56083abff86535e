import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type LokiReceiver, parseSelector, startLokiReceiver } from '../../helpers/loki-receiver.ts';

// The spec receiver stands in for Loki in every exporter test, so it is tested against Loki's rules too.

let receiver: LokiReceiver;
before(async () => {
  receiver = await startLokiReceiver({ maxLineSize: 100 });
});
after(() => receiver.close());

const push = async (body: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(`${receiver.url}/loki/api/v1/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  return { status: res.status, text: (await res.text()).trim() };
};
const stream = (labels: Record<string, string>, line = 'x') => ({
  streams: [{ stream: labels, values: [['1764860400000000001', line, { trace_id: 'abc' }]] }],
});

test('a valid JSON push is accepted with 204, with nanosecond timestamps and structured metadata', async () => {
  const before = receiver.entries.length;
  assert.deepEqual(await push(stream({ service_name: 'api' }, 'hello')), { status: 204, text: '' });
  assert.deepEqual(receiver.entries.slice(before), [
    {
      labels: { service_name: 'api' },
      timestampNs: 1_764_860_400_000_000_001n,
      line: 'hello',
      metadataPairs: [['trace_id', 'abc']],
      structuredMetadata: { trace_id: 'abc' },
    },
  ]);
});

test('a gzip JSON push is accepted', async () => {
  const body = gzipSync(JSON.stringify(stream({ job: 'x' })));
  assert.equal((await push(new Uint8Array(body), { 'content-encoding': 'gzip' })).status, 204);
});

test('invalid label names, reserved names, missing labels and 16 labels get 400 with Loki’s messages', async () => {
  const invalid = await push(stream({ 'service.name': 'api' }));
  assert.equal(invalid.status, 400);
  assert.match(invalid.text, /^Error parsing labels/);
  assert.equal((await push(stream({ __name: 'x' }))).status, 400);
  assert.deepEqual(await push(stream({})), {
    status: 400,
    text: 'error at least one label pair is required per stream',
  });
  const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`l${i}`, 'v']));
  const tooMany = await push(stream(sixteen));
  assert.equal(tooMany.status, 400);
  assert.match(tooMany.text, /has 16 label names; limit 15$/);
});

test('a line above max_line_size gets 400 line too long', async () => {
  const res = await push(stream({ job: 'x' }, 'y'.repeat(101)));
  assert.equal(res.status, 400);
  assert.match(res.text, /^Max entry size '100' bytes exceeded/);
});

test('an undecodable protobuf body gets 400, and queued answers come first', async () => {
  const res = await fetch(`${receiver.url}/loki/api/v1/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf' },
    body: new Uint8Array([0xff, 0xff, 0xff]),
  });
  assert.equal(res.status, 400);
  receiver.enqueue({ status: 429, body: 'slow down' });
  assert.deepEqual(await push(stream({ job: 'x' })), { status: 429, text: 'slow down' });
  assert.equal((await push(stream({ job: 'x' }))).status, 204);
});

test('stream selectors are parsed with escaped quotes and backslashes', () => {
  assert.deepEqual(parseSelector('{a="x", b="say \\"hi\\" \\\\o/"}'), [
    ['a', 'x'],
    ['b', 'say "hi" \\o/'],
  ]);
});
