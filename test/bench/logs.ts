/**
 * `npm run bench:logs`: the json_file path read → enrich → stdout NDJSON to /dev/null, measured in CPU
 * time of this process (process.cpuUsage: every thread, so file reads in the libuv pool count too).
 *
 * 1. Writes a 1,000,000-line json-file log (~170 B/line: access-log, JSON and stderr error lines) in
 *    the engine's on-disk layout.
 * 2. Line parsing alone: the purpose-built scanner against JSON.parse per line, same lines.
 * 3. The pipeline, in alternating runs:
 *    - off: receiver → stdout; records carry only container.id (no enrich stage, no resource);
 *    - on: receiver → enrich stage → stdout with the container's full resource;
 *    - stage bypassed: as `on`, but the receiver's entry goes straight to stdout without the enrich
 *      stage, which isolates the stage (store lookup) from the cost of writing the larger lines;
 *    - read only: receiver → a consumer that acks at once (the receiver's own cost).
 *
 * Options: --lines N (default 1,000,000), --rounds N (default 2 runs per mode), --source ts|js (which
 * build this process runs: see runtime.ts; `npm run bench:logs` runs the compiled one).
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { createStdoutExporter } from '../../agent/exporters/stdout/index.ts';
import type { ContainerEntry } from '../../agent/metadata/types.ts';
import { openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { createEnrichStage } from '../../agent/pipeline/enrich.ts';
import type { Consumer, LogBatch } from '../../agent/pipeline/types.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import { createJsonFileReceiver } from '../../agent/receivers/json-file/index.ts';
import {
  type LineFields,
  newLineFields,
  parseLine,
  parseTimeNano,
} from '../../agent/receivers/json-file/parse.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { BENCH_LABELS, benchEntry, storeOf } from './fixtures.ts';
import { RUNTIME, selectSource } from './runtime.ts';

selectSource(import.meta.filename);
const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '2' },
    generate: { type: 'string' },
  },
});
const LINES = Number(values.lines);
const ROUNDS = Number(values.rounds);
const ID = 'b1e55ed0c0ffee00'.repeat(4);
/** The shared container's labels but its authors label: the 8 labels docs/json-file.md measured with. */
const { 'org.opencontainers.image.authors': _authors, ...LABELS } = BENCH_LABELS;

const PATHS = ['/api/v1/orders', '/api/v1/users/me', '/healthz', '/static/app.js', '/api/v1/payments/intent'];
const AGENTS = ['curl/8.5.0', 'Go-http-client/1.1', 'kube-probe/1.30'];

/** One body of the mix: 6 in 10 access-log, 3 in 10 JSON, 1 in 10 an error on stderr. */
function body(i: number, iso: string): [string, 'stdout' | 'stderr'] {
  const kind = i % 10;
  if (kind < 6) {
    const path = PATHS[i % PATHS.length];
    const agent = AGENTS[i % AGENTS.length];
    return [
      `198.18.0.${i % 250} - - [04/Dec/2026:15:22:44 +0000] "GET ${path}?page=${i % 97} HTTP/1.1" 200 ${1000 + (i % 9000)} "-" "${agent}"`,
      'stdout',
    ];
  }
  if (kind < 9)
    return [`{"level":"info","msg":"order created","order_id":${i},"user":"u-${i % 977}"}`, 'stdout'];
  return [
    `ERROR ${iso.slice(0, 23)} [worker-${i % 8}] OrderService: timeout after 3000ms calling payments (attempt ${i % 3})`,
    'stderr',
  ];
}

async function writeLog(path: string): Promise<number> {
  const out = createWriteStream(path, { highWaterMark: 1 << 20 });
  const start = Date.parse('2026-12-04T15:22:44Z') * 1_000_000;
  let bytes = 0;
  let chunk = '';
  for (let i = 0; i < LINES; i++) {
    const ns = start + i * 37_000;
    const sec = Math.floor(ns / 1e9);
    const iso = `${new Date(sec * 1000).toISOString().slice(0, 19)}.${String(ns % 1e9).padStart(9, '0')}Z`;
    const [text, stream] = body(i, iso);
    chunk += `{"log":${JSON.stringify(`${text}\n`)},"stream":"${stream}","time":"${iso}"}\n`;
    if (chunk.length > 1 << 20) {
      bytes += Buffer.byteLength(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      chunk = '';
    }
  }
  bytes += Buffer.byteLength(chunk);
  out.end(chunk);
  await new Promise<void>((r) => out.once('close', () => r()));
  return bytes;
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
}, 20);

