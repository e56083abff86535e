/**
 * npm run bench:otlp   (compiled JavaScript, as the image runs; `-- --source ts` for the TypeScript sources)
 *
 * OTLP/HTTP protobuf requests of 512 spans × 10 attributes, sent by a client process to the agent (a
 * second process: the otlp_http receiver → the otlp_http exporter, compression none), which forwards
 * them to a blackhole sink (this process). Printed for association on (container.id → the container's
 * attributes spliced into the Resource) and off (pure pass-through, the baseline):
 * - spans per CPU-second of the agent process, at the maximum rate the client reaches;
 * - the latency at half that rate, p50/p99: from the client having written a request to the sink
 *   having read the forwarded one (both read CLOCK_MONOTONIC via process.hrtime). `direct` sends the
 *   same requests at the same rate straight to the sink: what the agent adds is the difference.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { otlpHttpExporterConfigSchema } from '../../agent/exporters/otlp-http/config.ts';
import { createOtlpHttpExporter } from '../../agent/exporters/otlp-http/index.ts';
import type { ContainerEntry, MetadataStore } from '../../agent/metadata/types.ts';
import { otlpHttpReceiverConfigSchema } from '../../agent/receivers/otlp-http/config.ts';
import { createOtlpHttpReceiver } from '../../agent/receivers/otlp-http/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { ExportTraceServiceRequest } from '../helpers/otlp-proto.ts';
import { RUNTIME, selectSource } from './runtime.ts';

const SPANS = 512;
const ATTRIBUTES = 10;
const CONTAINERS = 50;
const WARMUP_MS = 2000;
const MAX_RATE_MS = 6000;
const HALF_RATE_MS = 6000;
const CONCURRENCY = 4;
const ROUNDS = 3;
/** The first span's trace id ends with this; its first 4 bytes carry the request's sequence number. */
const MARKER = Buffer.alloc(12, 0xee);

const hex = (n: number) => n.toString(16).padStart(64, '0');

/** Containers with the attribute set a labelled image gives (see docs/mapping.md). */
function containers(): ContainerEntry[] {
  return Array.from({ length: CONTAINERS }, (_, i) => {
    const id = hex(i + 1);
    return {
      id,
      shortId: id.slice(0, 12),
      name: `shop-api-${i}`,
      hostname: id.slice(0, 12),
      labels: {},
      ips: [],
      running: true,
      pid: 0,
      removedAt: undefined,
      attributes: {
        'container.id': id,
        'container.name': `shop-api-${i}`,
        'container.image.name': 'ghcr.io/acme/shop-api',
        'container.image.tags': ['2.3.1', 'latest'],
        'container.image.id': `sha256:${hex(9000 + i)}`,
        'container.runtime.name': 'docker',
        'service.name': 'shop-api',
        'service.version': '2.3.1',
        'service.namespace': 'shop',
        'vcs.ref.head.revision': '3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39',
        'vcs.repository.url.full': 'https://github.com/acme/shop-api',
        'vcs.repository.name': 'shop-api',
        'vcs.owner.name': 'acme',
        'vcs.provider.name': 'github',
        'support.contact': 'oncall-shop@example.com',
        'container.label.io.labelcast.team': 'payments',
      },
    } as unknown as ContainerEntry;
  });
}

function storeOf(entries: ContainerEntry[]): MetadataStore {
  const byId = new Map<string, ContainerEntry>();
  for (const e of entries) {
    byId.set(e.id, e);
    byId.set(e.shortId, e);
  }
  return {
    get: (id) => byId.get(id) ?? byId.get(id.slice(0, 12)),
    resolve: async (id) => byId.get(id),
    byName: () => undefined,
    byHostname: (h) => byId.get(h),
    byIp: () => undefined,
    running: () => entries,
    subscribe: () => () => {},
  };
}

