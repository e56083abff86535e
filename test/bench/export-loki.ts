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
 * LOKI_BENCH_PROF=<dir> writes a CPU profile of each agent run there (node --cpu-prof); LOKI_BENCH_MEM=1
 * prints each run's peak V8 heap, external memory and delivery queue to stderr.
 */
import { fileURLToPath } from 'node:url';
import snappyjs from 'snappyjs';
import { lokiExporterConfigSchema } from '../../agent/exporters/loki/config.ts';
import { createLokiEncoder } from '../../agent/exporters/loki/encode.ts';
import { createLokiExporter } from '../../agent/exporters/loki/index.ts';
import { createLabelPolicy } from '../../agent/exporters/loki/labels.ts';
import type { LogRecord } from '../../agent/pipeline/types.ts';
import { benchEntry, exportBench } from './fixtures.ts';

const SELF = fileURLToPath(import.meta.url);
const CONTAINER_ID = '7e57be4c4f1c2b3a'.repeat(4);

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

await exportBench({
  self: SELF,
  name: 'Loki',
  pipeline: 'json_file -> enrich -> loki (protobuf + snappy) -> blackhole sink (separate process)',
  containerId: CONTAINER_ID,
  sink: { status: 204 },
  createExporter: (url, deps) =>
    createLokiExporter(
      'loki',
      lokiExporterConfigSchema.parse({ endpoint: url, labels: { job: 'bench' } }),
      deps,
    ),
  profEnv: 'LOKI_BENCH_PROF',
  memEnv: 'LOKI_BENCH_MEM',
  encoderSection,
});
