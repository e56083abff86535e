import type { ContainerEntry } from '../../metadata/types.ts';
import type { LogRecord } from '../../pipeline/types.ts';
import { forEachField, WIRE_I64, WIRE_LEN, WIRE_VARINT } from './protowire.ts';
import type { Associate } from './splice.ts';

/**
 * Received OTLP logs as LogRecords, for log exporters that are not OTLP (Loki): the same label policy
 * as collected logs then applies. `container` comes from association, `body` is the string body (other
 * AnyValue kinds as JSON), and record attributes plus `trace_id`/`span_id` become record attributes.
 */

function readFixed64(buf: Buffer, at: number): bigint {
  return buf.readBigUInt64LE(at);
}

function readVarintBig(buf: Buffer, start: number, end: number): bigint {
  let value = 0n;
  let shift = 0n;
  for (let i = start; i < end; i++) {
    const byte = buf[i] as number;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7n;
  }
  return BigInt.asIntN(64, value);
}

/** A decoded AnyValue as a plain JS value (int64 as a decimal string, bytes as base64). */
function anyValue(buf: Buffer, start: number, end: number): unknown {
  let out: unknown;
  forEachField(buf, start, end, (f) => {
    switch (f.field) {
      case 1:
        out = buf.toString('utf8', f.valueStart, f.end);
        break;
      case 2:
        out = buf[f.valueStart] !== 0;
        break;
      case 3:
        out = readVarintBig(buf, f.valueStart, f.end).toString();
        break;
      case 4:
        out = buf.readDoubleLE(f.valueStart);
        break;
      case 5: {
        const values: unknown[] = [];
        forEachField(buf, f.valueStart, f.end, (v) => {
          if (v.field === 1 && v.wireType === WIRE_LEN) values.push(anyValue(buf, v.valueStart, v.end));
        });
        out = values;
        break;
      }
      case 6: {
        const kvs: Record<string, unknown> = {};
        forEachField(buf, f.valueStart, f.end, (kv) => {
          if (kv.field === 1 && kv.wireType === WIRE_LEN) {
            const [key, value] = keyValue(buf, kv.valueStart, kv.end);
            kvs[key] = value;
          }
        });
        out = kvs;
        break;
      }
      case 7:
        out = buf.toString('base64', f.valueStart, f.end);
        break;
    }
  });
  return out;
}

function keyValue(buf: Buffer, start: number, end: number): [string, unknown] {
  let key = '';
  let value: unknown;
  forEachField(buf, start, end, (f) => {
    if (f.field === 1 && f.wireType === WIRE_LEN) key = buf.toString('utf8', f.valueStart, f.end);
    else if (f.field === 2 && f.wireType === WIRE_LEN) value = anyValue(buf, f.valueStart, f.end);
  });
  return [key, value];
}

const asText = (value: unknown): string =>
  typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);

function record(container: ContainerEntry | undefined, observedNow: bigint): LogRecord {
  return {
    timeUnixNano: 0n,
    observedUnixNano: observedNow,
    body: '',
    stream: undefined,
    severityNumber: 0,
    severityText: undefined,
    attributes: undefined,
    containerId: container?.id ?? '',
    container,
  };
}

function setAttribute(r: LogRecord, key: string, value: string): void {
  r.attributes ??= {};
  r.attributes[key] = value;
}

function resourceAttributes(buf: Buffer, start: number, end: number): Map<string, string | undefined> {
  const attributes = new Map<string, string | undefined>();
  forEachField(buf, start, end, (f) => {
    if (f.field === 1 && f.wireType === WIRE_LEN) {
      const [key, value] = keyValue(buf, f.valueStart, f.end);
      attributes.set(key, typeof value === 'string' ? value : undefined);
    }
  });
  return attributes;
}

