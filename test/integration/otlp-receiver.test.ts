import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter as OTLPLogExporterJson } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as OTLPLogExporterProto } from '@opentelemetry/exporter-logs-otlp-proto';
import { OTLPTraceExporter as OTLPTraceExporterJson } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPTraceExporterProto } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import { lokiExporterConfigSchema } from '../../agent/exporters/loki/config.ts';
import { createLokiExporter } from '../../agent/exporters/loki/index.ts';
import { otlpHttpExporterConfigSchema } from '../../agent/exporters/otlp-http/config.ts';
import { createOtlpHttpExporter, type OtlpHttpExporter } from '../../agent/exporters/otlp-http/index.ts';
import type { Metadata } from '../../agent/metadata/index.ts';
import type { ContainerEntry } from '../../agent/metadata/types.ts';
import { otlpHttpReceiverConfigSchema } from '../../agent/receivers/otlp-http/config.ts';
import { createOtlpHttpReceiver, type OtlpHttpReceiver } from '../../agent/receivers/otlp-http/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { startSelfTelemetry } from '../../agent/telemetry/tracing.ts';
import { postSpanFrom } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { post, type Reply } from '../helpers/http.ts';
import { startLokiReceiver } from '../helpers/loki-receiver.ts';
import { engineClient, startMetadata } from '../helpers/metadata.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { createTestNetwork } from '../helpers/test-network.ts';
import { waitFor } from '../helpers/wait.ts';

let engine: Engine;
let docker: Docker;
let metadata: Metadata;
let dir: string;

before(async () => {
  engine = await startEngine();
  dir = await mkdtemp(join(tmpdir(), 'lc-otlp-recv-'));
  docker = engineClient(engine);
  metadata = await startMetadata(docker);
});

after(async () => {
  await metadata?.watcher.shutdown();
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A running labelled container the store knows (with its IPs when on a network). */
async function runContainer(...args: string[]): Promise<ContainerEntry> {
  const id = await engine.docker('run', '-d', ...args);
  return waitFor(`container ${id.slice(0, 12)} in the store`, () => {
    const entry = metadata.store.get(id);
    return entry?.running ? entry : undefined;
  });
}

interface Agent {
  receiver: OtlpHttpReceiver;
  exporter: OtlpHttpExporter;
  metrics: Registry;
  close(): Promise<void>;
}

/** otlp_http receiver → otlp_http exporter → `upstream`, in this process, as the agent wires them. */
async function startAgent(
  upstream: OtlpReceiver,
  receiverConfig: Record<string, unknown> = {},
  exporterConfig: Record<string, unknown> = {},
): Promise<Agent> {
  const metrics = new Registry();
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const exporter = createOtlpHttpExporter(
    'otlp_http',
    otlpHttpExporterConfigSchema.parse({
      endpoint: upstream.url,
      delivery: { max_delay: '50ms', retry: { initial_interval: '100ms' } },
      ...exporterConfig,
    }),
    { logger: silentLogger(), metrics, stateDir },
    {},
  );
  const receiver = createOtlpHttpReceiver(
    otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0', ...receiverConfig }),
    {
      store: metadata.store,
      docker,
      forwarders: { traces: [exporter], logs: [exporter], metrics: [exporter] },
      logger: silentLogger(),
      metrics,
    },
  );
  await exporter.start();
  await receiver.start();
  return {
    receiver,
    exporter,
    metrics,
    async close() {
      await receiver.shutdown();
      await exporter.shutdown();
    },
  };
}

// ---- decoded OTLP, normalised for comparison ----

interface KeyValue {
  key: string;
  value?: Record<string, unknown>;
}

function anyValue(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('arrayValue' in v)
    return ((v.arrayValue as { values?: Record<string, unknown>[] }).values ?? []).map(anyValue);
  return undefined;
}

const attrs = (kvs: KeyValue[] | undefined): Record<string, unknown> =>
  Object.fromEntries((kvs ?? []).map((kv) => [kv.key, anyValue(kv.value)]));

/** Protobuf bytes decode as base64; forwarded OTLP/JSON already carries hex (which round-trips as is). */
const hex = (id: unknown, json: boolean): string =>
  json ? String(id) : Buffer.from(String(id), 'base64').toString('hex');

const nanos = (t: [number, number]): string => (BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])).toString();

interface DecodedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: KeyValue[];
  events?: { timeUnixNano: string; name: string; attributes?: KeyValue[] }[];
  links?: { traceId: string; spanId: string; attributes?: KeyValue[] }[];
  status?: { code?: number; message?: string };
}

