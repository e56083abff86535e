import pkg from '../../../package.json' with { type: 'json' };
import type { Attributes, AttributeValue, ContainerEntry } from '../../metadata/types.ts';
import type { LogRecord } from '../../pipeline/types.ts';

/*
 * A hand-written encoder for ExportLogsServiceRequest (opentelemetry-proto logs/v1). It sizes every
 * message first and writes into one exact buffer, and reuses each container's Resource bytes. The
 * bench (npm run bench:export) measured it against protobufjs's generated encoder: see
 * docs/otlp-exporter.md. Tests decode its output with the official protos.
 *
 * Field numbers: ExportLogsServiceRequest.resource_logs=1; ResourceLogs{resource=1, scope_logs=2};
 * Resource.attributes=1; ScopeLogs{scope=1, log_records=2}; InstrumentationScope{name=1, version=2};
 * LogRecord{time_unix_nano=1 fixed64, severity_number=2, severity_text=3, body=5, attributes=6,
 * observed_time_unix_nano=11 fixed64}; KeyValue{key=1, value=2};
 * AnyValue{string_value=1, array_value=5}; ArrayValue.values=1.
 */

const SCOPE_NAME = 'labelcast';
const SCOPE_VERSION: string = pkg.version;

function varintLength(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  return 5;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

/** Small messages built once (Resource, scope, constant attributes): simple and not on the hot path. */
function field(tag: number, content: Buffer): Buffer {
  const head = Buffer.allocUnsafe(1 + varintLength(content.length));
  head[0] = tag;
  writeVarint(head, 1, content.length);
  return Buffer.concat([head, content]);
}

const stringField = (tag: number, value: string): Buffer => field(tag, Buffer.from(value, 'utf8'));

function anyValue(value: AttributeValue): Buffer {
  if (typeof value === 'string') return stringField(0x0a, value);
  // array_value (5) → ArrayValue.values (1) → AnyValue.string_value (1)
  return field(0x2a, Buffer.concat(value.map((v) => field(0x0a, stringField(0x0a, v)))));
}

function keyValue(key: string, value: AttributeValue): Buffer {
  return Buffer.concat([stringField(0x0a, key), field(0x12, anyValue(value))]);
}

/** `ResourceLogs.resource` (field 1, tag included) for a set of attributes. */
function resourceField(attributes: Attributes): Buffer {
  const kvs = Object.entries(attributes).map(([k, v]) => field(0x0a, keyValue(k, v)));
  return field(0x0a, Buffer.concat(kvs));
}

/** `ScopeLogs.scope` (field 1, tag included). */
const SCOPE_FIELD = field(
  0x0a,
  Buffer.concat([stringField(0x0a, SCOPE_NAME), stringField(0x12, SCOPE_VERSION)]),
);
/** `LogRecord.attributes` entry (field 6, tag included) for `log.iostream`. */
const STREAM_ATTRIBUTE = {
  stdout: field(0x32, keyValue('log.iostream', 'stdout')),
  stderr: field(0x32, keyValue('log.iostream', 'stderr')),
};

/** Containers with no metadata: their Resource carries only `container.id`. Bounded by clearing. */
const MAX_BARE_RESOURCES = 4096;

/**
 * Encodes records into OTLP logs requests. One `ResourceLogs` per container; the container's Resource
 * is encoded once per ContainerEntry version (entries are immutable) and reused for every batch.
 */
export class OtlpLogsEncoder {
  readonly #protoResources = new WeakMap<ContainerEntry, Buffer>();
  readonly #jsonResources = new WeakMap<ContainerEntry, string>();
  readonly #bareProto = new Map<string, Buffer>();
  readonly #bareJson = new Map<string, string>();

  /** The encoded `ResourceLogs.resource` of a record's container. */
  protoResource(record: LogRecord): Buffer {
    const entry = record.container;
    if (entry) {
      let bytes = this.#protoResources.get(entry);
      if (!bytes) {
        bytes = resourceField(entry.attributes);
        this.#protoResources.set(entry, bytes);
      }
      return bytes;
    }
    let bytes = this.#bareProto.get(record.containerId);
    if (!bytes) {
      if (this.#bareProto.size >= MAX_BARE_RESOURCES) this.#bareProto.clear();
      bytes = resourceField({ 'container.id': record.containerId });
      this.#bareProto.set(record.containerId, bytes);
    }
    return bytes;
  }

  /** `application/x-protobuf` ExportLogsServiceRequest. */
  protobuf(records: readonly LogRecord[]): Buffer {
    const groups = groupByContainer(records);
    const n = records.length;
    const recordLengths = new Int32Array(n);
    const bodyLengths = new Int32Array(n);
    const extras: (Buffer | undefined)[] = new Array(n);
    const groupLengths: number[] = [];
    const resources: Buffer[] = [];
    let total = 0;
    let i = 0;
    for (const group of groups) {
      const resource = this.protoResource(group[0] as LogRecord);
      resources.push(resource);
      let scopeLogs = SCOPE_FIELD.length;
      for (const r of group) {
        const bl = Buffer.byteLength(r.body, 'utf8');
        bodyLengths[i] = bl;
        const anyLen = 1 + varintLength(bl) + bl;
        let len = 18 + 1 + varintLength(anyLen) + anyLen + STREAM_ATTRIBUTE[r.stream].length;
        if (r.severityNumber > 0) len += 1 + varintLength(r.severityNumber);
        if (r.severityText !== undefined) {
          const tl = Buffer.byteLength(r.severityText, 'utf8');
          len += 1 + varintLength(tl) + tl;
        }
        if (r.attributes !== undefined) {
          const extra = Buffer.concat(
            Object.entries(r.attributes).map(([k, v]) => field(0x32, keyValue(k, v))),
          );
          extras[i] = extra;
          len += extra.length;
        }
        recordLengths[i] = len;
        scopeLogs += 1 + varintLength(len) + len;
        i++;
      }
      const resourceLogs = resource.length + 1 + varintLength(scopeLogs) + scopeLogs;
      groupLengths.push(scopeLogs, resourceLogs);
      total += 1 + varintLength(resourceLogs) + resourceLogs;
    }

    const buf = Buffer.allocUnsafe(total);
    let pos = 0;
    i = 0;
    let g = 0;
    for (const group of groups) {
      const scopeLogs = groupLengths[2 * g] as number;
      const resourceLogs = groupLengths[2 * g + 1] as number;
      const resource = resources[g] as Buffer;
      g++;
      buf[pos++] = 0x0a; // ExportLogsServiceRequest.resource_logs
      pos = writeVarint(buf, pos, resourceLogs);
      pos += resource.copy(buf, pos);
      buf[pos++] = 0x12; // ResourceLogs.scope_logs
      pos = writeVarint(buf, pos, scopeLogs);
      pos += SCOPE_FIELD.copy(buf, pos);
      for (const r of group) {
        buf[pos++] = 0x12; // ScopeLogs.log_records
        pos = writeVarint(buf, pos, recordLengths[i] as number);
        buf[pos++] = 0x09; // time_unix_nano, fixed64
        buf.writeBigUInt64LE(r.timeUnixNano, pos);
        pos += 8;
        if (r.severityNumber > 0) {
          buf[pos++] = 0x10;
          pos = writeVarint(buf, pos, r.severityNumber);
        }
        if (r.severityText !== undefined) {
          buf[pos++] = 0x1a;
          pos = writeVarint(buf, pos, Buffer.byteLength(r.severityText, 'utf8'));
          pos += buf.write(r.severityText, pos, 'utf8');
        }
        const bl = bodyLengths[i] as number;
        buf[pos++] = 0x2a; // body: AnyValue
        pos = writeVarint(buf, pos, 1 + varintLength(bl) + bl);
        buf[pos++] = 0x0a; // string_value
        pos = writeVarint(buf, pos, bl);
        pos += buf.write(r.body, pos, 'utf8');
        pos += STREAM_ATTRIBUTE[r.stream].copy(buf, pos);
        const extra = extras[i];
        if (extra) pos += extra.copy(buf, pos);
        buf[pos++] = 0x59; // observed_time_unix_nano, fixed64
        buf.writeBigUInt64LE(r.observedUnixNano, pos);
        pos += 8;
        i++;
      }
    }
    return buf;
  }

  /** `application/json` ExportLogsServiceRequest per the OTLP JSON mapping (int64 as strings, integer enums). */
  json(records: readonly LogRecord[]): Buffer {
    const parts: string[] = ['{"resourceLogs":['];
    let firstGroup = true;
    for (const group of groupByContainer(records)) {
      if (!firstGroup) parts.push(',');
      firstGroup = false;
      parts.push(this.#jsonResource(group[0] as LogRecord));
      let first = true;
      for (const r of group) {
        parts.push(first ? '{"timeUnixNano":"' : ',{"timeUnixNano":"');
        first = false;
        parts.push(String(r.timeUnixNano), '","observedTimeUnixNano":"', String(r.observedUnixNano), '"');
        if (r.severityNumber > 0) parts.push(',"severityNumber":', String(r.severityNumber));
        if (r.severityText !== undefined) parts.push(',"severityText":', JSON.stringify(r.severityText));
        parts.push(',"body":{"stringValue":', JSON.stringify(r.body), '},"attributes":[');
        parts.push(`{"key":"log.iostream","value":{"stringValue":"${r.stream}"}}`);
        if (r.attributes !== undefined)
          for (const [k, v] of Object.entries(r.attributes)) parts.push(',', jsonKeyValue(k, v));
        parts.push(']}');
      }
      parts.push(']}]}');
    }
    parts.push(']}');
    return Buffer.from(parts.join(''), 'utf8');
  }

  /** `{"resource":…,"scopeLogs":[{"scope":…,"logRecords":[` for a record's container, cached. */
  #jsonResource(record: LogRecord): string {
    const entry = record.container;
    const build = (attributes: Attributes): string =>
      `{"resource":{"attributes":[${Object.entries(attributes)
        .map(([k, v]) => jsonKeyValue(k, v))
        .join(
          ',',
        )}]},"scopeLogs":[{"scope":{"name":${JSON.stringify(SCOPE_NAME)},"version":${JSON.stringify(SCOPE_VERSION)}},"logRecords":[`;
    if (entry) {
      let text = this.#jsonResources.get(entry);
      if (text === undefined) {
        text = build(entry.attributes);
        this.#jsonResources.set(entry, text);
      }
      return text;
    }
    let text = this.#bareJson.get(record.containerId);
    if (text === undefined) {
      if (this.#bareJson.size >= MAX_BARE_RESOURCES) this.#bareJson.clear();
      text = build({ 'container.id': record.containerId });
      this.#bareJson.set(record.containerId, text);
    }
    return text;
  }
}

function jsonKeyValue(key: string, value: AttributeValue): string {
  const v =
    typeof value === 'string'
      ? `{"stringValue":${JSON.stringify(value)}}`
      : `{"arrayValue":{"values":[${value.map((s) => `{"stringValue":${JSON.stringify(s)}}`).join(',')}]}}`;
  return `{"key":${JSON.stringify(key)},"value":${v}}`;
}

/** Records grouped by container (entry version, or id when unenriched), in first-seen order. */
function groupByContainer(records: readonly LogRecord[]): LogRecord[][] {
  const groups = new Map<ContainerEntry | string, LogRecord[]>();
  for (const r of records) {
    const key = r.container ?? r.containerId;
    const group = groups.get(key);
    if (group) group.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()];
}
