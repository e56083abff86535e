/**
 * createAgent: builds the pipelines of a validated config. Wiring only: every component lives in its
 * own module; this file decides which ones run and in which order they start and stop.
 *
 *   log receivers ──▶ enrich ──▶ multiline ──▶ fan-out ──▶ exporters of pipelines.logs
 *                       ▲ reads                              │ ack
 *                 metadata store ◀── watcher                 └──▶ receivers advance checkpoints
 *   otlp_http receiver ──(spliced Resource)──▶ otlp_http exporters of its pipelines (traces, logs, metrics)
 *                      └─(decoded log records)─▶ the other exporters of pipelines.logs
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
import {
  createOtlpHttpExporter,
  type OtlpHttpExporter,
  otlpHttpExporterConfigSchema,
} from './exporters/otlp-http/index.ts';
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
import {
  createOtlpHttpReceiver,
  type OtlpForwarder,
  type OtlpSignal,
  otlpHttpReceiverConfigSchema,
} from './receivers/otlp-http/index.ts';
import type { Logger } from './telemetry/logger.ts';
import type { Registry } from './telemetry/metrics.ts';
import { createMetricsServer } from './telemetry/metrics-server.ts';
import { type SelfTelemetry, startSelfTelemetry } from './telemetry/tracing.ts';

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
   * No config file was given: when the config defines no pipeline, run the default ones (json_file or
   * docker_logs, and otlp_http on 127.0.0.1:4318, → stdout, plus OTEL_EXPORTER_OTLP_ENDPOINT when set).
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

/** Receivers that read container logs, by type (the part of a component id before `/`). */
const LOG_RECEIVERS: Readonly<Record<string, ReceiverFactory>> = {
  json_file: createJsonFileReceiver,
  docker_logs: createDockerLogsReceiver,
  fluent_forward: createFluentForwardReceiver,
};
/** Receives OTLP from applications; usable in every pipeline. */
const OTLP_RECEIVER = 'otlp_http';
/** The exporter that can forward received OTLP (traces, metrics): the only one for those pipelines. */
const OTLP_EXPORTER = 'otlp_http';

const EXPORTERS: Readonly<Record<string, ExporterFactory>> = {
  stdout: (id, config, deps, agent) => createStdoutExporter(id, config, deps, agent.stdout),
  loki: createLokiExporter,
  otlp_http: (id, config, deps, agent) => createOtlpHttpExporter(id, config, deps, agent.env ?? process.env),
};

const SIGNALS: readonly OtlpSignal[] = ['logs', 'traces', 'metrics'];

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
 * With no config file:
 * - logs: json_file when `<data root>/containers` is readable here (a local engine, root or the docker
 *   group), else docker_logs (remote, rootless, non-root), plus the otlp_http receiver → stdout;
 * - when OTEL_EXPORTER_OTLP_ENDPOINT (or _LOGS_ENDPOINT) is set, an otlp_http exporter to it as well,
 *   which also carries the traces and metrics the otlp_http receiver gets.
 */
