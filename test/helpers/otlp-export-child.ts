/**
 * The agent's log path in its own process, for tests that kill it: json_file → enrich → otlp_http,
 * against the engine at DOCKER_HOST. Argument: a JSON object {dataRoot, stateDir, endpoint, exporter,
 * startAt}.
 * Prints one JSON status line every 200 ms ({queueBytes, spoolBytes, rss, sent}); SIGTERM shuts the
 * pipeline down (receivers first) and exits 0.
 */
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createDockerClient, resolveDockerTarget } from '../../agent/docker/client.ts';
import { otlpHttpExporterConfigSchema } from '../../agent/exporters/otlp-http/config.ts';
import { createOtlpHttpExporter } from '../../agent/exporters/otlp-http/index.ts';
import { mappingConfigSchema, metadataConfigSchema } from '../../agent/metadata/config.ts';
import { createMetadata } from '../../agent/metadata/index.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import { openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { createEnrichStage } from '../../agent/pipeline/enrich.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import { createJsonFileReceiver } from '../../agent/receivers/json-file/index.ts';
import { createLogger } from '../../agent/telemetry/logger.ts';

const args = JSON.parse(process.argv[2] ?? '{}') as {
  dataRoot: string;
  stateDir: string;
  endpoint: string;
  exporter?: Record<string, unknown>;
  startAt?: 'beginning' | 'end';
};
// The outage's retry warnings are expected: only errors reach the test output.
const logger = createLogger(process.env.LABELCAST_LOG_LEVEL ?? 'error');
const metrics = new Registry();
const docker = createDockerClient(resolveDockerTarget({ host: process.env.DOCKER_HOST }));
const metadata = createMetadata({
  docker,
  mapper: createMapper(mappingConfigSchema.parse({})),
  config: metadataConfigSchema.parse({}),
  logger,
  metrics,
});
const exporter = createOtlpHttpExporter(
  'otlp_http',
  otlpHttpExporterConfigSchema.parse({ endpoint: args.endpoint, ...args.exporter }),
  { logger, metrics, stateDir: args.stateDir },
  {},
);
const enrich = createEnrichStage({ store: metadata.store, next: exporter, maxWaitMs: 2000, logger, metrics });
const jsonFile = createJsonFileReceiver(
  jsonFileConfigSchema.parse({ docker_root: args.dataRoot, start_at: args.startAt ?? 'beginning' }),
  {
    docker,
    store: metadata.store,
    consumer: enrich,
    checkpoints: await openCheckpointStore(join(args.stateDir, 'checkpoints'), logger),
    logger,
    metrics,
  },
);

const value = async (name: string): Promise<number> =>
  ((await metrics.getSingleMetric(name)?.get())?.values ?? []).reduce((sum, v) => sum + v.value, 0);

await metadata.watcher.start();
await metadata.ready;
await exporter.start();
await enrich.start();
await jsonFile.start();

const status = setInterval(async () => {
  const line = {
    queueBytes: await value('labelcast_exporter_queue_bytes'),
    spoolBytes: await value('labelcast_exporter_spool_bytes'),
    sent: await value('labelcast_exporter_sent_records_total'),
    rss: process.memoryUsage.rss(),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}, 200);

process.once('SIGTERM', async () => {
  clearInterval(status);
  await jsonFile.shutdown();
  await enrich.shutdown();
  await exporter.shutdown();
  await metadata.watcher.shutdown();
  process.stdout.write(`${JSON.stringify({ exited: true })}\n`);
  process.exit(0);
});
