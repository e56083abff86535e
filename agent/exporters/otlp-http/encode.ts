import pkg from '../../../package.json' with { type: 'json' };
import type { Attributes, AttributeValue, ContainerEntry } from '../../metadata/types.ts';
import type { LogRecord } from '../../pipeline/types.ts';

/*
 * A hand-written encoder for ExportLogsServiceRequest (opentelemetry-proto logs/v1). Records are
 * written as they arrive into one buffer per container; a batch is then assembled with each
 * container's Resource bytes, encoded once per container. The
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
const NO_STREAM = Buffer.alloc(0);

/** Containers with no metadata: their Resource carries only `container.id`. Bounded by clearing. */
const MAX_BARE_RESOURCES = 4096;
/**
 * Group buffers are kept for reuse between batches, up to this many bytes in all: a busy container's
 * buffer grows to the batch size once and is then reused instead of regrown for every batch.
 */
const MAX_POOLED_BYTES = 8 * 1024 * 1024;
const GROUP_BYTES = 64 * 1024;

/** Fixed64 timestamps through a typed array: several times cheaper than writeBigUInt64LE per call. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const u64 = new BigUint64Array(1);
const u64Bytes = new Uint8Array(u64.buffer);

function writeFixed64(buf: Buffer, pos: number, value: bigint): void {
  if (LITTLE_ENDIAN) {
    u64[0] = value;
    buf.set(u64Bytes, pos);
  } else buf.writeBigUInt64LE(value, pos);
}

/** The encoded `ScopeLogs.log_records` of one container in the open batch. */
interface ProtoGroup {
  readonly resource: Buffer;
  buf: Buffer;
  len: number;
}

/** The JSON `ResourceLogs` of one container in the open batch. */
interface JsonGroup {
  readonly head: string;
  readonly records: string[];
}

/**
 * Encodes records into OTLP logs requests: one `ResourceLogs` per container, whose Resource is
 * encoded once per ContainerEntry version (entries are immutable) and reused for every batch.
 * `add` encodes records as they arrive, grouped by container, keeping only bytes; `finish*` closes
 * the batch into one request body.
 */
export class OtlpLogsEncoder {
  readonly #protoResources = new WeakMap<ContainerEntry, Buffer>();
  readonly #jsonResources = new WeakMap<ContainerEntry, string>();
  readonly #bareProto = new Map<string, Buffer>();
  readonly #bareJson = new Map<string, string>();
  readonly #proto = new Map<ContainerEntry | string, ProtoGroup>();
  readonly #json = new Map<ContainerEntry | string, JsonGroup>();
  readonly #pool: Buffer[] = [];
  #pooledBytes = 0;
  /** Reused across batches: one request body is finished, then compressed or copied, then the next. */
  #scratch: Buffer = Buffer.allocUnsafe(0);

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

  /** Encodes `records[from, to)` as protobuf LogRecords into the open batch. */
  addProtobuf(records: readonly LogRecord[], from: number, to: number): void {
    let lastKey: ContainerEntry | string | undefined;
    let group: ProtoGroup | undefined;
    for (let i = from; i < to; i++) {
      const r = records[i] as LogRecord;
      const key = r.container ?? r.containerId;
      if (key !== lastKey || !group) {
        lastKey = key;
        group = this.#proto.get(key);
        if (!group) {
          group = {
            resource: this.protoResource(r),
            buf: this.#takeBuffer(),
            len: 0,
          };
          this.#proto.set(key, group);
        }
      }
      const bl = Buffer.byteLength(r.body, 'utf8');
      const anyLen = 1 + varintLength(bl) + bl;
      const stream = r.stream === undefined ? NO_STREAM : STREAM_ATTRIBUTE[r.stream];
      let len = 18 + 1 + varintLength(anyLen) + anyLen + stream.length;
      let tl = 0;
      if (r.severityNumber > 0) len += 1 + varintLength(r.severityNumber);
      if (r.severityText !== undefined) {
        tl = Buffer.byteLength(r.severityText, 'utf8');
        len += 1 + varintLength(tl) + tl;
      }
      let extra: Buffer | undefined;
      if (r.attributes !== undefined) {
        extra = Buffer.concat(Object.entries(r.attributes).map(([k, v]) => field(0x32, keyValue(k, v))));
        len += extra.length;
      }
      const need = group.len + 6 + len;
      if (need > group.buf.length) {
        const grown = Buffer.allocUnsafe(Math.max(need, 2 * group.buf.length));
        group.buf.copy(grown, 0, 0, group.len);
        group.buf = grown;
      }
      const buf = group.buf;
      let pos = group.len;
      buf[pos++] = 0x12; // ScopeLogs.log_records
      pos = writeVarint(buf, pos, len);
      buf[pos++] = 0x09; // time_unix_nano, fixed64
      writeFixed64(buf, pos, r.timeUnixNano);
      pos += 8;
      if (r.severityNumber > 0) {
        buf[pos++] = 0x10;
        pos = writeVarint(buf, pos, r.severityNumber);
      }
      if (r.severityText !== undefined) {
        buf[pos++] = 0x1a;
        pos = writeVarint(buf, pos, tl);
        pos += buf.write(r.severityText, pos, 'utf8');
      }
      buf[pos++] = 0x2a; // body: AnyValue
      pos = writeVarint(buf, pos, anyLen);
      buf[pos++] = 0x0a; // string_value
      pos = writeVarint(buf, pos, bl);
      pos += buf.write(r.body, pos, 'utf8');
      pos += stream.copy(buf, pos);
      if (extra) pos += extra.copy(buf, pos);
      buf[pos++] = 0x59; // observed_time_unix_nano, fixed64
      writeFixed64(buf, pos, r.observedUnixNano);
      group.len = pos + 8;
    }
  }

