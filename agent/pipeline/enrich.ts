import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { StateError } from '../errors.ts';
import type { ContainerEntry, MetadataStore } from '../metadata/types.ts';
import type { Component, Consumer, LogBatch, LogRecord } from './types.ts';

export interface EnrichOptions {
  readonly store: MetadataStore;
  readonly next: Consumer<LogBatch>;
  /** How long a batch with a not-yet-known container waits for its on-demand lookup (`enrich.max_wait`). */
  readonly maxWaitMs: number;
  readonly logger: Logger;
  readonly metrics: Registry;
}

export interface EnrichStage extends Component, Consumer<LogBatch> {
  /** Drops every record of this container from now on (the agent's own container). */
  exclude(containerId: string): void;
}

/**
 * The enrich stage: sets `record.container` from the metadata store, drops records of ignored and
 * excluded containers, and hands the batch on. A batch with a container the store does not know yet
 * waits (alone: other batches keep flowing) for the on-demand lookup, at most `maxWaitMs`; then its
 * records go out with what is known (`containerId`) and are counted unenriched.
 */
export function createEnrichStage(options: EnrichOptions): EnrichStage {
  const { store, next, maxWaitMs } = options;
  const logger = options.logger.child({ component: 'pipeline/enrich' });
  const registers = [options.metrics];
  const enriched = new Counter({
    name: 'labelcast_enrich_records_enriched_total',
    help: 'Records that left the enrich stage with their container metadata',
    registers,
  });
  const held = new Counter({
    name: 'labelcast_enrich_records_held_total',
    help: 'Records held while their unknown container was looked up on demand',
    registers,
  });
  const unenriched = new Counter({
    name: 'labelcast_enrich_records_unenriched_total',
    help: 'Records sent without metadata because the lookup failed or exceeded enrich.max_wait',
    registers,
  });
  const dropped = new Counter({
    name: 'labelcast_enrich_records_dropped_total',
    help: 'Records dropped by the enrich stage: io.labelcast.ignore=true, or the agent’s own container',
    labelNames: ['reason'],
    registers,
  });
  const droppedIgnored = dropped.labels('ignore');
  const droppedSelf = dropped.labels('self');
  const excluded = new Set<string>();
  const inFlight = new Set<Promise<void>>();
  let closed = false;
  let lookupFailures = 0;

  /** The store's answer for `id`, or undefined when it fails or takes longer than maxWaitMs. */
  const lookup = (id: string): Promise<ContainerEntry | undefined> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, maxWaitMs, undefined);
      store.resolve(id).then(
        (entry) => {
          clearTimeout(timer);
          resolve(entry);
        },
        (err: unknown) => {
          clearTimeout(timer);
          // Lookups fail together when the engine is down: say it once, then count.
          if (lookupFailures++ === 0) logger.warn({ err }, 'Cannot look up a container for enrichment');
          resolve(undefined);
        },
      );
    });

  const resolveUnknown = async (records: LogRecord[], unknown: Set<string>): Promise<void> => {
    const ids = [...unknown];
    const entries = await Promise.all(ids.map(lookup));
    const found = new Map<string, ContainerEntry>();
    ids.forEach((id, i) => {
      const entry = entries[i];
      if (entry !== undefined) found.set(id, entry);
    });
    if (found.size === 0) return;
    for (const record of records) {
      if (record.container === undefined) record.container = found.get(record.containerId);
    }
  };

  /** Records of excluded (the agent's own) or ignored containers go; counts what stays, with or without metadata. */
  const filter = (records: LogRecord[]): LogRecord[] => {
    const kept: LogRecord[] = [];
    let ignoredCount = 0;
    let selfCount = 0;
    for (const record of records) {
      if (excluded.has(record.containerId)) selfCount++;
      else if (record.container?.settings.ignore === true) ignoredCount++;
      else kept.push(record);
    }
    if (ignoredCount > 0) droppedIgnored.inc(ignoredCount);
    if (selfCount > 0) droppedSelf.inc(selfCount);
    return kept;
  };

  const enrichBatch = async (batch: LogBatch): Promise<void> => {
    const records = batch.records;
    let unknown: Set<string> | undefined;
    let dropSome = false;
    let lastId = '';
    let lastEntry: ContainerEntry | undefined;
    // Batches are mostly one container: one store lookup (and one drop decision) per run of equal ids.
    for (const record of records) {
      if (record.containerId !== lastId) {
        lastId = record.containerId;
        lastEntry = store.get(lastId);
        if (lastEntry === undefined) {
          unknown ??= new Set();
          unknown.add(lastId);
        }
        if (lastEntry?.settings.ignore === true || (excluded.size > 0 && excluded.has(lastId)))
          dropSome = true;
      }
      record.container = lastEntry;
    }
    if (unknown !== undefined) {
      let waiting = 0;
      for (const record of records) if (record.container === undefined) waiting++;
      held.inc(waiting);
      await resolveUnknown(records, unknown);
      // A container found now may be ignored; an excluded one may have been unknown.
      dropSome = true;
    }
    const kept = dropSome ? filter(records) : records;
    let bare = 0;
    if (unknown !== undefined) for (const record of kept) if (record.container === undefined) bare++;
    if (bare > 0) unenriched.inc(bare);
    if (kept.length > bare) enriched.inc(kept.length - bare);
    if (kept.length === 0) {
      batch.ack();
      return;
    }
    await next.consume(kept.length === records.length ? batch : { records: kept, ack: batch.ack });
  };

  return {
    exclude(containerId) {
      excluded.add(containerId);
    },
    async start() {},
    consume(batch) {
      if (closed) return Promise.reject(new StateError('Cannot enrich a batch: the pipeline is shut down'));
      const done = enrichBatch(batch);
      inFlight.add(done);
      const forget = (): void => {
        inFlight.delete(done);
      };
      done.then(forget, forget);
      return done;
    },
    async shutdown() {
      closed = true;
      await Promise.allSettled([...inFlight]);
    },
  };
}

const CONTAINER_ID = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:$|\/)/m;
const MOUNTINFO_ID = /\/containers\/([0-9a-f]{64})\//;

/**
 * The agent's own container id when it runs in one, from `/proc/self/cgroup` (cgroup v1 paths and
 * systemd `docker-<id>.scope`), else from `/proc/self/mountinfo` (the engine bind-mounts
 * `<data-root>/containers/<id>/hostname` and friends). Undefined on a host or when neither tells.
 */
export function detectOwnContainerId(
  read: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): string | undefined {
  for (const [path, pattern] of [
    ['/proc/self/cgroup', CONTAINER_ID],
    ['/proc/self/mountinfo', MOUNTINFO_ID],
  ] as const) {
    let text: string;
    try {
      text = read(path);
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const m = pattern.exec(line);
      if (m) return m[1];
    }
  }
  return undefined;
}
