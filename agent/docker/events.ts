/**
 * The engine's `/events` stream, read by hand: dockerode's stream helpers buffer without bound and a
 * client-wide timeout would cut an idle subscription. The read path only frames, parses and hands
 * events on; the caller queues the work.
 */
import type { IncomingMessage } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import type Docker from 'dockerode';

/** One engine event, as `GET /events` reports it. */
export interface DockerEvent {
  /** `container`, `image`, `network`… */
  readonly type: string;
  /** `start`, `die`, `tag`… (some carry a suffix, e.g. `health_status: healthy`). */
  readonly action: string;
  /** `Actor.ID`: the container id, or the image id for image events. */
  readonly id: string;
  /** `Actor.Attributes`: labels, `name`, `image`, `exitCode`, `oldName`… */
  readonly attributes: Readonly<Record<string, string>>;
  /** Unix nanoseconds, exact (the JSON number is above 2^53 and would lose precision). */
  readonly timeNano: bigint;
  /** `performance.now()` when the agent read the event's line. */
  readonly receivedAt: number;
}

const TIME_NANO = /"timeNano"\s*:\s*(\d+)/;

/** Parses one `/events` line; undefined for a line that is not an event object. */
export function parseEvent(line: string, receivedAt: number): DockerEvent | undefined {
  let raw: {
    Type?: unknown;
    Action?: unknown;
    status?: unknown;
    id?: unknown;
    Actor?: { ID?: unknown; Attributes?: unknown };
    time?: unknown;
  };
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (raw === null || typeof raw !== 'object') return undefined;
  const type = typeof raw.Type === 'string' ? raw.Type : '';
  const action =
    typeof raw.Action === 'string' ? raw.Action : typeof raw.status === 'string' ? raw.status : '';
  const actorId = raw.Actor?.ID;
  const id = typeof actorId === 'string' ? actorId : typeof raw.id === 'string' ? raw.id : '';
  if (type === '' || action === '' || id === '') return undefined;
  const attrs = raw.Actor?.Attributes;
  const attributes =
    attrs !== null && typeof attrs === 'object'
      ? (attrs as Record<string, string>)
      : ({} as Record<string, string>);
  const m = TIME_NANO.exec(line);
  const timeNano = m?.[1]
    ? BigInt(m[1])
    : typeof raw.time === 'number'
      ? BigInt(Math.trunc(raw.time)) * 1_000_000_000n
      : 0n;
  return { type, action, id, attributes, timeNano, receivedAt };
}

/** `since`/`until` as the engine takes them: Unix seconds with a 9-digit nanosecond fraction. */
export function formatEventTime(timeNano: bigint): string {
  const seconds = timeNano / 1_000_000_000n;
  const nanos = timeNano % 1_000_000_000n;
  return `${seconds}.${nanos.toString().padStart(9, '0')}`;
}

/**
 * Splits a byte stream into lines. The decoder keeps a multi-byte character that a chunk boundary
 * cut in half; a partial line waits for the next chunk.
 */
export class LineFramer {
  #decoder = new StringDecoder('utf8');
  #rest = '';
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  write(chunk: Buffer): void {
    const text = this.#rest + this.#decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n', start); nl !== -1; nl = text.indexOf('\n', start)) {
      const line = text.slice(start, nl).trim();
      if (line !== '') this.#onLine(line);
      start = nl + 1;
    }
    this.#rest = start === 0 ? text : text.slice(start);
  }

  /** Flushes a last line that had no newline. */
  end(): void {
    const line = (this.#rest + this.#decoder.end()).trim();
    this.#rest = '';
    if (line !== '') this.#onLine(line);
  }

  /** Characters waiting for their newline (bounded by the caller). */
  get pending(): number {
    return this.#rest.length;
  }
}

export interface EventFilters {
  type?: readonly string[];
  event?: readonly string[];
}

export interface EventSubscription {
  /** Settles when the stream ends (resolves) or fails (rejects); the caller reconnects either way. */
  readonly done: Promise<void>;
  /** Cuts the connection; `done` then resolves. */
  close(): void;
}

/** A line longer than this is not an event (events are a few KiB even with many labels). */
const MAX_LINE_CHARS = 4 * 1024 * 1024;

/**
 * Subscribes to `/events` and resolves once the engine accepted the subscription (response headers
 * received). `onEvent` runs on the read path: it must only queue.
 */
export async function subscribeEvents(
  docker: Docker,
  options: {
    since?: bigint | undefined;
    filters: EventFilters;
    onEvent: (event: DockerEvent) => void;
    /** Aborts a subscription that is still waiting for the engine's answer. */
    signal?: AbortSignal | undefined;
  },
): Promise<EventSubscription> {
  const abort = new AbortController();
  options.signal?.addEventListener('abort', () => abort.abort(), { once: true });
  const query: Record<string, unknown> = { filters: options.filters, abortSignal: abort.signal };
  if (options.since !== undefined) query.since = formatEventTime(options.since);
  const res = (await docker.getEvents(query as Docker.GetEventsOptions)) as IncomingMessage;
  // DOCKER_CLIENT_TIMEOUT would make dockerode arm an idle timeout on this socket: disarm it. An idle
  // stream is normal; TCP keepalive (tcp:// hosts) still notices a peer that vanished.
  res.socket?.setTimeout(0);
  res.socket?.setKeepAlive(true, 30_000);
  let closed = false;
  const done = new Promise<void>((resolve, reject) => {
    const framer = new LineFramer((line) => {
      const event = parseEvent(line, performance.now());
      if (event) options.onEvent(event);
    });
    res.on('data', (chunk: Buffer) => {
      framer.write(chunk);
      if (framer.pending > MAX_LINE_CHARS) res.destroy(new Error('event line exceeds 4 MiB'));
    });
    res.once('end', () => {
      framer.end();
      resolve();
    });
    res.once('error', (err) => (closed ? resolve() : reject(err)));
    res.once('close', () => resolve());
  });
  return {
    done,
    close() {
      if (closed) return;
      closed = true;
      abort.abort();
      res.destroy();
    },
  };
}
