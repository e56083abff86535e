import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatEventTime, LineFramer, parseEvent } from '../../../agent/docker/events.ts';

const recorded = readFileSync(join(import.meta.dirname, '../../fixtures/docker/events-lifecycle.ndjson'));

function frame(chunks: Buffer[]): string[] {
  const lines: string[] = [];
  const framer = new LineFramer((l) => lines.push(l));
  for (const c of chunks) framer.write(c);
  framer.end();
  return lines;
}

test('the recorded stream frames into one event per line, whatever the chunk boundaries', () => {
  const whole = frame([recorded]);
  assert.equal(whole.length, 11);
  for (const size of [1, 7, 64, 1000]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < recorded.length; i += size) chunks.push(recorded.subarray(i, i + size));
    assert.deepEqual(frame(chunks), whole, `chunks of ${size} bytes`);
  }
});

test('a multi-byte character split across chunks survives, and a last line without newline is kept', () => {
  const line = Buffer.from(
    '{"Type":"container","Action":"start","Actor":{"ID":"x","Attributes":{"name":"café☕"}}}\n{"a":1}',
  );
  const cut = line.indexOf(Buffer.from('☕')) + 1;
  const lines = frame([line.subarray(0, cut), line.subarray(cut)]);
  assert.equal(lines.length, 2);
  assert.equal(parseEvent(lines[0] as string, 0)?.attributes.name, 'café☕');
  assert.equal(lines[1], '{"a":1}');
});

test('timeNano is parsed exactly, beyond 2^53', () => {
  const line =
    '{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137"}},"time":1764860400,"timeNano":1764860400123456789}';
  const event = parseEvent(line, 5);
  assert.equal(event?.timeNano, 1764860400123456789n);
  assert.notEqual(BigInt(JSON.parse(line).timeNano), 1764860400123456789n, 'JSON.parse alone loses it');
  assert.equal(event?.type, 'container');
  assert.equal(event?.action, 'die');
  assert.equal(event?.id, 'abc');
  assert.equal(event?.attributes.exitCode, '137');
  assert.equal(event?.receivedAt, 5);
});

test('recorded events carry their type, action, actor and attributes', () => {
  const events = frame([recorded]).map((l) => parseEvent(l, 0));
  assert.deepEqual(
    events.map((e) => `${e?.type}:${e?.action}`),
    [
      'container:create',
      'container:start',
      'container:rename',
      'image:tag',
      'image:untag',
      'container:update',
      'container:kill',
      'container:die',
      'container:destroy',
      'container:create',
      'container:start',
    ],
  );
  const rename = events[2];
  assert.equal(rename?.attributes.name, 'probe2');
  assert.equal(rename?.attributes.oldName, '/probe');
  assert.match(events[3]?.id ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.match(events[0]?.id ?? '', /^[0-9a-f]{64}$/);
  for (const e of events) assert.ok((e?.timeNano ?? 0n) > 1_600_000_000_000_000_000n);
});

test('lines that are not events are skipped', () => {
  assert.equal(parseEvent('not json', 0), undefined);
  assert.equal(parseEvent('null', 0), undefined);
  assert.equal(parseEvent('{"Type":"container"}', 0), undefined);
});

test('since is formatted as seconds with a 9-digit nanosecond fraction', () => {
  assert.equal(formatEventTime(1764860400000000042n), '1764860400.000000042');
  assert.equal(formatEventTime(1764860400123456789n), '1764860400.123456789');
});