/**
 * The candidate that lost: a scanner over the engine's fixed key order (`log, stream, attrs?, time`)
 * that finds the separators with indexOf and decodes only the `log` string. The first `","stream":"`
 * ends the log value, as every `"` inside a JSON string is escaped. Kept here with the measurement.
 */
function scanLine(line: string, out: LineFields): boolean {
  const PREFIX = '{"log":"';
  const SEP = '","stream":"';
  const TIME = '","time":"';
  if (!line.startsWith(PREFIX) || !line.endsWith('"}')) return parseLine(line, out);
  const end = line.indexOf(SEP, PREFIX.length);
  const streamEnd = end < 0 ? -1 : line.indexOf('"', end + SEP.length);
  if (streamEnd < 0 || !line.startsWith(TIME, streamEnd)) return parseLine(line, out);
  const raw = line.slice(PREFIX.length, end);
  const backslash = raw.indexOf('\\');
  if (backslash < 0) out.log = raw;
  else if (backslash === raw.length - 2 && raw.endsWith('\\n')) out.log = `${raw.slice(0, -2)}\n`;
  else out.log = JSON.parse(line.slice(PREFIX.length - 1, end + 1)) as string;
  out.stream = line.slice(end + SEP.length, streamEnd) === 'stderr' ? 'stderr' : 'stdout';
  out.time = line.slice(streamEnd + TIME.length, -2);
  out.attrs = undefined;
  return true;
}

/** Parsing only: the first 200,000 lines through each parser, three times, timestamps included. */
async function parserBench(logPath: string): Promise<void> {
  const fh = await open(logPath, 'r');
  const buf = Buffer.allocUnsafe(40 * 1024 * 1024);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  await fh.close();
  const text = buf.toString('utf8', 0, buf.lastIndexOf(10, bytesRead - 1));
  const lines = text.split('\n').slice(0, 200_000);
  const a = newLineFields();
  const b = newLineFields();
  for (const line of lines) {
    if (
      !parseLine(line, a) ||
      !scanLine(line, b) ||
      a.log !== b.log ||
      a.time !== b.time ||
      a.stream !== b.stream
    )
      throw new Error(`The scanner and JSON.parse disagree on: ${line}`);
  }
  const run = (parse: typeof parseLine): number => {
    const t0 = process.cpuUsage();
    let sink = 0;
    for (let r = 0; r < 3; r++)
      for (const line of lines) {
        parse(line, a);
        sink += a.log.length + Number((parseTimeNano(a.time) ?? 0n) & 1n);
      }
    if (sink < 0) console.log(sink);
    return (lines.length * 3) / cpuSeconds(t0);
  };
  run(parseLine);
  run(scanLine);
  const jsonParse = (run(parseLine) + run(parseLine)) / 2;
  const scanner = (run(scanLine) + run(scanLine)) / 2;
  console.log('\nparse only (200,000 lines × 3, incl. timestamp):');
  console.log(`  JSON.parse per line (used) : ${Math.round(jsonParse).toLocaleString('en')} lines/CPU-s`);
  console.log(
    `  indexOf scanner            : ${Math.round(scanner).toLocaleString('en')} lines/CPU-s (${(scanner / jsonParse).toFixed(2)}x)`,
  );
}

type Mode = 'off' | 'on' | 'bypass' | 'read';

