import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import { createDockerClient, resolveDockerTarget } from '../../agent/docker/client.ts';
import { mappingConfigSchema, metadataConfigSchema } from '../../agent/metadata/config.ts';
import { createMetadata, type Metadata } from '../../agent/metadata/index.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import type { CheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import type { Consumer, LogBatch, ReceiverDeps } from '../../agent/pipeline/types.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import type { Engine } from './dockerd.ts';

/** A dockerode client for the private engine, built the way the agent builds one from DOCKER_HOST. */
export function engineClient(engine: Engine): Docker {
  return createDockerClient(resolveDockerTarget({ host: engine.host }, {}));
}

/**
 * The metadata subsystem as the agent wires it: default label mapping, `overrides` on the default
 * metadata config, a silent logger. Not started (for tests of start-up itself).
 */
export function createTestMetadata(
  docker: Docker,
  overrides: Record<string, unknown> = {},
  metrics: Registry = new Registry(),
): Metadata {
  return createMetadata({
    docker,
    mapper: createMapper(mappingConfigSchema.parse({})),
    config: metadataConfigSchema.parse(overrides),
    logger: silentLogger(),
    metrics,
  });
}

/** createTestMetadata, started and ready (the engine's containers listed). Stop it with `watcher.shutdown()`. */
export async function startMetadata(
  docker: Docker,
  overrides: Record<string, unknown> = {},
  metrics: Registry = new Registry(),
): Promise<Metadata> {
  const metadata = createTestMetadata(docker, overrides, metrics);
  await metadata.watcher.start();
  await metadata.ready;
  return metadata;
}

/** What the agent gives a log receiver, for a test: `metadata`'s store, a silent logger, `metrics` (its own by default). */
export function receiverDeps(
  docker: Docker,
  metadata: Metadata,
  consumer: Consumer<LogBatch>,
  checkpoints: CheckpointStore,
  metrics: Registry = new Registry(),
): ReceiverDeps {
  return { docker, store: metadata.store, consumer, checkpoints, logger: silentLogger(), metrics };
}
