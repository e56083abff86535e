import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ContainerChange, ContainerEntry } from '../../metadata/types.ts';
import type { Receiver, ReceiverDeps } from '../../pipeline/types.ts';
import type { JsonFileConfig } from './config.ts';
import { type FilePosition, Tailer, type TailerMetrics } from './tailer.ts';

export type { JsonFileConfig } from './config.ts';
export { jsonFileConfigSchema } from './config.ts';
export type { FilePosition } from './tailer.ts';

export interface JsonFileReceiver extends Receiver {
  /** Never reads this container (the agent's own); stops a tailer already following it. */
  exclude(containerId: string): void;
}

const KEY_PREFIX = 'json_file/';
/** One read is one batch: large enough to amortise a batch, small enough to keep memory flat. */
const CHUNK_BYTES = 256 * 1024;
/** How long shutdown reads on, and then waits for a tailer whose batch the pipeline has not taken. */
const SHUTDOWN_WAIT_MS = 5000;
/** How often a destroyed container's checkpoint is checked for removal. */
const FORGET_POLL_MS = 5000;

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms).unref()))]);
  clearTimeout(timer);
}

/** The checkpoint key of a container. */
export const checkpointKey = (containerId: string): string => `${KEY_PREFIX}${containerId}`;

/**
 * LogPath as the agent sees it: the engine reports paths under its own data root, which a
 * containerised agent may see mounted elsewhere (`docker_root`). The `containers/<id>/…` tail is kept.
 */
export function rerootLogPath(logPath: string, dockerRoot: string): string {
  const root = dockerRoot.replace(/\/+$/, '');
  if (logPath.startsWith(`${root}/`)) return logPath;
  const at = logPath.lastIndexOf('/containers/');
  return at < 0 ? logPath : `${root}${logPath.slice(at)}`;
}

/** The engine reports `0001-01-01T00:00:00Z` as the start time of a container that never started. */
const hasRun = (entry: ContainerEntry): boolean =>
  entry.startedAt !== '' && !entry.startedAt.startsWith('0001-');

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

function tailerMetrics(registry: Registry): TailerMetrics {
  const registers = [registry];
  const counter = (name: string, help: string) =>
    metric(registry, name, () => new Counter({ name, help, registers }));
  return {
    lines: counter('labelcast_json_file_lines_total', 'json-file lines read'),
    bytes: counter('labelcast_json_file_bytes_total', 'json-file bytes read'),
    parseErrors: counter(
      'labelcast_json_file_parse_errors_total',
      'json-file lines skipped because they are not json-file records (torn or corrupt)',
    ),
    truncated: counter(
      'labelcast_json_file_truncated_records_total',
      'Records joined from partials and cut at max_line_bytes',
    ),
    rotations: counter(
      'labelcast_json_file_rotations_total',
      'Rotated json-file logs followed to the next file',
    ),
  };
}

/**
 * `receivers.json_file`: tails the engine's json-file logs from disk, one tailer per running
 * container, and checkpoints each container's position (`json_file/<id>`) as batches are acked.
 * Containers found running at start with no checkpoint begin at `start_at`; containers that start
 * later are read from their first line.
 */
