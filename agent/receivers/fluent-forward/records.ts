import { makeRecord, TRUNCATED_ATTRIBUTE } from '../../pipeline/log-record.ts';
import type { LogRecord, LogStream } from '../../pipeline/types.ts';
import type { ForwardEntry } from './protocol.ts';

/** Keys Docker's fluentd driver sets itself; every other key (labels, env, extras) becomes an attribute. */
const DOCKER_KEYS = new Set([
  'container_id',
  'container_name',
  'source',
  'log',
  'partial_message',
  'partial_id',
  'partial_ordinal',
  'partial_last',
]);

/** How many unfinished partial lines one connection may hold; beyond it the oldest is sent as it is. */
const MAX_PENDING_PARTIALS = 1024;

interface PendingLine {
  parts: string[];
  bytes: number;
  truncated: boolean;
  timeUnixNano: bigint;
  stream: LogStream;
  containerId: string;
  attributes: Record<string, string> | undefined;
}

const text = (value: unknown): string => {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  if (value === undefined || value === null) return '';
  return typeof value === 'object'
    ? JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))
    : String(value);
};

/**
 * Turns Forward entries into log records for one connection: Docker's fields map onto the record
 * (`container_id`, `source` → stream, `log` → body), other fields become attributes, and
 * `partial_message` pieces are joined by `partial_id` until `partial_last`, capped at `maxLineBytes`.
 * Docker sends one container per connection, so pending pieces live with the connection.
 */
export interface RecordAssembler {
  /** The records the entries complete (pieces of unfinished lines are held). */
  add(entries: readonly ForwardEntry[], observedUnixNano: bigint): LogRecord[];
  /** Unfinished lines, as they are (the connection closed). */
  flush(observedUnixNano: bigint): LogRecord[];
  readonly pending: number;
}

export function createRecordAssembler(maxLineBytes: number, onTruncated: () => void): RecordAssembler {
  const pending = new Map<string, PendingLine>();

  const finish = (line: PendingLine, observed: bigint): LogRecord => {
    if (line.truncated) onTruncated();
    const attributes = line.truncated
      ? { ...line.attributes, [TRUNCATED_ATTRIBUTE]: 'true' }
      : line.attributes;
    return makeRecord(
      line.containerId,
      line.timeUnixNano,
      observed,
      line.parts.join(''),
      line.stream,
      attributes,
    );
  };

  const append = (line: PendingLine, piece: string): void => {
    if (line.bytes + piece.length > maxLineBytes) {
      line.truncated = true;
      piece = piece.slice(0, Math.max(0, maxLineBytes - line.bytes));
    }
    line.parts.push(piece);
    line.bytes += piece.length;
  };

  return {
    add(entries, observed) {
      const out: LogRecord[] = [];
      for (const { timeUnixNano, record } of entries) {
        let attributes: Record<string, string> | undefined;
        for (const key in record) {
          if (DOCKER_KEYS.has(key)) continue;
          attributes ??= {};
          attributes[key] = text(record[key]);
        }
        const stream: LogStream = record.source === 'stderr' ? 'stderr' : 'stdout';
        const containerId = typeof record.container_id === 'string' ? record.container_id : '';
        // A record without `log` is not from Docker's driver: its whole map is the body.
        const body = 'log' in record ? text(record.log) : text(record);
        const partialId = record.partial_message === 'true' ? text(record.partial_id) : '';
        if (partialId === '' && body.length <= maxLineBytes) {
          out.push(makeRecord(containerId, timeUnixNano, observed, body, stream, attributes));
          continue;
        }
        if (partialId === '') {
          const line: PendingLine = {
            parts: [],
            bytes: 0,
            truncated: false,
            timeUnixNano,
            stream,
            containerId,
            attributes,
          };
          append(line, body);
          out.push(finish(line, observed));
          continue;
        }
        let line = pending.get(partialId);
        if (!line) {
          if (pending.size >= MAX_PENDING_PARTIALS) {
            const [oldestId, oldest] = pending.entries().next().value as [string, PendingLine];
            pending.delete(oldestId);
            out.push(finish(oldest, observed));
          }
          line = { parts: [], bytes: 0, truncated: false, timeUnixNano, stream, containerId, attributes };
          pending.set(partialId, line);
        }
        append(line, body);
        if (record.partial_last === 'true') {
          pending.delete(partialId);
          out.push(finish(line, observed));
        }
      }
      return out;
    },
    flush(observed) {
      const out = [...pending.values()].map((line) => finish(line, observed));
      pending.clear();
      return out;
    },
    get pending() {
      return pending.size;
    },
  };
}
