/**
 * createAgent: builds the log pipeline from a validated config. Wiring only: every component lives in
 * its own module; this file decides which ones run and in which order they start and stop.
 *
 *   receivers ──▶ enrich ──▶ multiline ──▶ fan-out ──▶ exporters
 *                   ▲ reads                              │ ack
 *             metadata store ◀── watcher                 └──▶ receivers advance checkpoints
 */
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type Docker from 'dockerode';
import type { Config } from './config/schema.ts';
import { connectDocker, resolveDockerTarget } from './docker/client.ts';
import { ConfigError, StateError } from './errors.ts';
import { createLokiExporter } from './exporters/loki/index.ts';
import { stdoutExporterConfigSchema } from './exporters/stdout/config.ts';
import { createStdoutExporter } from './exporters/stdout/index.ts';
import { createMetadata } from './metadata/index.ts';
import { createMapper } from './metadata/mapping.ts';
import type { MetadataStore } from './metadata/types.ts';
import { type CheckpointStore, openCheckpointStore } from './pipeline/checkpoints.ts';
import { createEnrichStage, detectOwnContainerId } from './pipeline/enrich.ts';
import { createFanout } from './pipeline/fanout.ts';
import { createMultilineStage } from './pipeline/multiline.ts';
import type { Component, ExporterDeps, LogExporter, Receiver, ReceiverDeps } from './pipeline/types.ts';
import { dockerLogsConfigSchema } from './receivers/docker-logs/config.ts';
import { createDockerLogsReceiver } from './receivers/docker-logs/index.ts';
import { createFluentForwardReceiver } from './receivers/fluent-forward/index.ts';
import { jsonFileConfigSchema } from './receivers/json-file/config.ts';
import { createJsonFileReceiver, type JsonFileReceiver } from './receivers/json-file/index.ts';
import type { Logger } from './telemetry/logger.ts';
import type { Registry } from './telemetry/metrics.ts';
import { createMetricsServer } from './telemetry/metrics-server.ts';

/** The default `state_dir` in the schema; only this one falls back to a per-user directory. */
export const SYSTEM_STATE_DIR = '/var/lib/labelcast';
/** A multiline record goes out when no continuation line came for this long. */
const MULTILINE_FLUSH_MS = 1000;
/** A multiline record is not grown beyond this many characters. */
const MULTILINE_MAX_CHARS = 1024 * 1024;

export interface AgentDeps {
  readonly logger: Logger;
  readonly metrics: Registry;
  /** DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, HOME, XDG_STATE_HOME; defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * No config file was given: when the config has no `pipelines.logs`, run the default one
   * (json_file, or docker_logs when the engine's files are not readable here, → stdout).
   */
  readonly defaults?: boolean;
  /** Where `stdout` exporters write; process.stdout unless embedded (tests). */
  readonly stdout?: Writable;
}

/** A running labelcast: start() returns once every receiver runs; shutdown() drains and flushes. */
export interface Agent extends Component {
  readonly metadata: MetadataStore;
  readonly receivers: readonly Receiver[];
  readonly exporters: readonly LogExporter[];
  /** Where checkpoints (and exporter spools) live, after the per-user fallback. */
  readonly stateDir: string;
}

type ReceiverFactory = (config: never, deps: ReceiverDeps) => Receiver;
type ExporterFactory = (id: string, config: never, deps: ExporterDeps, agent: AgentDeps) => LogExporter;

/** Log receivers by type (the part of a component id before `/`). */
const RECEIVERS: Readonly<Record<string, ReceiverFactory>> = {
  json_file: createJsonFileReceiver,
  docker_logs: createDockerLogsReceiver,
  fluent_forward: createFluentForwardReceiver,
};

const EXPORTERS: Readonly<Record<string, ExporterFactory>> = {
  stdout: (id, config, deps, agent) => createStdoutExporter(id, config, deps, agent.stdout),
  loki: createLokiExporter,
};

const typeOf = (id: string): string => id.split('/')[0] ?? id;

async function writable(dir: string): Promise<boolean> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The state directory: `state_dir` when writable. When that is the system default and not writable
 * (a non-root run), `$XDG_STATE_HOME/labelcast`, else `~/.local/state/labelcast`.
 */
