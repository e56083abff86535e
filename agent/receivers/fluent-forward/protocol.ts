import { gunzipSync } from 'node:zlib';
import { Decoder, type DecoderOptions, ExtensionCodec } from '@msgpack/msgpack';

/**
 * Fluentd Forward protocol v1, server side
 * (https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1):
 *
 * - Message: `[tag, time, record, option?]`
 * - Forward: `[tag, [[time, record], …], option?]`
 * - PackedForward: `[tag, bin(msgpack stream of [time, record]), option?]`
 * - CompressedPackedForward: PackedForward with `option.compressed = "gzip"`
 *
 * `time` is an integer (seconds) or EventTime, ext type 0: uint32 BE seconds + uint32 BE nanoseconds.
 */

export interface ForwardEntry {
  readonly timeUnixNano: bigint;
  readonly record: Record<string, unknown>;
}

export type ForwardMode = 'message' | 'forward' | 'packed_forward' | 'compressed_packed_forward';

export interface ForwardMessage {
  readonly tag: string;
  readonly mode: ForwardMode;
  readonly entries: ForwardEntry[];
  /** `option.chunk`: the client wants `{ ack: chunk }` once the entries are accepted. */
  readonly chunk: string | undefined;
}

/** The peer sent something that is not Forward protocol; the connection is closed. `reason` is a metric label. */
export class ForwardProtocolError extends Error {
  override name = 'ForwardProtocolError';
  readonly reason: 'msgpack' | 'shape' | 'time' | 'too_large' | 'gzip';
  constructor(reason: ForwardProtocolError['reason'], message: string) {
    super(message);
    this.reason = reason;
  }
}

const NS_PER_SECOND = 1_000_000_000n;

/** EventTime decoded to Unix nanoseconds, wrapped so it cannot be mistaken for an integer time. */
export class EventTime {
  readonly unixNano: bigint;
  constructor(unixNano: bigint) {
    this.unixNano = unixNano;
  }
}

export const EVENT_TIME_EXT_TYPE = 0;

/** The codec that turns ext type 0 into EventTime (and back, for clients and tests). */
export const forwardExtensionCodec = new ExtensionCodec();
forwardExtensionCodec.register({
  type: EVENT_TIME_EXT_TYPE,
  encode: (value: unknown) => {
    if (!(value instanceof EventTime)) return null;
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, Number(value.unixNano / NS_PER_SECOND));
    view.setUint32(4, Number(value.unixNano % NS_PER_SECOND));
    return out;
  },
  decode: (data: Uint8Array) => {
    if (data.length !== 8)
      throw new ForwardProtocolError('time', `EventTime must be 8 bytes, got ${data.length}`);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return new EventTime(BigInt(view.getUint32(0)) * NS_PER_SECOND + BigInt(view.getUint32(4)));
  },
});

/** Decoder limits derived from the per-connection buffer bound, so one object cannot claim more. */
export function decoderOptions(maxBufferBytes: number): DecoderOptions {
  return {
    extensionCodec: forwardExtensionCodec,
    maxStrLength: maxBufferBytes,
    maxBinLength: maxBufferBytes,
    maxExtLength: 16,
    maxArrayLength: Math.max(1024, Math.floor(maxBufferBytes / 8)),
    maxMapLength: 65_536,
  };
}

function toTime(value: unknown): bigint {
  if (value instanceof EventTime) return value.unixNano;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) {
    if (Number.isInteger(value)) return BigInt(value) * NS_PER_SECOND;
    // Some clients send float seconds: keep what a double holds (microseconds).
    const seconds = Math.floor(value);
    return BigInt(seconds) * NS_PER_SECOND + BigInt(Math.round((value - seconds) * 1e6)) * 1000n;
  }
  if (typeof value === 'bigint' && value >= 0n) return value * NS_PER_SECOND;
  throw new ForwardProtocolError('time', 'Event time must be an integer or an EventTime (ext type 0)');
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  !(v instanceof Uint8Array) &&
  !(v instanceof EventTime);

function toEntry(value: unknown): ForwardEntry {
  if (!Array.isArray(value) || value.length < 2 || !isMap(value[1])) {
    throw new ForwardProtocolError('shape', 'A Forward entry must be [time, record]');
  }
  return { timeUnixNano: toTime(value[0]), record: value[1] };
}

/**
 * Interprets one decoded msgpack object as a Forward protocol message. Throws ForwardProtocolError
 * when it is not one (the connection is then closed).
 */
export function parseForwardMessage(value: unknown, maxBufferBytes: number): ForwardMessage {
  if (!Array.isArray(value) || value.length < 2 || value.length > 4 || typeof value[0] !== 'string') {
    throw new ForwardProtocolError('shape', 'A Forward message must be an array starting with a string tag');
  }
  const tag = value[0];
  const second: unknown = value[1];
  if (Array.isArray(second)) {
    return { tag, mode: 'forward', entries: second.map(toEntry), chunk: chunkOf(value[2]) };
  }
  if (second instanceof Uint8Array || typeof second === 'string') {
    const option = value[2];
    let bytes = typeof second === 'string' ? Buffer.from(second, 'utf8') : second;
    const compressed = isMap(option) && option.compressed === 'gzip';
    if (compressed) {
      try {
        bytes = gunzipSync(bytes, { maxOutputLength: maxBufferBytes });
      } catch (err) {
        const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
        throw new ForwardProtocolError(
          tooLarge ? 'too_large' : 'gzip',
          tooLarge
            ? `A CompressedPackedForward chunk inflates beyond max_buffer_bytes (${maxBufferBytes})`
            : `A CompressedPackedForward chunk is not valid gzip: ${(err as Error).message}`,
        );
      }
    }
    const entries: ForwardEntry[] = [];
    try {
      for (const item of new Decoder(decoderOptions(maxBufferBytes)).decodeMulti(bytes))
        entries.push(toEntry(item));
    } catch (err) {
      if (err instanceof ForwardProtocolError) throw err;
      throw new ForwardProtocolError(
        'msgpack',
        `A PackedForward stream is not valid msgpack: ${(err as Error).message}`,
      );
    }
    return {
      tag,
      mode: compressed ? 'compressed_packed_forward' : 'packed_forward',
      entries,
      chunk: chunkOf(option),
    };
  }
  if (!isMap(value[2]))
    throw new ForwardProtocolError('shape', 'A Forward Message must be [tag, time, record, option?]');
  return {
    tag,
    mode: 'message',
    entries: [{ timeUnixNano: toTime(second), record: value[2] }],
    chunk: chunkOf(value[3]),
  };
}

function chunkOf(option: unknown): string | undefined {
  if (option === undefined || option === null) return undefined;
  if (!isMap(option)) throw new ForwardProtocolError('shape', 'The Forward option must be a map');
  const chunk = option.chunk;
  if (chunk === undefined) return undefined;
  if (typeof chunk !== 'string') throw new ForwardProtocolError('shape', 'option.chunk must be a string');
  return chunk;
}
