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
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { otlpHttpExporterConfigSchema } from '../../agent/exporters/otlp-http/config.ts';
import { OtlpLogsEncoder } from '../../agent/exporters/otlp-http/encode.ts';
import { createOtlpHttpExporter } from '../../agent/exporters/otlp-http/index.ts';
import type { ContainerEntry } from '../../agent/metadata/types.ts';
import type { LogRecord } from '../../agent/pipeline/types.ts';
import { benchEntry, exportBench } from './fixtures.ts';

const SELF = fileURLToPath(import.meta.url);
const CONTAINER_ID = '0d1e2c3b4a596877'.repeat(4);

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

await exportBench({
  self: SELF,
  name: 'OTLP',
  pipeline: 'json_file -> enrich -> otlp_http (protobuf + gzip) -> blackhole sink (separate process)',
  containerId: CONTAINER_ID,
  sink: { status: 200, headers: { 'content-type': 'application/x-protobuf', 'content-length': '0' } },
  createExporter: (url, deps) =>
    createOtlpHttpExporter('otlp_http', otlpHttpExporterConfigSchema.parse({ endpoint: url }), deps, {}),
  profEnv: 'OTLP_BENCH_PROF',
  memEnv: 'OTLP_BENCH_MEM',
  encoderSection,
});
