import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { StateError } from '../errors.ts';
import type { ContainerEntry } from '../metadata/types.ts';
import type { Ack, Component, Consumer, LogBatch, LogRecord } from './types.ts';

export interface MultilineOptions {
  readonly next: Consumer<LogBatch>;
  /** A held record goes out when no continuation line came for this long. */
  readonly flushTimeoutMs: number;
  /** A joined record is not grown beyond this many characters; the next line starts a new record. */
  readonly maxChars: number;
  readonly logger: Logger;
  readonly metrics: Registry;
}

/** An input batch: acked once every record taken from it has been acked downstream. */
interface Source {
  readonly ack: Ack;
  refs: number;
}

/** The record being joined for one container stream, and the batches its lines came from. */
interface Pending {
  readonly record: LogRecord;
  readonly sources: Source[];
  readonly timer: NodeJS.Timeout;
}

/**
 * Joins multi-line records (stack traces) for containers labelled `io.labelcast.multiline.start=<regex>`:
 * a line that does not match the start pattern is appended (after `\n`) to the previous record of the
 * same container and stream. The last record of each stream is held until a start line, the flush
 * timeout, the size cap or shutdown. Records of other containers pass straight through.
 *
 * Acks: a batch that touched a multiline container is acked only when all its records are acked
 * downstream, and such batches are acked in the order they arrived, so a checkpoint never passes a
 * line that is still held here.
 */
export function createMultilineStage(options: MultilineOptions): Component & Consumer<LogBatch> {
  const { next, flushTimeoutMs, maxChars } = options;
  const logger = options.logger.child({ component: 'pipeline/multiline' });
  const joined = new Counter({
    name: 'labelcast_multiline_lines_joined_total',
    help: 'Continuation lines appended to the previous record by io.labelcast.multiline.start',
    registers: [options.metrics],
  });
  const capped = new Counter({
    name: 'labelcast_multiline_records_capped_total',
    help: 'Joined records sent early because the next line would exceed the size cap',
    registers: [options.metrics],
  });
  const pending = new Map<string, Pending>();
  const order: Source[] = [];
  let head = 0;
  const inFlight = new Set<Promise<void>>();
  let closed = false;

  const releaseInOrder = (): void => {
    while (head < order.length && order[head]!.refs === 0) order[head++]!.ack();
    if (head > 1024 && head * 2 > order.length) {
      order.splice(0, head);
      head = 0;
    }
  };
  const release = (sources: Iterable<Source>): void => {
    for (const source of sources) source.refs--;
    releaseInOrder();
  };

  const send = (records: LogRecord[], sources: Set<Source>): Promise<void> => {
    const done = next.consume({ records, ack: () => release(sources) });
    inFlight.add(done);
    const forget = (): void => {
      inFlight.delete(done);
    };
    done.then(forget, forget);
    return done;
  };

  /** Moves a held record into an outgoing batch; the batch takes over the record's source refs. */
  const take = (key: string, held: Pending, out: LogRecord[], sources: Set<Source>): void => {
    clearTimeout(held.timer);
    pending.delete(key);
    out.push(held.record);
    for (const source of held.sources) {
      if (sources.has(source)) source.refs--;
      else sources.add(source);
    }
  };

  const flushKey = (key: string): void => {
    const held = pending.get(key);
    if (held === undefined) return;
    const out: LogRecord[] = [];
    const sources = new Set<Source>();
    take(key, held, out, sources);
    send(out, sources).catch((err: unknown) => {
      logger.warn({ err }, 'Cannot hand on a multiline record after its flush timeout');
    });
  };

  const touchesMultiline = (records: readonly LogRecord[]): boolean => {
    let last: ContainerEntry | undefined | null = null;
    for (const record of records) {
      if (record.container === last) continue;
      last = record.container;
      if (last?.settings.multilineStart !== undefined) return true;
    }
    return false;
  };

  return {
    async start() {},
    consume(batch) {
      if (closed) return Promise.reject(new StateError('Cannot join lines: the pipeline is shut down'));
      if (!touchesMultiline(batch.records)) return next.consume(batch);
      const source: Source = { ack: batch.ack, refs: 1 };
      order.push(source);
      const sources = new Set<Source>([source]);
      const out: LogRecord[] = [];
      let appended = 0;
      for (const record of batch.records) {
        const start = record.container?.settings.multilineStart;
        if (start === undefined) {
          out.push(record);
          continue;
        }
        const key = `${record.containerId}/${record.stream}`;
        const held = pending.get(key);
        if (held !== undefined && !start.test(record.body)) {
          if (held.record.body.length + 1 + record.body.length <= maxChars) {
            held.record.body += `\n${record.body}`;
            if (!held.sources.includes(source)) {
              held.sources.push(source);
              source.refs++;
            }
            held.timer.refresh();
            appended++;
            continue;
          }
          capped.inc();
        }
        if (held !== undefined) take(key, held, out, sources);
        source.refs++;
        pending.set(key, {
          record,
          sources: [source],
          timer: setTimeout(flushKey, flushTimeoutMs, key),
        });
      }
      if (appended > 0) joined.inc(appended);
      if (out.length === 0) {
        release(sources);
        return Promise.resolve();
      }
      return send(out, sources);
    },
    async shutdown() {
      closed = true;
      if (pending.size > 0) {
        const out: LogRecord[] = [];
        const sources = new Set<Source>();
        for (const [key, held] of [...pending]) take(key, held, out, sources);
        await send(out, sources).catch((err: unknown) => {
          logger.warn({ err }, 'Cannot hand on held multiline records at shutdown');
        });
      }
      await Promise.allSettled([...inFlight]);
    },
  };
}
