/**
 * OTLP export benchmark: a 1,000,000-line json-file log (about 170 B per line, the generator of
 * test/bench/logs.ts) → json_file receiver → enrich → otlp_http (protobuf + gzip) → a blackhole HTTP
 * sink in a separate process that only counts bytes. The same run with enrichment off is the baseline.
 *
 *   npm run bench:export              (runs this section, then the Loki one)
 *   node test/bench/export-otlp.ts [--lines N] [--rounds N]
 *
 * Each run is its own agent process, so CPU time (process.cpuUsage: every thread, gzip in the libuv
 * pool included) and peak RSS are that pipeline's alone. A second section times the encoder alone:
 * the hand-written encoder against protobufjs code generated from the official protos, and gzip levels.
 *
 * Diagnostics: OTLP_BENCH_PROF=<dir> writes a CPU profile per agent run; OTLP_BENCH_MEM=1 prints each
 * run's peak V8 heap, external (Buffer) memory and delivery queue to stderr.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { otlpHttpExporterConfigSchema } from '../../agent/exporters/otlp-http/config.ts';
import { OtlpLogsEncoder } from '../../agent/exporters/otlp-http/encode.ts';
import { createOtlpHttpExporter } from '../../agent/exporters/otlp-http/index.ts';
import type { ContainerEntry } from '../../agent/metadata/types.ts';
import { openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { createEnrichStage } from '../../agent/pipeline/enrich.ts';
import type { Component, Consumer, LogBatch, LogRecord } from '../../agent/pipeline/types.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import { createJsonFileReceiver } from '../../agent/receivers/json-file/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import {
  type AgentResult,
  benchEntry,
  blackhole,
  exportBenchMain,
  firstLine,
  type Mode,
  storeOf,
} from './fixtures.ts';

const SELF = fileURLToPath(import.meta.url);
const NODE = process.execPath;
const CONTAINER_ID = '0d1e2c3b4a596877'.repeat(4);

async function agent(mode: Mode, root: string, url: string, lines: number): Promise<void> {
  const entry = benchEntry(CONTAINER_ID, join(root, 'containers', CONTAINER_ID, `${CONTAINER_ID}-json.log`));
  const metrics = new Registry();
  const logger = silentLogger();
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-bench-otlp-state-'));
  const exporter = createOtlpHttpExporter(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({
      endpoint: url,
    }),
    { logger, metrics, stateDir },
    {},
  );
  let read = 0;
  const next: Consumer<LogBatch> & Component =
    mode === 'on'
      ? createEnrichStage({ store: storeOf(entry), next: exporter, maxWaitMs: 2000, logger, metrics })
      : mode === 'read'
        ? {
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
  const sent = async () =>
    mode === 'read'
      ? read
      : ((await metrics.getSingleMetric('labelcast_exporter_sent_records_total')?.get())?.values[0]?.value ??
        0);

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
    maxQueue = Math.max(
      maxQueue,
      (await metrics.getSingleMetric('labelcast_exporter_queue_bytes')?.get())?.values[0]?.value ?? 0,
    );
    await new Promise((r) => setTimeout(r, 20));
  }
  if (process.env.OTLP_BENCH_MEM)
    console.error(
      mode,
      'heap MB',
      maxHeap / 2 ** 20,
      'external MB',
      maxExternal / 2 ** 20,
      'queue MB',
      maxQueue / 2 ** 20,
    );
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

async function runAgent(mode: Mode, root: string, url: string, lines: number): Promise<AgentResult> {
  const prof = process.env.OTLP_BENCH_PROF;
  const flags = prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [];
  const child = spawn(NODE, [...process.execArgv, ...flags, SELF, 'agent', mode, root, url, String(lines)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(await firstLine(child)) as AgentResult;
}

/** Records as the receiver makes them, for the encoder-only section: the first `n` lines of the mix. */
function sampleRecords(n: number, entry: ContainerEntry): LogRecord[] {
  const out: LogRecord[] = [];
  const t0 = 1_796_400_000_000_000_000n;
  for (let i = 0; i < n; i++) {
    const kind = i % 10;
    const body =
      kind < 6
        ? `198.18.0.${i % 250} - - [04/Dec/2026:15:22:44 +0000] "GET /api/v1/orders?page=${i % 97} HTTP/1.1" 200 ${1000 + (i % 9000)} "-" "curl/8.5.0"`
        : kind < 9
          ? `{"level":"info","msg":"order created","order_id":${i},"user":"u-${i % 977}"}`
          : `ERROR 2026-12-04T15:22:44.123 [worker-${i % 8}] OrderService: timeout after 3000ms calling payments (attempt ${i % 3})`;
    out.push({
      timeUnixNano: t0 + BigInt(i) * 37_000n,
      observedUnixNano: t0 + BigInt(i) * 37_000n + 1_000_000n,
      body,
      stream: kind === 9 ? 'stderr' : 'stdout',
      severityNumber: kind === 9 ? 17 : 0,
      severityText: kind === 9 ? 'ERROR' : undefined,
      attributes: undefined,
      containerId: entry.id,
      container: entry,
    });
  }
  return out;
}

