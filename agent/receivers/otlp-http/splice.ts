import type { Attributes, AttributeValue, ContainerEntry } from '../../metadata/types.ts';
import { forEachField, lenField, stringField, WIRE_LEN } from './protowire.ts';

/**
 * Resource rewriting for received OTLP requests. ExportTrace/Logs/MetricsServiceRequest all hold
 * `repeated Resource{Spans,Logs,Metrics} = 1`, each with `Resource resource = 1`, so one splice serves
 * all three signals: only the Resource is rebuilt; scope and span/log/metric bytes are copied through.
 */

/** The string-valued attributes of a received Resource (non-string values are present with `undefined`). */
export type ResourceAttributes = ReadonlyMap<string, string | undefined>;

/** Picks the container a Resource belongs to, or undefined to forward it unchanged. */
export type Associate = (resource: ResourceAttributes) => ContainerEntry | undefined;

/** An SDK's fallback service name counts as unset (REFERENCE.md §1). */
function isOverridable(key: string, existing: string | undefined): boolean {
  return key === 'service.name' && existing !== undefined && existing.startsWith('unknown_service');
}

function anyValueBytes(value: AttributeValue): Buffer[] {
  if (typeof value === 'string') return [stringField(1, value)];
  // AnyValue.array_value = 5 → ArrayValue.values = 1 → AnyValue.string_value = 1
  return lenField(
    5,
    value.flatMap((v) => lenField(1, [stringField(1, v)])),
  );
}

/** `Resource.attributes` (field 1) entries, one per attribute, encoded once per container version. */
const encodedKeyValues = new WeakMap<ContainerEntry, ReadonlyMap<string, Buffer>>();

export function containerKeyValues(entry: ContainerEntry): ReadonlyMap<string, Buffer> {
  let encoded = encodedKeyValues.get(entry);
  if (!encoded) {
    const map = new Map<string, Buffer>();
    for (const [key, value] of Object.entries(entry.attributes)) {
      map.set(key, Buffer.concat(lenField(1, [stringField(1, key), ...lenField(2, anyValueBytes(value))])));
    }
    encoded = map;
    encodedKeyValues.set(entry, encoded);
  }
  return encoded;
}

function decodeKeyValue(buf: Buffer, start: number, end: number): [key: string, value: string | undefined] {
  let key = '';
  let value: string | undefined;
  forEachField(buf, start, end, (f) => {
    if (f.field === 1 && f.wireType === WIRE_LEN) key = buf.toString('utf8', f.valueStart, f.end);
    else if (f.field === 2 && f.wireType === WIRE_LEN) {
      forEachField(buf, f.valueStart, f.end, (v) => {
        if (v.field === 1 && v.wireType === WIRE_LEN) value = buf.toString('utf8', v.valueStart, v.end);
      });
    }
  });
  return [key, value];
}

export interface SpliceResult {
  readonly body: Buffer;
  /** Resource blocks that got a container's attributes, and those forwarded unchanged. */
  readonly matched: number;
  readonly unmatched: number;
  /** Spans, log records or metrics in the request (entries of each scope's list, field 2). */
  readonly items: number;
  /** What `alloc` returned, holding `body`; undefined when the request went on unchanged. */
  readonly buffer?: Buffer | undefined;
}

/** Counts the entries (field 2) of one ScopeSpans / ScopeLogs / ScopeMetrics without decoding them. */
function countItems(body: Buffer, start: number, end: number): number {
  let n = 0;
  forEachField(body, start, end, (f) => {
    if (f.field === 2) n++;
  });
  return n;
}

/**
 * Rewrites each Resource of a protobuf OTLP export request with its container's attributes: adds the
 * keys the application did not set, and replaces an `unknown_service*` service.name. The new body is
 * written into `alloc(size)` (a pooled buffer, see pool.ts). Throws ProtoWireError on a malformed body.
 */
