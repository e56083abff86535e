/** What the log and export benchmarks share: one typical container, a store that knows it, the sink, the export driver. */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { mappingConfigSchema } from '../../agent/metadata/config.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import type { ContainerEntry, MetadataStore } from '../../agent/metadata/types.ts';
import { RUNTIME, selectSource } from './runtime.ts';

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

/** `read`: json_file alone (reference); `off`: → exporter without enrichment (baseline); `on`: → enrich → exporter. */
export type Mode = 'read' | 'off' | 'on';

/** What one agent process reports on stdout when its run is done. */
export interface AgentResult {
  lines: number;
  cpuMs: number;
  wallMs: number;
  maxRssBytes: number;
}

export interface ExportBench {
  /** The calling benchmark's file; it is run again as `<file> blackhole` for the sink. */
  self: string;
  /** `Loki`, `OTLP`: the heading. */
  name: string;
  /** The pipeline line under the heading. */
  pipeline: string;
  containerId: string;
  /** Runs one agent process in `mode` over the log under `root`, exporting to `url`. */
  runAgent(mode: Mode, root: string, url: string, lines: number): Promise<AgentResult>;
  /** Printed after the pipeline runs (the encoder alone). */
  encoderSection(): void;
}

/**
 * The export benchmarks' driver: generates the json-file log with test/bench/logs.ts, starts the sink
 * process, runs read/off/on agents `--rounds` times (alternating, so drift hits all modes alike), and
 * prints each run and the best-of comparison of enriched against the baseline.
 */
export async function exportBenchMain(bench: ExportBench): Promise<void> {
  selectSource(bench.self);
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { lines: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '2' } },
  });
  const lines = Number(values.lines);
  const rounds = Number(values.rounds);
  const node = process.execPath;
  const root = await mkdtemp(join(tmpdir(), 'lc-bench-export-'));
  const sink = spawn(node, [bench.self, 'blackhole'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const dir = join(root, 'containers', bench.containerId);
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${bench.containerId}-json.log`);
    const gen = spawnSync(
      node,
      [join(import.meta.dirname, `logs${extname(bench.self)}`), '--generate', file, '--lines', String(lines)],
      { encoding: 'utf8' },
    );
    if (gen.status !== 0) throw new Error(`Cannot generate the benchmark log: ${gen.stderr}`);
    const fileBytes = Number(gen.stdout);
    const { port } = JSON.parse(await firstLine(sink)) as { port: number };
    const url = `http://127.0.0.1:${port}`;
    const stats = async () =>
      (await (await fetch(`${url}/stats`)).json()) as { bytes: number; requests: number };

    console.log(
      `${bench.name} export: ${lines} json-file lines, ${(fileBytes / lines).toFixed(0)} B/line on disk (generator: test/bench/logs.ts)`,
    );
    console.log(bench.pipeline);
    console.log(
      `agent processes: node ${process.version}, V8 flags: ${process.execArgv.join(' ') || '(none)'}; ${RUNTIME}`,
    );
    console.log('mode       | lines/CPU-s | CPU s | wall s | bytes out/line | requests | peak RSS MB');
    const best = new Map<Mode, AgentResult>();
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['read', 'off', 'on'] as const) {
        const before = await stats();
        const r = await bench.runAgent(mode, root, url, lines);
        const after = await stats();
        console.log(
          [
            mode.padEnd(10),
            String(Math.round(r.lines / (r.cpuMs / 1000))).padStart(11),
            (r.cpuMs / 1000).toFixed(2).padStart(5),
            (r.wallMs / 1000).toFixed(2).padStart(6),
            ((after.bytes - before.bytes) / r.lines).toFixed(1).padStart(14),
            String(after.requests - before.requests).padStart(8),
            (r.maxRssBytes / 1024 / 1024).toFixed(0).padStart(11),
          ].join(' | '),
        );
        const prev = best.get(mode);
        if (!prev || r.cpuMs < prev.cpuMs) best.set(mode, r);
      }
    }
    const off = best.get('off');
    const on = best.get('on');
    if (off && on) {
      const overhead = (on.cpuMs / on.lines / (off.cpuMs / off.lines) - 1) * 100;
      console.log(
        `best of ${rounds}: enriched ${Math.round(on.lines / (on.cpuMs / 1000))} lines/CPU-s, baseline ${Math.round(off.lines / (off.cpuMs / 1000))}; enrichment CPU overhead per line: ${overhead.toFixed(1)} %`,
      );
    }
    bench.encoderSection();
  } finally {
    sink.kill();
    await rm(root, { recursive: true, force: true });
  }
}
