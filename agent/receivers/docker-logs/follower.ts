import type Docker from 'dockerode';
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import { createLogStreamParser, formatDockerTimestamp, type LogStreamItem } from '../../docker/log-stream.ts';
import { createOrderedAcks } from '../../pipeline/checkpoints.ts';
import { makeRecord, nowUnixNano, TRUNCATED_ATTRIBUTE } from '../../pipeline/log-record.ts';
import type { Consumer, LogBatch, LogRecord, LogStream } from '../../pipeline/types.ts';
import { advance, comparePositions, createOverlapFilter, type Position } from './position.ts';
import { untilAborted } from './until-aborted.ts';

export interface FollowerMetrics {
  readonly records: Counter<'stream'>;
  readonly overlapDropped: Counter;
  readonly systemErrors: Counter;
  readonly streamErrors: Counter;
  readonly truncated: Counter;
  readonly openStreams: Gauge;
}

export interface FollowerOptions {
  readonly id: string;
  readonly docker: Docker;
  readonly consumer: Consumer<LogBatch>;
  /** Where to resume: the checkpoint, the `start_at: end` floor, or undefined for the whole log. */
  readonly resume: Position | undefined;
  /** Called with each position whose batch, and every batch before it, was acknowledged. */
  readonly commit: (position: Position) => void;
  /** Whether the store believes the container runs; a stopped container is not re-followed until woken. */
  readonly isRunning: () => boolean;
  readonly maxLineBytes: number;
  readonly logger: Logger;
  readonly metrics: FollowerMetrics;
}

