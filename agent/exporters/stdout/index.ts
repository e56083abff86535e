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

/**
 * One record as one NDJSON line in the shape of the OpenTelemetry log data model. 64-bit times are
 * decimal strings (as in OTLP/JSON); severity fields appear only when the receiver detected one.
 */
export function formatRecord(record: LogRecord): string {
  let line = `{"timeUnixNano":"${record.timeUnixNano}","observedTimeUnixNano":"${record.observedUnixNano}"`;
  if (record.severityNumber > 0) line += `,"severityNumber":${record.severityNumber}`;
  if (record.severityText !== undefined) line += `,"severityText":${JSON.stringify(record.severityText)}`;
  line += `,"body":${JSON.stringify(record.body)},"attributes":{"log.iostream":"${record.stream}"`;
  const attrs = record.attributes;
  if (attrs !== undefined) {
    for (const key in attrs) {
      if (key !== 'log.iostream') line += `,${JSON.stringify(key)}:${JSON.stringify(attrs[key])}`;
    }
  }
  return `${line}},"resource":${resourceOf(record)}}\n`;
}

function counter(registry: Registry, name: string, help: string): Counter<'exporter'> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<'exporter'>;
  return new Counter({ name, help, labelNames: ['exporter'], registers: [registry] });
}

/**
 * `exporters.stdout`: writes each batch as one chunk of NDJSON lines to `out` (process.stdout by
 * default). `consume` resolves once the stream accepts more (it waits for 'drain'), and the batch is
 * acked from the write callback, so checkpoints never pass a line that is still in memory.
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
  let closed = false;
  let pending = 0;
  let idle: PromiseWithResolvers<void> | undefined;
  let writeError: Error | undefined;

  const settle = (count: number, ack: Ack, err: Error | null | undefined): void => {
    if (err) {
      if (writeError === undefined) {
        writeError = err;
        logger.error({ err }, 'Cannot write to stdout: output closed, records are dropped');
      }
      failed.inc(count);
    } else {
      written.inc(count);
    }
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
      let chunk = '';
      for (const record of records) chunk += formatRecord(record);
      if (writeError !== undefined || out.destroyed) {
        failed.inc(records.length);
        batch.ack();
        return;
      }
      pending++;
      const ok = out.write(chunk, (err) => settle(records.length, batch.ack, err));
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