async function withDefaultPipelines(
  config: Config,
  docker: Docker,
  remote: boolean,
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<Config> {
  const configured = config.receivers.json_file as { docker_root?: string } | undefined;
  const jsonFile = jsonFileConfigSchema.parse(configured ?? {});
  const root = configured ? jsonFile.docker_root : await engineDataRoot(docker, jsonFile.docker_root);
  const useFiles = !remote && (await readable(join(root, 'containers')));
  const collector = useFiles ? 'json_file' : 'docker_logs';
  const receivers = {
    ...config.receivers,
    [collector]: useFiles
      ? { ...jsonFile, docker_root: root }
      : (config.receivers.docker_logs ?? dockerLogsConfigSchema.parse({})),
    otlp_http: config.receivers.otlp_http ?? otlpHttpReceiverConfigSchema.parse({}),
  };
  const exporters: Config['exporters'] = {
    ...config.exporters,
    stdout: config.exporters.stdout ?? stdoutExporterConfigSchema.parse({}),
  };
  const pipelines: Config['pipelines'] = {
    logs: { receivers: [collector, 'otlp_http'], exporters: ['stdout'] },
  };
  const upstream = env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT;
  if (upstream) {
    exporters.otlp_http = config.exporters.otlp_http ?? otlpHttpExporterConfigSchema.parse({});
    pipelines.logs?.exporters.push('otlp_http');
    for (const signal of ['traces', 'metrics'] as const) {
      if (env.OTEL_EXPORTER_OTLP_ENDPOINT || env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`]) {
        pipelines[signal] = { receivers: ['otlp_http'], exporters: ['otlp_http'] };
      }
    }
  }
  logger.info(
    {
      receiver: collector,
      dockerRoot: root,
      otlpListen: (receivers.otlp_http as { listen: string }).listen,
      exporters: pipelines.logs?.exporters,
    },
    useFiles
      ? 'no config file: collecting json-file logs from disk'
      : `no config file: ${join(root, 'containers')} is not readable here, collecting through the Docker log API`,
  );
  return { ...config, receivers, exporters, pipelines };
}

/** Refuses a receiver or exporter in a pipeline whose signal it cannot carry, before anything starts. */
function checkPipelines(config: Config): void {
  for (const signal of SIGNALS) {
    const pipeline = config.pipelines[signal];
    if (!pipeline) continue;
    const receivers = signal === 'logs' ? [...Object.keys(LOG_RECEIVERS), OTLP_RECEIVER] : [OTLP_RECEIVER];
    const exporters = signal === 'logs' ? Object.keys(EXPORTERS) : [OTLP_EXPORTER];
    pipeline.receivers.forEach((id, i) => {
      if (!receivers.includes(typeOf(id))) {
        throw new ConfigError(
          `Invalid config: pipelines.${signal}.receivers.${i}: ${JSON.stringify(id)} cannot receive ${signal} (use ${receivers.join(', ')})`,
        );
      }
    });
    pipeline.exporters.forEach((id, i) => {
      if (!exporters.includes(typeOf(id))) {
        throw new ConfigError(
          `Invalid config: pipelines.${signal}.exporters.${i}: ${JSON.stringify(id)} cannot export ${signal} (use ${exporters.join(', ')})`,
        );
      }
    });
  }
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
  checkPipelines(input);
  const target = resolveDockerTarget(
    { host: input.docker.host, tlsVerify: input.docker.tls_verify, certPath: input.docker.cert_path },
    env,
  );
  const stateDir = await resolveStateDir(input.state_dir, env, logger);
  const { docker, apiVersion } = await connectDocker(target);
  logger.info({ docker: target.display, apiVersion }, 'connected to Docker');
  const config =
    deps.defaults && Object.keys(input.pipelines).length === 0
      ? await withDefaultPipelines(input, docker, target.display.startsWith('tcp://'), env, logger)
      : input;

  const metricsServer =
    config.telemetry.metrics_listen === undefined
      ? undefined
      : createMetricsServer(config.telemetry.metrics_listen, metrics);
  const mapper = createMapper(config.mapping, (msg) => logger.warn({ component: 'metadata/mapping' }, msg));
  const metadata = createMetadata({ docker, mapper, config: config.metadata, logger, metrics });
  const store = metadata.store;
  const logs = config.pipelines.logs;
  const exporterById = new Map<string, LogExporter>();
  for (const signal of SIGNALS) {
    for (const id of config.pipelines[signal]?.exporters ?? []) {
      if (exporterById.has(id)) continue;
      const factory = EXPORTERS[typeOf(id)]!;
      exporterById.set(id, factory(id, config.exporters[id] as never, { logger, metrics, stateDir }, deps));
    }
  }
  const exporters = [...exporterById.values()];
  const receivers: Receiver[] = [];
  let checkpoints: CheckpointStore | undefined;
  let pipeline: { enrich: ReturnType<typeof createEnrichStage>; multiline: Component } | undefined;

  const logReceiverIds = logs?.receivers.filter((id) => typeOf(id) !== OTLP_RECEIVER) ?? [];
  if (logs && logReceiverIds.length > 0) {
    checkpoints = await openCheckpointStore(join(stateDir, 'checkpoints'), logger);
    const multiline = createMultilineStage({
      next: createFanout(logs.exporters.map((id) => exporterById.get(id)!)),
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
    for (const id of logReceiverIds) {
      const factory = LOG_RECEIVERS[typeOf(id)]!;
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

  // One otlp_http receiver per id, forwarding each signal to the otlp_http exporters of that
  // signal's pipeline; received logs also go, decoded, to the pipeline's other log exporters.
  const otlpListens: string[] = [];
  const otlpIds = new Set(
    SIGNALS.flatMap((signal) => config.pipelines[signal]?.receivers ?? []).filter(
      (id) => typeOf(id) === OTLP_RECEIVER,
    ),
  );
  for (const id of otlpIds) {
    const forwarders: Partial<Record<OtlpSignal, OtlpForwarder[]>> = {};
    let logExporters: LogExporter[] = [];
    for (const signal of SIGNALS) {
      const p = config.pipelines[signal];
      if (!p?.receivers.includes(id)) continue;
      const targets = p.exporters.map((e) => exporterById.get(e)!);
      forwarders[signal] = p.exporters
        .filter((e) => typeOf(e) === OTLP_EXPORTER)
        .map((e) => exporterById.get(e) as OtlpHttpExporter);
      if (signal === 'logs')
        logExporters = targets.filter((_, i) => typeOf(p.exporters[i]!) !== OTLP_EXPORTER);
    }
    const receiverConfig = config.receivers[id] as Parameters<typeof createOtlpHttpReceiver>[0];
    otlpListens.push(receiverConfig.listen);
    receivers.push(
      createOtlpHttpReceiver(receiverConfig, {
        store,
        docker,
        forwarders,
        logExporters,
        logger,
        metrics,
        name: id,
      }),
    );
  }

  /**
   * The agent's own container (cgroup/mountinfo, else a hostname that is its short id), whose records
   * are dropped when enrich.exclude_self is on.
   */
  const excludeSelf = (): string | undefined => {
    const host = env.HOSTNAME || hostname();
    const id = detectOwnContainerId() ?? (/^[0-9a-f]{12}$/.test(host) ? store.get(host)?.id : undefined);
    if (id === undefined || !config.enrich.exclude_self || !pipeline) return id;
    pipeline.enrich.exclude(id);
    // Receivers that can skip a container entirely (json_file) do not even read it.
    for (const receiver of receivers) (receiver as Partial<JsonFileReceiver>).exclude?.(id);
    logger.info({ container: id.slice(0, 12) }, 'running in a container: its own logs are excluded');
    return id;
  };

  let selfTelemetry: SelfTelemetry | undefined;
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
        const own = excludeSelf();
        // Off unless OTEL_TRACES_EXPORTER=otlp; refuses to trace into its own otlp_http receiver.
        selfTelemetry = startSelfTelemetry({
          config: config.telemetry.traces,
          env,
          logger,
          receiverListens: otlpListens,
          container: own === undefined ? undefined : store.get(own)?.attributes,
          docker,
        });
        if (selfTelemetry) logger.info({ endpoint: selfTelemetry.endpoint }, 'sending labelcast traces');
        for (const component of [...exporters, ...(pipeline ? [pipeline.multiline, pipeline.enrich] : [])]) {
          if (stopping) return;
          await component.start();
        }
        for (const receiver of receivers) {
          if (stopping) return;
          await receiver.start();
        }
        logger.info({ pipelines: config.pipelines, containers: store.running().length }, 'labelcast running');
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
        await selfTelemetry?.shutdown().catch((err: unknown) => {
          logger.warn({ err }, 'Cannot flush labelcast traces');
        });
        logger.info('labelcast stopped');
      })();
      return stopped;
    },
  };
}