interface ReceivedSpans {
  resource: Record<string, unknown>;
  spans: DecodedSpan[];
  json: boolean;
}

function receivedSpans(upstream: OtlpReceiver): ReceivedSpans[] {
  const out: ReceivedSpans[] = [];
  for (const r of upstream.requests) {
    if (r.path !== '/v1/traces') continue;
    const json = r.contentType.startsWith('application/json');
    for (const rs of (r.decoded.resourceSpans ?? []) as {
      resource?: { attributes?: KeyValue[] };
      scopeSpans?: { spans?: DecodedSpan[] }[];
    }[]) {
      out.push({
        resource: attrs(rs.resource?.attributes),
        spans: (rs.scopeSpans ?? []).flatMap((s) => s.spans ?? []),
        json,
      });
    }
  }
  return out;
}

/** Every SDK span arrived intact: ids, parent, name, kind, times, attributes, events, links, status. */
function assertSpansIntact(sent: ReadableSpan[], got: ReceivedSpans): void {
  assert.equal(got.spans.length, sent.length);
  for (const span of sent) {
    const ctx = span.spanContext();
    const d = got.spans.find((s) => hex(s.spanId, got.json) === ctx.spanId);
    assert.ok(d, `span ${span.name} arrived`);
    assert.equal(hex(d.traceId, got.json), ctx.traceId);
    assert.equal(d.parentSpanId ? hex(d.parentSpanId, got.json) : undefined, span.parentSpanContext?.spanId);
    assert.equal(d.name, span.name);
    assert.equal(d.kind, span.kind + 1);
    assert.equal(d.startTimeUnixNano, nanos(span.startTime));
    assert.equal(d.endTimeUnixNano, nanos(span.endTime));
    assert.deepEqual(attrs(d.attributes), span.attributes);
    assert.deepEqual(
      (d.events ?? []).map((e) => ({ name: e.name, time: e.timeUnixNano, attributes: attrs(e.attributes) })),
      span.events.map((e) => ({ name: e.name, time: nanos(e.time), attributes: e.attributes ?? {} })),
    );
    assert.deepEqual(
      (d.links ?? []).map((l) => ({
        traceId: hex(l.traceId, got.json),
        spanId: hex(l.spanId, got.json),
        attributes: attrs(l.attributes),
      })),
      span.links.map((l) => ({
        traceId: l.context.traceId,
        spanId: l.context.spanId,
        attributes: l.attributes ?? {},
      })),
    );
    assert.equal(d.status?.code ?? 0, span.status.code);
    assert.equal(d.status?.message ?? '', span.status.message ?? '');
  }
}

/** A real OpenTelemetry JS SDK client: a server span with a child, events, links and mixed attributes. */
async function sendTraces(
  protocol: 'json' | 'proto',
  url: string,
  resource: Record<string, string>,
): Promise<ReadableSpan[]> {
  const memory = new InMemorySpanExporter();
  const exporter =
    protocol === 'json' ? new OTLPTraceExporterJson({ url }) : new OTLPTraceExporterProto({ url });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(resource),
    spanProcessors: [new SimpleSpanProcessor(memory), new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('checkout', '1.4.0');
  const parent = tracer.startSpan('POST /pay', {
    kind: SpanKind.SERVER,
    attributes: {
      'http.route': '/pay',
      'http.status_code': 502,
      retried: true,
      ratio: 0.25,
      tags: ['a', 'b'],
    },
    links: [
      {
        context: { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), traceFlags: 1 },
        attributes: { 'link.reason': 'batch' },
      },
    ],
  });
  parent.addEvent('retry', { attempt: 2 });
  const child = tracer.startSpan(
    'SELECT orders',
    { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql' } },
    trace.setSpan(context.active(), parent),
  );
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'deadlock' });
  child.end();
  parent.end();
  await provider.forceFlush();
  // The in-memory exporter forgets its spans at shutdown.
  const spans = memory.getFinishedSpans().slice() as ReadableSpan[];
  await provider.shutdown();
  return spans;
}

/** The container's attributes, except service.name/version that an application sets itself. */
function assertEnriched(
  resource: Record<string, unknown>,
  entry: ContainerEntry,
  kept: Record<string, string>,
): void {
  for (const [key, value] of Object.entries(entry.attributes)) {
    if (key in kept) continue;
    assert.deepEqual(resource[key], value, `resource attribute ${key}`);
  }
  for (const [key, value] of Object.entries(kept)) assert.equal(resource[key], value, `app's ${key} kept`);
}

