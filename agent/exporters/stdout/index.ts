import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { StateError } from '../../errors.ts';
import type { ContainerEntry } from '../../metadata/types.ts';
import type { Ack, ExporterDeps, LogBatch, LogExporter, LogRecord } from '../../pipeline/types.ts';
import type { StdoutExporterConfig } from './config.ts';

export type { StdoutExporterConfig } from './config.ts';

/** Each container version's `"resource":{…}` JSON, built once (entries are immutable). */
const resourceJson = new WeakMap<ContainerEntry, string>();
/** The same, as the UTF-8 bytes that end each of its lines: `},"resource":{…}}\n`. */
const resourceTail = new WeakMap<ContainerEntry, Buffer>();

function resourceOf(record: LogRecord): string {
  const entry = record.container;
  if (entry === undefined) return `{"container.id":${JSON.stringify(record.containerId)}}`;
  let json = resourceJson.get(entry);
  if (json === undefined) {
    json = JSON.stringify(entry.attributes);
    resourceJson.set(entry, json);
  }
  return json;
}

/** Everything of a record's line before the resource: `{"timeUnixNano":…,"attributes":{…`. */
function head(record: LogRecord): string {
  let line = `{"timeUnixNano":"${record.timeUnixNano}","observedTimeUnixNano":"${record.observedUnixNano}"`;
  if (record.severityNumber > 0) line += `,"severityNumber":${record.severityNumber}`;
  if (record.severityText !== undefined) line += `,"severityText":${JSON.stringify(record.severityText)}`;
  line += `,"body":${JSON.stringify(record.body)},"attributes":{`;
  let sep = '';
  if (record.stream !== undefined) {
    line += `"log.iostream":"${record.stream}"`;
    sep = ',';
  }
  const attrs = record.attributes;
  if (attrs !== undefined) {
    for (const key in attrs) {
      if (key === 'log.iostream' && record.stream !== undefined) continue;
      line += `${sep}${JSON.stringify(key)}:${JSON.stringify(attrs[key])}`;
      sep = ',';
    }
  }
  return line;
}

/**
 * One record as one NDJSON line in the shape of the OpenTelemetry log data model. 64-bit times are
 * decimal strings (as in OTLP/JSON); severity fields appear only when the receiver detected one.
 */
export function formatRecord(record: LogRecord): string {
  return `${head(record)}},"resource":${resourceOf(record)}}\n`;
}

function tailOf(record: LogRecord): Buffer | string {
  const entry = record.container;
  if (entry === undefined) return `},"resource":${resourceOf(record)}}\n`;
  let tail = resourceTail.get(entry);
  if (tail === undefined) {
    tail = Buffer.from(`},"resource":${resourceOf(record)}}\n`);
    resourceTail.set(entry, tail);
  }
  return tail;
}

/** Output buffers start at 1 MiB and double as needed; one that grew beyond 16 MiB is not kept. */
const INITIAL_BYTES = 1 << 20;
const KEEP_BYTES = 16 << 20;
/** Buffers kept for reuse: one being written while the next batch is encoded into the other. */
const POOL_SIZE = 2;

/**
 * Encodes a batch's lines into one buffer, the same bytes as `formatRecord` per record. The
 * resource part of each line is copied from bytes encoded once per container version, so a batch
 * costs one buffer copy per line instead of a multi-MB string and its conversion.
 */
function encodeBatch(records: readonly LogRecord[], initial: Buffer): { buf: Buffer; length: number } {
  let buf = initial;
  let pos = 0;
  for (const record of records) {
    const line = head(record);
    const tail = tailOf(record);
    // A UTF-16 code unit is at most 3 UTF-8 bytes.
    const need = pos + line.length * 3 + (typeof tail === 'string' ? tail.length * 3 : tail.length);
    if (need > buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(buf.length * 2, need));
      buf.copy(grown, 0, 0, pos);
      buf = grown;
    }
    pos += buf.write(line, pos);
    pos += typeof tail === 'string' ? buf.write(tail, pos) : tail.copy(buf, pos);
  }
  return { buf, length: pos };
}

function counter(registry: Registry, name: string, help: string): Counter<'exporter'> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<'exporter'>;
  return new Counter({ name, help, labelNames: ['exporter'], registers: [registry] });
}

/**
 * `exporters.stdout`: writes each batch as one chunk of NDJSON lines to `out` (process.stdout by
 * default). `consume` resolves once the stream accepts more (it waits for 'drain'), and the batch is
 * acked from the write callback, so checkpoints never pass a line that is still in memory. A chunk's
 * buffer is reused only after its write callback, when the stream no longer holds it.
 */
export function createStdoutExporter(
  id: string,
  _config: StdoutExporterConfig,
  deps: ExporterDeps,
  out: Writable = process.stdout,
): LogExporter {
  const logger = deps.logger.child({ component: `exporter/${id}` });
  const written = counter(
    deps.metrics,
    'labelcast_stdout_records_written_total',
    'Records the stdout exporter wrote',
  ).labels(id);
  const failed = counter(
    deps.metrics,
    'labelcast_stdout_records_failed_total',
    'Records the stdout exporter could not write (output closed); they are acked and lost',
  ).labels(id);
  const pool: Buffer[] = [];
  let closed = false;
  let pending = 0;
  let idle: PromiseWithResolvers<void> | undefined;
  let writeError: Error | undefined;

  const settle = (count: number, ack: Ack, buffer: Buffer, err: Error | null | undefined): void => {
    if (err) {
      if (writeError === undefined) {
        writeError = err;
        logger.error({ err }, 'Cannot write to stdout: output closed, records are dropped');
      }
      failed.inc(count);
    } else {
      written.inc(count);
    }
    if (pool.length < POOL_SIZE && buffer.length <= KEEP_BYTES) pool.push(buffer);
    ack();
    if (--pending === 0) idle?.resolve();
  };

  return {
    name: id,
    async start() {},
    async consume(batch: LogBatch) {
      if (closed) throw new StateError(`Cannot write a batch to ${id}: the exporter is shut down`);
      const records = batch.records;
      if (records.length === 0) {
        batch.ack();
        return;
      }
      if (writeError !== undefined || out.destroyed) {
        failed.inc(records.length);
        batch.ack();
        return;
      }
      const { buf, length } = encodeBatch(records, pool.pop() ?? Buffer.allocUnsafe(INITIAL_BYTES));
      // The callback keeps only the count and the ack, not the records, while the write is pending.
      const count = records.length;
      const ack = batch.ack;
      pending++;
      const ok = out.write(buf.subarray(0, length), (err) => settle(count, ack, buf, err));
      if (!ok && !out.destroyed) {
        const ac = new AbortController();
        await Promise.race([
          once(out, 'drain', { signal: ac.signal }),
          once(out, 'close', { signal: ac.signal }),
        ]).catch(() => {});
        ac.abort();
      }
    },
    async shutdown() {
      closed = true;
      if (pending === 0) return;
      idle ??= Promise.withResolvers<void>();
      await idle.promise;
    },
  };
}
