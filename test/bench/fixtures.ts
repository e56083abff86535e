/** What the log and export benchmarks share: one typical container, a store that knows it, the sink. */
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mappingConfigSchema } from '../../agent/metadata/config.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import type { ContainerEntry, MetadataStore } from '../../agent/metadata/types.ts';

/** The labels of a typical service image plus run-time labels, as the store would have them. */
export const BENCH_LABELS: Readonly<Record<string, string>> = {
  'org.opencontainers.image.revision': '3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39',
  'org.opencontainers.image.source': 'git@github.com:acme/api.git',
  'org.opencontainers.image.version': '2.3.1',
  'org.opencontainers.image.title': 'api',
  'org.opencontainers.image.authors': 'platform@example.com',
  'io.labelcast.contact': 'oncall-api@example.com',
  'io.labelcast.team': 'payments',
  'com.docker.compose.project': 'shop',
  'com.docker.compose.service': 'api',
};

/** A typical service container as the store would hold it, attributes from the real mapper. */
export function benchEntry(
  id: string,
  logPath: string,
  labels: Readonly<Record<string, string>> = BENCH_LABELS,
): ContainerEntry {
  const mapper = createMapper(mappingConfigSchema.parse({}));
  const input = {
    id,
    name: 'shop-api-1',
    imageRef: 'ghcr.io/acme/api:2.3.1',
    imageId: `sha256:${'9f'.repeat(32)}`,
    image: undefined,
    labels,
  };
  return Object.freeze({
    ...input,
    shortId: id.slice(0, 12),
    hostname: id.slice(0, 12),
    labelOrigins: {},
    ips: [],
    running: true,
    pid: 1,
    tty: false,
    logPath,
    logDriver: 'json-file',
    startedAt: '2026-12-04T15:00:00Z',
    attributes: mapper.attributes(input),
    settings: mapper.settings(labels),
    removedAt: undefined,
  });
}

/** A store that knows the one container; the benchmarks measure the log path, not the watcher. */
export function storeOf(entry: ContainerEntry): MetadataStore {
  return {
    get: (id) => (id === entry.id || id === entry.shortId ? entry : undefined),
    resolve: async (id) => (id === entry.id ? entry : undefined),
    byName: () => undefined,
    byHostname: () => undefined,
    byIp: () => undefined,
    running: () => [entry],
    subscribe: () => () => {},
  };
}

/**
 * The sink, run in its own process: answers every POST with `status` and `headers`, counts bytes and
 * requests (`GET /stats` reports them), and prints `{"port":…}` once listening.
 */
export function blackhole(status: number, headers: Record<string, string> = {}): void {
  let bytes = 0;
  let requests = 0;
  const server = createServer((req, res) => {
    if (req.method === 'GET') {
      res.end(JSON.stringify({ bytes, requests }));
      return;
    }
    requests++;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    req.on('end', () => {
      res.writeHead(status, headers);
      res.end();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
}

/** The first line a child process prints on stdout (its JSON report). */
export function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`${child.spawnargs.join(' ')} exited with ${code}`)));
  });
}