describe('OTLP from real OpenTelemetry SDK clients', () => {
  let upstream: OtlpReceiver;
  let agent: Agent;
  let app: ContainerEntry;

  before(async () => {
    upstream = await startOtlpReceiver();
    agent = await startAgent(upstream, {}, { compression: 'none' });
    app = await runContainer('--network', 'none', '--label', 'io.labelcast.team=checkout', TEST_IMAGES.app);
  });
  after(async () => {
    await agent?.close();
    await upstream?.close();
  });

  for (const protocol of ['proto', 'json'] as const) {
    test(`traces over OTLP/${protocol} with container.id get the container's attributes and every span arrives intact`, async () => {
      const from = upstream.requests.length;
      const sent = await sendTraces(protocol, `http://${agent.receiver.address()}/v1/traces`, {
        'service.name': 'unknown_service:node',
        'service.version': '9.9.9-app',
        'container.id': app.id,
      });
      // The SDK's SimpleSpanProcessor sends one request per span.
      const got = await waitFor('the forwarded spans', () => {
        const all = receivedSpans({ requests: upstream.requests.slice(from) } as OtlpReceiver);
        return all.flatMap((r) => r.spans).length >= sent.length ? all : undefined;
      });
      for (const r of got) assert.deepEqual(r.resource, got[0]?.resource);
      const rs: ReceivedSpans = { ...(got[0] as ReceivedSpans), spans: got.flatMap((r) => r.spans) };
      assert.equal(rs.json, protocol === 'json', 'forwarded in the encoding it came in');
      assert.equal(rs.resource['service.name'], 'api', 'unknown_service* is replaced by the image title');
      assert.equal(rs.resource['vcs.ref.head.revision'], APP_REVISION);
      assert.equal(rs.resource['container.label.io.labelcast.team'], 'checkout');
      assertEnriched(rs.resource, app, { 'service.version': '9.9.9-app' });
      assertSpansIntact(sent, rs);
    });
  }

  for (const protocol of ['proto', 'json'] as const) {
    test(`logs over OTLP/${protocol} get the container's attributes and every record arrives intact`, async () => {
      const from = upstream.requests.length;
      const url = `http://${agent.receiver.address()}/v1/logs`;
      const exporter =
        protocol === 'json' ? new OTLPLogExporterJson({ url }) : new OTLPLogExporterProto({ url });
      const provider = new LoggerProvider({
        resource: resourceFromAttributes({ 'container.id': app.shortId }),
        processors: [new SimpleLogRecordProcessor({ exporter })],
      });
      const logger = provider.getLogger('payments', '2.0.0');
      logger.emit({
        body: 'payment declined',
        severityNumber: SeverityNumber.WARN,
        severityText: 'WARN',
        attributes: { 'order.id': 'o-17', amount: 12 },
        timestamp: 1_733_300_000_123,
      });
      await provider.forceFlush();
      await provider.shutdown();
      await waitFor(
        'the forwarded logs',
        () => upstream.requests.slice(from).some((r) => r.path === '/v1/logs') || undefined,
      );
      const record = upstream.logRecords().at(-1);
      assert.ok(record);
      assert.equal(
        upstream.requests.at(-1)?.contentType,
        protocol === 'json' ? 'application/json' : 'application/x-protobuf',
      );
      assertEnriched(record.resource, app, { 'container.id': app.shortId });
      assert.equal(record.body, 'payment declined');
      assert.equal(record.severityNumber, SeverityNumber.WARN);
      assert.equal(record.severityText, 'WARN');
      assert.equal(record.timeUnixNano, '1733300000123000000');
      assert.equal(record.attributes['order.id'], 'o-17');
      assert.equal(record.scope.name, 'payments');
      assert.equal(record.scope.version, '2.0.0');
    });
  }

  test('host.name equal to a container hostname or its short id associates the Resource', async () => {
    const named = await runContainer('--network', 'none', '--hostname', 'payments-7', TEST_IMAGES.legacy);
    const from = upstream.requests.length;
    const json = JSON.stringify({
      resourceSpans: [named.hostname, app.shortId].map((host) => ({
        resource: { attributes: [{ key: 'host.name', value: { stringValue: host } }] },
        scopeSpans: [{ spans: [{ traceId: '0a'.repeat(16), spanId: '0b'.repeat(8), name: host }] }],
      })),
    });
    const reply = await post(agent.receiver.address(), '/v1/traces', json, {
      'content-type': 'application/json',
    });
    assert.equal(reply.status, 200);
    await waitFor('the forwarded spans', () => upstream.requests.length > from || undefined);
    const [first, second] = receivedSpans({ requests: upstream.requests.slice(from) } as OtlpReceiver);
    assert.equal(first?.resource['container.id'], named.id);
    assert.equal(first?.resource['host.name'], 'payments-7');
    assert.equal(second?.resource['container.id'], app.id);
    assert.match(
      await agent.metrics.metrics(),
      /labelcast_otlp_resources_total\{[^}]*association="host.name"\} 2/,
    );
  });

  test('a container.id the store has not seen yet is inspected on demand, and an unknown one is forwarded unchanged', async () => {
    const id = await engine.docker('create', '--network', 'none', TEST_IMAGES.base);
    const from = upstream.requests.length;
    const body = (cid: string) =>
      JSON.stringify({
        resourceSpans: [
          {
            resource: { attributes: [{ key: 'container.id', value: { stringValue: cid } }] },
            scopeSpans: [{ spans: [{ traceId: '0c'.repeat(16), spanId: '0d'.repeat(8), name: 'x' }] }],
          },
        ],
      });
    const headers = { 'content-type': 'application/json' };
    assert.equal((await post(agent.receiver.address(), '/v1/traces', body(id), headers)).status, 200);
    assert.equal(
      (await post(agent.receiver.address(), '/v1/traces', body('f'.repeat(64)), headers)).status,
      200,
    );
    await waitFor('two forwarded requests', () => upstream.requests.length >= from + 2 || undefined);
    const [known, unknown] = receivedSpans({ requests: upstream.requests.slice(from) } as OtlpReceiver);
    assert.equal(known?.resource['container.image.name'], 'labelcast-test/base');
    assert.deepEqual(unknown?.resource, { 'container.id': 'f'.repeat(64) });
    await engine.docker('rm', '-f', id);
  });
});

