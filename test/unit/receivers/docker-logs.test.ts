import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import type { ContainerChange, ContainerEntry, MetadataStore } from '../../../agent/metadata/types.ts';
import type { CheckpointStore } from '../../../agent/pipeline/checkpoints.ts';
import type { LogBatch, LogRecord } from '../../../agent/pipeline/types.ts';
import { dockerLogsConfigSchema } from '../../../agent/receivers/docker-logs/config.ts';
import { createDockerLogsReceiver } from '../../../agent/receivers/docker-logs/index.ts';
import {
  advance,
  comparePositions,
  createOverlapFilter,
  fromStored,
  toStored,
} from '../../../agent/receivers/docker-logs/position.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { entry, idOf } from '../pipeline/fixtures.ts';

/** A store over a map whose changes the test announces with `emit`. */
function scriptedStore(entries: ContainerEntry[]): MetadataStore & { emit(change: ContainerChange): void } {
  const byId = new Map(entries.map((e) => [e.id, e]));
  const listeners = new Set<(change: ContainerChange) => void>();
  return {
    get: (id) => byId.get(id),
    resolve: async (id) => byId.get(id),
    byName: () => undefined,
    byHostname: () => undefined,
    byIp: () => undefined,
    running: () => [...byId.values()].filter((e) => e.running),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit(change) {
      byId.set(change.entry.id, change.entry);
      for (const l of listeners) l(change);
    },
  };
}

describe('docker_logs positions', () => {
  it('drops what a since= resume repeats: older lines and the lines already taken at the resume time', () => {
    // Three lines share one nanosecond; two of them were taken before the restart.
    const keep = createOverlapFilter({ timeUnixNano: 100n, lines: 2 });
    assert.deepEqual(
      [100n, 100n, 100n, 101n, 100n].map(keep),
      [false, false, true, true, true],
      'after the first new line everything passes (a late stderr line is not dropped)',
    );
    const fresh = createOverlapFilter({ timeUnixNano: 100n, lines: 0 });
    assert.deepEqual([99n, 100n, 100n].map(fresh), [false, true, true]);
    const all = createOverlapFilter(undefined);
    assert.deepEqual([1n, 2n].map(all), [true, true]);
  });

  it('counts lines at one timestamp and never moves back', () => {
    let p = advance(undefined, 5n);
    p = advance(p, 5n);
    assert.deepEqual(p, { timeUnixNano: 5n, lines: 2 });
    assert.deepEqual(advance(p, 4n), p, 'an older stderr line does not move the position back');
    assert.deepEqual(advance(p, 6n), { timeUnixNano: 6n, lines: 1 });
    assert.ok(comparePositions(undefined, p) < 0);
    assert.ok(comparePositions({ timeUnixNano: 5n, lines: 1 }, p) < 0);
  });

  it('stores the time as a decimal string, exactly, and rejects foreign checkpoints', () => {
    const p = { timeUnixNano: 1796397764123456789n, lines: 3 };
    const stored = JSON.parse(JSON.stringify(toStored(p)));
    assert.deepEqual(fromStored(stored), p);
    assert.equal(fromStored({ offset: 12 }), undefined);
    assert.equal(fromStored({ timeUnixNano: '1.5', lines: 1 }), undefined);
    assert.equal(fromStored(undefined), undefined);
  });
});