export async function resolveStateDir(
  configured: string,
  env: NodeJS.ProcessEnv,
  logger: Logger,
  systemDefault: string = SYSTEM_STATE_DIR,
): Promise<string> {
  if (await writable(configured)) {
    logger.info({ stateDir: configured }, 'state directory');
    return configured;
  }
  if (configured !== systemDefault) {
    throw new StateError(
      `Cannot use state_dir ${configured}: it is not a writable directory (create it for this user, or set state_dir / LABELCAST_STATE_DIR)`,
    );
  }
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  const fallback = join(base, 'labelcast');
  if (!(await writable(fallback))) {
    throw new StateError(
      `Cannot find a state directory: neither ${systemDefault} nor ${fallback} is writable (set state_dir / LABELCAST_STATE_DIR to a writable directory)`,
    );
  }
  logger.info({ stateDir: fallback, unwritable: systemDefault }, 'state directory (per-user fallback)');
  return fallback;
}

/** The engine's data root as the agent sees it: from a json-file container's LogPath, else the default. */
async function engineDataRoot(docker: Docker, fallback: string): Promise<string> {
  try {
    const listed = await docker.listContainers({ all: true, limit: 10 });
    for (const c of listed) {
      const info = await docker.getContainer(c.Id).inspect();
      // <root>/containers/<id>/<id>-json.log
      if (info.LogPath) return dirname(dirname(dirname(info.LogPath)));
    }
  } catch {
    // The watcher reports an unreachable engine; the default root is as good a guess as any.
  }
  return fallback;
}

