import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createLogStreamParser,
  DOCKER_PARTIAL_SIZE,
  formatDockerTimestamp,
  type LogMessage,
  LogStreamError,
  type LogStreamItem,
  parseRfc3339Nano,
} from '../../../agent/docker/log-stream.ts';

function frame(type: number, payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** Feeds `body` one byte at a time, so every header, timestamp and line is split across chunks. */
function parseBytewise(body: Buffer): LogStreamItem[] {
  const parser = createLogStreamParser();
  const out: LogStreamItem[] = [];
  for (let i = 0; i < body.length; i++) out.push(...parser.push(body.subarray(i, i + 1)));
  out.push(...parser.end());
  return out;
}

const text = (items: LogStreamItem[]) =>
  items.map((m) =>
    m.kind === 'message' ? `${m.stream}:${m.content.toString()}${m.partial ? '…' : ''}` : `!${m.text}`,
  );

describe('parseRfc3339Nano', () => {
  it('converts nanosecond timestamps to bigint without losing precision', () => {
    assert.equal(parseRfc3339Nano('2026-12-04T15:22:44.123456789Z'), 1796397764123456789n);
    assert.equal(parseRfc3339Nano('2026-12-04T15:22:44.000000001Z'), 1796397764000000001n);
    assert.equal(parseRfc3339Nano('2026-12-04T15:22:44Z'), 1796397764000000000n);
    assert.equal(parseRfc3339Nano('2026-12-04T16:22:44.5+01:00'), 1796397764500000000n);
  });

  it('rejects text that is not a timestamp', () => {
    assert.equal(parseRfc3339Nano('hello'), undefined);
    assert.equal(parseRfc3339Nano('2026-12-04T15:22:44.1234567891Z'), undefined);
  });

  it('formats since= with nine nanosecond digits, round-tripping the parser', () => {
    assert.equal(formatDockerTimestamp(1796397764000000001n), '1796397764.000000001');
    assert.equal(formatDockerTimestamp(1796397764123456789n), '1796397764.123456789');
  });
});

describe('createLogStreamParser (multiplexed frames)', () => {
  const body = Buffer.concat([
    frame(1, '2026-12-04T15:22:44.000000001Z line one\n'),
    frame(2, '2026-12-04T15:22:44.000000002Z oops\n'),
    frame(3, 'error from daemon in stream: Error grabbing logs: bad\n'),
    frame(1, '2026-12-04T15:22:44.000000003Z \n'),
    frame(1, '2026-12-04T15:22:44.000000004Z héllo ✓\n'),
  ]);

  it('demultiplexes stdout, stderr and systemerr frames, even split byte by byte', () => {
    assert.deepEqual(text(parseBytewise(body)), [
      'stdout:line one',
      'stderr:oops',
      '!error from daemon in stream: Error grabbing logs: bad',
      'stdout:',
      'stdout:héllo ✓',
    ]);
  });

  it('keeps each message timestamp exactly', () => {
    const times = parseBytewise(body)
      .filter((m): m is LogMessage => m.kind === 'message')
      .map((m) => m.timeUnixNano);
    assert.deepEqual(times, [
      1796397764000000001n,
      1796397764000000002n,
      1796397764000000003n,
      1796397764000000004n,
    ]);
  });

  it('marks a message without a trailing newline as partial', () => {
    const items = parseBytewise(
      Buffer.concat([frame(1, '2026-12-04T15:22:44.1Z abc'), frame(1, '2026-12-04T15:22:44.2Z def\n')]),
    );
    assert.deepEqual(text(items), ['stdout:abc…', 'stdout:def']);
  });

  it('refuses a stream whose frame header is corrupt', () => {
    const parser = createLogStreamParser();
    assert.throws(() => parser.push(Buffer.from([1, 7, 0, 0, 0, 0, 0, 1, 65])), LogStreamError);
  });

  it('refuses a body that ends inside a frame', () => {
    const parser = createLogStreamParser();
    parser.push(frame(1, '2026-12-04T15:22:44.1Z abc\n').subarray(0, 12));
    assert.throws(() => parser.end(), LogStreamError);
  });
});

describe('createLogStreamParser (TTY raw stream)', () => {
  it('splits the raw stream into lines and drops the terminal carriage return', () => {
    const body = Buffer.from(
      '2026-12-04T15:22:44.000000001Z one\r\n2026-12-04T15:22:44.000000002Z two\r\n2026-12-04T15:22:44.000000003Z \r\n',
    );
    assert.deepEqual(text(parseBytewise(body)), ['stdout:one', 'stdout:two', 'stdout:']);
  });

  it('recognises 16 KiB partial pieces by the timestamp where the engine cut them', () => {
    const first = 'a'.repeat(DOCKER_PARTIAL_SIZE);
    const body = Buffer.from(`2026-12-04T15:22:44.1Z ${first}2026-12-04T15:22:44.2Z tail\r\n`);
    const items = parseBytewise(body);
    assert.equal(items.length, 2);
    const [a, b] = items as LogMessage[];
    assert.equal(a?.partial, true);
    assert.equal(a?.content.length, DOCKER_PARTIAL_SIZE);
    assert.equal(b?.content.toString(), 'tail');
    assert.equal(b?.partial, false);
  });

  it('returns an unterminated last line when the body ends', () => {
    assert.deepEqual(text(parseBytewise(Buffer.from('2026-12-04T15:22:44.1Z bye'))), ['stdout:bye…']);
  });
});
