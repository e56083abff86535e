/**
 * Keeps the store current: subscribes to `/events`, lists every container, and applies events in
 * order per container. The stream is drained on the read path and the work queued, because dockerd
 * skips a subscriber that is 100 ms late. After any break it reconnects with jittered exponential
 * backoff and re-lists: the engine keeps only 256 events and loses them when it restarts.
 */
import type Docker from 'dockerode';
import { type DockerEvent, type EventSubscription, subscribeEvents } from '../docker/events.ts';
import type { Component } from '../pipeline/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ContainerStore } from './store.ts';
import type { ContainerEntry } from './types.ts';

export const CONTAINER_ACTIONS = ['create', 'start', 'rename', 'update', 'die', 'destroy'] as const;
export const IMAGE_ACTIONS = ['tag', 'untag', 'delete'] as const;

export interface BackoffOptions {
  /** First delay after a failure. */
  initialMs: number;
  /** Cap on the delay. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 15_000 };

/** Reported after a container event's entry is in the store: for the benchmark and diagnostics. */
export interface AppliedEvent {
  readonly event: DockerEvent;
  readonly entry: ContainerEntry | undefined;
  /** From the event's arrival at the agent to the entry being stored. */
  readonly totalMs: number;
  /** The part of totalMs spent waiting for the engine's answers to inspects. */
  readonly engineMs: number;
}

export interface WatcherDeps {
  docker: Docker;
  store: ContainerStore;
  logger: Logger;
  backoff?: BackoffOptions | undefined;
  onApplied?: ((applied: AppliedEvent) => void) | undefined;
}

export interface Watcher extends Component {
  /** Resolves after the first subscribe + list + reconcile. */
  readonly ready: Promise<void>;
}

/** Full jitter over the upper half: spreads reconnects of many agents after a daemon restart. */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random) {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + (random() * ceiling) / 2;
}

export function createWatcher(deps: WatcherDeps): Watcher {
  const { docker, store, logger } = deps;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  let stopped = false;
  let started = false;
  let loop: Promise<void> | undefined;
  let subscription: EventSubscription | undefined;
  let wake: (() => void) | undefined;
  const stopping = new AbortController();
  /** The newest event seen, in the engine's clock: `since` for the next subscription. */
  let lastEventNano: bigint | undefined;
  /** `since` of the current subscription: events up to it were seen on an earlier one. */
  let replayedUpTo: bigint | undefined;
  /** Per container / image: the tail of its event queue, so its events apply in order. */
  const queues = new Map<string, Promise<void>>();
  let resolveReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    resolveReady = resolve;
  });

  function enqueue(key: string, work: () => Promise<void> | void): void {
    const tail = queues.get(key) ?? Promise.resolve();
    const next = tail.then(work).catch((err: unknown) => {
      store.warnOnce('event', err, 'Apply a Docker event failed: the next re-list corrects the store');
    });
    queues.set(key, next);
    void next.finally(() => {
      if (queues.get(key) === next) queues.delete(key);
    });
  }

  function onEvent(event: DockerEvent): void {
    // A reconnect with `since` replays from the newest event already seen; skip those. Only against
    // that mark: live events of different containers can arrive slightly out of timeNano order.
    if (replayedUpTo !== undefined && event.timeNano <= replayedUpTo) return;
    if (lastEventNano === undefined || event.timeNano > lastEventNano) lastEventNano = event.timeNano;
    if (event.type === 'container') enqueue(event.id, () => applyContainer(event));
    else if (event.type === 'image') enqueue(`image:${event.id}`, () => applyImage(event));
  }

  async function applyContainer(event: DockerEvent): Promise<void> {
    const { id, attributes, receivedAt } = event;
    switch (event.action) {
      case 'create':
        // No inspect: the start that follows does one, and the re-list covers never-started ones.
        store.noteCreated(id, attributes.name);
        return;
      case 'start':
      case 'update': {
        store.noteCreated(id, attributes.name);
        const { entry, engineMs } = await store.refresh(id, receivedAt);
        deps.onApplied?.({ event, entry, totalMs: performance.now() - receivedAt, engineMs });
        return;
      }
      case 'die': {
        const code = attributes.exitCode === undefined ? undefined : Number(attributes.exitCode);
        store.markDied(id, Number.isFinite(code) ? code : undefined, receivedAt);
        return;
      }
      case 'rename':
        if (attributes.name !== undefined) store.markRenamed(id, attributes.name, receivedAt);
        return;
      case 'destroy':
        store.markDestroyed(id, receivedAt);
        return;
    }
  }

  async function applyImage(event: DockerEvent): Promise<void> {
    if (event.action === 'delete') store.forgetImage(event.id);
    else await store.refreshImage(event.id, event.receivedAt);
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function run(): Promise<void> {
    let attempt = 0;
    /** performance.now() when the stream was last lost; undefined before the first connection. */
    let lostAt: number | undefined;
    let outage = false;
    while (!stopped) {
      let phase: 'events' | 'container_list' = 'events';
      try {
        store.countRequest('events');
        replayedUpTo = lastEventNano;
        subscription = await subscribeEvents(docker, {
          since: lastEventNano,
          filters: { type: ['container', 'image'], event: [...CONTAINER_ACTIONS, ...IMAGE_ACTIONS] },
          onEvent,
          signal: stopping.signal,
        });
        if (stopped) break;
        phase = 'container_list';
        const listedAt = performance.now();
        store.countRequest('container_list');
        const list = await docker.listContainers({ all: true });
        await store.reconcile(list, listedAt, lostAt === undefined ? undefined : performance.now() - lostAt);
        resolveReady();
        phase = 'events';
        if (outage)
          logger.info({ attempts: attempt }, 'Reconnected to the Docker event stream and re-listed');
        outage = false;
        attempt = 0;
        await subscription.done;
        if (stopped) break;
        lostAt = performance.now();
        outage = true;
        logger.warn('Docker event stream ended: reconnecting with backoff');
      } catch (err) {
        subscription?.close();
        if (stopped) break;
        lostAt ??= performance.now();
        store.countError(phase);
        if (!outage) {
          logger.warn(
            { err },
            'Follow Docker events failed: reconnecting with backoff, the store serves what it knows',
          );
        }
        outage = true;
      }
      subscription = undefined;
      if (stopped) break;
      await sleep(backoffDelay(attempt++, backoff));
    }
  }

  return {
    ready,
    async start() {
      if (started || stopped) return;
      started = true;
      loop = run();
    },
    async shutdown() {
      stopped = true;
      stopping.abort();
      subscription?.close();
      wake?.();
      await loop;
      await Promise.allSettled([...queues.values()]);
      store.close();
    },
  };
}
