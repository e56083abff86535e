import type { Ack, ExportResult } from '../types.ts';

/**
 * One ready-to-send request body. The spool stores payloads as they are, so a replay sends exactly
 * what the first attempt would have sent.
 */
export interface Payload {
  /** The request body, already encoded and compressed. */
  readonly body: Uint8Array;
  /** Per-request headers, e.g. `content-type` and `content-encoding`. */
  readonly headers: Readonly<Record<string, string>>;
  /** Which endpoint of the sender this body goes to (e.g. `logs`, `traces`); the sender maps it to a URL. */
  readonly route: string;
  /** How many records (log lines, spans…) the body holds; for metrics only. */
  readonly records: number;
}

/** One attempt to send one payload. Never throws: a network error is a `retryable` result. */
export interface Sender {
  send(payload: Payload, signal: AbortSignal): Promise<ExportResult>;
  /** Releases sockets; called once by the delivery's shutdown. */
  close?(): void;
}

/** Turns a batch of items into one or more payloads. Called on the hot path, once per batch. */
export type Encoder<T> = (items: T[]) => Payload | Payload[] | Promise<Payload | Payload[]>;

/**
 * An encoder that takes items as they arrive and keeps only bytes, so items can be collected young
 * instead of living until their batch is full (measurably less heap and GC on the hot path).
 */
export interface StreamingEncoder<T> {
  /** Encodes `items[from, to)` into the open batch. Must not keep references to the items. */
  add(items: readonly T[], from: number, to: number): void;
  /** Closes the open batch (never empty) into payloads and starts a new one. */
  finish(): Payload | Payload[];
}

/** A batch of items with the ack to call once every item is sent, spooled or dropped for good. */
export interface DeliveryBatch<T> {
  readonly records: readonly T[];
  readonly ack: Ack;
}

export interface Delivery<T> {
  /** Opens the spool (replaying what a previous run left, before anything new) and starts the senders. */
  start(): Promise<void>;
  /**
   * Adds items to the current batch. Resolves once they are accepted (in memory or on disk); it stays
   * pending only when memory and spool are full under the `block` policy (backpressure).
   * `batch.ack` is called exactly once, when every item is sent, spooled or dropped (counted).
   */
  consume(batch: DeliveryBatch<T>): Promise<void>;
  /**
   * Queues already-encoded payloads as they are, bypassing the batcher (e.g. OTLP bodies received and
   * spliced by the OTLP receiver). Same acceptance and ack rules as `consume`.
   */
  enqueue(payloads: readonly Payload[], ack: Ack): Promise<void>;
  /** True when the next `consume`/`enqueue` would wait for space; receivers may answer 429/503 then. */
  saturated(): boolean;
  /** Stops intake, sends what it can within `shutdown_timeout`, spools the rest. Idempotent. */
  shutdown(): Promise<void>;
}
