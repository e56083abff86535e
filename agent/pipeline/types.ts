import type { ContainerEntry } from '../metadata/types.ts';

/** Anything with a lifecycle: receivers, exporters, the watcher. */
export interface Component {
  /** Returns quickly; background work runs until shutdown(). */
  start(): Promise<void>;
  /** Idempotent and safe before start(): stop intake, flush what is buffered, release sockets and timers. */
  shutdown(): Promise<void>;
}

/** A stage that takes batches. A pending or rejected promise is backpressure: the caller waits. */
export interface Consumer<T> {
  consume(batch: T): Promise<void>;
}

/** What a single send attempt came to. Retrying, backoff and Retry-After live in one shared wrapper. */
export type ExportResult =
  | { readonly status: 'success' }
  | { readonly status: 'retryable'; readonly error: Error; readonly retryAfterMs?: number }
  | { readonly status: 'failure'; readonly error: Error; readonly reason?: string };

/** `log.iostream` values; `systemerr` frames from the Docker log API are reported as stderr. */
export type LogStream = 'stdout' | 'stderr';

/**
 * One log line (or joined multi-line / partial record) of one container. Receivers fill everything
 * but `container`; the enrich step sets `container` from the metadata store.
 */
export interface LogRecord {
  /** When the engine saw the line, Unix nanoseconds. */
  timeUnixNano: bigint;
  /** When labelcast read it, Unix nanoseconds. */
  observedUnixNano: bigint;
  body: string;
  /** Undefined for records that have no stream, such as OTLP logs an application sent. */
  stream: LogStream | undefined;
  /** OpenTelemetry severity number (0 = unspecified) and text, when cheaply detectable. */
  severityNumber: number;
  severityText: string | undefined;
  /** Record-level attributes (json-file `attrs`, `log.file.path`, truncation markers…), or undefined. */
  attributes: Record<string, string> | undefined;
  /** Full 64-hex container id. */
  containerId: string;
  /** The container's metadata; undefined until enriched, or when it could not be found. */
  container: ContainerEntry | undefined;
}

/**
 * Called once when the batch no longer needs its source: every exporter that must receive it has sent
 * it, spooled it durably, or dropped it for good (counted). Receivers advance checkpoints from here.
 */
export type Ack = () => void;

export interface LogBatch {
  readonly records: LogRecord[];
  readonly ack: Ack;
}

/** A log exporter: `consume` takes ownership of the batch and must call `batch.ack()` exactly once. */
export interface LogExporter extends Component, Consumer<LogBatch> {
  readonly name: string;
}

/** A receiver produces batches into the pipeline it was built with. */
export interface Receiver extends Component {
  readonly name: string;
}

/** A no-op ack for batches whose source keeps no checkpoint. */
export const noAck: Ack = () => {};

/** What every log receiver factory gets: `create<Name>Receiver(config, deps): Receiver`. */
export interface ReceiverDeps {
  readonly docker: import('dockerode');
  readonly store: import('../metadata/types.ts').MetadataStore;
  /** The enrich stage. Receivers hand it whole batches (one per read chunk / message). */
  readonly consumer: Consumer<LogBatch>;
  readonly checkpoints: import('./checkpoints.ts').CheckpointStore;
  readonly logger: import('pino').Logger;
  readonly metrics: import('prom-client').Registry;
}

/** What every exporter factory gets: `create<Name>Exporter(id, config, deps): LogExporter`. */
export interface ExporterDeps {
  readonly logger: import('pino').Logger;
  readonly metrics: import('prom-client').Registry;
  /** Exporters keep their disk spool under `<stateDir>/spool/<exporter id>/`. */
  readonly stateDir: string;
}
