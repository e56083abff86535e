/**
 * The metadata core, wired: the store (caches + indexes) and the watcher that keeps it current.
 * Receivers, enrich and association read `metadata.store`; the agent starts and stops `watcher`.
 */
import type Docker from 'dockerode';
import type { Component } from '../pipeline/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Registry } from '../telemetry/metrics.ts';
import type { MetadataConfig } from './config.ts';
import type { Mapper } from './mapping.ts';
import { createStore, type StoreCounters } from './store.ts';
import type { MetadataStore } from './types.ts';
import { createWatcher } from './watcher.ts';

export interface Metadata {
  store: MetadataStore;
  watcher: Component;
  /** resolves after the first list+subscribe */
  ready: Promise<void>;
  counters(): StoreCounters;
}

export function createMetadata(deps: {
  docker: Docker;
  mapper: Mapper;
  config: MetadataConfig;
  logger: Logger;
  metrics: Registry;
}): Metadata {
  const logger = deps.logger.child({ component: 'metadata' });
  const store = createStore({ ...deps, logger });
  const watcher = createWatcher({ docker: deps.docker, store, logger });
  return { store, watcher, ready: watcher.ready, counters: () => store.counters() };
}
