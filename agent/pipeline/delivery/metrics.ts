import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The delivery metrics; one set per registry, labelled by exporter id. */
export interface DeliveryMetrics {
  /** Records and bytes the sink accepted. */
  readonly sentRecords: Counter<'exporter'>;
  readonly sentBytes: Counter<'exporter'>;
  /** Failed requests by `kind`: `retryable` or `permanent`. */
  readonly failedRequests: Counter<'exporter' | 'kind'>;
  readonly retries: Counter<'exporter'>;
  /** Records dropped for good, by reason (`rejected`, `partial_success`, `spool_full`, `spool_corrupt`, `retries_exhausted`…). */
  readonly droppedRecords: Counter<'exporter' | 'reason'>;
  /** Records and bytes written to the spool. */
  readonly spooledRecords: Counter<'exporter'>;
  readonly spooledBytesTotal: Counter<'exporter'>;
  /** Corrupt spool records found by CRC or framing and skipped. */
  readonly spoolCorrupt: Counter<'exporter'>;
  readonly spoolBytes: Gauge<'exporter'>;
  readonly queueBytes: Gauge<'exporter'>;
  readonly requestDuration: Histogram<'exporter'>;
}

const cache = new WeakMap<Registry, DeliveryMetrics>();

/** Returns the delivery metrics registered on `registry`, registering them on first use. */
export function deliveryMetrics(registry: Registry): DeliveryMetrics {
  const existing = cache.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const m: DeliveryMetrics = {
    sentRecords: new Counter({
      name: 'labelcast_exporter_sent_records_total',
      help: 'Records accepted by the sink',
      labelNames: ['exporter'],
      registers,
    }),
    sentBytes: new Counter({
      name: 'labelcast_exporter_sent_bytes_total',
      help: 'Request body bytes accepted by the sink (after compression)',
      labelNames: ['exporter'],
      registers,
    }),
    failedRequests: new Counter({
      name: 'labelcast_exporter_failed_requests_total',
      help: 'Requests that failed, by kind (retryable, permanent)',
      labelNames: ['exporter', 'kind'],
      registers,
    }),
    retries: new Counter({
      name: 'labelcast_exporter_retries_total',
      help: 'Request retries after a retryable failure',
      labelNames: ['exporter'],
      registers,
    }),
    droppedRecords: new Counter({
      name: 'labelcast_exporter_dropped_records_total',
      help: 'Records dropped for good, by reason',
      labelNames: ['exporter', 'reason'],
      registers,
    }),
    spooledRecords: new Counter({
      name: 'labelcast_exporter_spooled_records_total',
      help: 'Records written to the disk spool',
      labelNames: ['exporter'],
      registers,
    }),
    spooledBytesTotal: new Counter({
      name: 'labelcast_exporter_spooled_bytes_total',
      help: 'Bytes written to the disk spool',
      labelNames: ['exporter'],
      registers,
    }),
    spoolCorrupt: new Counter({
      name: 'labelcast_exporter_spool_corrupt_records_total',
      help: 'Spool records that failed their CRC or framing check and were skipped',
      labelNames: ['exporter'],
      registers,
    }),
    spoolBytes: new Gauge({
      name: 'labelcast_exporter_spool_bytes',
      help: 'Bytes in the disk spool',
      labelNames: ['exporter'],
      registers,
    }),
    queueBytes: new Gauge({
      name: 'labelcast_exporter_queue_bytes',
      help: 'Encoded bytes held in memory (queued or in flight)',
      labelNames: ['exporter'],
      registers,
    }),
    requestDuration: new Histogram({
      name: 'labelcast_exporter_request_duration_seconds',
      help: 'Export request latency',
      labelNames: ['exporter'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  };
  cache.set(registry, m);
  return m;
}
