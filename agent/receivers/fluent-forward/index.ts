import { setMaxListeners } from 'node:events';
import { lstat, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { DecodeError, decodeMultiStream, encode } from '@msgpack/msgpack';
import { Counter, Gauge, type Registry } from 'prom-client';
import { StateError } from '../../errors.ts';
import { nowUnixNano } from '../../pipeline/log-record.ts';
import type { LogBatch, LogRecord, Receiver, ReceiverDeps } from '../../pipeline/types.ts';
import { noAck } from '../../pipeline/types.ts';
import { untilAborted } from '../docker-logs/until-aborted.ts';
import type { FluentForwardConfig } from './config.ts';
import { decoderOptions, ForwardProtocolError, parseForwardMessage } from './protocol.ts';
import { createRecordAssembler } from './records.ts';

export type { FluentForwardConfig } from './config.ts';

export interface FluentForwardReceiver extends Receiver {
  /** Where it actually listens (the real port when configured with port 0); empty before start(). */
  address(): { tcp: string; socket?: string };
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;
/** What a record costs besides its body, for the per-connection in-flight bound. */
const RECORD_OVERHEAD_BYTES = 256;
/** At most one warning per this interval for malformed input, however much a peer sends. */
const WARN_INTERVAL_MS = 60_000;

function metricsOn(registry: Registry) {
  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] });
  const gaugeName = 'labelcast_fluent_forward_open_connections';
  return {
    connections: counter(
      'labelcast_fluent_forward_connections_total',
      'Forward protocol connections accepted',
    ),
    open:
      (registry.getSingleMetric(gaugeName) as Gauge | undefined) ??
      new Gauge({ name: gaugeName, help: 'Forward protocol connections open now', registers: [registry] }),
    messages: counter(
      'labelcast_fluent_forward_messages_total',
      'Forward protocol messages received, by mode',
      ['mode'],
    ),
    records: counter(
      'labelcast_fluent_forward_records_total',
      'Log records produced from Forward protocol events',
    ),
    acks: counter('labelcast_fluent_forward_acks_total', 'Chunk acks sent (fluentd-request-ack)'),
    malformed: counter(
      'labelcast_fluent_forward_malformed_total',
      'Connections closed because the peer sent something that is not Forward protocol, by reason',
      ['reason'],
    ),
    truncated: counter('labelcast_fluent_forward_truncated_total', 'Lines cut at max_line_bytes'),
  };
}

/** Splits `host:port` / `[v6]:port`. The schema has already checked the shape. */
function splitListen(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(colon + 1)) };
}

function listen(server: Server, target: { host: string; port: number } | string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (typeof target === 'string') server.listen(target, done);
    else server.listen(target.port, target.host, done);
  });
}

/**
 * The `fluent_forward` receiver: the target of Docker's fluentd log driver (and any Forward protocol v1
 * client) on TCP and optionally a unix socket. One batch per Forward message, handed to the consumer one
 * at a time, in order. `{ack: chunk}` is written once the batch is queued in this connection's bounded
 * buffer: while more than `max_buffer_bytes` of the connection's records wait for consume() to resolve,
 * the receiver acks nothing and stops reading the socket (TCP backpressure).
 *
 * Why not ack only when consume() resolves: the enrich stage holds a batch of a not-yet-known container
 * while it inspects it, and the engine holds that inspect while the container's log writes are blocked,
 * which (with fluentd-request-ack) wait for our ack: every line would wait out enrich.max_wait.
 *
 * A malformed frame closes only its connection and is counted. TCP heartbeats (connect, close) need
 * nothing; UDP heartbeats are not served.
 */