describe('peer-IP association on a user-defined bridge network', () => {
  test('spans a container posts with busybox wget are attributed to it by its source address', async (t) => {
    const { gateway } = await createTestNetwork(engine, 'lcnet');
    const upstream = await startOtlpReceiver();
    const agent = await startAgent(upstream, { listen: `${gateway}:0` }, { compression: 'none' });
    let senderId: string | undefined;
    t.after(async () => {
      await agent.close();
      await upstream.close();
      if (senderId) await engine.docker('rm', '-f', senderId);
      await engine.docker('network', 'rm', 'lcnet');
    });
    const sender = await runContainer(
      '--network',
      'lcnet',
      '--label',
      'io.labelcast.team=edge',
      TEST_IMAGES.app,
    );
    senderId = sender.id;
    assert.ok(
      sender.ips.some((ip) => ip.startsWith(gateway.slice(0, -1))),
      `container IPs ${sender.ips.join(', ')}`,
    );
    const out = await postSpanFrom(engine, sender.id, `http://${agent.receiver.address()}/v1/traces`, {
      serviceName: 'edge-proxy',
      traceId: '1a'.repeat(16),
      spanId: '1b'.repeat(8),
      name: 'GET /',
    });
    assert.equal(out, '{}');
    await waitFor('the forwarded spans', () => upstream.requests.length > 0 || undefined);
    const [rs] = receivedSpans(upstream);
    assert.equal(rs?.resource['container.id'], sender.id);
    assert.equal(rs?.resource['service.name'], 'edge-proxy', "the app's own service.name is kept");
    assert.equal(rs?.spans[0]?.name, 'GET /');
    assert.match(
      await agent.metrics.metrics(),
      /labelcast_otlp_resources_total\{[^}]*association="peer_ip"\} 1/,
    );
  });
});