function frame(type: number, text: string): Buffer {
  const body = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

const ts = (n: number): string => `2026-12-04T15:22:44.${String(n).padStart(9, '0')}Z`;

/** A dockerode stand-in whose logs() answers with scripted streams and records each query. */
function fakeDocker(streams: ((query: Record<string, unknown>) => PassThrough)[]) {
  const queries: Record<string, unknown>[] = [];
  const docker = {
    getContainer: () => ({
      logs: async (query: Record<string, unknown>) => {
        queries.push(query);
        const next = streams.shift();
        if (!next) return new PassThrough();
        return next(query);
      },
    }),
  } as unknown as Docker;
  return { docker, queries };
}

function memoryCheckpoints(
  initial: Record<string, unknown> = {},
): CheckpointStore & { data: Map<string, unknown> } {
  const data = new Map(Object.entries(initial));
  return {
    data,
    get: <T>(key: string) => data.get(key) as T | undefined,
    set: (key, value) => void data.set(key, value),
    delete: (key) => void data.delete(key),
    keys: () => [...data.keys()],
    flush: async () => {},
  };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('docker_logs receiver (scripted engine)', () => {
  const id = idOf(7);

  it('resumes with since= at nanosecond precision, drops the overlap and checkpoints on ack', async () => {
    const { docker, queries } = fakeDocker([
      () => {
        const s = new PassThrough();
        // The engine repeats everything stamped at the checkpoint time: two of those were sent before.
        s.end(
          Buffer.concat([
            frame(1, `${ts(5)} old a\n`),
            frame(1, `${ts(5)} old b\n`),
            frame(2, `${ts(5)} new at the same ns\n`),
            frame(1, `${ts(6)} newer\n`),
          ]),
        );
        return s;
      },
    ]);
    const checkpoints = memoryCheckpoints({
      [`docker_logs/${id}`]: { timeUnixNano: '1796397764000000005', lines: 2 },
    });
    const batches: LogBatch[] = [];
    const store = scriptedStore([entry(id, { running: false })]);
    const receiver = createDockerLogsReceiver(dockerLogsConfigSchema.parse({}), {
      docker,
      store,
      consumer: { consume: async (b) => void batches.push(b) },
      checkpoints,
      logger: silentLogger(),
      metrics: new Registry(),
    });
    await receiver.start();
    store.emit({ type: 'start', entry: entry(id, { running: false, startedAt: '2026-12-04T15:22:44Z' }) });
    await until(() => batches.length === 1, 'one batch');
    await receiver.shutdown();
    assert.equal(queries[0]?.since, '1796397764.000000005');
    const records = batches.flatMap((b) => b.records) as LogRecord[];
    assert.deepEqual(
      records.map((r) => `${r.stream}|${r.body}`),
      ['stderr|new at the same ns', 'stdout|newer'],
    );
    assert.deepEqual(checkpoints.data.get(`docker_logs/${id}`), {
      timeUnixNano: '1796397764000000005',
      lines: 2,
    });
    batches[0]?.ack();
    assert.deepEqual(checkpoints.data.get(`docker_logs/${id}`), {
      timeUnixNano: '1796397764000000006',
      lines: 1,
    });
  });

  it('reports systemerr frames as stderr records and reconnects after a failed stream without losing a partial line', async () => {
    const { docker, queries } = fakeDocker([
      () => {
        const s = new PassThrough();
        s.write(Buffer.concat([frame(1, `${ts(1)} whole\n`), frame(1, `${ts(2)} first half `)]));
        setTimeout(() => s.destroy(new Error('engine went away')), 20);
        return s;
      },
      () => {
        const s = new PassThrough();
        s.end(
          Buffer.concat([
            frame(1, `${ts(2)} first half `),
            frame(1, `${ts(3)} second half\n`),
            frame(3, 'error from daemon in stream: Error grabbing logs'),
          ]),
        );
        return s;
      },
    ]);
    const checkpoints = memoryCheckpoints();
    const records: LogRecord[] = [];
    const store = scriptedStore([entry(id)]);
    const receiver = createDockerLogsReceiver(dockerLogsConfigSchema.parse({ start_at: 'beginning' }), {
      docker,
      store,
      consumer: {
        consume: async (b) => {
          records.push(...b.records);
          b.ack();
        },
      },
      checkpoints,
      logger: silentLogger(),
      metrics: new Registry(),
    });
    await receiver.start();
    await until(() => records.length === 3, 'three records');
    await receiver.shutdown();
    assert.equal(queries[0]?.since, undefined, 'start_at: beginning reads the whole log');
    assert.equal(
      queries[1]?.since,
      '1796397764.000000001',
      'the reconnect resumes before the unfinished line',
    );
    assert.deepEqual(
      records.map((r) => `${r.stream}|${r.body}|${r.attributes?.['log.source'] ?? ''}`),
      [
        'stdout|whole|',
        'stdout|first half second half|',
        'stderr|error from daemon in stream: Error grabbing logs|docker.systemerr',
      ],
    );
    assert.equal(
      records[1]?.timeUnixNano,
      1796397764000000002n,
      'a joined line carries its first piece time',
    );
  });
});
