import { Counter, type Registry } from 'prom-client';
import { createDelivery } from '../../pipeline/delivery/index.ts';
import type { ExporterDeps, LogExporter, LogRecord } from '../../pipeline/types.ts';
import type { LokiExporterConfig } from './config.ts';
import { createLokiEncoder } from './encode.ts';
import { createLabelPolicy } from './labels.ts';
import { createLokiSender } from './sender.ts';

export { type LokiExporterConfig, lokiExporterConfigSchema } from './config.ts';

/** Timestamp, framing and `log_iostream` on top of the line: what a record adds to a batch before compression. */
const RECORD_OVERHEAD_BYTES = 48;
/** Containers whose metadata overflow is logged; beyond this they are only counted. */
const MAX_LOGGED_CONTAINERS = 100;

function counter(registry: Registry, name: string, help: string): Counter<'exporter'> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<'exporter'>;
  return new Counter({ name, help, labelNames: ['exporter'], registers: [registry] });
}

/**
 * The `loki` exporter: records → Loki push requests (snappy protobuf or JSON) through the shared
 * delivery (batching, queue, spool, retries). Stream labels and structured metadata follow the
 * label policy in docs/loki.md and are computed once per container version.
 */
export function createLokiExporter(id: string, config: LokiExporterConfig, deps: ExporterDeps): LogExporter {
  const logger = deps.logger.child({ component: `exporter/${id}` });
  const truncated = counter(
    deps.metrics,
    'labelcast_loki_truncated_lines_total',
    'Lines cut to max_line_size before sending to Loki (marked labelcast_truncated="true")',
  );
  const metadataDropped = counter(
    deps.metrics,
    'labelcast_loki_metadata_dropped_total',
    "Container attributes left out of Loki structured metadata to stay within Loki's per-line limits (per container version)",
  );
  const warned = new Set<string>();
  const policy = createLabelPolicy(config, (container, dropped) => {
    metadataDropped.inc({ exporter: id }, dropped);
    if (warned.size >= MAX_LOGGED_CONTAINERS || warned.has(container.id)) return;
    warned.add(container.id);
    logger.warn(
      { container: container.name, dropped },
      "Left container attributes out of Loki structured metadata: over Loki's 128-entry/64 KB per-line limits (narrow mapping.labels.include)",
    );
  });
  const encoder = createLokiEncoder({
    encoding: config.encoding,
    gzip: config.gzip,
    maxLineSize: config.max_line_size,
    policy,
    onTruncated: (lines) => truncated.inc({ exporter: id }, lines),
  });
  const delivery = createDelivery<LogRecord>({
    id,
    config: config.delivery,
    // Streaming: records are encoded as they arrive, so only bytes wait for the batch to fill.
    encoder,
    sizeOf: (record) => record.body.length + RECORD_OVERHEAD_BYTES,
    sender: createLokiSender(config),
    deps: { ...deps, logger },
  });
  return {
    name: id,
    start: () => delivery.start(),
    consume: (batch) => delivery.consume(batch),
    shutdown: () => delivery.shutdown(),
  };
}
