/** What the log and export benchmarks share: one typical container, a store that knows it, the sink, the export driver. */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { mappingConfigSchema } from '../../agent/metadata/config.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import type { ContainerEntry, MetadataStore } from '../../agent/metadata/types.ts';
import { openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { createEnrichStage } from '../../agent/pipeline/enrich.ts';
import type { Component, Consumer, ExporterDeps, LogBatch, LogExporter } from '../../agent/pipeline/types.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import { createJsonFileReceiver } from '../../agent/receivers/json-file/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
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
  /** The sink's answer to every push. */
  sink: { status: number; headers?: Record<string, string> };
  /** The exporter under test, sending to `url`. */
  createExporter(url: string, deps: ExporterDeps): LogExporter;
  /** Environment variables: a folder for a CPU profile per agent run; print each run's peak memory. */
  profEnv: string;
  memEnv: string;
  /** Printed after the pipeline runs (the encoder alone). */
  encoderSection(): void;
}

/**
 * Runs the role this process was started for: `blackhole` (the sink), `agent MODE ROOT URL LINES` (one
 * measured pipeline), or, with no role, the driver.
 */
export async function exportBench(bench: ExportBench): Promise<void> {
  const [role, mode, root, url, lines] = process.argv.slice(2);
  if (role === 'blackhole') blackhole(bench.sink.status, bench.sink.headers);
  else if (role === 'agent')
    await agentProcess(bench, mode as Mode, root as string, url as string, Number(lines));
  else await exportBenchMain(bench);
}

/** One agent process: the pipeline on the generated log until every line was accepted by the sink. */
async function agentProcess(bench: ExportBench, mode: Mode, root: string, url: string, lines: number) {
  const id = bench.containerId;
  const entry = benchEntry(id, join(root, 'containers', id, `${id}-json.log`));
  const metrics = new Registry();
  const logger = silentLogger();
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-bench-state-'));
  const exporter = bench.createExporter(url, { logger, metrics, stateDir });
  let read = 0;
  const next: Consumer<LogBatch> & Component =
    mode === 'on'
      ? createEnrichStage({ store: storeOf(entry), next: exporter, maxWaitMs: 2000, logger, metrics })
      : mode === 'read'
        ? {
            // Reference: the receiver alone, into a consumer that only counts.
            async consume(batch) {
              read += batch.records.length;
              batch.ack();
            },
            start: async () => {},
            shutdown: async () => {},
          }
        : {
            // Baseline: records leave with only container.id (the receiver may already have set the entry).
            consume(batch) {
              for (const record of batch.records) record.container = undefined;
              return exporter.consume(batch);
            },
            start: async () => {},
            shutdown: async () => {},
          };
  const receiver = createJsonFileReceiver(
    jsonFileConfigSchema.parse({ docker_root: root, start_at: 'beginning' }),
    {
      docker: {} as never,
      store: storeOf(entry),
      consumer: next,
      checkpoints: await openCheckpointStore(join(stateDir, 'checkpoints'), logger),
      logger,
      metrics,
    },
  );
  const metric = async (name: string) => (await metrics.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;
  const sent = async () => (mode === 'read' ? read : await metric('labelcast_exporter_sent_records_total'));

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await exporter.start();
  await next.start();
  await receiver.start();
  let maxHeap = 0;
  let maxExternal = 0;
  let maxQueue = 0;
  while ((await sent()) < lines) {
    const m = process.memoryUsage();
    maxHeap = Math.max(maxHeap, m.heapUsed);
    maxExternal = Math.max(maxExternal, m.external);
    maxQueue = Math.max(maxQueue, await metric('labelcast_exporter_queue_bytes'));
    await new Promise((r) => setTimeout(r, 20));
  }
  if (process.env[bench.memEnv]) {
    const mb = (n: number) => n / 2 ** 20;
    console.error(mode, 'heap MB', mb(maxHeap), 'external MB', mb(maxExternal), 'queue MB', mb(maxQueue));
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const result: AgentResult = {
    lines: await sent(),
    cpuMs: (cpu.user + cpu.system) / 1000,
    wallMs,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  await receiver.shutdown();
  await next.shutdown();
  await exporter.shutdown();
  await rm(stateDir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

async function runAgent(bench: ExportBench, mode: Mode, root: string, url: string, lines: number) {
  const prof = process.env[bench.profEnv];
  const flags = prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [];
  const child = spawn(
    process.execPath,
    [...process.execArgv, ...flags, bench.self, 'agent', mode, root, url, String(lines)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return JSON.parse(await firstLine(child)) as AgentResult;
}

/**
 * The export benchmarks' driver: generates the json-file log with test/bench/logs.ts, starts the sink
 * process, runs read/off/on agents `--rounds` times (alternating, so drift hits all modes alike), and
 * prints each run and the best-of comparison of enriched against the baseline.
 */
async function exportBenchMain(bench: ExportBench): Promise<void> {
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
        const r = await runAgent(bench, mode, root, url, lines);
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
