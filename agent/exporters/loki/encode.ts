import { gzipSync } from 'node:zlib';
import type { Payload } from '../../pipeline/delivery/types.ts';
import type { LogRecord } from '../../pipeline/types.ts';
import { type LabelPolicy, type LokiStream, type Pair, quoteLabelValue, utf8Prefix } from './labels.ts';
import { type Repeats, snappyCompress } from './snappy.ts';
import { encodeLabelPairs, lenTag, varintSize, writeVarint } from './wire.ts';

/** Structured-metadata entry added to a line that was cut to `max_line_size`. */
export const TRUNCATED_METADATA: Pair = ['labelcast_truncated', 'true'];

export interface LokiEncoder {
  /** Encodes records into one push request body, grouped into one stream per distinct label set. */
  encode(records: readonly LogRecord[]): Payload;
  /**
   * Encodes `records[from, to)` into the open push request, keeping only bytes (protobuf) or text
   * (JSON), never the records: they die young instead of living until the batch is full.
   */
  add(records: readonly LogRecord[], from: number, to: number): void;
  /** Closes the open push request into one payload (streams in order of first appearance). */
  finish(): Payload;
}

export interface LokiEncoderOptions {
  readonly encoding: 'protobuf' | 'json';
  readonly gzip: boolean;
  /** Bytes; longer lines are cut on a UTF-8 boundary and marked. */
  readonly maxLineSize: number;
  readonly policy: LabelPolicy;
  /** Told how many lines of a batch were cut, when any were. */
  readonly onTruncated?: (lines: number) => void;
  /** The raw-snappy step; the repeat-aware compressor unless a benchmark swaps in another to compare. */
  readonly compress?: (raw: Uint8Array, repeats: Repeats) => Uint8Array;
}

const NS_PER_S = 1_000_000_000n;

/** Record-level structured metadata: stream, severity, json-file attrs, truncation, unenriched id. */
function recordMetadata(record: LogRecord, policy: LabelPolicy, truncated: boolean): Pair[] {
  const pairs: Pair[] = record.stream === undefined ? [] : [['log_iostream', record.stream]];
  if (record.severityText !== undefined) pairs.push(['severity_text', record.severityText]);
  if (record.attributes !== undefined) {
    for (const [key, value] of Object.entries(record.attributes))
      pairs.push([policy.metadataName(key), value]);
  }
  if (truncated) pairs.push(TRUNCATED_METADATA);
  if (record.container === undefined) pairs.push(['container_id', record.containerId]);
  return pairs;
}

/** Record metadata in both encodings: `proto` (field-3 entries) and `json` (`"k":"v",…`). */
interface EncodedMetadata {
  readonly proto: Buffer;
  readonly json: string;
}

function encodeMetadata(pairs: readonly Pair[]): EncodedMetadata {
  return {
    proto: encodeLabelPairs(3, pairs),
    json: pairs.map(([name, value]) => `${JSON.stringify(name)}:${quoteLabelValue(value)}`).join(','),
  };
}

/** Distinct (stream, severity[, unenriched container]) forms kept pre-encoded; beyond this the memo restarts. */
const MAX_COMMON_FORMS = 64;

/** One stream of the open push request: its entries so far, encoded. */
interface OpenStream {
  readonly stream: LokiStream;
  /** Protobuf: the stream's `entries` fields; JSON: unused. */
  buf: Buffer;
  len: number;
  /** Known repeats within `buf` (start, length, offset triples), for the compressor. */
  readonly repeats: number[];
  /** Where the previous entry's metadata starts in `buf`, and its record-level part. */
  prevMeta: number;
  prevOwn: Buffer | undefined;
  /** JSON: the stream's `[ts, line, {meta}]` values, comma-led after the first. */
  readonly json: string[];
}

/** A stream's entry buffer starts here and doubles; buffers of closed requests are reused. */
const STREAM_BUFFER_BYTES = 64 * 1024;
/**
 * Entry buffers kept for the next request, up to this many bytes in all: enough for a whole request
 * of one stream (a 1 MiB batch of enriched lines is about 4 MB before compression), so a steady flow
 * reuses its buffers instead of growing new ones per request.
 */