describe('bad input', () => {
  test('each gets the spec status, and the receiver keeps serving', async (t) => {
    const upstream = await startOtlpReceiver();
    const agent = await startAgent(upstream, { max_request_bytes: '1MiB', bearer_token: 'sesame' });
    t.after(async () => {
      await agent.close();
      await upstream.close();
    });
    const address = agent.receiver.address();
    const auth = { authorization: 'Bearer sesame' };
    const proto = { ...auth, 'content-type': 'application/x-protobuf' };
    const json = { ...auth, 'content-type': 'application/json' };
    const cases: [string, Promise<Reply>, number][] = [
      ['garbage protobuf', post(address, '/v1/traces', Buffer.from('\x0a\xff\xff\xff\xff'), proto), 400],
      ['invalid JSON', post(address, '/v1/logs', '{"resourceLogs":', json), 400],
      [
        'wrong content type',
        post(address, '/v1/traces', 'hello', { ...auth, 'content-type': 'text/plain' }),
        415,
      ],
      ['oversize body', post(address, '/v1/traces', Buffer.alloc(2 * 1024 * 1024, 1), proto), 413],
      [
        'gzip bomb',
        post(address, '/v1/traces', gzipSync(Buffer.alloc(256 * 1024 * 1024)), {
          ...proto,
          'content-encoding': 'gzip',
        }),
        413,
      ],
      [
        'no token',
        post(address, '/v1/traces', Buffer.alloc(0), { 'content-type': 'application/x-protobuf' }),
        401,
      ],
      ['unknown path', post(address, '/v1/profiles', Buffer.alloc(0), proto), 404],
    ];
    for (const [what, reply, status] of cases) assert.equal((await reply).status, status, what);
    const ok = await post(address, '/v1/traces', Buffer.alloc(0), proto);
    assert.equal(ok.status, 200, 'an empty request is still accepted afterwards');
    const text = await agent.metrics.metrics();
    assert.match(text, /labelcast_otlp_requests_total\{receiver="otlp_http",signal="traces",code="413"\} 2/);
  });
});

describe('backpressure', () => {
  test('a full exporter queue answers 503 with Retry-After and holds no more request bodies', async (t) => {
    const upstream = await startOtlpReceiver();
    upstream.respond(() => ({ status: 503 }));
    const agent = await startAgent(
      upstream,
      {},
      {
        compression: 'none',
        delivery: {
          queue_bytes: '64KiB',
          spool: { max_bytes: 0 },
          retry: { initial_interval: '10s' },
          shutdown_timeout: '100ms',
        },
      },
    );
    t.after(async () => {
      await agent.close();
      await upstream.close();
    });
    const span = (i: number) => ({
      traceId: 'ee'.repeat(16),
      spanId: i.toString(16).padStart(16, '0'),
      name: 'x'.repeat(1000),
    });
    const body = JSON.stringify({
      resourceSpans: [
        { resource: {}, scopeSpans: [{ spans: Array.from({ length: 100 }, (_, i) => span(i)) }] },
      ],
    });
    const statuses: number[] = [];
    let retryAfter: unknown;
    for (let i = 0; i < 40; i++) {
      const reply = await post(agent.receiver.address(), '/v1/traces', body, {
        'content-type': 'application/json',
      });
      statuses.push(reply.status);
      if (reply.status === 503) retryAfter = reply.headers['retry-after'];
    }
    assert.equal(statuses[0], 200);
    assert.equal(statuses.filter((s) => s === 503).length, 39, `statuses ${statuses.join(',')}`);
    assert.equal(retryAfter, '1');
    // Only the one accepted request is held, however many were refused.
    const queued = (await agent.metrics.getSingleMetricAsString('labelcast_exporter_queue_bytes')) ?? '';
    const held = Number(/ (\d+)$/m.exec(queued)?.[1] ?? Number.NaN);
    assert.ok(held <= body.length + 1024, `queue holds ${held} bytes`);
  });
});