export interface Follower {
  /** The container (re)started: read its log at least once more, now, even if it has already exited. */
  wake(): void;
  /** Closes the stream and ends the loop. Batches already handed on still commit when acked. */
  stop(): Promise<void>;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
const FINAL_LOOK_MS = 1000;

interface Partial {
  parts: Buffer[];
  bytes: number;
  truncated: boolean;
  /** The first piece's timestamp: the joined record's time. */
  time: bigint;
  /** The position before the first piece: a checkpoint must not pass it until the line is complete. */
  before: Position | undefined;
}

/**
 * Follows one container's log over the API for as long as it runs, and again each time it is woken:
 * `follow=1&timestamps=1&since=<position>`, dropping what the engine repeats. On an engine error it
 * reconnects with jittered exponential backoff; on a clean end (the container stopped) it waits to be
 * woken. One batch per received chunk; positions commit in order, as batches are acknowledged.
 */
export function startFollower(options: FollowerOptions): Follower {
  const { id, consumer, metrics, maxLineBytes } = options;
  const container = options.docker.getContainer(id);
  const acks = createOrderedAcks<Position>(options.commit);
  /** Everything before this was handed to the consumer (or deliberately skipped). */
  let resumeAt = options.resume;
  let stopped = false;
  let current: AbortController | undefined;
  let wakeUp: (() => void) | undefined;
  let warned = false;
  /** A start was seen and not yet followed by a read: a container may exit before we look at it. */
  let startPending = true;
  /** After a run ends, the log is read once more a little later; then the follower parks. */
  let finalLookDone = false;

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });

  const stoppedSignal = new AbortController();

  /** Hands a batch on; a rejection is backpressure, so it waits and offers the same batch again. */
  const deliver = async (batch: LogBatch): Promise<void> => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        await untilAborted(consumer.consume(batch), stoppedSignal.signal);
        return;
      } catch (err) {
        if (!warned) options.logger.warn({ err, containerId: id }, 'The pipeline refused a batch: retrying');
        warned = true;
        await sleep(Math.min(BACKOFF_MIN_MS * 2 ** attempt, BACKOFF_MAX_MS));
      }
    }
  };

  /** Reads one logs response to its end. Returns whether it ended cleanly and whether it carried lines. */
  const readOnce = async (): Promise<{ clean: boolean; progressed: boolean }> => {
    const ac = new AbortController();
    current = ac;
    const filter = createOverlapFilter(resumeAt);
    const partials = new Map<LogStream, Partial>();
    let taken = resumeAt;
    let progressed = false;

    const safePosition = (): Position | undefined => {
      let safe = taken;
      for (const p of partials.values()) if (comparePositions(p.before, safe) < 0) safe = p.before;
      return safe;
    };

    const join = (p: Partial): { body: string; attributes: Record<string, string> | undefined } => {
      const body = Buffer.concat(p.parts).toString('utf8');
      if (p.truncated) metrics.truncated.inc();
      return { body, attributes: p.truncated ? { [TRUNCATED_ATTRIBUTE]: 'true' } : undefined };
    };

    const append = (p: Partial, content: Buffer): void => {
      const room = maxLineBytes - p.bytes;
      if (content.length > room) p.truncated = true;
      if (room <= 0) return;
      // Copied: a subarray would keep the whole received chunk alive while the line is pending.
      const piece = Buffer.from(content.subarray(0, room));
      p.parts.push(piece);
      p.bytes += piece.length;
    };

    const toBatch = async (items: LogStreamItem[], flush: boolean): Promise<void> => {
      const observed = nowUnixNano();
      const records: LogRecord[] = [];
      for (const item of items) {
        if (item.kind === 'systemerr') {
          metrics.systemErrors.inc();
          records.push(
            makeRecord(id, observed, observed, item.text, 'stderr', { 'log.source': 'docker.systemerr' }),
          );
          continue;
        }
        if (!filter(item.timeUnixNano)) {
          metrics.overlapDropped.inc();
          continue;
        }
        const before = taken;
        taken = advance(taken, item.timeUnixNano);
        let pending = partials.get(item.stream);
        if (item.partial) {
          if (!pending) {
            pending = { parts: [], bytes: 0, truncated: false, time: item.timeUnixNano, before };
            partials.set(item.stream, pending);
          }
          append(pending, item.content);
          continue;
        }
        if (pending) {
          append(pending, item.content);
          partials.delete(item.stream);
          const { body, attributes } = join(pending);
          records.push(makeRecord(id, pending.time, observed, body, item.stream, attributes));
        } else if (item.content.length > maxLineBytes) {
          metrics.truncated.inc();
          const body = item.content.toString('utf8', 0, maxLineBytes);
          records.push(
            makeRecord(id, item.timeUnixNano, observed, body, item.stream, { [TRUNCATED_ATTRIBUTE]: 'true' }),
          );
        } else {
          records.push(
            makeRecord(
              id,
              item.timeUnixNano,
              observed,
              item.content.toString('utf8'),
              item.stream,
              undefined,
            ),
          );
        }
      }
      if (flush) {
        // The stream ended cleanly (the container stopped): an unterminated last line is complete.
        for (const [stream, p] of partials) {
          const { body, attributes } = join(p);
          records.push(makeRecord(id, p.time, observed, body, stream, attributes));
        }
        partials.clear();
      }
      const position = safePosition();
      if (records.length === 0) {
        if (comparePositions(position, resumeAt) > 0) resumeAt = position;
        return;
      }
      progressed = true;
      for (const r of records) metrics.records.inc({ stream: r.stream ?? 'stdout' });
      const ack = position === undefined ? () => {} : acks.issue(position);
      await deliver({ records, ack });
      if (!stopped) resumeAt = position;
    };

    let res: NodeJS.ReadableStream | undefined;
    metrics.openStreams.inc();
    try {
      const query: Record<string, unknown> = { follow: true, stdout: true, stderr: true, timestamps: true };
      if (resumeAt !== undefined) query.since = formatDockerTimestamp(resumeAt.timeUnixNano);
      res = (await container.logs({
        ...query,
        follow: true,
        abortSignal: ac.signal,
      })) as NodeJS.ReadableStream;
      const parser = createLogStreamParser();
      for await (const chunk of res) {
        await toBatch(parser.push(chunk as Buffer), false);
        if (stopped) return { clean: false, progressed };
      }
      await toBatch(parser.end(), true);
      return { clean: true, progressed };
    } catch (err) {
      if (!stopped) {
        metrics.streamErrors.inc();
        if (!warned)
          options.logger.warn({ err, containerId: id }, 'The container log stream failed: reconnecting');
        warned = true;
      }
      return { clean: false, progressed };
    } finally {
      metrics.openStreams.dec();
      current = undefined;
      (res as { destroy?: () => void } | undefined)?.destroy?.();
    }
  };

  const loop = async (): Promise<void> => {
    let failures = 0;
    /** Parking needs a read that ended cleanly: after a failed one, the end of the log is still unread. */
    let lastClean = false;
    while (!stopped) {
      if (!startPending && lastClean && !options.isRunning()) {
        if (finalLookDone) {
          // Parked until the store reports a start (wake); the long sleep is only a safety net.
          await sleep(60_000);
          continue;
        }
        // The engine can end a follow stream at `die` before the copier has written the last lines.
        finalLookDone = true;
        await sleep(FINAL_LOOK_MS);
        if (stopped) break;
      }
      startPending = false;
      const { clean, progressed } = await readOnce();
      lastClean = clean;
      if (stopped) break;
      if (progressed) {
        failures = 0;
        if (warned) options.logger.info({ containerId: id }, 'The container log stream recovered');
        warned = false;
      }
      // A clean end means the container stopped: park, or read again at once if it already restarted.
      if (clean && (startPending || !options.isRunning())) continue;
      failures++;
      const ceiling = Math.min(BACKOFF_MIN_MS * 2 ** (failures - 1), BACKOFF_MAX_MS);
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
    }
  };

  const done = loop();
  return {
    wake() {
      startPending = true;
      finalLookDone = false;
      wakeUp?.();
    },
    async stop() {
      if (!stopped) {
        stopped = true;
        stoppedSignal.abort();
        current?.abort();
        wakeUp?.();
      }
      await done;
    },
  };
}
