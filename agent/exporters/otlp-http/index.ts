import { gzipSync } from 'node:zlib';
import { createDelivery, createHttpSender, deliveryMetrics } from '../../pipeline/delivery/index.ts';
import type { Payload } from '../../pipeline/delivery/types.ts';
import type { Ack, ExporterDeps, ExportResult, LogExporter, LogRecord } from '../../pipeline/types.ts';
import {
  type OtlpHttpExporterConfig,
  type OtlpSignal,
  type ResolvedOtlpHttpConfig,
  resolveOtlpHttpConfig,
} from './config.ts';
import { OtlpLogsEncoder } from './encode.ts';
import { parsePartialSuccess } from './response.ts';

export {
  type OtlpHttpExporterConfig,
  otlpHttpExporterConfigSchema,
  resolveOtlpHttpConfig,
} from './config.ts';

/**
 * gzip level: 1 costs about a third of the default level's CPU for a few percent more bytes on log
 * lines. Synchronous on purpose: a batch compresses in about 3 ms, and the async form cost more CPU
 * (thread hand-offs) and twice the external memory in npm run bench:export (docs/otlp-exporter.md).
 */
const GZIP_LEVEL = 1;
/** Timestamps, severity, the body's AnyValue and the log.iostream attribute around each body. */
const RECORD_OVERHEAD_BYTES = 64;
/** Distinct partial_success messages logged; beyond this they are only counted. */
const MAX_LOGGED_MESSAGES = 100;

const CONTENT_TYPE = { protobuf: 'application/x-protobuf', json: 'application/json' } as const;

/** The `otlp_http` exporter: a LogExporter that can also forward OTLP bodies the agent received. */
export interface OtlpHttpExporter extends LogExporter {
  readonly settings: ResolvedOtlpHttpConfig;
  /**
   * Queues one already-encoded, uncompressed OTLP request body for `signal` (issue 5's receiver:
   * spliced traces/logs/metrics). It is compressed per the config and goes through the same queue,
   * spool and retries. `ack` is called once it is sent, spooled or dropped.
   */
  forward(
    signal: OtlpSignal,
    body: Uint8Array,
    encoding: 'protobuf' | 'json',
    records: number,
    ack: Ack,
  ): Promise<void>;
  /** True when forwarding now would wait: the receiver should answer 429/503 with Retry-After. */
  saturated(): boolean;
}

/**
 * Creates the `otlp_http` exporter: records → ExportLogsServiceRequest (protobuf by default, JSON by
 * option; gzip by default) → the shared delivery (batching, queue, spool, retries).
 * Unset config keys fall back to `env` (OTEL_EXPORTER_OTLP_*); a missing endpoint or a malformed
 * variable throws a ConfigError. TLS files are read here, so a bad path fails at startup.
 */
export function createOtlpHttpExporter(
  id: string,
  config: OtlpHttpExporterConfig,
  deps: ExporterDeps,
  env: NodeJS.ProcessEnv = process.env,
): OtlpHttpExporter {
  const settings = resolveOtlpHttpConfig(id, config, env);
  const logger = deps.logger.child({ component: `exporter/${id}` });
  const metrics = deliveryMetrics(deps.metrics);
  const encoder = new OtlpLogsEncoder();
  const protobuf = settings.encoding === 'protobuf';
  /** Records in the batch the encoder holds open. */
  let open = 0;
  const compress = settings.compression === 'gzip';
  const loggedMessages = new Set<string>();

  /** `body` may be the encoder's scratch buffer: it is compressed or copied here, never kept. */
  const toPayload = (
    route: OtlpSignal,
    body: Uint8Array,
    encoding: 'protobuf' | 'json',
    records: number,
  ): Payload => {
    const headers: Record<string, string> = { 'content-type': CONTENT_TYPE[encoding] };
    if (compress) headers['content-encoding'] = 'gzip';
    return {
      body: compress ? gzipSync(body, { level: GZIP_LEVEL }) : Buffer.from(body),
      headers,
      route,
      records,
    };
  };

  const onSuccess = (
    body: Buffer,
    headers: Record<string, unknown>,
    payload: Payload,
  ): ExportResult | undefined => {
    if (body.length === 0) return undefined;
    const partial = parsePartialSuccess(body, String(headers['content-type'] ?? ''));
    if (!partial) return undefined;
    if (partial.rejected > 0)
      metrics.droppedRecords.inc({ exporter: id, reason: 'partial_success' }, partial.rejected);
    const key = partial.message || `rejected ${partial.rejected}`;
    if (!loggedMessages.has(key) && loggedMessages.size < MAX_LOGGED_MESSAGES) {
      loggedMessages.add(key);
      logger.warn(
        { rejected: partial.rejected, of: payload.records, signal: payload.route, message: partial.message },
        'The OTLP backend rejected part of a request (partial_success): not retried',
      );
    }
    return undefined;
  };

  const sender = createHttpSender({
    id,
    url: (route) => settings.urls[route as OtlpSignal] ?? settings.urls.logs,
    headers: settings.headers,
    tls: config.tls,
    timeoutMs: settings.timeoutMs,
    maxSockets: config.delivery.concurrency,
    onSuccess,
  });

  const delivery = createDelivery<LogRecord>({
    id,
    config: config.delivery,
    encoder: {
      add(records, from, to) {
        open += to - from;
        if (protobuf) encoder.addProtobuf(records, from, to);
        else encoder.addJson(records, from, to);
      },
      finish() {
        const records = open;
        open = 0;
        const body = protobuf ? encoder.finishProtobuf() : encoder.finishJson();
        return toPayload('logs', body, settings.encoding, records);
      },
    },
    sizeOf: (record) => record.body.length + RECORD_OVERHEAD_BYTES,
    sender,
    deps: { ...deps, logger },
  });

  return {
    name: id,
    settings,
    async start() {
      logger.info(
        { url: settings.urls.logs, encoding: settings.encoding, compression: settings.compression },
        'Exporting logs over OTLP/HTTP',
      );
      await delivery.start();
    },
    consume: (batch) => delivery.consume(batch),
    shutdown: () => delivery.shutdown(),
    async forward(signal, body, encoding, records, ack) {
      await delivery.enqueue([toPayload(signal, body, encoding, records)], ack);
    },
    saturated: () => delivery.saturated(),
  };
}
