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
  const pairs: Pair[] = [['log_iostream', record.stream]];
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

/** Groups record indexes by stream key, keeping arrival order within each stream. */
function group(
  records: readonly LogRecord[],
  policy: LabelPolicy,
): Map<string, { stream: LokiStream; idx: number[] }> {
  const groups = new Map<string, { stream: LokiStream; idx: number[] }>();
  for (let i = 0; i < records.length; i++) {
    const stream = policy.streamFor((records[i] as LogRecord).container);
    const g = groups.get(stream.key);
    if (g === undefined) groups.set(stream.key, { stream, idx: [i] });
    else g.idx.push(i);
  }
  return groups;
}

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
    let key = record.severityText === undefined ? record.stream : `${record.stream}\0${record.severityText}`;
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

  const encodeProtobuf = (records: readonly LogRecord[]): Payload => {
    const n = records.length;
    const lines: string[] = new Array(n);
    const lineLens = new Float64Array(n);
    const metas: Buffer[] = new Array(n);
    const entryLens = new Float64Array(n);
    const seconds = new Float64Array(n);
    const nanos = new Float64Array(n);
    let truncatedCount = 0;
    const groups = group(records, policy);
    let total = 0;
    const streamLens: number[] = [];
    for (const { stream, idx } of groups.values()) {
      let streamLen = stream.labelsProto.length;
      for (const i of idx) {
        const record = records[i] as LogRecord;
        const [text, truncated] = line(record.body);
        if (truncated) truncatedCount++;
        const meta = ownMetadata(record, truncated).proto;
        const s = Number(record.timeUnixNano / NS_PER_S);
        const ns = Number(record.timeUnixNano % NS_PER_S);
        const tsLen = (s === 0 ? 0 : 1 + varintSize(s)) + (ns === 0 ? 0 : 1 + varintSize(ns));
        const lineLen = Buffer.byteLength(text);
        const entryLen =
          2 + tsLen + 1 + varintSize(lineLen) + lineLen + stream.metadataProto.length + meta.length;
        lines[i] = text;
        lineLens[i] = lineLen;
        metas[i] = meta;
        seconds[i] = s;
        nanos[i] = ns;
        entryLens[i] = entryLen;
        streamLen += 1 + varintSize(entryLen) + entryLen;
      }
      streamLens.push(streamLen);
      total += 1 + varintSize(streamLen) + streamLen;
    }

    if (scratch.length < total) scratch = Buffer.allocUnsafe(total);
    const buf = scratch;
    const repeats: number[] = [];
    let pos = 0;
    let g = 0;
    for (const { stream, idx } of groups.values()) {
      const streamLen = streamLens[g++] as number;
      buf[pos++] = lenTag(1); // PushRequest.streams
      pos = writeVarint(buf, pos, streamLen);
      pos += stream.labelsProto.copy(buf, pos);
      let prevMeta = -1;
      let prevOwn: Buffer | undefined;
      for (const i of idx) {
        buf[pos++] = lenTag(2); // StreamAdapter.entries
        pos = writeVarint(buf, pos, entryLens[i] as number);
        const s = seconds[i] as number;
        const ns = nanos[i] as number;
        buf[pos++] = lenTag(1); // EntryAdapter.timestamp (google.protobuf.Timestamp)
        buf[pos++] = (s === 0 ? 0 : 1 + varintSize(s)) + (ns === 0 ? 0 : 1 + varintSize(ns));
        if (s !== 0) {
          buf[pos++] = 0x08; // seconds, varint
          pos = writeVarint(buf, pos, s);
        }
        if (ns !== 0) {
          buf[pos++] = 0x10; // nanos, varint
          pos = writeVarint(buf, pos, ns);
        }
        buf[pos++] = lenTag(2); // EntryAdapter.line
        pos = writeVarint(buf, pos, lineLens[i] as number);
        pos += buf.write(lines[i] as string, pos, 'utf8');
        // The container's metadata (and usually the record's own) repeats the previous entry's bytes.
        const own = metas[i] as Buffer;
        const repeat = stream.metadataProto.length + (own === prevOwn ? own.length : 0);
        if (prevMeta >= 0 && repeat > 0) repeats.push(pos, repeat, pos - prevMeta);
        prevMeta = pos;
        prevOwn = own;
        pos += stream.metadataProto.copy(buf, pos);
        pos += own.copy(buf, pos);
      }
    }
    if (truncatedCount > 0) options.onTruncated?.(truncatedCount);
    const body = compress(buf.subarray(0, pos), { data: repeats, count: repeats.length / 3 });
    return { body, headers: protobufHeaders, route: 'logs', records: n };
  };

  const encodeJson = (records: readonly LogRecord[]): Payload => {
    const parts: string[] = ['{"streams":['];
    let truncatedCount = 0;
    let firstStream = true;
    for (const { stream, idx } of group(records, policy).values()) {
      parts.push(firstStream ? stream.jsonPrefix : `,${stream.jsonPrefix}`);
      firstStream = false;
      for (let k = 0; k < idx.length; k++) {
        const record = records[idx[k] as number] as LogRecord;
        const [text, truncated] = line(record.body);
        if (truncated) truncatedCount++;
        const own = ownMetadata(record, truncated).json;
        const meta = stream.metadataJson === '' ? own : `${stream.metadataJson},${own}`;
        parts.push(
          `${k === 0 ? '' : ','}["${record.timeUnixNano}",${JSON.stringify(text.toWellFormed())},{${meta}}]`,
        );
      }
      parts.push(']}');
    }
    parts.push(']}');
    if (truncatedCount > 0) options.onTruncated?.(truncatedCount);
    const raw = Buffer.from(parts.join(''), 'utf8');
    return {
      body: options.gzip ? gzipSync(raw) : raw,
      headers: jsonHeaders,
      route: 'logs',
      records: records.length,
    };
  };

  return { encode: options.encoding === 'json' ? encodeJson : encodeProtobuf };
}