/** One request body as an OpenTelemetry SDK would send it, encoded with the official protos. */
function requestBody(containerId: string): Buffer {
  const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
  const spans = Array.from({ length: SPANS }, (_, i) => ({
    traceId: i === 0 ? Buffer.concat([Buffer.alloc(4), MARKER]) : Buffer.from(hex(i * 7919).slice(32), 'hex'),
    spanId: Buffer.from(hex(i + 1).slice(48), 'hex'),
    parentSpanId: Buffer.from(hex(i + 100_000).slice(48), 'hex'),
    name: `GET /api/orders/{id} ${i % 16}`,
    kind: 2,
    startTimeUnixNano: String(1_733_300_000_000_000_000n + BigInt(i) * 1000n),
    endTimeUnixNano: String(1_733_300_000_000_500_000n + BigInt(i) * 1000n),
    attributes: [
      str('http.request.method', 'GET'),
      str('http.route', '/api/orders/{id}'),
      str('url.path', `/api/orders/${100_000 + i}`),
      { key: 'http.response.status_code', value: { intValue: '200' } },
      str('server.address', 'shop-api.internal'),
      { key: 'server.port', value: { intValue: '8080' } },
      str('network.protocol.version', '1.1'),
      str('user_agent.original', 'Mozilla/5.0 (X11; Linux x86_64) bench'),
      str('client.address', '198.18.7.20'),
      str('order.id', `o-${i}`),
    ],
    status: { code: 1 },
  }));
  const message = ExportTraceServiceRequest.fromObject({
    resourceSpans: [
      {
        resource: {
          attributes: [
            str('service.name', 'unknown_service:node'),
            str('container.id', containerId),
            str('host.name', containerId.slice(0, 12)),
            str('process.runtime.name', 'nodejs'),
            str('process.runtime.version', '24.21.0'),
            str('telemetry.sdk.language', 'nodejs'),
            str('telemetry.sdk.name', 'opentelemetry'),
            str('telemetry.sdk.version', '2.12.1'),
          ],
        },
        scopeSpans: [{ scope: { name: '@opentelemetry/instrumentation-http', version: '0.223.0' }, spans }],
      },
    ],
  });
  return Buffer.from(ExportTraceServiceRequest.encode(message).finish());
}

// ---------------------------------------------------------------- agent process