export function createFluentForwardReceiver(
  config: FluentForwardConfig,
  deps: ReceiverDeps,
): FluentForwardReceiver {
  const logger = deps.logger.child({ component: 'receiver/fluent_forward' });
  const metrics = metricsOn(deps.metrics);
  const maxBytes = config.max_buffer_bytes;
  const servers: Server[] = [];
  const connections = new Map<Socket, { busy: boolean; done: Promise<void> }>();
  const stopping = new AbortController();
  // Every connection waits on this one signal; the listeners go away as each consume() settles.
  setMaxListeners(0, stopping.signal);
  let tcpAddress = '';
  let socketPath: string | undefined;
  let started = false;
  let closed = false;
  let lastWarn = 0;

  const warn = (obj: object, msg: string): void => {
    const now = Date.now();
    if (now - lastWarn < WARN_INTERVAL_MS) return;
    lastWarn = now;
    logger.warn(obj, msg);
  };

  /** Hands a batch on; a rejection is backpressure, so it waits and offers the batch again. */
  const deliver = async (records: LogRecord[]): Promise<void> => {
    const batch: LogBatch = { records, ack: noAck };
    metrics.records.inc(records.length);
    for (let attempt = 0; ; attempt++) {
      try {
        // On shutdown stop waiting: the consumer already holds the batch.
        await untilAborted(deps.consumer.consume(batch), stopping.signal);
        return;
      } catch (err) {
        if (closed) return;
        warn({ err }, 'The pipeline refused a batch: retrying');
        await new Promise((r) => setTimeout(r, Math.min(RETRY_MIN_MS * 2 ** attempt, RETRY_MAX_MS)));
      }
    }
  };

  const serve = async (socket: Socket, state: { busy: boolean }): Promise<void> => {
    const assembler = createRecordAssembler(config.max_line_bytes, () => metrics.truncated.inc());
    let unread = 0;
    // Counts the bytes the decoder holds for the message in progress: a peer cannot make it buffer more.
    const source = (async function* bounded() {
      for await (const chunk of socket) {
        // A chunk may end several messages: fail only when the bytes held before it already exceed the bound.
        if (unread > maxBytes) {
          throw new ForwardProtocolError(
            'too_large',
            `A Forward message exceeds max_buffer_bytes (${maxBytes})`,
          );
        }
        unread += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
    })();
    // Batches acked to the peer and not yet accepted by the consumer: handed on one at a time, in order.
    const queue: { records: LogRecord[]; size: number }[] = [];
    let queuedBytes = 0;
    let pumping: Promise<void> | undefined;
    let progressed: (() => void) | undefined;
    const pump = async (): Promise<void> => {
      for (let item = queue[0]; item !== undefined; item = queue[0]) {
        await deliver(item.records);
        queue.shift();
        queuedBytes -= item.size;
        progressed?.();
      }
      pumping = undefined;
    };
    const handOff = async (records: LogRecord[]): Promise<void> => {
      let size = 0;
      for (const r of records) size += r.body.length + RECORD_OVERHEAD_BYTES;
      queue.push({ records, size });
      queuedBytes += size;
      pumping ??= pump();
      // Backpressure: while more than max_buffer_bytes of this connection wait for the consumer, read nothing.
      while (queuedBytes > maxBytes) {
        await new Promise<void>((resolve) => {
          progressed = resolve;
        });
      }
    };
    try {
      for await (const value of decodeMultiStream(source, decoderOptions(maxBytes))) {
        unread = 0;
        state.busy = true;
        const message = parseForwardMessage(value, maxBytes);
        metrics.messages.inc({ mode: message.mode });
        const records = assembler.add(message.entries, nowUnixNano());
        if (records.length > 0) await handOff(records);
        if (message.chunk !== undefined && !socket.destroyed) {
          socket.write(encode({ ack: message.chunk }));
          metrics.acks.inc();
        }
        state.busy = false;
        if (closed) break;
      }
      // The peer finished, or we are shutting down: end our side once the acks written above are flushed.
      socket.end();
      if (closed) setTimeout(() => socket.destroy(), 500).unref();
    } catch (err) {
      socket.destroy();
      if (err instanceof ForwardProtocolError || err instanceof DecodeError || err instanceof RangeError) {
        const reason = err instanceof ForwardProtocolError ? err.reason : 'msgpack';
        metrics.malformed.inc({ reason });
        warn(
          { err, remote: socket.remoteAddress },
          'Closing a Forward connection: the peer sent a malformed frame (counted in labelcast_fluent_forward_malformed_total)',
        );
      }
      // Anything else is the peer going away (reset, shutdown): nothing to report.
    } finally {
      await pumping;
      const rest = assembler.flush(nowUnixNano());
      if (rest.length > 0) await deliver(rest);
    }
  };

  const onConnection = (socket: Socket): void => {
    if (closed) {
      socket.destroy();
      return;
    }
    metrics.connections.inc();
    metrics.open.inc();
    socket.on('error', () => {});
    const state = { busy: false, done: Promise.resolve() };
    state.done = serve(socket, state)
      .catch((err: unknown) => logger.error({ err }, 'A Forward connection failed unexpectedly'))
      .finally(() => {
        metrics.open.dec();
        connections.delete(socket);
      });
    connections.set(socket, state);
  };

  return {
    name: 'fluent_forward',
    address() {
      return socketPath === undefined ? { tcp: tcpAddress } : { tcp: tcpAddress, socket: socketPath };
    },
    async start() {
      if (started || closed) return;
      started = true;
      const tcp = createServer({ pauseOnConnect: false }, onConnection);
      servers.push(tcp);
      const target = splitListen(config.listen);
      try {
        await listen(tcp, target);
      } catch (err) {
        throw new StateError(
          `Cannot listen for Forward protocol on ${config.listen}: ${(err as Error).message} (choose a free receivers.fluent_forward.listen address)`,
          { cause: err },
        );
      }
      const bound = tcp.address();
      if (bound && typeof bound === 'object') {
        tcpAddress =
          bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
      }
      if (config.socket !== undefined) {
        const path = config.socket;
        // A socket file left by a previous run would make listen fail with EADDRINUSE.
        const stale = await lstat(path).catch(() => undefined);
        if (stale?.isSocket()) await unlink(path);
        const unix = createServer(onConnection);
        servers.push(unix);
        try {
          await listen(unix, path);
        } catch (err) {
          throw new StateError(
            `Cannot listen for Forward protocol on unix socket ${path}: ${(err as Error).message} (check receivers.fluent_forward.socket)`,
            { cause: err },
          );
        }
        socketPath = path;
      }
      logger.info({ tcp: tcpAddress, socket: socketPath }, 'fluent_forward receiver listening');
    },
    async shutdown() {
      if (closed) {
        await Promise.all([...connections.values()].map((c) => c.done));
        return;
      }
      closed = true;
      const closing = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      // Idle connections end now; a connection in the middle of a message finishes it first.
      for (const [socket, state] of connections) if (!state.busy) socket.destroy();
      stopping.abort();
      await Promise.all([...connections.values()].map((c) => c.done));
      await Promise.all(closing);
    },
  };
}