async function readable(dir: string): Promise<boolean> {
  try {
    await access(dir, constants.R_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * With no config file: json_file when `<data root>/containers` is readable here (a local engine,
 * root or the docker group with a readable root), else docker_logs (remote, rootless, non-root); → stdout.
 */
async function withDefaultPipeline(
  config: Config,
  docker: Docker,
  remote: boolean,
  logger: Logger,
): Promise<Config> {
  const configured = config.receivers.json_file as { docker_root?: string } | undefined;
  const jsonFile = jsonFileConfigSchema.parse(configured ?? {});
  const root = configured ? jsonFile.docker_root : await engineDataRoot(docker, jsonFile.docker_root);
  const useFiles = !remote && (await readable(join(root, 'containers')));
  const receiver = useFiles ? 'json_file' : 'docker_logs';
  logger.info(
    { receiver, dockerRoot: root, exporter: 'stdout' },
    useFiles
      ? 'no config file: collecting json-file logs from disk to stdout'
      : `no config file: ${join(root, 'containers')} is not readable here, collecting through the Docker log API to stdout`,
  );
  return {
    ...config,
    receivers: {
      ...config.receivers,
      [receiver]: useFiles
        ? { ...jsonFile, docker_root: root }
        : (config.receivers.docker_logs ?? dockerLogsConfigSchema.parse({})),
    },
    exporters: {
      ...config.exporters,
      stdout: config.exporters.stdout ?? stdoutExporterConfigSchema.parse({}),
    },
    pipelines: { ...config.pipelines, logs: { receivers: [receiver], exporters: ['stdout'] } },
  };
}

/** Refuses pipeline components this build does not have, before anything starts. */
function checkBuildable(config: Config): void {
  const logs = config.pipelines.logs;
  if (!logs) return;
  logs.receivers.forEach((id, i) => {
    if (!(typeOf(id) in RECEIVERS)) {
      throw new ConfigError(
        `Invalid config: pipelines.logs.receivers.${i}: ${JSON.stringify(id)} does not produce logs (log receivers: ${Object.keys(RECEIVERS).join(', ')})`,
      );
    }
  });
  logs.exporters.forEach((id, i) => {
    if (!(typeOf(id) in EXPORTERS)) {
      throw new ConfigError(
        `Invalid config: pipelines.logs.exporters.${i}: ${JSON.stringify(id)} is not available in this build (log exporters: ${Object.keys(EXPORTERS).join(', ')})`,
      );
    }
  });
}

/**
 * Builds the agent: checks the config, picks the state directory, connects to Docker (throws
 * DockerUnavailableError / DockerApiVersionError with the fix), and constructs every component.
 * Nothing listens or reads logs until start().
 */
export async function createAgent(input: Config, deps: AgentDeps): Promise<Agent> {
  const env = deps.env ?? process.env;
  const { metrics } = deps;
  const logger = deps.logger;
  checkBuildable(input);
  const target = resolveDockerTarget(
    { host: input.docker.host, tlsVerify: input.docker.tls_verify, certPath: input.docker.cert_path },
    env,
  );
  const stateDir = await resolveStateDir(input.state_dir, env, logger);
  const { docker, apiVersion } = await connectDocker(target);
  logger.info({ docker: target.display, apiVersion }, 'connected to Docker');
  const config =
    deps.defaults && input.pipelines.logs === undefined
      ? await withDefaultPipeline(input, docker, target.display.startsWith('tcp://'), logger)
      : input;

  const metricsServer =
    config.telemetry.metrics_listen === undefined
      ? undefined
      : createMetricsServer(config.telemetry.metrics_listen, metrics);
  const mapper = createMapper(config.mapping, (msg) => logger.warn({ component: 'metadata/mapping' }, msg));
  const metadata = createMetadata({ docker, mapper, config: config.metadata, logger, metrics });
  const store = metadata.store;
  const logs = config.pipelines.logs;
  const exporters: LogExporter[] = [];
  const receivers: Receiver[] = [];
  let checkpoints: CheckpointStore | undefined;
  let pipeline: { enrich: ReturnType<typeof createEnrichStage>; multiline: Component } | undefined;

  if (logs) {
    checkpoints = await openCheckpointStore(join(stateDir, 'checkpoints'), logger);
    for (const id of logs.exporters) {
      const factory = EXPORTERS[typeOf(id)]!;
      exporters.push(factory(id, config.exporters[id] as never, { logger, metrics, stateDir }, deps));
    }
    const multiline = createMultilineStage({
      next: createFanout(exporters),
      flushTimeoutMs: MULTILINE_FLUSH_MS,
      maxChars: MULTILINE_MAX_CHARS,
      logger,
      metrics,
    });
    const enrich = createEnrichStage({
      store,
      next: multiline,
      maxWaitMs: config.enrich.max_wait,
      logger,
      metrics,
    });
    pipeline = { enrich, multiline };
    for (const id of logs.receivers) {
      const factory = RECEIVERS[typeOf(id)]!;
      receivers.push(
        factory(config.receivers[id] as never, {
          docker,
          store,
          consumer: enrich,
          checkpoints,
          logger,
          metrics,
        }),
      );
    }
  }

  /** Drops the agent's own container's records: by cgroup/mountinfo, else a hostname that is its short id. */
  const excludeSelf = (): void => {
    if (!config.enrich.exclude_self || !pipeline) return;
    const own = detectOwnContainerId();
    const host = env.HOSTNAME || hostname();
    const byHost = /^[0-9a-f]{12}$/.test(host) ? store.get(host)?.id : undefined;
    const id = own ?? byHost;
    if (id !== undefined) {
      pipeline.enrich.exclude(id);
      // Receivers that can skip a container entirely (json_file) do not even read it.
      for (const receiver of receivers) (receiver as Partial<JsonFileReceiver>).exclude?.(id);
      logger.info({ container: id.slice(0, 12) }, 'running in a container: its own logs are excluded');
    }
  };

  let started: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;
  /** start() checks this between steps, so a shutdown during startup starts nothing more. */
  let stopping = false;
  const stopAll = async (components: readonly Component[], what: string): Promise<void> => {
    const results = await Promise.allSettled(components.map((c) => c.shutdown()));
    for (const r of results)
      if (r.status === 'rejected') logger.error({ err: r.reason }, `Cannot stop ${what}`);
  };

  return {
    metadata: store,
    receivers,
    exporters,
    stateDir,
    start() {
      started ??= (async () => {
        if (metricsServer) {
          await metricsServer.start().catch((err: unknown) => {
            throw new ConfigError(
              `Cannot serve metrics on ${config.telemetry.metrics_listen}: ${(err as Error).message} (choose another telemetry.metrics_listen, or port 0)`,
              { cause: err },
            );
          });
          logger.info({ listen: metricsServer.address() }, 'serving Prometheus metrics on /metrics');
        }
        await metadata.watcher.start();
        await metadata.ready;
        excludeSelf();
        for (const component of [...exporters, ...(pipeline ? [pipeline.multiline, pipeline.enrich] : [])]) {
          if (stopping) return;
          await component.start();
        }
        for (const receiver of receivers) {
          if (stopping) return;
          await receiver.start();
        }
        logger.info(
          {
            receivers: logs?.receivers ?? [],
            exporters: logs?.exporters ?? [],
            containers: store.running().length,
          },
          'labelcast running',
        );
      })();
      return started;
    },
    shutdown() {
      stopped ??= (async () => {
        // Whatever start() got to: stop intake first, then drain the stages in flow order.
        stopping = true;
        await stopAll(receivers, 'a receiver');
        if (pipeline) {
          await stopAll([pipeline.enrich], 'the enrich stage');
          await stopAll([pipeline.multiline], 'the multiline stage');
        }
        await stopAll(exporters, 'an exporter');
        if (checkpoints) {
          await checkpoints.flush().catch((err: unknown) => {
            logger.error({ err }, 'Cannot write the last checkpoints: some lines will be read again');
          });
        }
        await stopAll([metadata.watcher], 'the Docker watcher');
        if (metricsServer) await stopAll([metricsServer], 'the metrics listener');
        logger.info('labelcast stopped');
      })();
      return stopped;
    },
  };
}
