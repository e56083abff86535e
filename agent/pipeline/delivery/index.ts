import { join } from 'node:path';
import type { Logger } from 'pino';
import { AgentError } from '../../errors.ts';
import { withSpan } from '../../telemetry/tracing.ts';
import type { Ack, ExporterDeps, ExportResult } from '../types.ts';
import type { DeliveryConfig } from './config.ts';
import { type DeliveryMetrics, deliveryMetrics } from './metrics.ts';
import { backoffDelay, sleep } from './retry.ts';
import { Spool, type SpoolEntry } from './spool.ts';
import type { Delivery, DeliveryBatch, Encoder, Payload, Sender, StreamingEncoder } from './types.ts';

export { type DeliveryConfig, deliveryConfigSchema } from './config.ts';
export { createHttpSender, type HttpSenderOptions, type TlsOptions } from './http-sender.ts';
export { type DeliveryMetrics, deliveryMetrics } from './metrics.ts';
export { backoffDelay, parseRetryAfter } from './retry.ts';
export type { Delivery, DeliveryBatch, Encoder, Payload, Sender, StreamingEncoder } from './types.ts';

/** A Retry-After longer than this is treated as this long, so a bogus header cannot park a sender for days. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;
/** Distinct permanent errors remembered for "log once"; beyond it they are still counted. */
const MAX_DISTINCT_ERRORS = 100;

export interface DeliveryOptions<T> {
  /** The exporter id (`otlp_http`, `loki/eu`): the metrics label and the spool folder name. */
  readonly id: string;
  readonly config: DeliveryConfig;
  /** Encodes one batch into ready-to-send payloads; or give `encoder` instead. */
  readonly encode?: Encoder<T>;
  /** Encodes items as they arrive (preferred on hot paths); or give `encode` instead. */
  readonly encoder?: StreamingEncoder<T>;
  /** The approximate encoded size of one item, for `max_batch_bytes`. Must be cheap. */
  readonly sizeOf: (item: T) => number;
  readonly sender: Sender;
  /** `logger` should already be the exporter's child logger. */
  readonly deps: ExporterDeps;
}

/** Counts how many queued payloads still hold a source batch; the ack fires when none does. */
interface AckRef {
  remaining: number;
  readonly ack: Ack;
}

interface MemoryItem {
  readonly payload: Payload;
  readonly bytes: number;
  readonly refs: readonly AckRef[];
  /** Admission order, so a spill writes memory items to the spool in the order they were made. */
  readonly seq: number;
  /** Aborts this item's request when it is moved to the spool while in flight. */
  readonly controller: AbortController;
  spilled: boolean;
}

type Outcome = 'done' | 'aborted' | 'spill';

type Work =
  | { readonly kind: 'memory'; readonly item: MemoryItem }
  | { readonly kind: 'spool'; readonly entry: SpoolEntry };

function release(refs: readonly AckRef[]): void {
  for (const ref of refs) if (--ref.remaining === 0) ref.ack();
}

/**
 * The delivery machinery every network exporter shares: a batcher (by bytes and age), a bounded
 * in-memory queue of encoded payloads, a disk spool beyond it, `concurrency` senders that retry with
 * backoff and Retry-After, and a shutdown that spools what it could not send. See docs/delivery.md.
 *
 * Order: while the spool holds unsent payloads, new ones are appended behind them, so the sink sees
 * payloads in the order they were made (up to `concurrency` reordering).
 */
export function createDelivery<T>(options: DeliveryOptions<T>): Delivery<T> {
  return new DeliveryImpl(options);
}

class DeliveryImpl<T> implements Delivery<T> {
  readonly #o: DeliveryOptions<T>;
  readonly #c: DeliveryConfig;
  readonly #log: Logger;
  readonly #m: DeliveryMetrics;
  readonly #label: { exporter: string };
  readonly #spool: Spool | undefined;
  readonly #abort = new AbortController();

  #pending: T[] = [];
  #pendingCount = 0;
  #pendingBytes = 0;
  #pendingRefs: AckRef[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Flushes and enqueues run one after another, so payloads keep their order. */
  #chain: Promise<void> = Promise.resolve();

  #queue: MemoryItem[] = [];
  #queueHead = 0;
  /** Encoded bytes in memory: queued plus in flight. */
  #heldBytes = 0;
  readonly #inflight = new Set<MemoryItem>();
  #aborted: MemoryItem[] = [];
  #seq = 0;
  #lastPayloadBytes = 0;