const MAX_POOLED_BYTES = 32 * 1024 * 1024;

/** Builds the encoder of one exporter. Per-container parts come pre-encoded from the label policy. */
export function createLokiEncoder(options: LokiEncoderOptions): LokiEncoder {
  const { policy, maxLineSize } = options;
  const compress = options.compress ?? snappyCompress;
  const common = new Map<string, EncodedMetadata>();
  /** The uncompressed PushRequest is built here; it grows to the largest batch and is reused. */
  let scratch = Buffer.allocUnsafe(0);

  /**
   * The record's own metadata, encoded. Most records carry only their stream and severity (and, when
   * unenriched, their container id): those forms are encoded once and reused. Records with attributes
   * or a cut line are encoded each.
   */
  const ownMetadata = (record: LogRecord, truncated: boolean): EncodedMetadata => {
    if (record.attributes !== undefined || truncated) {
      return encodeMetadata(recordMetadata(record, policy, truncated));
    }
    let key = `${record.stream}\0${record.severityText}`;
    if (record.container === undefined) key = `${key}\0${record.containerId}`;
    let form = common.get(key);
    if (form === undefined) {
      form = encodeMetadata(recordMetadata(record, policy, false));
      if (common.size >= MAX_COMMON_FORMS) common.clear();
      common.set(key, form);
    }
    return form;
  };

  /** The line as sent, and whether it was cut. Only lines that might be too long pay for byteLength. */
  const line = (body: string): [string, boolean] => {
    if (body.length * 3 <= maxLineSize || Buffer.byteLength(body) <= maxLineSize) return [body, false];
    return [utf8Prefix(body, maxLineSize), true];
  };

  const protobufHeaders = { 'content-type': 'application/x-protobuf' };
  const jsonHeaders = options.gzip
    ? { 'content-type': 'application/json', 'content-encoding': 'gzip' }
    : { 'content-type': 'application/json' };

  const json = options.encoding === 'json';
  /** The open push request: streams in order of first appearance, and what it holds. */
  const open = new Map<string, OpenStream>();
  let openRecords = 0;
  let truncatedCount = 0;
  let last: OpenStream | undefined;
  const pool: Buffer[] = [];
  let pooledBytes = 0;

  const takeBuffer = (): Buffer => {
    const buf = pool.pop();
    if (buf === undefined) return Buffer.allocUnsafe(STREAM_BUFFER_BYTES);
    pooledBytes -= buf.length;
    return buf;
  };

  const streamOf = (stream: LokiStream): OpenStream => {
    // Consecutive records are usually one container's: skip the map lookup for them.
    if (last !== undefined && last.stream === stream) return last;
    let s = open.get(stream.key);
    if (s === undefined) {
      s = {
        stream,
        buf: json ? Buffer.alloc(0) : takeBuffer(),
        len: 0,
        repeats: [],
        prevMeta: -1,
        prevOwn: undefined,
        json: [],
      };
      open.set(stream.key, s);
    }
    last = s;
    return s;
  };

  const addProtobuf = (s: OpenStream, record: LogRecord): void => {
    const stream = s.stream;
    const [text, truncated] = line(record.body);
    if (truncated) truncatedCount++;
    const own = ownMetadata(record, truncated).proto;
    const sec = Number(record.timeUnixNano / NS_PER_S);
    const ns = Number(record.timeUnixNano % NS_PER_S);
    const tsLen = (sec === 0 ? 0 : 1 + varintSize(sec)) + (ns === 0 ? 0 : 1 + varintSize(ns));
    const lineLen = Buffer.byteLength(text);
    const entryLen = 2 + tsLen + 1 + varintSize(lineLen) + lineLen + stream.metadataProto.length + own.length;
    const need = s.len + 1 + varintSize(entryLen) + entryLen;
    if (need > s.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(s.buf.length * 2, need));
      s.buf.copy(grown, 0, 0, s.len);
      s.buf = grown;
    }
    const buf = s.buf;
    let pos = s.len;
    buf[pos++] = lenTag(2); // StreamAdapter.entries
    pos = writeVarint(buf, pos, entryLen);
    buf[pos++] = lenTag(1); // EntryAdapter.timestamp (google.protobuf.Timestamp)
    buf[pos++] = tsLen;
    if (sec !== 0) {
      buf[pos++] = 0x08; // seconds, varint
      pos = writeVarint(buf, pos, sec);
    }
    if (ns !== 0) {
      buf[pos++] = 0x10; // nanos, varint
      pos = writeVarint(buf, pos, ns);
    }
    buf[pos++] = lenTag(2); // EntryAdapter.line
    pos = writeVarint(buf, pos, lineLen);
    pos += buf.write(text, pos, 'utf8');
    // The container's metadata (and usually the record's own) repeats the previous entry's bytes.
    const repeat = stream.metadataProto.length + (own === s.prevOwn ? own.length : 0);
    if (s.prevMeta >= 0 && repeat > 0) s.repeats.push(pos, repeat, pos - s.prevMeta);
    s.prevMeta = pos;
    s.prevOwn = own;
    pos += stream.metadataProto.copy(buf, pos);
    pos += own.copy(buf, pos);
    s.len = pos;
  };

  const addJson = (s: OpenStream, record: LogRecord): void => {
    const [text, truncated] = line(record.body);
    if (truncated) truncatedCount++;
    const own = ownMetadata(record, truncated).json;
    const meta =
      s.stream.metadataJson === '' || own === ''
        ? s.stream.metadataJson + own
        : `${s.stream.metadataJson},${own}`;
    s.json.push(
      `${s.json.length === 0 ? '' : ','}["${record.timeUnixNano}",${JSON.stringify(text.toWellFormed())},{${meta}}]`,
    );
  };

  const add = (records: readonly LogRecord[], from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      const record = records[i] as LogRecord;
      const s = streamOf(policy.streamFor(record.container));
      if (json) addJson(s, record);
      else addProtobuf(s, record);
    }
    openRecords += to - from;
  };

  /** Takes the open request's streams and counts, leaving an empty one open. */
  const take = (): [OpenStream[], number] => {
    const streams = [...open.values()];
    const records = openRecords;
    open.clear();
    last = undefined;
    openRecords = 0;
    if (truncatedCount > 0) options.onTruncated?.(truncatedCount);
    truncatedCount = 0;
    return [streams, records];
  };

  const finishProtobuf = (): Payload => {
    const [streams, records] = take();
    let total = 0;
    for (const s of streams) {
      const streamLen = s.stream.labelsProto.length + s.len;
      total += 1 + varintSize(streamLen) + streamLen;
    }
    if (scratch.length < total) scratch = Buffer.allocUnsafe(total);
    const buf = scratch;
    const repeats: number[] = [];
    let pos = 0;
    for (const s of streams) {
      buf[pos++] = lenTag(1); // PushRequest.streams
      pos = writeVarint(buf, pos, s.stream.labelsProto.length + s.len);
      pos += s.stream.labelsProto.copy(buf, pos);
      const r = s.repeats;
      for (let k = 0; k < r.length; k += 3)
        repeats.push(pos + (r[k] as number), r[k + 1] as number, r[k + 2] as number);
      pos += s.buf.copy(buf, pos, 0, s.len);
      if (pooledBytes + s.buf.length <= MAX_POOLED_BYTES) {
        pool.push(s.buf);
        pooledBytes += s.buf.length;
      }
    }
    const body = compress(buf.subarray(0, pos), { data: repeats, count: repeats.length / 3 });
    return { body, headers: protobufHeaders, route: 'logs', records };
  };

  const finishJson = (): Payload => {
    const [streams, records] = take();
    const parts: string[] = ['{"streams":['];
    for (let k = 0; k < streams.length; k++) {
      const s = streams[k] as OpenStream;
      parts.push(k === 0 ? s.stream.jsonPrefix : `,${s.stream.jsonPrefix}`, s.json.join(''), ']}');
    }
    parts.push(']}');
    const raw = Buffer.from(parts.join(''), 'utf8');
    return {
      body: options.gzip ? gzipSync(raw) : raw,
      headers: jsonHeaders,
      route: 'logs',
      records,
    };
  };

  const finish = json ? finishJson : finishProtobuf;
  return {
    add,
    finish,
    encode(records) {
      add(records, 0, records.length);
      return finish();
    },
  };
}