export function createJsonFileReceiver(config: JsonFileConfig, deps: ReceiverDeps): JsonFileReceiver {
  const logger = deps.logger.child({ component: 'receiver/json_file' });
  const metrics = tailerMetrics(deps.metrics);
  const active = metric(
    deps.metrics,
    'labelcast_json_file_containers',
    () =>
      new Gauge({
        name: 'labelcast_json_file_containers',
        help: 'Containers whose json-file log is being followed',
        registers: [deps.metrics],
      }),
  );
  const tailers = new Map<string, Tailer>();
  const excluded = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  let unsubscribe: (() => void) | undefined;
  let started = false;
  let closed = false;

  const eligible = (entry: ContainerEntry): boolean =>
    entry.logDriver === 'json-file' &&
    entry.logPath !== '' &&
    !entry.settings.ignore &&
    !excluded.has(entry.id);

  const follow = (entry: ContainerEntry, atStartup: boolean): void => {
    let tailer = tailers.get(entry.id);
    if (!tailer) {
      if (!eligible(entry)) return;
      const key = checkpointKey(entry.id);
      const checkpoint = deps.checkpoints.get<FilePosition>(key);
      tailer = new Tailer(
        {
          containerId: entry.id,
          logPath: rerootLogPath(entry.logPath, config.docker_root),
          consumer: deps.consumer,
          start: checkpoint ?? (atStartup ? config.start_at : 'beginning'),
          maxLineBytes: config.max_line_bytes,
          chunkBytes: CHUNK_BYTES,
          commit: (position) => {
            // Only while this tailer is the container's: a late ack after destroy (or exclude) must not
            // bring a deleted checkpoint back.
            if (tailers.get(entry.id) === tailer) deps.checkpoints.set(key, position);
          },
          // The tailer reports the first error of each run of failures, and retries.
          onError: (err) =>
            logger.warn({ err, container: entry.id }, 'Cannot read a json-file log: retrying'),
          metrics,
        },
        entry,
      );
      tailers.set(entry.id, tailer);
      active.set(tailers.size);
    }
    tailer.entry = entry;
    tailer.resume();
  };

  /** After `destroy`: drop the checkpoint once the tombstone is gone and the log directory with it. */
  const forgetLater = (entry: ContainerEntry): void => {
    const dir = join(rerootLogPath(entry.logPath, config.docker_root), '..');
    const check = (): void => {
      if (closed || tailers.has(entry.id)) return;
      if (deps.store.get(entry.id) === undefined && !existsSync(dir)) {
        deps.checkpoints.delete(checkpointKey(entry.id));
        return;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        check();
      }, FORGET_POLL_MS).unref();
      timers.add(timer);
    };
    check();
  };

  const onChange = (change: ContainerChange): void => {
    if (closed) return;
    const { entry } = change;
    switch (change.type) {
      case 'start':
        follow(entry, false);
        break;
      case 'create':
        // The store saw it first after it had already run and exited (a short-lived container): read
        // what it wrote.
        if (!entry.running && hasRun(entry)) {
          follow(entry, false);
          void tailers.get(entry.id)?.drain(true);
        }
        break;
      case 'die':
        // Read to the end, then hold the position in memory (and on disk) until the next start.
        void tailers.get(entry.id)?.drain(true);
        break;
      case 'destroy': {
        const tailer = tailers.get(entry.id);
        if (!tailer) {
          forgetLater(entry);
          break;
        }
        void tailer.drain(true).then(() => {
          if (tailers.get(entry.id) !== tailer || tailer.running) return;
          tailers.delete(entry.id);
          active.set(tailers.size);
          forgetLater(entry);
        });
        break;
      }
      default: {
        const tailer = tailers.get(entry.id);
        if (tailer) tailer.entry = entry;
      }
    }
  };

  return {
    name: 'json_file',
    async start() {
      if (started || closed) return;
      started = true;
      unsubscribe = deps.store.subscribe(onChange);
      const running = deps.store.running();
      for (const entry of running) follow(entry, true);
      // Checkpoints of containers whose log directory is gone (removed while the agent was down).
      for (const key of deps.checkpoints.keys()) {
        if (!key.startsWith(KEY_PREFIX)) continue;
        const id = key.slice(KEY_PREFIX.length);
        if (tailers.has(id)) continue;
        if (!existsSync(join(config.docker_root, 'containers', id))) deps.checkpoints.delete(key);
      }
      logger.info(
        { containers: tailers.size, docker_root: config.docker_root, start_at: config.start_at },
        'json_file receiver started',
      );
    },
    async shutdown() {
      if (closed) return;
      closed = true;
      unsubscribe?.();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      // Read what is on disk now (bounded: a large backlog is resumed from the checkpoint next time).
      const all = [...tailers.values()];
      await withTimeout(Promise.all(all.map((t) => t.drain(false))), SHUTDOWN_WAIT_MS);
      await withTimeout(Promise.all(all.map((t) => t.stop())), SHUTDOWN_WAIT_MS);
      // The tailers stay registered: batches acked after shutdown still advance their checkpoints.
      active.set(0);
    },
    exclude(containerId) {
      excluded.add(containerId);
      const tailer = tailers.get(containerId);
      if (!tailer) return;
      tailers.delete(containerId);
      active.set(tailers.size);
      void tailer.stop();
    },
  };
}
