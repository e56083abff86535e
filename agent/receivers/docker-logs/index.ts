import { Counter, Gauge, type Registry } from 'prom-client';
import type { ContainerEntry } from '../../metadata/types.ts';
import { nowUnixNano } from '../../pipeline/log-record.ts';
import type { Receiver, ReceiverDeps } from '../../pipeline/types.ts';
import type { DockerLogsConfig } from './config.ts';
import { type Follower, type FollowerMetrics, startFollower } from './follower.ts';
import { fromStored, type Position, toStored } from './position.ts';

export type { DockerLogsConfig } from './config.ts';

const KEY_PREFIX = 'docker_logs/';

/** Registers the receiver's metrics once per registry, so several receivers can share it. */
function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[] = []) {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  );
}

function followerMetrics(registry: Registry): FollowerMetrics {
  const gaugeName = 'labelcast_docker_logs_open_streams';
  return {
    records: counter(
      registry,
      'labelcast_docker_logs_records_total',
      'Records read from the Docker log API',
      ['stream'],
    ),
    overlapDropped: counter(
      registry,
      'labelcast_docker_logs_overlap_dropped_total',
      'Messages the engine repeated after a resume (at or before the checkpoint) and that were dropped',
    ),
    systemErrors: counter(
      registry,
      'labelcast_docker_logs_systemerr_total',
      'systemerr frames: errors the engine reported inside a log stream',
    ),
    streamErrors: counter(
      registry,
      'labelcast_docker_logs_stream_errors_total',
      'Log streams that failed (engine gone, connection reset) and were reconnected',
    ),
    truncated: counter(registry, 'labelcast_docker_logs_truncated_total', 'Lines cut at max_line_bytes'),
    openStreams:
      (registry.getSingleMetric(gaugeName) as Gauge | undefined) ??
      new Gauge({ name: gaugeName, help: 'Container log streams currently open', registers: [registry] }),
  };
}

/**
 * The `docker_logs` receiver: follows `/containers/{id}/logs` of every running container (except
 * `io.labelcast.ignore=true` ones), restarts the stream when the container restarts, and resumes from
 * the checkpoint `docker_logs/<id>` (`{ timeUnixNano, lines }`) with nanosecond `since`. The checkpoint
 * advances only when batches are acknowledged, in read order, and is deleted when the container is.
 */
export function createDockerLogsReceiver(config: DockerLogsConfig, deps: ReceiverDeps): Receiver {
  const { store, checkpoints } = deps;
  const logger = deps.logger.child({ component: 'receiver/docker_logs' });
  const metrics = followerMetrics(deps.metrics);
  const followers = new Map<string, Follower>();
  const forgotten = new Set<string>();
  /** The StartedAt of the last run seen per container. */
  const runs = new Map<string, string>();
  let unsubscribe: (() => void) | undefined;
  /** `start_at: end`: lines stamped before the receiver started are skipped for containers with no checkpoint. */
  let floor: Position | undefined;
  let closed = false;

  const follow = (entry: ContainerEntry): void => {
    if (closed || entry.settings.ignore) return;
    const existing = followers.get(entry.id);
    if (existing) {
      existing.wake();
      return;
    }
    const key = `${KEY_PREFIX}${entry.id}`;
    forgotten.delete(entry.id);
    const resume = fromStored(checkpoints.get(key)) ?? floor;
    followers.set(
      entry.id,
      startFollower({
        id: entry.id,
        docker: deps.docker,
        consumer: deps.consumer,
        resume,
        commit: (position) => {
          // A batch acknowledged after the container was removed must not resurrect its checkpoint.
          if (!forgotten.has(entry.id)) checkpoints.set(key, toStored(position));
        },
        isRunning: () => store.get(entry.id)?.running === true,
        maxLineBytes: config.max_line_bytes,
        logger,
        metrics,
      }),
    );
  };

  const forget = (id: string): void => {
    forgotten.add(id);
    runs.delete(id);
    checkpoints.delete(`${KEY_PREFIX}${id}`);
    const follower = followers.get(id);
    followers.delete(id);
    void follower?.stop();
  };

  /** Checkpoints of containers removed while the agent was down: the engine no longer has their logs. */
  const pruneCheckpoints = async (): Promise<void> => {
    for (const key of checkpoints.keys()) {
      if (closed) return;
      if (!key.startsWith(KEY_PREFIX)) continue;
      const id = key.slice(KEY_PREFIX.length);
      if (followers.has(id)) continue;
      try {
        if ((await store.resolve(id)) === undefined) checkpoints.delete(key);
      } catch (err) {
        logger.warn(
          { err, containerId: id },
          'Cannot check whether a checkpointed container still exists: keeping it',
        );
      }
    }
  };

  return {
    name: 'docker_logs',
    async start() {
      if (closed || unsubscribe) return;
      if (config.start_at === 'end') floor = { timeUnixNano: nowUnixNano(), lines: 0 };
      unsubscribe = store.subscribe((change) => {
        const { entry } = change;
        if (change.type === 'destroy') {
          forget(entry.id);
          return;
        }
        // A container that exits before the store's inspect never looks running: a new StartedAt
        // is the start that must still be read.
        const newRun =
          entry.startedAt !== '' &&
          !entry.startedAt.startsWith('0001-') &&
          runs.get(entry.id) !== entry.startedAt;
        if (change.type === 'start' || newRun || (entry.running && !followers.has(entry.id))) {
          runs.set(entry.id, entry.startedAt);
          follow(entry);
        }
      });
      for (const entry of store.running()) {
        runs.set(entry.id, entry.startedAt);
        follow(entry);
      }
      void pruneCheckpoints();
      logger.info({ containers: followers.size, startAt: config.start_at }, 'docker_logs receiver started');
    },
    async shutdown() {
      if (closed) return;
      closed = true;
      unsubscribe?.();
      await Promise.all([...followers.values()].map((f) => f.stop()));
      followers.clear();
    },
  };
}
