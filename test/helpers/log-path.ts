import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Registry } from 'prom-client';
import type { Metadata } from '../../agent/metadata/index.ts';
import { openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { createEnrichStage } from '../../agent/pipeline/enrich.ts';
import type { Component, LogExporter } from '../../agent/pipeline/types.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import { createJsonFileReceiver } from '../../agent/receivers/json-file/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import type { Engine } from './dockerd.ts';
import { receiverDeps } from './metadata.ts';

/**
 * json_file → enrich → `exporter` on the private engine: the agent's real log path, started exporter
 * first; close() shuts it down in reverse.
 */
export async function startLogPath(deps: {
  engine: Engine;
  docker: Docker;
  metadata: Metadata;
  exporter: LogExporter;
  metrics: Registry;
  stateDir: string;
}): Promise<{ close(): Promise<void> }> {
  const { engine, docker, metadata, exporter, metrics, stateDir } = deps;
  const enrich = createEnrichStage({
    store: metadata.store,
    next: exporter,
    maxWaitMs: 2000,
    logger: silentLogger(),
    metrics,
  });
  const jsonFile = createJsonFileReceiver(
    // Containers of earlier tests are skipped (end); ones started from now on are read from their first line.
    jsonFileConfigSchema.parse({ docker_root: engine.dataRoot, start_at: 'end' }),
    receiverDeps(
      docker,
      metadata,
      enrich,
      await openCheckpointStore(join(stateDir, 'checkpoints'), silentLogger()),
      metrics,
    ),
  );
  const components: Component[] = [exporter, enrich, jsonFile];
  for (const c of components) await c.start();
  return {
    async close() {
      for (const c of components.reverse()) await c.shutdown();
    },
  };
}