  #started = false;
  #closed = false;
  #draining = false;
  #workers: Promise<void>[] = [];
  #generation = 0;
  #wake: (() => void) | undefined;
  #wakeup: Promise<void>;
  #memoryWaiters: (() => void)[] = [];
  #failing = false;
  /** No request starts before this time: a Retry-After or backoff holds every sender, not just one. */
  #resumeAt = 0;
  readonly #loggedErrors = new Set<string>();
  #shutdown: Promise<void> | undefined;

  constructor(options: DeliveryOptions<T>) {
    if ((options.encode === undefined) === (options.encoder === undefined))
      throw new TypeError('createDelivery needs exactly one of encode and encoder');
    this.#o = options;
    this.#c = options.config;
    this.#log = options.deps.logger;
    this.#m = deliveryMetrics(options.deps.metrics);
    this.#label = { exporter: options.id };
    this.#wakeup = this.#newWakeup();
    const spool = this.#c.spool;
    if (spool.max_bytes > 0) {
      this.#spool = new Spool({
        dir: join(options.deps.stateDir, 'spool', encodeURIComponent(options.id)),
        maxBytes: spool.max_bytes,
        segmentBytes: spool.segment_bytes,
        policy: spool.policy,
        logger: this.#log,
        onCorrupt: () => this.#m.spoolCorrupt.inc(this.#label),
        onDropped: (records, reason) => this.#m.droppedRecords.inc({ ...this.#label, reason }, records),
        onAppend: () => this.#signal(),
        onSpaceFreed: () => this.#m.spoolBytes.set(this.#label, this.#spool?.bytes ?? 0),
      });
    }
    this.#m.queueBytes.set(this.#label, 0);
    this.#m.spoolBytes.set(this.#label, 0);
  }

  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    await this.#spool?.open();
    this.#m.spoolBytes.set(this.#label, this.#spool?.bytes ?? 0);
    if (this.#spool?.hasUnread())
      this.#log.info({ bytes: this.#spool.bytes }, 'Replaying the disk spool before new records');
    for (let i = 0; i < this.#c.concurrency; i++) this.#workers.push(this.#work());
  }

  consume(batch: DeliveryBatch<T>): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const ref: AckRef = { remaining: 1, ack: batch.ack };
    const sizeOf = this.#o.sizeOf;
    const max = this.#c.max_batch_bytes;
    const streaming = this.#o.encoder;
    const records = batch.records;
    let flushes: Promise<void> | undefined;
    let from = 0;
    for (let i = 0; i < records.length; i++) {
      const record = records[i] as T;
      if (this.#pendingCount++ === 0) this.#armTimer();
      if (!streaming) this.#pending.push(record);
      this.#pendingBytes += sizeOf(record);
      if (this.#pendingRefs.at(-1) !== ref) {
        this.#pendingRefs.push(ref);
        ref.remaining++;
      }
      if (this.#pendingBytes >= max) {
        if (streaming && !this.#add(streaming, records, from, i + 1)) {
          this.#m.droppedRecords.inc({ ...this.#label, reason: 'encode_error' }, records.length - i - 1);
          from = records.length;
          break;
        }
        from = i + 1;
        flushes = this.#flush();
      }
    }
    if (streaming && from < records.length) this.#add(streaming, records, from, records.length);
    release([ref]);
    return flushes ?? Promise.resolve();
  }

  enqueue(payloads: readonly Payload[], ack: Ack): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const ref: AckRef = { remaining: 1, ack };
    const run = this.#chain.then(() => this.#admit(payloads, [ref]));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  saturated(): boolean {
    if (this.#heldBytes < this.#c.queue_bytes) return false;
    if (!this.#spool) return true;
    return this.#c.spool.policy === 'block' && this.#spool.full(this.#lastPayloadBytes);
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= this.#stop();
    return this.#shutdown;
  }

  #closedError(): AgentError {
    return new AgentError(
      'LABELCAST_ERR_EXPORT',
      `Cannot accept a batch: exporter ${this.#o.id} is shut down (stop receivers before exporters)`,
    );
  }

  #armTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, this.#c.max_delay);
  }

  /** Feeds a streaming encoder; an encoder fault drops the open batch (counted) and returns false. */
  #add(encoder: StreamingEncoder<T>, records: readonly T[], from: number, to: number): boolean {
    try {
      encoder.add(records, from, to);
      return true;
    } catch (err) {
      this.#encodeFailed(err, this.#pendingCount);
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#pendingCount = 0;
      this.#pendingBytes = 0;
      release(this.#pendingRefs);
      this.#pendingRefs = [];
      try {
        encoder.finish(); // discard what the encoder holds
      } catch {
        // it had nothing left to discard
      }
      return false;
    }
  }

  #encodeFailed(err: unknown, records: number): void {
    this.#m.droppedRecords.inc({ ...this.#label, reason: 'encode_error' }, records);
    this.#logOnce('error', `encode:${(err as Error).message}`, err, 'Dropped a batch: it cannot be encoded');
  }

  /** Takes the pending batch now and encodes + admits it behind earlier ones. */
  #flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pendingCount === 0) return this.#chain;
    const count = this.#pendingCount;
    const items = this.#pending;
    const refs = this.#pendingRefs;
    this.#pending = [];
    this.#pendingCount = 0;
    this.#pendingRefs = [];
    this.#pendingBytes = 0;
    const streaming = this.#o.encoder;
    if (streaming) {
      // Finished now, in call order, so payloads keep the order of the records.
      let payloads: Payload | Payload[];
      try {
        payloads = streaming.finish();
      } catch (err) {
        this.#encodeFailed(err, count);
        release(refs);
        return this.#chain;
      }
      const run = this.#chain.then(() => this.#admit(Array.isArray(payloads) ? payloads : [payloads], refs));
      this.#chain = run.catch(() => undefined);
      return run;
    }
    const encode = this.#o.encode as Encoder<T>;
    const run = this.#chain.then(async () => {
      let payloads: Payload | Payload[];
      try {
        payloads = await encode(items);
      } catch (err) {
        this.#encodeFailed(err, items.length);
        release(refs);
        return;
      }
      await this.#admit(Array.isArray(payloads) ? payloads : [payloads], refs);
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Puts payloads in memory, or on the spool when memory is full or the spool already holds older ones. */
  async #admit(payloads: readonly Payload[], refs: readonly AckRef[]): Promise<void> {
    for (const ref of refs) ref.remaining += payloads.length;
    release(refs);
    for (const payload of payloads) {
      const bytes = payload.body.length;
      this.#lastPayloadBytes = bytes;
      const spool = this.#spool;
      const fits = this.#heldBytes === 0 || this.#heldBytes + bytes <= this.#c.queue_bytes;
      if (fits && !spool?.hasUnread()) {
        this.#pushMemory(payload, refs);
        continue;
      }
      if (spool && this.#started) {
        const outcome = await spool.append(payload, this.#abort.signal);
        if (outcome) {
          this.#m.spooledRecords.inc(this.#label, payload.records);
          this.#m.spooledBytesTotal.inc(this.#label, bytes);
          this.#m.spoolBytes.set(this.#label, spool.bytes);
          release(refs);
        } else if (!this.#abort.signal.aborted) {
          release(refs); // refused as larger than the whole spool, counted by the spool
        }
        continue;
      }
      // Memory only: wait for room (backpressure); at shutdown the source keeps it unacked.
      while (this.#heldBytes > 0 && this.#heldBytes + bytes > this.#c.queue_bytes) {
        if (!(await this.#waitForMemory())) return;
      }
      this.#pushMemory(payload, refs);
    }
  }

  #pushMemory(payload: Payload, refs: readonly AckRef[]): void {
    const bytes = payload.body.length;
    this.#hold(bytes);
    const controller = new AbortController();
    this.#queue.push({ payload, bytes, refs, seq: this.#seq++, controller, spilled: false });
    this.#signal();
  }

  /** True when memory items may move to the spool without landing behind newer spooled payloads. */
  #canSpill(): boolean {
    const spool = this.#spool;
    return !!spool && this.#started && !this.#closed && !spool.hasUnread() && !spool.full(this.#heldBytes);
  }

  /**
   * The sink is failing: moves every memory item (in flight or queued) to the spool, oldest first, and
   * acks them. Checkpoints then advance during an outage, and a crash loses nothing the spool holds.
   */
  #spillMemory(): Promise<void> {
    const run = this.#chain.then(async () => {
      const spool = this.#spool as Spool;
      const items = [...this.#inflight, ...this.#queue.slice(this.#queueHead)]
        .filter((item) => !item.spilled)
        .sort((a, b) => a.seq - b.seq);
      this.#queue = [];
      this.#queueHead = 0;
      for (const item of items) {
        item.spilled = true;
        item.controller.abort();
      }
      for (const item of items) {
        const written = await spool.append(item.payload, this.#abort.signal);
        this.#unhold(item.bytes);
        if (written) {
          this.#m.spooledRecords.inc(this.#label, item.payload.records);
          this.#m.spooledBytesTotal.inc(this.#label, item.bytes);
          release(item.refs);
        } else if (this.#abort.signal.aborted) {
          this.#hold(item.bytes);
          this.#aborted.push(item);
        } else {
          release(item.refs); // refused as larger than the whole spool, counted by the spool
        }
      }
      this.#m.spoolBytes.set(this.#label, spool.bytes);
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #hold(bytes: number): void {
    this.#heldBytes += bytes;
    this.#m.queueBytes.set(this.#label, this.#heldBytes);
  }

  #unhold(bytes: number): void {
    this.#heldBytes -= bytes;
    this.#m.queueBytes.set(this.#label, this.#heldBytes);
    const waiters = this.#memoryWaiters;
    this.#memoryWaiters = [];
    for (const wake of waiters) wake();
  }

  #waitForMemory(): Promise<boolean> {
    if (this.#abort.signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => this.#memoryWaiters.push(() => resolve(!this.#abort.signal.aborted)));
  }

  #newWakeup(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #signal(): void {
    this.#generation++;
    const wake = this.#wake;
    this.#wakeup = this.#newWakeup();
    wake?.();
  }

  async #next(): Promise<Work | undefined> {
    const item = this.#queue[this.#queueHead];
    if (item) {
      this.#queue[this.#queueHead++] = undefined as never;
      if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#queueHead);
        this.#queueHead = 0;
      }
      return { kind: 'memory', item };
    }
    if (this.#draining || !this.#spool?.hasUnread()) return undefined;
    const entry = await this.#spool.next();
    return entry ? { kind: 'spool', entry } : undefined;
  }

  async #work(): Promise<void> {
    while (!this.#abort.signal.aborted) {
      const generation = this.#generation;
      const wakeup = this.#wakeup;
      let work: Work | undefined;
      try {
        work = await this.#next();
      } catch (err) {
        this.#logOnce('warn', 'spool-read', err, 'Cannot read the disk spool: retrying in 1 s');
        await sleep(1000, this.#abort.signal);
        continue;
      }
      if (!work) {
        if (generation === this.#generation) await Promise.race([wakeup, this.#abortPromise]);
        continue;
      }
      if (work.kind === 'memory') {
        const item = work.item;
        this.#inflight.add(item);
        const outcome = await withSpan('export', this.#spanAttributes(item.payload), (span) =>
          this.#deliver(item.payload, AbortSignal.any([this.#abort.signal, item.controller.signal]), () =>
            this.#canSpill(),
          ).then((o) => {
            span.setAttribute('labelcast.export.outcome', o);
            return o;
          }),
        );
        this.#inflight.delete(item);
        if (item.spilled) {
          // Moved to the spool by a spill; the spill released it.
        } else if (outcome === 'done') {
          this.#unhold(item.bytes);
          release(item.refs);
        } else if (outcome === 'spill') {
          this.#inflight.add(item);
          await this.#spillMemory();
          this.#inflight.delete(item);
        } else {
          this.#aborted.push(item);
        }
      } else {
        const bytes = work.entry.payload.body.length;
        this.#hold(bytes);
        const outcome = await withSpan('spool replay', this.#spanAttributes(work.entry.payload), () =>
          this.#deliver(work.entry.payload, this.#abort.signal, () => false),
        );
        this.#unhold(bytes);
        if (outcome === 'done') work.entry.done();
        this.#m.spoolBytes.set(this.#label, this.#spool?.bytes ?? 0);
      }
      this.#signal();
    }
  }

  /** Self-telemetry attributes of one payload's delivery (no-op spans unless tracing is on). */
  #spanAttributes(payload: Payload): Record<string, string | number> {
    return {
      'labelcast.exporter': this.#o.id,
      'labelcast.export.route': payload.route,
      'labelcast.export.records': payload.records,
      'labelcast.export.bytes': payload.body.length,
    };
  }

  readonly #abortPromise: Promise<void> = new Promise((resolve) =>
    this.#abort.signal.addEventListener('abort', () => resolve(), { once: true }),
  );

  /**
   * Sends one payload until it succeeds or fails for good ('done'), `signal` aborts it ('aborted'), or
   * it fails retryably while `canSpill()` ('spill': the caller moves it to the spool instead of waiting).
   */
  async #deliver(payload: Payload, signal: AbortSignal, canSpill: () => boolean): Promise<Outcome> {
    const retry = this.#c.retry;
    const startedAt = Date.now();
    for (let attempt = 0; ; attempt++) {
      const wait = this.#resumeAt - Date.now();
      if (wait > 0 && !(await sleep(wait, signal))) return 'aborted';
      if (signal.aborted) return 'aborted';
      const t0 = performance.now();
      let result: ExportResult;
      try {
        result = await this.#o.sender.send(payload, signal);
      } catch (err) {
        result = { status: 'retryable', error: err as Error };
      }
      this.#m.requestDuration.observe(this.#label, (performance.now() - t0) / 1000);
      if (result.status === 'success') {
        this.#m.sentRecords.inc(this.#label, payload.records);
        this.#m.sentBytes.inc(this.#label, payload.body.length);
        if (this.#failing) {
          this.#failing = false;
          this.#log.info('The sink accepts requests again');
        }
        return 'done';
      }
      if (result.status === 'failure') {
        this.#m.failedRequests.inc({ ...this.#label, kind: 'permanent' });
        this.#m.droppedRecords.inc({ ...this.#label, reason: result.reason ?? 'rejected' }, payload.records);
        this.#logOnce(
          'error',
          result.error.message,
          result.error,
          'Dropped a batch the sink refused: it will not be retried',
        );
        return 'done';
      }
      if (signal.aborted) return 'aborted';
      this.#m.failedRequests.inc({ ...this.#label, kind: 'retryable' });
      const delay = Math.min(
        result.retryAfterMs ?? backoffDelay(attempt, retry.initial_interval, retry.max_interval),
        MAX_RETRY_AFTER_MS,
      );
      if (retry.max_elapsed_time > 0 && Date.now() + delay - startedAt > retry.max_elapsed_time) {
        this.#m.droppedRecords.inc({ ...this.#label, reason: 'retries_exhausted' }, payload.records);
        this.#logOnce(
          'error',
          `exhausted:${result.error.message}`,
          result.error,
          'Dropped a batch: retry.max_elapsed_time passed',
        );
        return 'done';
      }
      if (!this.#failing) {
        this.#failing = true;
        this.#log.warn({ err: result.error, retryInMs: delay }, 'Export failed, retrying with backoff');
      }
      this.#m.retries.inc(this.#label);
      this.#resumeAt = Math.max(this.#resumeAt, Date.now() + delay);
      if (canSpill()) return 'spill';
      if (!(await sleep(delay, signal))) return 'aborted';
    }
  }

  #logOnce(level: 'warn' | 'error', key: string, err: unknown, message: string): void {
    if (this.#loggedErrors.has(key)) return;
    if (this.#loggedErrors.size < MAX_DISTINCT_ERRORS) this.#loggedErrors.add(key);
    this.#log[level]({ err }, message);
  }

  async #stop(): Promise<void> {
    this.#closed = true;
    const deadline = setTimeout(() => this.#abort.abort(), this.#c.shutdown_timeout);
    try {
      await this.#flush();
      this.#draining = true;
      this.#signal();
      // Keep sending from memory until it is empty or the deadline aborts.
      while (this.#started && (this.#queueHead < this.#queue.length || this.#inflight.size > 0)) {
        if (this.#abort.signal.aborted) break;
        await Promise.race([this.#wakeup, this.#abortPromise]);
      }
    } finally {
      clearTimeout(deadline);
      this.#abort.abort();
    }
    await Promise.all(this.#workers);
    const leftovers = [...this.#aborted, ...this.#queue.slice(this.#queueHead)];
    this.#queue = [];
    this.#queueHead = 0;
    let unsaved = 0;
    for (const item of leftovers) {
      this.#unhold(item.bytes);
      // The abort signal is already set: `block` does not wait now, `drop_oldest` still evicts.
      if (this.#spool && this.#started && (await this.#spool.append(item.payload, this.#abort.signal))) {
        this.#m.spooledRecords.inc(this.#label, item.payload.records);
        this.#m.spooledBytesTotal.inc(this.#label, item.bytes);
        release(item.refs);
      } else {
        unsaved += item.payload.records;
      }
    }
    if (leftovers.length > 0 && unsaved === 0)
      this.#log.info({ payloads: leftovers.length }, 'Spooled what was not sent within shutdown_timeout');
    if (unsaved > 0)
      this.#log.warn(
        { records: unsaved },
        'Left records unacknowledged at shutdown: the spool is full or disabled (sources with checkpoints resend them)',
      );
    if (this.#started) await this.#spool?.close();
    this.#m.spoolBytes.set(this.#label, this.#spool?.bytes ?? 0);
    this.#o.sender.close?.();
  }
}
