import type Docker from 'dockerode';
import type { Config } from '../config/schema.ts';
import { connectDocker, type DockerTarget, resolveDockerTarget } from '../docker/client.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * What main.ts hands every command: commands never read process.env/argv, install signal handlers
 * or exit themselves. An action reports failure by throwing (an AgentError prints one line).
 */
export interface CliContext {
  /** The environment, for the config overlay and DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH. */
  readonly env: NodeJS.ProcessEnv;
  /** Aborted on the first SIGINT/SIGTERM during `labelcast run`; the action then shuts down and resolves. */
  readonly signal: AbortSignal;
  /** Writes command output (tables, JSON) to stdout. */
  write(text: string): void;
  /** Reads `file` (else LABELCAST_CONFIG, else schema defaults), overlays LABELCAST_*, validates. Throws ConfigError. */
  loadConfig(file: string | undefined): Config;
  /** The root pino logger (JSON to stderr) at the config's level; one per process, flushed by main before exit. */
  logger(config: Config): Logger;
}

/** Where the config says the engine is: `docker.host`, then DOCKER_HOST, then the default socket. */
export function dockerTarget(config: Config, env: NodeJS.ProcessEnv): DockerTarget {
  return resolveDockerTarget(
    { host: config.docker.host, tlsVerify: config.docker.tls_verify, certPath: config.docker.cert_path },
    env,
  );
}

/** Connects and checks the API version; throws DockerUnavailableError / DockerApiVersionError. */
export async function openDocker(config: Config, env: NodeJS.ProcessEnv, log: Logger): Promise<Docker> {
  const target = dockerTarget(config, env);
  const { docker, apiVersion } = await connectDocker(target);
  log.debug({ docker: target.display, apiVersion }, 'connected to Docker');
  return docker;
}