/** protobufjs code generated from the official protos (otlp-transformer 0.52.1): the library option. */
function protobufjsEncoder(): (records: LogRecord[]) => Uint8Array {
  // biome-ignore lint/suspicious/noExplicitAny: generated protobufjs module without usable types
  const root: any = createRequire(import.meta.url)(
    '@opentelemetry/otlp-transformer/build/src/generated/root.js',
  );
  const Request = root.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest;
  const resources = new WeakMap<ContainerEntry, unknown>();
  return (records) => {
    const entry = records[0]?.container as ContainerEntry;
    let resource = resources.get(entry);
    if (!resource) {
      resource = {
        attributes: Object.entries(entry.attributes).map(([key, v]) => ({
          key,
          value:
            typeof v === 'string'
              ? { stringValue: v }
              : { arrayValue: { values: v.map((s) => ({ stringValue: s })) } },
        })),
      };
      resources.set(entry, resource);
    }
    const logRecords = records.map((r) => ({
      timeUnixNano: r.timeUnixNano.toString(),
      observedTimeUnixNano: r.observedUnixNano.toString(),
      severityNumber: r.severityNumber,
      severityText: r.severityText,
      body: { stringValue: r.body },
      attributes: [{ key: 'log.iostream', value: { stringValue: r.stream } }],
    }));
    return Request.encode({
      resourceLogs: [{ resource, scopeLogs: [{ scope: { name: 'labelcast' }, logRecords }] }],
    }).finish();
  };
}

function encoderSection(): void {
  const entry = benchEntry(CONTAINER_ID, '/dev/null');
  // One delivery batch: max_batch_bytes (1 MiB) of records at ~170 B.
  const batch = sampleRecords(6000, entry);
  const rounds = 100;
  const lines = batch.length * rounds;
  const time = (fn: () => void): number => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < rounds; i++) fn();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000;
  };
  const ours = new OtlpLogsEncoder();
  const lib = protobufjsEncoder();
  time(() => ours.protobuf(batch)); // warm-up
  time(() => lib(batch));
  const oursMs = time(() => ours.protobuf(batch));
  const libMs = time(() => lib(batch));
  const jsonMs = time(() => ours.json(batch));
  const raw = ours.protobuf(batch);
  console.log(
    `\nOTLP encoder alone: ${lines} records in batches of ${batch.length} (one max_batch_bytes batch)`,
  );
  console.log('encoder                              | records/CPU-s | bytes/record');
  const row = (name: string, ms: number, bytes: number) =>
    console.log(
      `${name.padEnd(36)} | ${String(Math.round(lines / (ms / 1000))).padStart(13)} | ${(bytes / batch.length).toFixed(1).padStart(12)}`,
    );
  row('labelcast hand-written protobuf', oursMs, raw.length);
  row('protobufjs generated (official protos)', libMs, lib(batch).length);
  row('labelcast JSON', jsonMs, ours.json(batch).length);
  for (const level of [1, 6]) {
    const ms = time(() => gzipSync(raw, { level }));
    row(`gzip level ${level} of the protobuf body`, ms, gzipSync(raw, { level }).length);
  }
}

const role = process.argv[2];
if (role === 'blackhole') blackhole(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' });
else if (role === 'agent') {
  const [, , , mode, root, url, lines] = process.argv;
  await agent(mode as Mode, root as string, url as string, Number(lines));
} else {
  await exportBenchMain({
    self: SELF,
    name: 'OTLP',
    pipeline: 'json_file -> enrich -> otlp_http (protobuf + gzip) -> blackhole sink (separate process)',
    containerId: CONTAINER_ID,
    runAgent,
    encoderSection,
  });
}
