import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { ConfigError, DockerApiVersionError, DockerUnavailableError } from '../errors.ts';

/** The oldest Engine API labelcast speaks (Docker 20.10). */
export const MIN_API_VERSION = '1.41';

export interface DockerConnectionOptions {
  /** `unix:///path`, `tcp://host:port`, or undefined for DOCKER_HOST / the default socket. */
  host?: string | undefined;
  /** TLS for tcp://; defaults from DOCKER_TLS_VERIFY and DOCKER_CERT_PATH. */
  tlsVerify?: boolean | undefined;
  certPath?: string | undefined;
}

export interface DockerTarget {
  /** What the user would recognise in an error: `unix:///var/run/docker.sock`. */
  readonly display: string;
  readonly options: Docker.DockerOptions;
}

/**
 * Resolves where the engine is, in order: explicit option (config file), DOCKER_HOST, the default
 * socket. Throws ConfigError for a host that is not unix:// or tcp://.
 */
export function resolveDockerTarget(
  opts: DockerConnectionOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): DockerTarget {
  const host = opts.host ?? (env.DOCKER_HOST || undefined) ?? 'unix:///var/run/docker.sock';
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    if (!socketPath.startsWith('/')) {
      throw new ConfigError(
        `Invalid Docker host ${JSON.stringify(host)}: a unix socket path must be absolute`,
      );
    }
    return { display: host, options: { socketPath } };
  }
  if (host.startsWith('tcp://')) {
    let url: URL;
    try {
      url = new URL(`http://${host.slice('tcp://'.length)}`);
    } catch {
      throw new ConfigError(`Invalid Docker host ${JSON.stringify(host)}: expected tcp://HOST:PORT`);
    }
    const tlsVerify = opts.tlsVerify ?? (env.DOCKER_TLS_VERIFY !== undefined && env.DOCKER_TLS_VERIFY !== '');
    const port = url.port || (tlsVerify ? '2376' : '2375');
    if (!tlsVerify) {
      return { display: host, options: { host: url.hostname, port, protocol: 'http' } };
    }
    const certPath = opts.certPath ?? env.DOCKER_CERT_PATH ?? join(env.HOME ?? '/root', '.docker');
    const read = (file: string): Buffer => {
      try {
        return readFileSync(join(certPath, file));
      } catch (err) {
        throw new ConfigError(
          `Cannot read Docker TLS file ${join(certPath, file)}: ${(err as Error).message} (set DOCKER_CERT_PATH to the folder holding ca.pem, cert.pem and key.pem)`,
        );
      }
    };
    return {
      display: host,
      options: {
        host: url.hostname,
        port,
        protocol: 'https',
        ca: read('ca.pem'),
        cert: read('cert.pem'),
        key: read('key.pem'),
      },
    };
  }
  throw new ConfigError(
    `Invalid Docker host ${JSON.stringify(host)}: expected unix:///path/to/docker.sock or tcp://HOST:PORT`,
  );
}

/**
 * Builds the dockerode client. Paths stay unversioned so the engine answers in its own API version
 * (Docker 29 refuses anything older than 1.44). Streaming requests carry no idle timeout.
 */
export function createDockerClient(target: DockerTarget): Docker {
  return new Docker(target.options);
}

/** Turns a connection failure into a one-line error that names the fix. */
export function describeConnectionError(target: DockerTarget, err: unknown): DockerUnavailableError {
  const e = err as NodeJS.ErrnoException;
  const where = `Cannot connect to Docker at ${target.display}`;
  switch (e?.code) {
    case 'ENOENT':
      return new DockerUnavailableError(
        `${where}: no such socket (is dockerd running? set DOCKER_HOST or docker.host to the engine's socket)`,
        { cause: err },
      );
    case 'EACCES':
    case 'EPERM':
      return new DockerUnavailableError(
        `${where}: permission denied (run as root, add the user to the docker group, or point DOCKER_HOST at a socket proxy)`,
        { cause: err },
      );
    case 'ECONNREFUSED':
      return new DockerUnavailableError(
        `${where}: connection refused (is dockerd running and listening there?)`,
        {
          cause: err,
        },
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new DockerUnavailableError(`${where}: host name does not resolve (check DOCKER_HOST)`, {
        cause: err,
      });
    default:
      return new DockerUnavailableError(`${where}: ${e?.message ?? String(err)}`, { cause: err });
  }
}

function compareVersions(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return am === bm ? an - bn : am - bm;
}

/**
 * Pings the engine and checks its API version. Throws DockerUnavailableError (with the fix) when it
 * cannot be reached, DockerApiVersionError when it is older than MIN_API_VERSION.
 */
export async function connectDocker(target: DockerTarget): Promise<{ docker: Docker; apiVersion: string }> {
  const docker = createDockerClient(target);
  let version: Docker.DockerVersion;
  try {
    version = await docker.version();
  } catch (err) {
    throw describeConnectionError(target, err);
  }
  if (compareVersions(version.ApiVersion, MIN_API_VERSION) < 0) {
    throw new DockerApiVersionError(
      `Cannot use Docker at ${target.display}: Engine API ${version.ApiVersion} is older than ${MIN_API_VERSION} (upgrade Docker to 20.10 or newer)`,
    );
  }
  return { docker, apiVersion: version.ApiVersion };
}