  /**
   * Closes the open batch into an `application/x-protobuf` ExportLogsServiceRequest. The result is a
   * view of a buffer the next call overwrites: compress or copy it first.
   */
  finishProtobuf(): Buffer {
    let total = 0;
    for (const g of this.#proto.values()) {
      const scopeLogs = SCOPE_FIELD.length + g.len;
      const resourceLogs = g.resource.length + 1 + varintLength(scopeLogs) + scopeLogs;
      total += 1 + varintLength(resourceLogs) + resourceLogs;
    }
    if (this.#scratch.length < total)
      this.#scratch = Buffer.allocUnsafe(Math.max(total, 2 * this.#scratch.length));
    const buf = this.#scratch;
    let pos = 0;
    for (const g of this.#proto.values()) {
      const scopeLogs = SCOPE_FIELD.length + g.len;
      const resourceLogs = g.resource.length + 1 + varintLength(scopeLogs) + scopeLogs;
      buf[pos++] = 0x0a; // ExportLogsServiceRequest.resource_logs
      pos = writeVarint(buf, pos, resourceLogs);
      pos += g.resource.copy(buf, pos);
      buf[pos++] = 0x12; // ResourceLogs.scope_logs
      pos = writeVarint(buf, pos, scopeLogs);
      pos += SCOPE_FIELD.copy(buf, pos);
      pos += g.buf.copy(buf, pos, 0, g.len);
      if (this.#pooledBytes + g.buf.length <= MAX_POOLED_BYTES) {
        this.#pool.push(g.buf);
        this.#pooledBytes += g.buf.length;
      }
    }
    this.#proto.clear();
    return buf.subarray(0, total);
  }

  #takeBuffer(): Buffer {
    const buf = this.#pool.pop();
    if (!buf) return Buffer.allocUnsafe(GROUP_BYTES);
    this.#pooledBytes -= buf.length;
    return buf;
  }

  /** Encodes `records[from, to)` as OTLP JSON log records into the open batch. */
  addJson(records: readonly LogRecord[], from: number, to: number): void {
    for (let i = from; i < to; i++) {
      const r = records[i] as LogRecord;
      const key = r.container ?? r.containerId;
      let group = this.#json.get(key);
      if (!group) {
        group = { head: this.#jsonResource(r), records: [] };
        this.#json.set(key, group);
      }
      let text = `{"timeUnixNano":"${r.timeUnixNano}","observedTimeUnixNano":"${r.observedUnixNano}"`;
      if (r.severityNumber > 0) text += `,"severityNumber":${r.severityNumber}`;
      if (r.severityText !== undefined) text += `,"severityText":${JSON.stringify(r.severityText)}`;
      text += `,"body":{"stringValue":${JSON.stringify(r.body)}},"attributes":[`;
      const attributes = r.stream === undefined ? [] : [jsonKeyValue('log.iostream', r.stream)];
      if (r.attributes !== undefined)
        for (const [k, v] of Object.entries(r.attributes)) attributes.push(jsonKeyValue(k, v));
      text += attributes.join(',');
      group.records.push(`${text}]}`);
    }
  }

  /** Closes the open batch into an `application/json` ExportLogsServiceRequest (OTLP JSON mapping). */
  finishJson(): Buffer {
    const parts: string[] = [];
    for (const g of this.#json.values()) parts.push(`${g.head}${g.records.join(',')}]}]}`);
    this.#json.clear();
    return Buffer.from(`{"resourceLogs":[${parts.join(',')}]}`, 'utf8');
  }

  /** One whole batch as protobuf (a view of the scratch buffer; see `finishProtobuf`). Not while a streamed batch is open. */
  protobuf(records: readonly LogRecord[]): Buffer {
    this.addProtobuf(records, 0, records.length);
    return this.finishProtobuf();
  }

  /** One whole batch as OTLP JSON. Not while a streamed batch is open. */
  json(records: readonly LogRecord[]): Buffer {
    this.addJson(records, 0, records.length);
    return this.finishJson();
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