export function spliceProtobuf(
  body: Buffer,
  associate: Associate,
  alloc: (size: number) => Buffer = Buffer.allocUnsafe,
): SpliceResult {
  const out: Buffer[] = [];
  let matched = 0;
  let unmatched = 0;
  let items = 0;
  forEachField(body, 0, body.length, (top) => {
    if (top.field !== 1 || top.wireType !== WIRE_LEN) {
      out.push(body.subarray(top.start, top.end));
      return;
    }
    const resourceRanges: [number, number][] = [];
    const rest: Buffer[] = [];
    forEachField(body, top.valueStart, top.end, (f) => {
      if (f.field === 1 && f.wireType === WIRE_LEN) resourceRanges.push([f.valueStart, f.end]);
      else {
        if (f.field === 2 && f.wireType === WIRE_LEN) items += countItems(body, f.valueStart, f.end);
        rest.push(body.subarray(f.start, f.end));
      }
    });
    const attributes = new Map<string, string | undefined>();
    for (const [start, end] of resourceRanges) {
      forEachField(body, start, end, (f) => {
        if (f.field === 1 && f.wireType === WIRE_LEN) {
          const [key, value] = decodeKeyValue(body, f.valueStart, f.end);
          attributes.set(key, value);
        }
      });
    }
    const entry = associate(attributes);
    if (!entry) {
      unmatched++;
      out.push(body.subarray(top.start, top.end));
      return;
    }
    matched++;
    const added = containerKeyValues(entry);
    const resource: Buffer[] = [];
    for (const [start, end] of resourceRanges) {
      forEachField(body, start, end, (f) => {
        if (f.field === 1 && f.wireType === WIRE_LEN) {
          const [key, value] = decodeKeyValue(body, f.valueStart, f.end);
          if (added.has(key) && isOverridable(key, value)) return;
        }
        resource.push(body.subarray(f.start, f.end));
      });
    }
    for (const [key, kv] of added) {
      if (!attributes.has(key) || isOverridable(key, attributes.get(key))) resource.push(kv);
    }
    const inner = [...lenField(1, resource), ...rest];
    out.push(...lenField(1, inner));
  });
  // Nothing matched: the request goes on as it came, without a copy.
  if (matched === 0) return { body, matched, unmatched, items };
  let size = 0;
  for (const part of out) size += part.length;
  const buffer = alloc(size);
  let at = 0;
  for (const part of out) at += part.copy(buffer, at);
  return { body: buffer.subarray(0, size), matched, unmatched, items, buffer };
}

/** OTLP/JSON attribute form of a container's attributes, built once per container version. */
const jsonKeyValues = new WeakMap<ContainerEntry, readonly { key: string; value: unknown }[]>();

function containerJsonKeyValues(entry: ContainerEntry): readonly { key: string; value: unknown }[] {
  let kvs = jsonKeyValues.get(entry);
  if (!kvs) {
    kvs = Object.entries(entry.attributes as Attributes).map(([key, value]) => ({
      key,
      value:
        typeof value === 'string'
          ? { stringValue: value }
          : { arrayValue: { values: value.map((v) => ({ stringValue: v })) } },
    }));
    jsonKeyValues.set(entry, kvs);
  }
  return kvs;
}

interface JsonKeyValue {
  key?: unknown;
  value?: { stringValue?: unknown } | null;
}

/**
 * The JSON-encoding counterpart of spliceProtobuf: mutates `request` (a parsed OTLP/JSON export
 * request) in place. `listKey` is resourceSpans, resourceLogs or resourceMetrics.
 */
export function spliceJson(
  request: Record<string, unknown>,
  listKey: 'resourceSpans' | 'resourceLogs' | 'resourceMetrics',
  associate: Associate,
): { matched: number; unmatched: number } {
  let matched = 0;
  let unmatched = 0;
  const list = request[listKey];
  if (!Array.isArray(list)) return { matched, unmatched };
  for (const item of list as Record<string, unknown>[]) {
    if (item === null || typeof item !== 'object') continue;
    const resource = (item.resource ?? {}) as { attributes?: JsonKeyValue[] };
    const existing = Array.isArray(resource.attributes) ? resource.attributes : [];
    const attributes = new Map<string, string | undefined>();
    for (const kv of existing) {
      if (typeof kv?.key !== 'string') continue;
      const v = kv.value?.stringValue;
      attributes.set(kv.key, typeof v === 'string' ? v : undefined);
    }
    const entry = associate(attributes);
    if (!entry) {
      unmatched++;
      continue;
    }
    matched++;
    const add = containerJsonKeyValues(entry);
    const addKeys = new Set(add.map((kv) => kv.key));
    const kept = existing.filter(
      (kv) =>
        !(
          typeof kv?.key === 'string' &&
          addKeys.has(kv.key) &&
          isOverridable(kv.key, attributes.get(kv.key))
        ),
    );
    for (const kv of add) {
      if (!attributes.has(kv.key) || isOverridable(kv.key, attributes.get(kv.key)))
        kept.push(kv as JsonKeyValue);
    }
    item.resource = { ...resource, attributes: kept };
  }
  return { matched, unmatched };
}
