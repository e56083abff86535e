/**
 * Reader for the body of `GET /containers/{id}/logs?timestamps=1`. Without a TTY the body is a sequence
 * of 8-byte-header frames `[type,0,0,0,size uint32 BE]` (0 stdin, 1 stdout, 2 stderr, 3 systemerr);
 * with a TTY it is the raw bytes. dockerode's `demuxStream` throws on type 3, so this is our own.
 *
 * The engine writes each log message (one line, or one 16 KiB piece of a longer line) as one write:
 * one frame, prefixed by its RFC3339Nano timestamp and a space. HTTP chunks may split anything.
 */

/**
 * One log message as the engine stored it. `content` excludes the timestamp and the trailing `\n` (and,
 * for a TTY, the `\r` the terminal put before it). A TTY has one stream: everything is stdout.
 */
export interface LogMessage {
  readonly kind: 'message';
  readonly stream: 'stdout' | 'stderr';
  readonly timeUnixNano: bigint;
  readonly content: Buffer;
  /** No trailing newline: a 16 KiB piece of a longer line (or the last bytes before the process exited). */
  readonly partial: boolean;
}

/** A type-3 frame: the engine reporting an error while reading the log (not container output). */
export interface SystemErrorMessage {
  readonly kind: 'systemerr';
  readonly text: string;
}

export type LogStreamItem = LogMessage | SystemErrorMessage;

/** The size at which Docker's log copier cuts a line without a newline into partial messages. */
export const DOCKER_PARTIAL_SIZE = 16 * 1024;

/** A frame larger than this cannot come from the engine's log copier: the stream is corrupt. */
const MAX_FRAME_BYTES = 4 * 1024 * 1024;
const HEADER_BYTES = 8;
const NS_PER_SECOND = 1_000_000_000n;
const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/** Thrown when the body is not a Docker log stream; the caller drops the connection and reconnects. */
export class LogStreamError extends Error {
  override name = 'LogStreamError';
}

let cachedSecondsKey = '';
let cachedSecondsNano = 0n;

/**
 * Parses an RFC3339 timestamp with up to 9 fractional digits to Unix nanoseconds, exactly (no float on
 * the way). Returns undefined when `text` is not such a timestamp.
 */
export function parseRfc3339Nano(text: string): bigint | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const secondsKey = `${m[1]}${m[3]}`;
  // Consecutive lines almost always share the second: parse the date part once per second.
  if (secondsKey !== cachedSecondsKey) {
    const ms = Date.parse(secondsKey);
    if (Number.isNaN(ms)) return undefined;
    cachedSecondsKey = secondsKey;
    cachedSecondsNano = BigInt(ms) * 1_000_000n;
  }
  const frac = m[2];
  return frac === undefined ? cachedSecondsNano : cachedSecondsNano + BigInt(frac.padEnd(9, '0'));
}

/** Formats Unix nanoseconds as the engine's `since`/`until` parameter: `seconds.nanoseconds`. */
export function formatDockerTimestamp(unixNano: bigint): string {
  const seconds = unixNano / NS_PER_SECOND;
  const nanos = unixNano % NS_PER_SECOND;
  return `${seconds}.${nanos.toString().padStart(9, '0')}`;
}

/** Splits `<timestamp> <content>`; returns undefined when the bytes do not start with a timestamp. */
function splitTimestamp(
  buf: Buffer,
  start: number,
  end: number,
): { time: bigint; contentStart: number } | undefined {
  // RFC3339Nano with a zone offset is at most 35 characters.
  const limit = Math.min(end, start + 40);
  for (let i = start; i < limit; i++) {
    if (buf[i] === 0x20) {
      const time = parseRfc3339Nano(buf.toString('latin1', start, i));
      return time === undefined ? undefined : { time, contentStart: i + 1 };
    }
  }
  return undefined;
}

function message(
  stream: 'stdout' | 'stderr',
  time: bigint,
  buf: Buffer,
  start: number,
  end: number,
): LogMessage {
  const partial = end === start || buf[end - 1] !== 0x0a;
  return {
    kind: 'message',
    stream,
    timeUnixNano: time,
    content: buf.subarray(start, partial ? end : end - 1),
    partial,
  };
}

