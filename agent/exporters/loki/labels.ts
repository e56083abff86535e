import type { AttributeValue, ContainerEntry } from '../../metadata/types.ts';
import type { LokiExporterConfig } from './config.ts';
import { encodeLabelPairs, encodeStringField } from './wire.ts';

/** A (name, value) pair of a stream label or a structured-metadata entry. */
export type Pair = readonly [name: string, value: string];

/** Loki's `max_label_value_length` default. */
const MAX_LABEL_VALUE_BYTES = 2048;
/**
 * Loki refuses lines whose structured metadata exceeds 128 entries or 64 KB; a container's share
 * stays below these so record-level entries (stream, severity, json-file attrs) still fit.
 */
const MAX_CONTAINER_METADATA_ENTRIES = 100;
const MAX_CONTAINER_METADATA_BYTES = 48 * 1024;

/** The stream label Loki itself falls back to when a stream would have no labels at all. */
const FALLBACK_LABEL: Pair = ['service_name', 'unknown_service'];

/**
 * Sanitises an attribute name into a Loki label name like Prometheus's OTLP translator: every
 * character outside `[a-zA-Z0-9_]` becomes `_`, a leading digit gets a `key_` prefix, and a leading
 * `__` (reserved by Loki) gets a `key` prefix.
 */
export function sanitizeLabelName(name: string): string {
  let out = name.replace(/[^a-zA-Z0-9_]/gu, '_');
  if (out === '') return '_';
  const first = out.charCodeAt(0);
  if (first >= 48 && first <= 57) out = `key_${out}`;
  else if (out.startsWith('__')) out = `key${out}`;
  return out;
}

/** A label value written as in Loki's selector syntax (Go string literal; JSON escaping is a subset). */
export function quoteLabelValue(value: string): string {
  return JSON.stringify(value.toWellFormed());
}

/** Array attributes (image tags, repo digests) become JSON arrays, as Loki's own OTLP ingestion writes them. */
function attributeString(value: AttributeValue): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function cutBytes(value: string, maxBytes: number): string {
  if (value.length * 3 <= maxBytes || Buffer.byteLength(value) <= maxBytes) return value;
  return utf8Prefix(value, maxBytes);
}

/** The longest prefix of `value` whose UTF-8 form fits in `maxBytes`, never splitting a character. */
export function utf8Prefix(value: string, maxBytes: number): string {
  const bytes = Buffer.from(value, 'utf8');
  let end = Math.min(maxBytes, bytes.length);
  // Back off continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (end > 0 && end < bytes.length && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}

/**
 * Everything the Loki encoders need about one container version, computed once per `ContainerEntry`:
 * the stream labels and their canonical selector (the stream key), and the structured metadata that
 * every line of the container carries, each already in protobuf and JSON form.
 */
export interface LokiStream {
  /** Canonical selector `{a="x", b="y"}` with names sorted: the grouping key and `StreamAdapter.labels`. */
  readonly key: string;
  readonly labels: readonly Pair[];
  /** `StreamAdapter.labels` (field 1), encoded. */
  readonly labelsProto: Buffer;
  /** `{"stream":{…},"values":[` */
  readonly jsonPrefix: string;
  /** The container's structured metadata, in attribute order. */
  readonly metadata: readonly Pair[];
  /** `EntryAdapter.structuredMetadata` (field 3) entries, encoded. */
  readonly metadataProto: Buffer;
  /** `"k":"v",…` without braces; empty when there is none. */
  readonly metadataJson: string;
  /** Container attributes left out of structured metadata to stay within Loki's per-line limits. */
  readonly metadataDropped: number;
}

export interface LabelPolicy {
  /** The stream of a record: cached per container version; one shared stream for unenriched records. */
  streamFor(container: ContainerEntry | undefined): LokiStream;
  /** Structured-metadata name for a record-level attribute key (sanitised, memoised). */
  metadataName(key: string): string;
}

type PolicyConfig = Pick<LokiExporterConfig, 'stream_labels' | 'labels'>;

/**
 * Builds the label policy of one exporter: which attributes are stream labels, and everything else.
 * `onMetadataDropped` hears of a container whose attributes exceed Loki's per-line metadata limits.
 */
export function createLabelPolicy(
  config: PolicyConfig,
  onMetadataDropped?: (container: ContainerEntry, dropped: number) => void,
): LabelPolicy {
  const streamAttributes = new Map(config.stream_labels.map((attr) => [attr, sanitizeLabelName(attr)]));
  const staticLabels: Pair[] = Object.entries(config.labels).map(([k, v]) => [
    k,
    cutBytes(v, MAX_LABEL_VALUE_BYTES),
  ]);
  const cache = new WeakMap<ContainerEntry, LokiStream>();
  const names = new Map<string, string>();

  const metadataName = (key: string): string => {
    let name = names.get(key);
    if (name === undefined) {
      name = sanitizeLabelName(key);
      // Record attribute keys come from log data (json-file attrs); keep the memo bounded.
      if (names.size >= 4096) names.clear();
      names.set(key, name);
    }
    return name;
  };

  const build = (attributes: Readonly<Record<string, AttributeValue>>): LokiStream => {
    const labels: Pair[] = [];
    for (const [attr, name] of streamAttributes) {
      const value = attributes[attr];
      if (value === undefined) continue;
      const text = cutBytes(attributeString(value), MAX_LABEL_VALUE_BYTES);
      if (text !== '') labels.push([name, text]);
    }
    labels.push(...staticLabels);
    if (labels.length === 0) labels.push(FALLBACK_LABEL);
    labels.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const key = `{${labels.map(([n, v]) => `${n}=${quoteLabelValue(v)}`).join(', ')}}`;

    // Attributes that sanitise to one name are merged with ';', as Prometheus's translator does.
    const merged = new Map<string, string>();
    for (const [attr, value] of Object.entries(attributes)) {
      if (streamAttributes.has(attr)) continue;
      const name = metadataName(attr);
      const text = attributeString(value);
      const prior = merged.get(name);
      merged.set(name, prior === undefined ? text : `${prior};${text}`);
    }
    const metadata: Pair[] = [];
    let bytes = 0;
    let dropped = 0;
    for (const [name, value] of merged) {
      const size = Buffer.byteLength(name) + Buffer.byteLength(value);
      if (metadata.length >= MAX_CONTAINER_METADATA_ENTRIES || bytes + size > MAX_CONTAINER_METADATA_BYTES) {
        dropped++;
        continue;
      }
      bytes += size;
      metadata.push([name, value]);
    }
    const streamJson = labels.map(([n, v]) => `${JSON.stringify(n)}:${quoteLabelValue(v)}`).join(',');
    return {
      key,
      labels,
      labelsProto: encodeStringField(1, key),
      jsonPrefix: `{"stream":{${streamJson}},"values":[`,
      metadata,
      metadataProto: encodeLabelPairs(3, metadata),
      metadataJson: metadata.map(([n, v]) => `${JSON.stringify(n)}:${quoteLabelValue(v)}`).join(','),
      metadataDropped: dropped,
    };
  };

  const unenriched = build({});
  return {
    streamFor(container) {
      if (container === undefined) return unenriched;
      let stream = cache.get(container);
      if (stream === undefined) {
        stream = build(container.attributes);
        cache.set(container, stream);
        if (stream.metadataDropped > 0) onMetadataDropped?.(container, stream.metadataDropped);
      }
      return stream;
    },
    metadataName,
  };
}