/** One pass of the whole file through receiver → [enrich] → stdout exporter → /dev/null. */
async function pipelineRun(dockerRoot: string, entry: ContainerEntry, mode: Mode): Promise<number> {
  const enrich = mode === 'on';
  const state = await mkdtemp(join(tmpdir(), 'lc-bench-state-'));
  const metrics = new Registry();
  const logger = silentLogger();
  const devNull = createWriteStream('/dev/null');
  const exporter = createStdoutExporter('stdout', {}, { logger, metrics, stateDir: state }, devNull);
  // Off: the receiver's entry carries only container.id, and nothing sits between it and the exporter.
  const seen: ContainerEntry =
    mode === 'off' ? { ...entry, attributes: { 'container.id': entry.id } } : entry;
  const store = storeOf(seen);
  let records = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const counting: Consumer<LogBatch> = {
    async consume(batch) {
      records += batch.records.length;
      if (mode === 'read') batch.ack();
      else await exporter.consume(batch);
      if (records >= LINES) done();
    },
  };
  const head: Consumer<LogBatch> = enrich
    ? createEnrichStage({ store, next: counting, maxWaitMs: 2000, logger, metrics })
    : counting;
  const checkpoints = await openCheckpointStore(join(state, 'checkpoints'), logger);
  const receiver = createJsonFileReceiver(
    jsonFileConfigSchema.parse({ docker_root: dockerRoot, start_at: 'beginning' }),
    {
      docker: undefined as never,
      store,
      consumer: head,
      checkpoints,
      logger,
      metrics,
    },
  );
  const t0 = process.cpuUsage();
  await receiver.start();
  await finished;
  const cpu = cpuSeconds(t0);
  await receiver.shutdown();
  await exporter.shutdown();
  await checkpoints.flush();
  devNull.end();
  await rm(state, { recursive: true, force: true });
  if (records !== LINES) throw new Error(`Benchmark run lost records: ${records} of ${LINES}`);
  return LINES / cpu;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'lc-bench-logs-'));
  try {
    const dir = join(root, 'containers', ID);
    mkdirSync(dir, { recursive: true });
    const logPath = join(dir, `${ID}-json.log`);
    // Written by a child process, so the generator's garbage does not count in this process's RSS.
    const child = spawnSync(
      process.execPath,
      [import.meta.filename, '--generate', logPath, '--lines', String(LINES)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    if (child.status !== 0) throw new Error('Cannot generate the benchmark log');
    const bytes = Number(child.stdout.toString());
    console.log(`node ${process.version}, V8 flags: ${process.execArgv.join(' ') || '(none)'}`);
    console.log(`runtime: ${RUNTIME}`);
    console.log(
      `json-file log: ${LINES.toLocaleString('en')} lines, ${(bytes / 1e6).toFixed(1)} MB, ${Math.round(bytes / LINES)} B/line`,
    );
    const entry = benchEntry(ID, logPath, LABELS);
    const runs: Record<Mode, number[]> = { off: [], on: [], bypass: [], read: [] };
    peakRss = 0;
    for (let r = 0; r < ROUNDS; r++)
      for (const mode of ['off', 'on', 'bypass', 'read'] as const)
        runs[mode].push(await pipelineRun(root, entry, mode));
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const fmt = (x: number) => Math.round(x).toLocaleString('en');
    const show = (label: string, xs: number[]) =>
      console.log(`  ${label}: ${xs.map(fmt).join(', ')}  mean ${fmt(mean(xs))}`);
    console.log('\nread → [enrich] → stdout NDJSON → /dev/null, lines per CPU-second of this process:');
    show('enrichment off (container.id only)   ', runs.off);
    show('enrichment on (stage + full resource)', runs.on);
    show('enrich stage bypassed, full resource ', runs.bypass);
    show('read only (receiver, no output)      ', runs.read);
    const pct = (a: number[], b: number[]) => `${((1 - mean(a) / mean(b)) * 100).toFixed(1)} %`;
    console.log(`  overhead, on vs off (end to end)         : ${pct(runs.on, runs.off)}`);
    console.log(`  overhead of the enrich stage (on vs bypass): ${pct(runs.on, runs.bypass)}`);
    console.log(`  peak RSS during the pipeline runs: ${(peakRss / 1024 / 1024).toFixed(0)} MB`);
    console.log('  (targets: ≥ 400,000 lines/CPU-s enriched, overhead ≤ 5 %, RSS ≤ 150 MB)');
    // After the pipeline runs: it holds a few tens of MB of lines, which would blur the RSS figure.
    await parserBench(logPath);
  } finally {
    clearInterval(sampler);
    await rm(root, { recursive: true, force: true });
  }
}

if (values.generate) {
  clearInterval(sampler);
  process.stdout.write(String(await writeLog(values.generate)));
} else await main();