/**
 * An incremental parser for one logs response. `push` takes each HTTP chunk and returns the messages it
 * completed; `end` returns what is left when the body ends. Throws LogStreamError on a corrupt stream.
 * The framing (multiplexed or TTY raw) is detected from the first byte: a frame starts with 0-3, a
 * timestamp with a digit.
 */
export interface LogStreamParser {
  push(chunk: Buffer): LogStreamItem[];
  end(): LogStreamItem[];
}

export function createLogStreamParser(): LogStreamParser {
  let pending: Buffer = Buffer.alloc(0);
  let mode: 'unknown' | 'frames' | 'raw' = 'unknown';

  const parseFrames = (out: LogStreamItem[]): void => {
    let pos = 0;
    while (pending.length - pos >= HEADER_BYTES) {
      const type = pending[pos] as number;
      const size = pending.readUInt32BE(pos + 4);
      if (type > 3 || pending[pos + 1] !== 0 || pending[pos + 2] !== 0 || pending[pos + 3] !== 0) {
        throw new LogStreamError(`Cannot read the Docker log stream: bad frame header (type byte ${type})`);
      }
      if (size > MAX_FRAME_BYTES) {
        throw new LogStreamError(`Cannot read the Docker log stream: frame of ${size} bytes is too large`);
      }
      const start = pos + HEADER_BYTES;
      const end = start + size;
      if (end > pending.length) break;
      pos = end;
      if (type === 3) {
        out.push({ kind: 'systemerr', text: pending.toString('utf8', start, end).trimEnd() });
        continue;
      }
      // stdin never carries log output; it is not requested.
      if (type === 0 || size === 0) continue;
      const split = splitTimestamp(pending, start, end);
      if (!split) {
        throw new LogStreamError(
          'Cannot read the Docker log stream: a frame does not start with a timestamp',
        );
      }
      out.push(message(type === 2 ? 'stderr' : 'stdout', split.time, pending, split.contentStart, end));
    }
    pending = pending.subarray(pos);
  };

  const parseRaw = (out: LogStreamItem[], atEnd: boolean): void => {
    let pos = 0;
    while (pos < pending.length) {
      const split = splitTimestamp(pending, pos, pending.length);
      if (!split) {
        if (pending.length - pos < 40 && !atEnd) break;
        throw new LogStreamError(
          'Cannot read the Docker log stream: a TTY line does not start with a timestamp',
        );
      }
      const { time, contentStart } = split;
      const newline = pending.indexOf(0x0a, contentStart);
      // A TTY stream has no frames: a 16 KiB piece of a long line is recognised by the next message's
      // timestamp starting exactly where the engine cut it.
      const cut = contentStart + DOCKER_PARTIAL_SIZE;
      if (newline === -1 || newline >= cut) {
        if (pending.length > cut && splitTimestamp(pending, cut, pending.length)) {
          out.push(message('stdout', time, pending, contentStart, cut));
          pos = cut;
          continue;
        }
        if (newline === -1) {
          if (atEnd) {
            out.push(message('stdout', time, pending, contentStart, pending.length));
            pos = pending.length;
          }
          break;
        }
      }
      // A TTY turns `\n` into `\r\n`; the `\r` is the terminal's, not the application's.
      const end = newline > contentStart && pending[newline - 1] === 0x0d ? newline - 1 : newline;
      out.push({
        kind: 'message',
        stream: 'stdout',
        timeUnixNano: time,
        content: pending.subarray(contentStart, end),
        partial: false,
      });
      pos = newline + 1;
    }
    pending = pending.subarray(pos);
  };

  const parse = (atEnd: boolean): LogStreamItem[] => {
    const out: LogStreamItem[] = [];
    if (mode === 'unknown' && pending.length > 0) mode = (pending[0] as number) <= 3 ? 'frames' : 'raw';
    if (mode === 'frames') parseFrames(out);
    else if (mode === 'raw') parseRaw(out, atEnd);
    return out;
  };

  return {
    push(chunk) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      return parse(false);
    },
    end() {
      const out = parse(true);
      if (mode === 'frames' && pending.length > 0) {
        pending = Buffer.alloc(0);
        throw new LogStreamError('Cannot read the Docker log stream: the body ended inside a frame');
      }
      pending = Buffer.alloc(0);
      return out;
    },
  };
}
