import { gzipSync } from 'node:zlib';
import snappy from 'snappyjs';
import type { Payload } from '../../pipeline/delivery/types.ts';
import type { LogRecord } from '../../pipeline/types.ts';
import { type LabelPolicy, type LokiStream, type Pair, quoteLabelValue, utf8Prefix } from './labels.ts';
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

/** Whether a record carries only `log_iostream`, whose encoded forms are constants. */
function onlyStream(record: LogRecord, truncated: boolean): boolean {
  return (
    record.severityText === undefined &&
    record.attributes === undefined &&
    !truncated &&
    record.container !== undefined
  );
}

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
  const streamMeta = {
    stdout: encodeLabelPairs(3, [['log_iostream', 'stdout']]),
    stderr: encodeLabelPairs(3, [['log_iostream', 'stderr']]),
  };
  const streamJson = { stdout: ',"log_iostream":"stdout"', stderr: ',"log_iostream":"stderr"' };

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
        const meta = onlyStream(record, truncated)
          ? streamMeta[record.stream]
          : encodeLabelPairs(3, recordMetadata(record, policy, truncated));
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

    const buf = Buffer.allocUnsafe(total);
    let pos = 0;
    let g = 0;
    for (const { stream, idx } of groups.values()) {
      const streamLen = streamLens[g++] as number;
      buf[pos++] = lenTag(1); // PushRequest.streams
      pos = writeVarint(buf, pos, streamLen);
      pos += stream.labelsProto.copy(buf, pos);
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
        pos += stream.metadataProto.copy(buf, pos);
        pos += (metas[i] as Buffer).copy(buf, pos);
      }
    }
    if (truncatedCount > 0) options.onTruncated?.(truncatedCount);
    return { body: snappy.compress(buf), headers: protobufHeaders, route: 'logs', records: n };
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
        let meta: string;
        if (onlyStream(record, truncated)) {
          meta =
            stream.metadataJson === ''
              ? streamJson[record.stream].slice(1)
              : stream.metadataJson + streamJson[record.stream];
        } else {
          const own = recordMetadata(record, policy, truncated)
            .map(([name, value]) => `${JSON.stringify(name)}:${quoteLabelValue(value)}`)
            .join(',');
          meta = stream.metadataJson === '' ? own : `${stream.metadataJson},${own}`;
        }
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
