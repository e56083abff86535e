import type { ContainerChange, ContainerEntry, MetadataStore } from '../../../agent/metadata/types.ts';
import type { Ack, Consumer, LogBatch, LogRecord, LogStream } from '../../../agent/pipeline/types.ts';

export const idOf = (n: number): string => n.toString(16).padStart(64, 'a');

export function entry(id: string, overrides: Partial<ContainerEntry> = {}): ContainerEntry {
  return {
    id,
    shortId: id.slice(0, 12),
    name: `c-${id.slice(0, 4)}`,
    hostname: id.slice(0, 12),
    imageRef: 'labelcast-test/app:2.3.1',
    imageId: 'sha256:1234',
    image: undefined,
    labels: {},
    labelOrigins: {},
    ips: [],
    running: true,
    pid: 1,
    tty: false,
    logPath: '',
    logDriver: 'json-file',
    startedAt: '2026-01-01T00:00:00Z',
    attributes: {
      'container.id': id,
      'container.name': `c-${id.slice(0, 4)}`,
      'container.image.tags': ['2.3.1'],
      'vcs.ref.head.revision': 'abc123',
    },
    settings: { ignore: false, multilineStart: undefined },
    removedAt: undefined,
    ...overrides,
  };
}

let clock = 1_700_000_000_000_000_000n;

export function record(containerId: string, body: string, stream: LogStream = 'stdout'): LogRecord {
  clock += 1000n;
  return {
    timeUnixNano: clock,
    observedUnixNano: clock + 5n,
    body,
    stream,
    severityNumber: 0,
    severityText: undefined,
    attributes: undefined,
    containerId,
    container: undefined,
  };
}

/** A store over a fixed map; `resolve` answers from `later` after `delayMs` (or rejects when `fail`). */
export function fakeStore(
  known: ContainerEntry[],
  options: { later?: ContainerEntry[]; delayMs?: number; fail?: boolean } = {},
): MetadataStore & { resolves: string[] } {
  const byId = new Map(known.map((e) => [e.id, e]));
  const later = new Map((options.later ?? []).map((e) => [e.id, e]));
  const resolves: string[] = [];
  return {
    resolves,
    get: (id) => byId.get(id),
    async resolve(id) {
      resolves.push(id);
      await new Promise((r) => setTimeout(r, options.delayMs ?? 0));
      if (options.fail) throw new Error('engine down');
      const found = byId.get(id) ?? later.get(id);
      if (found) byId.set(id, found);
      return found;
    },
    byName: () => undefined,
    byHostname: () => undefined,
    byIp: () => undefined,
    running: () => [...byId.values()],
    subscribe: (_listener: (change: ContainerChange) => void) => () => {},
  };
}

/** A consumer that keeps every batch; `autoAck` acks on receipt, else tests ack by hand. */
export function sink(
  autoAck = true,
): Consumer<LogBatch> & { batches: LogBatch[]; records: () => LogRecord[] } {
  const batches: LogBatch[] = [];
  return {
    batches,
    records: () => batches.flatMap((b) => b.records),
    async consume(batch) {
      batches.push(batch);
      if (autoAck) batch.ack();
    },
  };
}

/** A batch whose acks are counted in `acks` under `label`. */
export function batch(records: LogRecord[], acks: string[] = [], label = 'b'): LogBatch {
  const ack: Ack = () => acks.push(label);
  return { records, ack };
}