async function runAgent(mode: 'enrich' | 'passthrough', sink: string): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-bench-otlp-'));
  const metrics = new Registry();
  const exporter = createOtlpHttpExporter(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({
      endpoint: sink,
      compression: 'none',
      delivery: { spool: { max_bytes: 0 } },
    }),
    { logger: silentLogger(), metrics, stateDir },
    {},
  );
  const receiver = createOtlpHttpReceiver(
    otlpHttpReceiverConfigSchema.parse({
      listen: '127.0.0.1:0',
      ...(mode === 'passthrough' ? { association: [] } : {}),
    }),
    { store: storeOf(containers()), forwarders: { traces: [exporter] }, logger: silentLogger(), metrics },
  );
  await exporter.start();
  await receiver.start();
  process.send?.({ address: receiver.address() });
  process.on('message', async (msg: { cmd: string }) => {
    if (msg.cmd === 'cpu') process.send?.({ cpu: process.cpuUsage() });
    if (msg.cmd === 'stop') {
      await receiver.shutdown();
      await exporter.shutdown();
      await rm(stateDir, { recursive: true, force: true });
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------- client process

interface ClientRun {
  readonly address: string;
  readonly durationMs: number;
  /** Requests per second; undefined: as fast as CONCURRENCY requests in flight allow. */
  readonly rate: number | undefined;
  readonly firstSeq: number;
}

async function runClient(): Promise<void> {
  const templates = containers().map((c) => requestBody(c.id));
  const markerAt = (templates[0] as Buffer).indexOf(MARKER) - 4;
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  process.on('message', async (run: ClientRun | { cmd: 'exit' }) => {
    if ('cmd' in run) process.exit(0);
    const [host, port] = run.address.split(':');
    const sent: [number, string][] = [];
    let refused = 0;
    let seq = run.firstSeq;
    const start = process.hrtime.bigint();
    const end = start + BigInt(run.durationMs) * 1_000_000n;
    const post = (n: number) =>
      new Promise<void>((resolve) => {
        const body = Buffer.from(templates[n % templates.length] as Buffer);
        body.writeUInt32BE(n, markerAt);
        const req = request(
          {
            host,
            port: Number(port),
            path: '/v1/traces',
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length },
          },
          (res) => {
            if (res.statusCode !== 200) refused++;
            res.resume();
            res.on('end', () => resolve());
          },
        );
        req.on('error', () => {
          refused++;
          resolve();
        });
        req.end(body, () => sent.push([n, String(process.hrtime.bigint())]));
      });
    if (run.rate === undefined) {
      const worker = async () => {
        while (process.hrtime.bigint() < end) await post(seq++);
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    } else {
      const interval = 1e9 / run.rate;
      const inflight = new Set<Promise<void>>();
      for (let i = 0; ; i++) {
        const due = start + BigInt(Math.round(i * interval));
        if (due >= end) break;
        const wait = Number(due - process.hrtime.bigint()) / 1e6;
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const p = post(seq++);
        inflight.add(p);
        void p.then(() => inflight.delete(p));
      }
      await Promise.all(inflight);
    }
    process.send?.({ sent, refused, elapsedNs: String(process.hrtime.bigint() - start) });
  });
  process.send?.({ ready: true });
}

// ---------------------------------------------------------------- main: sink and report

interface Sink {
  url: string;
  arrivals: Map<number, bigint>;
  spans: number;
  close(): void;
}

async function startSink(): Promise<Sink> {
  const sink: Sink = { url: '', arrivals: new Map(), spans: 0, close: () => {} };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = process.hrtime.bigint();
      const body = Buffer.concat(chunks);
      const i = body.indexOf(MARKER);
      if (i >= 4) sink.arrivals.set(body.readUInt32BE(i - 4), at);
      sink.spans += SPANS;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' });
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  sink.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return sink;
}

/** The agent runs with the V8 flags the image sets (Dockerfile NODE_OPTIONS). */
const AGENT_FLAGS = ['--max-semi-space-size=8'];

function child(role: string, ...args: string[]): ChildProcess {
  return fork(import.meta.filename, [role, ...args], {
    execArgv: role === 'agent' ? AGENT_FLAGS : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

async function message<T>(proc: ChildProcess, pick: (m: Record<string, unknown>) => boolean): Promise<T> {
  for (;;) {
    const [m] = (await once(proc, 'message')) as [Record<string, unknown>];
    if (pick(m)) return m as T;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

interface Result {
  mode: string;
  maxRate: number;
  spansPerCpuSecond: number;
  agentCpu: number;
  halfRate: number;
  p50: number;
  p99: number;
  refused: number;
}

let seq = 0;

/** Runs the client against `address` for `durationMs` at `rate` (undefined: as fast as it can). */
async function clientRun(
  client: ChildProcess,
  address: string,
  durationMs: number,
  rate: number | undefined,
) {
  const firstSeq = seq;
  client.send({ address, durationMs, rate, firstSeq } satisfies ClientRun);
  const r = await message<{ sent: [number, string][]; refused: number; elapsedNs: string }>(
    client,
    (m) => 'sent' in m,
  );
  seq = firstSeq + r.sent.length + r.refused + 1;
  // Let the last forwarded requests arrive.
  await new Promise((resolve) => setTimeout(resolve, 200));
  return r;
}

/** Client write → sink read, in ms, sorted. */
function latencies(sink: Sink, sent: [number, string][]): number[] {
  const out: number[] = [];
  for (const [n, t] of sent) {
    const arrived = sink.arrivals.get(n);
    if (arrived !== undefined) out.push(Number(arrived - BigInt(t)) / 1e6);
  }
  sink.arrivals.clear();
  return out.sort((a, b) => a - b);
}

/** The same client and sink without the agent: what the measurement itself costs at that rate. */
async function measureDirect(sink: Sink, client: ChildProcess, rate: number): Promise<Result> {
  const run = await clientRun(client, sink.url.slice('http://'.length), HALF_RATE_MS, rate);
  const l = latencies(sink, run.sent);
  return {
    mode: 'direct',
    maxRate: Number.NaN,
    spansPerCpuSecond: Number.NaN,
    agentCpu: Number.NaN,
    halfRate: rate,
    p50: percentile(l, 50),
    p99: percentile(l, 99),
    refused: run.refused,
  };
}

async function measure(mode: 'enrich' | 'passthrough', sink: Sink, client: ChildProcess): Promise<Result> {
  const agent = child('agent', mode, sink.url);
  const { address } = await message<{ address: string }>(agent, (m) => 'address' in m);
  const cpu = async () => {
    agent.send({ cmd: 'cpu' });
    const { cpu: c } = await message<{ cpu: NodeJS.CpuUsage }>(agent, (m) => 'cpu' in m);
    return (c.user + c.system) / 1e6;
  };
  const run = (durationMs: number, rate: number | undefined) => clientRun(client, address, durationMs, rate);

  await run(WARMUP_MS, undefined);
  const cpu0 = await cpu();
  const spans0 = sink.spans;
  const max = await run(MAX_RATE_MS, undefined);
  const agentCpu = (await cpu()) - cpu0;
  const forwarded = sink.spans - spans0;
  const maxRate = max.sent.length / (Number(max.elapsedNs) / 1e9);

  const halfRate = maxRate / 2;
  const half = await run(HALF_RATE_MS, halfRate);
  const l = latencies(sink, half.sent);
  agent.send({ cmd: 'stop' });
  await once(agent, 'exit');
  return {
    mode,
    maxRate,
    spansPerCpuSecond: forwarded / agentCpu,
    agentCpu,
    halfRate,
    p50: percentile(l, 50),
    p99: percentile(l, 99),
    refused: max.refused + half.refused,
  };
}

async function main(): Promise<void> {
  const sink = await startSink();
  const client = child('client');
  await message(client, (m) => 'ready' in m);
  const body = requestBody(hex(1));
  console.log(
    `OTLP/HTTP protobuf, ${SPANS} spans × ${ATTRIBUTES} attributes per request (${(body.length / 1024).toFixed(0)} KiB), ` +
      `${CONCURRENCY} client connections, ${CONTAINERS} containers in the store, exporter compression none`,
  );
  console.log(`agent process: node ${process.version}, V8 flags: ${AGENT_FLAGS.join(' ')}; ${RUNTIME}`);
  const results: Result[] = [];
  console.log(
    '\nround  mode          max req/s  spans/s    agent CPU-s  spans/CPU-s   half-rate req/s  p50         p99         refused',
  );
  const num = (n: number, digits: number, width: number) =>
    (Number.isNaN(n) ? '-' : n.toFixed(digits)).padStart(width);
  const row = (label: string, r: Result) =>
    console.log(
      `${label.padEnd(6)} ${r.mode.padEnd(13)} ${num(r.maxRate, 0, 9)}  ${num(r.maxRate * SPANS, 0, 9)}  ` +
        `${num(r.agentCpu, 2, 11)}  ${num(r.spansPerCpuSecond, 0, 11)}   ` +
        `${r.halfRate.toFixed(0).padStart(15)}  ${r.p50.toFixed(2).padStart(7)} ms ${r.p99.toFixed(2).padStart(7)} ms  ${String(r.refused).padStart(7)}`,
    );
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of ['passthrough', 'enrich'] as const) {
      const r = await measure(mode, sink, client);
      results.push(r);
      row(String(round), r);
    }
    const direct = await measureDirect(sink, client, (results.at(-1) as Result).halfRate);
    results.push(direct);
    row(String(round), direct);
  }
  client.send({ cmd: 'exit' });
  sink.close();
  // Rounds alternate the modes, so a busy neighbour hits both alike; the median of each column is the summary.
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;
  for (const mode of ['passthrough', 'enrich', 'direct'] as const) {
    const of = results.filter((r) => r.mode === mode);
    row('median', {
      mode,
      maxRate: median(of.map((r) => r.maxRate)),
      spansPerCpuSecond: median(of.map((r) => r.spansPerCpuSecond)),
      agentCpu: median(of.map((r) => r.agentCpu)),
      halfRate: median(of.map((r) => r.halfRate)),
      p50: median(of.map((r) => r.p50)),
      p99: median(of.map((r) => r.p99)),
      refused: of.reduce((a, r) => a + r.refused, 0),
    });
  }
  const med = (mode: string, key: 'p50' | 'p99') =>
    median(results.filter((r) => r.mode === mode).map((r) => r[key]));
  console.log(
    `\nadded by the agent (median, minus direct): enriched p50 ${(med('enrich', 'p50') - med('direct', 'p50')).toFixed(2)} ms, ` +
      `p99 ${(med('enrich', 'p99') - med('direct', 'p99')).toFixed(2)} ms; pass-through p50 ` +
      `${(med('passthrough', 'p50') - med('direct', 'p50')).toFixed(2)} ms, p99 ${(med('passthrough', 'p99') - med('direct', 'p99')).toFixed(2)} ms`,
  );
  console.log(
    `\n${cpus().length} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at the end`,
  );
}

const [role, ...args] = process.argv.slice(2);
if (role === 'agent') await runAgent(args[0] as 'enrich' | 'passthrough', args[1] as string);
else if (role === 'client') await runClient();
else {
  selectSource(import.meta.filename);
  await main();
}