/** Decodes a protobuf ExportLogsServiceRequest. Throws ProtoWireError on a malformed body. */
export function logRecordsFromProtobuf(body: Buffer, associate: Associate): LogRecord[] {
  const out: LogRecord[] = [];
  const now = BigInt(Date.now()) * 1_000_000n;
  forEachField(body, 0, body.length, (rl) => {
    if (rl.field !== 1 || rl.wireType !== WIRE_LEN) return;
    let container: ContainerEntry | undefined;
    let resourceSeen = false;
    const scopes: [number, number][] = [];
    forEachField(body, rl.valueStart, rl.end, (f) => {
      if (f.wireType !== WIRE_LEN) return;
      if (f.field === 1) {
        resourceSeen = true;
        container = associate(resourceAttributes(body, f.valueStart, f.end));
      } else if (f.field === 2) scopes.push([f.valueStart, f.end]);
    });
    if (!resourceSeen) container = associate(new Map());
    for (const [start, end] of scopes) {
      forEachField(body, start, end, (sl) => {
        if (sl.field !== 2 || sl.wireType !== WIRE_LEN) return;
        const r = record(container, now);
        forEachField(body, sl.valueStart, sl.end, (f) => {
          switch (f.field) {
            case 1:
              if (f.wireType === WIRE_I64) r.timeUnixNano = readFixed64(body, f.valueStart);
              break;
            case 11:
              if (f.wireType === WIRE_I64) r.observedUnixNano = readFixed64(body, f.valueStart);
              break;
            case 2:
              if (f.wireType === WIRE_VARINT)
                r.severityNumber = Number(readVarintBig(body, f.valueStart, f.end));
              break;
            case 3:
              r.severityText = body.toString('utf8', f.valueStart, f.end);
              break;
            case 5:
              r.body = asText(anyValue(body, f.valueStart, f.end));
              break;
            case 6: {
              const [key, value] = keyValue(body, f.valueStart, f.end);
              setAttribute(r, key, asText(value));
              break;
            }
            case 9:
              if (f.end > f.valueStart)
                setAttribute(r, 'trace_id', body.toString('hex', f.valueStart, f.end));
              break;
            case 10:
              if (f.end > f.valueStart) setAttribute(r, 'span_id', body.toString('hex', f.valueStart, f.end));
              break;
          }
        });
        if (r.timeUnixNano === 0n) r.timeUnixNano = r.observedUnixNano;
        out.push(r);
      });
    }
  });
  return out;
}

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: { key?: string; value?: JsonAnyValue }[] };
  bytesValue?: string;
}

function jsonAnyValue(v: JsonAnyValue | undefined | null): unknown {
  if (v === null || typeof v !== 'object') return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return String(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.bytesValue !== undefined) return v.bytesValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(jsonAnyValue);
  if (v.kvlistValue) {
    const out: Record<string, unknown> = {};
    for (const kv of v.kvlistValue.values ?? [])
      if (typeof kv?.key === 'string') out[kv.key] = jsonAnyValue(kv.value);
    return out;
  }
  return undefined;
}

const nanos = (v: unknown): bigint => {
  if (typeof v !== 'string' && typeof v !== 'number') return 0n;
  try {
    return BigInt(v);
  } catch {
    return 0n;
  }
};

/** Decodes a parsed OTLP/JSON ExportLogsServiceRequest (before splicing). */
export function logRecordsFromJson(request: Record<string, unknown>, associate: Associate): LogRecord[] {
  const out: LogRecord[] = [];
  const now = BigInt(Date.now()) * 1_000_000n;
  const list = request.resourceLogs;
  if (!Array.isArray(list)) return out;
  for (const rl of list as { resource?: { attributes?: unknown }; scopeLogs?: unknown }[]) {
    if (rl === null || typeof rl !== 'object') continue;
    const attributes = new Map<string, string | undefined>();
    const resAttrs = rl.resource?.attributes;
    if (Array.isArray(resAttrs)) {
      for (const kv of resAttrs as { key?: unknown; value?: JsonAnyValue }[]) {
        if (typeof kv?.key !== 'string') continue;
        const v = kv.value?.stringValue;
        attributes.set(kv.key, typeof v === 'string' ? v : undefined);
      }
    }
    const container = associate(attributes);
    if (!Array.isArray(rl.scopeLogs)) continue;
    for (const sl of rl.scopeLogs as { logRecords?: unknown }[]) {
      if (!Array.isArray(sl?.logRecords)) continue;
      for (const lr of sl.logRecords as Record<string, unknown>[]) {
        if (lr === null || typeof lr !== 'object') continue;
        const r = record(container, now);
        r.timeUnixNano = nanos(lr.timeUnixNano);
        const observed = nanos(lr.observedTimeUnixNano);
        if (observed > 0n) r.observedUnixNano = observed;
        if (r.timeUnixNano === 0n) r.timeUnixNano = r.observedUnixNano;
        if (typeof lr.severityNumber === 'number') r.severityNumber = lr.severityNumber;
        if (typeof lr.severityText === 'string') r.severityText = lr.severityText;
        r.body = asText(jsonAnyValue(lr.body as JsonAnyValue));
        if (Array.isArray(lr.attributes)) {
          for (const kv of lr.attributes as { key?: unknown; value?: JsonAnyValue }[])
            if (typeof kv?.key === 'string') setAttribute(r, kv.key, asText(jsonAnyValue(kv.value)));
        }
        if (typeof lr.traceId === 'string' && lr.traceId) setAttribute(r, 'trace_id', lr.traceId);
        if (typeof lr.spanId === 'string' && lr.spanId) setAttribute(r, 'span_id', lr.spanId);
        out.push(r);
      }
    }
  }
  return out;
}