describe('self-telemetry', () => {
  test("labelcast's own traces reach an OTLP receiver when enabled, and nothing is sent when not", async (t) => {
    const upstream = await startOtlpReceiver();
    const selfSink = await startOtlpReceiver();
    const agent = await startAgent(upstream, {}, { compression: 'none' });
    t.after(async () => {
      await agent.close();
      await upstream.close();
      await selfSink.close();
    });
    const body = JSON.stringify({ resourceSpans: [{ resource: {}, scopeSpans: [{ spans: [] }] }] });
    const headers = { 'content-type': 'application/json' };
    const env = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${selfSink.url}/v1/traces` };

    const off = startSelfTelemetry({
      config: {},
      env,
      logger: silentLogger(),
      receiverListens: [agent.receiver.address()],
    });
    assert.equal(off, undefined);
    assert.equal((await post(agent.receiver.address(), '/v1/traces', body, headers)).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(selfSink.requests.length, 0);

    const on = startSelfTelemetry({
      config: {},
      env: { ...env, OTEL_TRACES_EXPORTER: 'otlp' },
      logger: silentLogger(),
      receiverListens: [agent.receiver.address()],
      docker,
    });
    assert.ok(on);
    assert.equal((await post(agent.receiver.address(), '/v1/traces', body, headers)).status, 200);
    // A container.id the store does not know: the receiver asks Docker, and that request is traced too.
    const unknown = JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'container.id', value: { stringValue: 'd'.repeat(64) } }] },
          scopeSpans: [{ spans: [] }],
        },
      ],
    });
    assert.equal((await post(agent.receiver.address(), '/v1/traces', unknown, headers)).status, 200);
    // The exporter's deliveries are traced as well.
    await waitFor('both requests upstream', () => (upstream.requests.length >= 3 ? true : undefined));
    await on.shutdown();
    const got = receivedSpans(selfSink);
    assert.ok(got.length > 0);
    for (const r of got) {
      assert.equal(r.resource['service.name'], 'labelcast');
      assert.match(String(r.resource['service.instance.id']), /^[0-9a-f-]{36}$/);
    }
    const spans = got.flatMap((r) => r.spans);
    const receives = spans.filter((s) => s.name === 'otlp_http receive');
    assert.equal(receives.length, 2);
    const inspect = spans.find((s) => s.name === 'docker GET /containers/{id}/json');
    assert.ok(inspect, `spans: ${spans.map((s) => s.name).join(', ')}`);
    assert.equal(inspect.parentSpanId, receives[1]?.spanId, 'the Docker lookup is a child of the request');
    assert.equal(inspect.status?.code, 2, 'the engine answered 404');
    const exports = spans.filter((s) => s.name === 'export');
    assert.ok(exports.length >= 2, `spans: ${spans.map((s) => s.name).join(', ')}`);
    assert.equal(attrs(exports[0]?.attributes)['labelcast.exporter'], 'otlp_http');
    assert.equal(attrs(exports[0]?.attributes)['labelcast.export.outcome'], 'done');
  });
});

describe('OTLP logs to Loki', () => {
  test('received logs become Loki entries of the sending container under the collected-logs label policy', async (t) => {
    const loki = await startLokiReceiver();
    const metrics = new Registry();
    const stateDir = await mkdtemp(join(dir, 'state-'));
    const exporter = createLokiExporter(
      'loki',
      lokiExporterConfigSchema.parse({ endpoint: loki.url, delivery: { max_delay: '50ms' } }),
      { logger: silentLogger(), metrics, stateDir },
    );
    const receiver = createOtlpHttpReceiver(otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0' }), {
      store: metadata.store,
      forwarders: {},
      logExporters: [exporter],
      logger: silentLogger(),
      metrics,
    });
    await exporter.start();
    await receiver.start();
    const app = await runContainer(
      '--network',
      'none',
      '--label',
      'io.labelcast.contact=oncall@example.com',
      TEST_IMAGES.app,
    );
    t.after(async () => {
      await receiver.shutdown();
      await exporter.shutdown();
      await loki.close();
      await engine.docker('rm', '-f', app.id);
    });
    const provider = new LoggerProvider({
      resource: resourceFromAttributes({ 'container.id': app.id }),
      processors: [
        new SimpleLogRecordProcessor({
          exporter: new OTLPLogExporterProto({ url: `http://${receiver.address()}/v1/logs` }),
        }),
      ],
    });
    provider.getLogger('payments').emit({
      body: 'card declined',
      severityNumber: SeverityNumber.ERROR,
      severityText: 'ERROR',
      attributes: { 'order.id': 'o-99' },
      timestamp: 1_733_300_000_456,
    });
    await provider.forceFlush();
    await provider.shutdown();
    const [entry] = await waitFor('the Loki entry', () =>
      loki.entries.length > 0 ? loki.entries : undefined,
    );
    assert.equal(entry?.line, 'card declined');
    assert.equal(entry?.timestampNs, 1_733_300_000_456_000_000n);
    assert.equal(entry?.labels.container_name, app.name);
    assert.equal(entry?.labels.support_contact, 'oncall@example.com');
    assert.equal(entry?.labels.service_name, 'api');
    assert.equal(entry?.structuredMetadata.container_id, app.id);
    assert.equal(entry?.structuredMetadata.vcs_ref_head_revision, APP_REVISION);
    assert.equal(entry?.structuredMetadata.severity_text, 'ERROR');
    assert.equal(entry?.structuredMetadata.order_id, 'o-99');
  });
});
