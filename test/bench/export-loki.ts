/**
 * Loki export benchmark: a 1,000,000-line json-file log (about 170 B per line, the generator of
 * test/bench/logs.ts) → json_file receiver → enrich → loki (protobuf + snappy) → a blackhole HTTP
 * sink in a separate process that only counts bytes. The same run with enrichment off is the baseline.
 *
 *   npm run bench:export              (the OTLP section, then this one)
 *   node test/bench/export-loki.ts [--lines N] [--rounds N]
 *
 * Each run is its own agent process, so CPU time and peak RSS are that pipeline's alone. A second
 * section times the encoder alone: the repeat-aware snappy against snappyjs on the same batches.
 * LOKI_BENCH_PROF=<dir> writes a CPU profile of each agent run there (node --cpu-prof).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import snappyjs from 'snappyjs';
import { lokiExporterConfigSchema } from '../../agent/exporters/loki/config.ts';
import { createLokiEncoder } from '../../agent/exporters/loki/encode.ts';
import { createLokiExporter } from '../../agent/exporters/loki/index.ts';
import { createLabelPolicy } from '../../agent/exporters/loki/labels.ts';
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
const CONTAINER_ID = '7e57be4c4f1c2b3a'.repeat(4);

/** One agent process: the pipeline on the generated log until every line was accepted by the sink. */
async function agent(mode: Mode, root: string, url: string, lines: number): Promise<void> {
  const entry = benchEntry(CONTAINER_ID, join(root, 'containers', CONTAINER_ID, `${CONTAINER_ID}-json.log`));
  const metrics = new Registry();
  const logger = silentLogger();
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-bench-state-'));
  const exporter = createLokiExporter(
    'loki',
    lokiExporterConfigSchema.parse({ endpoint: url, labels: { job: 'bench' } }),
    {
      logger,
      metrics,
      stateDir,
    },
  );
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
            // Baseline: records leave without their container (the receiver may already have set it).
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
  while ((await sent()) < lines) await new Promise((r) => setTimeout(r, 20));
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
  const child = spawn(
    NODE,
    [
      ...process.execArgv,
      ...(process.env.LOKI_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.LOKI_BENCH_PROF] : []),
      SELF,
      'agent',
      mode,
      root,
      url,
      String(lines),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return JSON.parse(await firstLine(child)) as AgentResult;
}

/** The encoder alone, on the same batches: repeat-aware snappy (the exporter's) against snappyjs. */
function encoderSection(): void {
  const entry = benchEntry(CONTAINER_ID, '');
  const config = lokiExporterConfigSchema.parse({ endpoint: 'http://127.0.0.1', labels: { job: 'bench' } });
  const records: LogRecord[] = Array.from({ length: 6000 }, (_, i) => ({
    timeUnixNano: 1_764_860_400_000_000_000n + BigInt(i) * 1_000_123n,
    observedUnixNano: 0n,
    body:
      i % 10 < 6
        ? `198.18.0.${i % 250} - - [04/Dec/2026:15:00:00 +0000] "GET /api/v1/orders/${i} HTTP/1.1" 200 ${i % 9000} "-" "curl/8.5.0"`
        : i % 10 < 9
          ? `{"level":"info","msg":"order processed","order_id":${i},"duration_ms":${i % 97}}`
          : `ERROR payment declined for order ${i}: upstream returned 502 Bad Gateway`,
    stream: i % 10 === 9 ? 'stderr' : 'stdout',
    severityNumber: i % 10 === 9 ? 17 : 0,
    severityText: i % 10 === 9 ? 'ERROR' : undefined,
    attributes: undefined,
    containerId: entry.id,
    container: entry,
  }));
  const variants = [
    ['repeat-aware snappy', undefined],
    ['snappyjs', (raw: Uint8Array) => snappyjs.compress(raw)],
  ] as const;
  console.log('encoder alone (6,000-line batches, 21-22 metadata entries per line):');
  console.log('compressor          | µs/line | bytes/line');
  for (const [name, compress] of variants) {
    const encoder = createLokiEncoder({
      encoding: 'protobuf',
      gzip: false,
      maxLineSize: config.max_line_size,
      policy: createLabelPolicy(config),
      ...(compress ? { compress } : {}),
    });
    for (let i = 0; i < 5; i++) encoder.encode(records);
    let bytes = 0;
    const rounds = 30;
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) bytes += encoder.encode(records).body.length;
    const us = ((performance.now() - t0) * 1000) / (rounds * records.length);
    console.log(
      `${name.padEnd(19)} | ${us.toFixed(2).padStart(7)} | ${(bytes / (rounds * records.length)).toFixed(1).padStart(10)}`,
    );
  }
}

const role = process.argv[2];
if (role === 'blackhole') blackhole(204);
else if (role === 'agent') {
  const [, , , mode, root, url, lines] = process.argv;
  await agent(mode as Mode, root as string, url as string, Number(lines));
} else {
  await exportBenchMain({
    self: SELF,
    name: 'Loki',
    pipeline: 'json_file -> enrich -> loki (protobuf + snappy) -> blackhole sink (separate process)',
    containerId: CONTAINER_ID,
    runAgent,
    encoderSection,
  });
}
