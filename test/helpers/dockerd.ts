import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const INSTALL_HINT = 'apt-get install -y docker.io busybox-static';

/** The labelled test images every engine gets. `app` is built FROM `base`, so it inherits base's labels. */
export const TEST_IMAGES = {
  base: 'labelcast-test/base:1.0',
  app: 'labelcast-test/app:2.3.1',
  legacy: 'labelcast-test/legacy:0.9',
} as const;

export const APP_REVISION = '3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39';

const DOCKERFILES: Record<keyof typeof TEST_IMAGES, string> = {
  base: `FROM scratch
COPY bin /bin
ENV PATH=/bin
LABEL org.opencontainers.image.source="https://github.com/acme/base.git" \\
      org.opencontainers.image.authors="platform@example.com" \\
      org.opencontainers.image.vendor="Acme" \\
      com.example.base-only="yes"
CMD ["/bin/busybox", "sleep", "3600"]
`,
  app: `FROM ${'labelcast-test/base:1.0'}
LABEL org.opencontainers.image.revision="${APP_REVISION}" \\
      org.opencontainers.image.source="git@github.com:acme/api.git" \\
      org.opencontainers.image.version="2.3.1" \\
      org.opencontainers.image.title="api" \\
      io.labelcast.contact="oncall-api@example.com" \\
      io.labelcast.team="payments" \\
      com.example.db-password="hunter2"
`,
  legacy: `FROM scratch
COPY bin /bin
ENV PATH=/bin
LABEL org.label-schema.vcs-ref="0badc0de" \\
      org.label-schema.vcs-url="https://gitlab.com/acme/legacy-worker" \\
      org.label-schema.version="0.9" \\
      org.label-schema.name="legacy-worker" \\
      maintainer="Legacy Team <legacy@example.com>"
CMD ["/bin/busybox", "sleep", "3600"]
`,
};

export interface Engine {
  /** `unix:///…/docker.sock`, suitable for DOCKER_HOST. */
  readonly host: string;
  readonly socketPath: string;
  readonly dataRoot: string;
  /** Runs the docker CLI against this engine and returns trimmed stdout. */
  docker(...args: string[]): Promise<string>;
  /** Builds an image from a Dockerfile text; the context holds `bin/` (static busybox and its applets). Returns the image id. */
  build(dockerfile: string, tag?: string): Promise<string>;
  /** Stops dockerd (SIGTERM) and starts it again on the same socket and data root. */
  restart(): Promise<void>;
  stopDaemon(): Promise<void>;
  startDaemon(): Promise<void>;
  /** Stops dockerd, removes its containers' processes and its directories. */
  close(): Promise<void>;
}

function findBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return p;
  throw new Error(`Cannot build test images: static busybox not found (run: ${INSTALL_HINT})`);
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/**
 * Starts a private dockerd under a temp dir (own socket, data root, exec root and pidfile) and builds
 * the labelled test images. Fails with the install command when dockerd is missing: integration tests
 * never skip.
 */
export async function startEngine(options: { images?: boolean } = {}): Promise<Engine> {
  const dockerdPath = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  if (!dockerdPath)
    throw new Error(`Cannot start the test Docker engine: dockerd not found (run: ${INSTALL_HINT})`);
  const busybox = findBusybox();
  const root = await mkdtemp(join(tmpdir(), 'lc-engine-'));
  const socketPath = join(root, 'docker.sock');
  const dataRoot = join(root, 'data');
  const execRoot = join(root, 'exec');
  const context = join(root, 'context');
  await mkdir(join(context, 'bin'), { recursive: true });
  await execFileAsync('cp', [busybox, join(context, 'bin', 'busybox')]);
  // Every applet as a symlink, so `sh`, `seq`, `wget`… resolve on PATH inside FROM-scratch images.
  const { stdout: applets } = await execFileAsync(busybox, ['--list']);
  for (const applet of applets.split('\n')) {
    if (applet && applet !== 'busybox') await symlink('busybox', join(context, 'bin', applet));
  }
  const host = `unix://${socketPath}`;
  let daemon: ChildProcess | undefined;
  let daemonExit: Promise<void> = Promise.resolve();
  const daemonLog: string[] = [];

  const startDaemon = async (): Promise<void> => {
    const child = spawn(
      dockerdPath,
      [
        `--host=${host}`,
        `--data-root=${dataRoot}`,
        `--exec-root=${execRoot}`,
        `--pidfile=${join(root, 'docker.pid')}`,
        '--storage-driver=vfs',
        '--iptables=false',
        '--ip-forward=false',
        '--bridge=none',
        '--ip-masq=false',
        '--userland-proxy=false',
        `--containerd-namespace=lc-${process.pid}`,
        `--containerd-plugins-namespace=lc-${process.pid}-plugins`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    daemon = child;
    child.stderr?.on('data', (d: Buffer) => {
      daemonLog.push(d.toString());
      if (daemonLog.length > 200) daemonLog.shift();
    });
    daemonExit = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      if (await ping(socketPath)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `Cannot start the test Docker engine: no /_ping answer\n${daemonLog.join('').slice(-4000)}`,
    );
  };

  const stopDaemon = async (): Promise<void> => {
    if (!daemon || daemon.exitCode !== null) return;
    daemon.kill('SIGTERM');
    const timer = setTimeout(() => daemon?.kill('SIGKILL'), 20_000);
    await daemonExit;
    clearTimeout(timer);
  };

  const docker = async (...args: string[]): Promise<string> => {
    const { stdout } = await execFileAsync('docker', ['-H', host, ...args], {
      env: { ...process.env, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  };

  let builds = 0;
  const build = async (dockerfile: string, tag?: string): Promise<string> => {
    const file = join(root, `Dockerfile.${builds++}`);
    await writeFile(file, dockerfile);
    const args = ['build', '-q', '--network', 'none', '-f', file];
    if (tag) args.push('-t', tag);
    return docker(...args, context);
  };

  await startDaemon();
  const engine: Engine = {
    host,
    socketPath,
    dataRoot,
    docker,
    build,
    stopDaemon,
    startDaemon,
    async restart() {
      await stopDaemon();
      await startDaemon();
    },
    async close() {
      try {
        const ids = (await docker('ps', '-aq')).split('\n').filter(Boolean);
        if (ids.length > 0) await docker('rm', '-f', ...ids);
      } catch {
        // The daemon may already be down; its processes die with it below.
      }
      await stopDaemon();
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
    },
  };
  if (options.images !== false) {
    try {
      await build(DOCKERFILES.base, TEST_IMAGES.base);
      await build(DOCKERFILES.app, TEST_IMAGES.app);
      await build(DOCKERFILES.legacy, TEST_IMAGES.legacy);
    } catch (err) {
      await engine.close();
      throw err;
    }
  }
  return engine;
}
