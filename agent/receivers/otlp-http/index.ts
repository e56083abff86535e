import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { context, type Span, SpanStatusCode, trace } from '@opentelemetry/api';
import type Docker from 'dockerode';
import { Counter, type Registry } from 'prom-client';
import type { ContainerEntry, MetadataStore } from '../../metadata/types.ts';
import { type Ack, type LogExporter, noAck, type Receiver } from '../../pipeline/types.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { SELF_INSTANCE_ID, selfTracer } from '../../telemetry/tracing.ts';
import { type AssociationRule, createAssociator, unwrapMappedIp } from './association.ts';
import type { OtlpHttpReceiverConfig } from './config.ts';
import { CONTENT_TYPES, type Encoding, encodingOf, RPC, readBody, sendStatus } from './http.ts';
import { logRecordsFromJson, logRecordsFromProtobuf } from './logs.ts';
import { createBufferPool } from './pool.ts';
import { ProtoWireError } from './protowire.ts';
import { type Associate, type ResourceAttributes, spliceJson, spliceProtobuf } from './splice.ts';
import { createTarget } from './target.ts';

export { type OtlpHttpReceiverConfig, otlpHttpReceiverConfigSchema } from './config.ts';

export type OtlpSignal = 'traces' | 'logs' | 'metrics';

/**
 * Where received requests go: the otlp_http exporter (`OtlpHttpExporter` satisfies this). `forward`
 * queues one already-encoded, uncompressed Export*ServiceRequest and resolves once it is accepted
 * (memory queue or spool); a pending promise is backpressure. `ack` must be called exactly once,
 * when `body` is no longer needed (sent, spooled or dropped): the receiver then reuses its buffer.
 * `saturated()` is true when the next forward would wait: the receiver then answers 503 with
 * Retry-After instead of holding the body.
 */
export interface OtlpForwarder {
  readonly name: string;
  forward(signal: OtlpSignal, body: Uint8Array, encoding: Encoding, records: number, ack: Ack): Promise<void>;
  saturated(): boolean;
}

export interface OtlpHttpReceiverDeps {
  readonly store: MetadataStore;
  /** For the `network_namespace` target: reads the agent's own container's network mode. */
  readonly docker?: Docker | undefined;
  /** Per signal, the exporters that get the enriched request bodies. A signal with none answers 404. */
  readonly forwarders: Readonly<Partial<Record<OtlpSignal, readonly OtlpForwarder[]>>>;
  /** Non-OTLP log exporters (Loki): received logs are decoded into LogRecords for them. */
  readonly logExporters?: readonly LogExporter[];
  readonly logger: Logger;
  readonly metrics: Registry;
  /** The component id (`otlp_http`, `otlp_http/app`); default `otlp_http`. */
  readonly name?: string;
}

export interface OtlpHttpReceiver extends Receiver {
  /** The bound `host:port` (the real port when `listen` asked for port 0). Throws before start(). */
  address(): string;
}

const PATHS: Readonly<Record<string, OtlpSignal>> = {
  '/v1/traces': 'traces',
  '/v1/logs': 'logs',
  '/v1/metrics': 'metrics',
};
const LIST_KEYS = {
  traces: 'resourceSpans',
  logs: 'resourceLogs',
  metrics: 'resourceMetrics',
} as const;
const JSON_ITEMS = {
  traces: ['scopeSpans', 'spans'],
  logs: ['scopeLogs', 'logRecords'],
  metrics: ['scopeMetrics', 'metrics'],
} as const;

/** Seconds a client is asked to wait when the exporter queue is full or the receiver is busy. */
const RETRY_AFTER_S = '1';
const SHUTDOWN_GRACE_MS = 5000;
/** Request bytes held at once (reading, splicing, waiting for the queue) per max_request_bytes. */
const INFLIGHT_REQUESTS = 4;

function metric<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function countJsonItems(request: Record<string, unknown>, signal: OtlpSignal): number {
  const [scopesKey, itemsKey] = JSON_ITEMS[signal];
  let n = 0;
  const list = request[LIST_KEYS[signal]];
  if (!Array.isArray(list)) return 0;
  for (const r of list as Record<string, unknown>[]) {
    const scopes = r?.[scopesKey];
    if (!Array.isArray(scopes)) continue;
    for (const s of scopes as Record<string, unknown>[]) {
      const items = s?.[itemsKey];
      if (Array.isArray(items)) n += items.length;
    }
  }
  return n;
}

/**
 * The `otlp_http` receiver: OTLP/HTTP from applications (protobuf and JSON, gzip), each Resource
 * enriched with the attributes of the container that sent it (association rules, first match wins),
 * then forwarded at the wire level to the otlp_http exporters and, for logs, decoded for Loki.
 */
export function createOtlpHttpReceiver(
  config: OtlpHttpReceiverConfig,
  deps: OtlpHttpReceiverDeps,
): OtlpHttpReceiver {
  const name = deps.name ?? 'otlp_http';
  const logger = deps.logger.child({ component: `receiver/${name}` });
  const { store } = deps;
  const rules = config.association;
  const target = createTarget(config.target, { store, docker: deps.docker });
  const associator = createAssociator(store, rules, target);
  const token = config.bearer_token === undefined ? undefined : digest(`Bearer ${config.bearer_token}`);
  const maxBytes = config.max_request_bytes;
  const inflightCap = INFLIGHT_REQUESTS * maxBytes;
  const logExporters = deps.logExporters ?? [];
  const pool = createBufferPool();

  const requests = metric(
    deps.metrics,
    'labelcast_otlp_requests_total',
    'OTLP/HTTP requests received, by signal and response status',
    ['receiver', 'signal', 'code'],
  );
  const itemsReceived = metric(
    deps.metrics,
    'labelcast_otlp_received_items_total',
    'Spans, log records and metrics received and accepted',
    ['receiver', 'signal'],
  );
  const resources = metric(
    deps.metrics,
    'labelcast_otlp_resources_total',
    'Resources received, by the association rule that matched (unmatched: forwarded unchanged; self: labelcast own)',
    ['receiver', 'signal', 'association'],
  );
  const ruleResults = metric(
    deps.metrics,
    'labelcast_otlp_association_rule_total',
    'Association rule evaluations, by rule and whether it matched',
    ['receiver', 'rule', 'result'],
  );

  let server: Server | undefined;
  let started: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;
  let closing = false;
  let inflight = 0;
  let bound = '';

  const forwardersOf = (signal: OtlpSignal): readonly OtlpForwarder[] => deps.forwarders[signal] ?? [];
  const serves = (signal: OtlpSignal): boolean =>
    forwardersOf(signal).length > 0 || (signal === 'logs' && logExporters.length > 0);

  /** One request's association: counts per rule, and container ids the store did not know yet. */
  function associateFor(peerIp: string | undefined) {
    const matched = new Map<AssociationRule, number>();
    let unmatched = 0;
    let self = 0;
    const misses = new Set<string>();
    const associate: Associate = (resource: ResourceAttributes) => {
      if (resource.get('service.instance.id') === SELF_INSTANCE_ID) {
        self++;
        return undefined;
      }
      const hit = associator.associate(resource, { peerIp });
      if (hit) {
        matched.set(hit.rule, (matched.get(hit.rule) ?? 0) + 1);
        return hit.entry;
      }
      unmatched++;
      const id = resource.get('container.id');
      if (id && rules.includes('container.id')) misses.add(id);
      return undefined;
    };
    return {
      associate,
      misses,
      get self() {
        return self;
      },
      get total() {
        return self + unmatched + [...matched.values()].reduce((a, b) => a + b, 0);
      },
      count(signal: OtlpSignal): void {
        for (const [rule, n] of matched) resources.inc({ receiver: name, signal, association: rule }, n);
        if (unmatched > 0) resources.inc({ receiver: name, signal, association: 'unmatched' }, unmatched);
        if (self > 0) resources.inc({ receiver: name, signal, association: 'self' }, self);
        // Each Resource tried the rules in order up to the one that matched.
        for (let i = 0; i < rules.length; i++) {
          const rule = rules[i] as AssociationRule;
          const hits = matched.get(rule) ?? 0;
          let missed = unmatched;
          for (let j = i + 1; j < rules.length; j++) missed += matched.get(rules[j] as AssociationRule) ?? 0;
          if (hits > 0) ruleResults.inc({ receiver: name, rule, result: 'matched' }, hits);
          if (missed > 0) ruleResults.inc({ receiver: name, rule, result: 'unmatched' }, missed);
        }
      },
    };
  }

  interface Processed {
    readonly body: Buffer;
    readonly items: number;
    readonly records: ReturnType<typeof logRecordsFromProtobuf>;
    /** The pooled buffer holding a spliced `body`; undefined when `body` is the request as received. */
    readonly buffer?: Buffer | undefined;
  }

  /** Splices one body; throws ProtoWireError / SyntaxError / TypeError for an undecodable one. */
  function process(
    signal: OtlpSignal,
    encoding: Encoding,
    raw: Buffer,
    associate: Associate,
    peerIp: string | undefined,
    withRecords: boolean,
  ): Processed {
    // Log records take the same association as the splice, without counting it twice.
    const plain: Associate = (r) =>
      r.get('service.instance.id') === SELF_INSTANCE_ID
        ? undefined
        : associator.associate(r, { peerIp })?.entry;
    if (encoding === 'protobuf') {
      const records = withRecords ? logRecordsFromProtobuf(raw, plain) : [];
      const spliced = spliceProtobuf(raw, associate, pool.take);
      return { body: spliced.body, items: spliced.items, records, buffer: spliced.buffer };
    }
    const request: unknown = JSON.parse(raw.toString('utf8'));
    if (request === null || typeof request !== 'object' || Array.isArray(request))
      throw new TypeError('expected a JSON object');
    const obj = request as Record<string, unknown>;
    const records = withRecords ? logRecordsFromJson(obj, plain) : [];
    const { matched } = spliceJson(obj, LIST_KEYS[signal], associate);
    const items = countJsonItems(obj, signal);
    // Nothing matched: forward the bytes as they came rather than a re-serialisation.
    return { body: matched === 0 ? raw : Buffer.from(JSON.stringify(obj)), items, records };
  }

  async function handleExport(
    req: IncomingMessage,
    res: ServerResponse,
    signal: OtlpSignal,
    encoding: Encoding,
    held: { bytes: number },
  ): Promise<number> {
    const forwarders = forwardersOf(signal);
    if (closing) {
      sendStatus(res, 503, encoding, RPC.UNAVAILABLE, 'the receiver is shutting down', {
        'retry-after': RETRY_AFTER_S,
      });
      return 503;
    }
    const full = forwarders.find((f) => f.saturated());
    if (full) {
      sendStatus(res, 503, encoding, RPC.UNAVAILABLE, `the queue of exporter ${full.name} is full`, {
        'retry-after': RETRY_AFTER_S,
      });
      return 503;
    }
    if (inflight >= inflightCap) {
      sendStatus(res, 429, encoding, RPC.RESOURCE_EXHAUSTED, 'too many request bytes in flight', {
        'retry-after': RETRY_AFTER_S,
      });
      return 429;
    }
    const gzip = (req.headers['content-encoding'] ?? '').trim().toLowerCase() === 'gzip';
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    if (!gzip && declared > maxBytes) {
      req.resume();
      sendStatus(
        res,
        413,
        encoding,
        RPC.RESOURCE_EXHAUSTED,
        `request body exceeds max_request_bytes (${maxBytes} bytes)`,
        {
          connection: 'close',
        },
      );
      return 413;
    }
    const read = await readBody(
      req,
      maxBytes,
      gzip,
      (n) => {
        held.bytes += n;
        inflight += n;
      },
      pool,
    );
    if (!read.ok) {
      if (read.status === 0) return 0;
      sendStatus(
        res,
        read.status,
        encoding,
        read.status === 413 ? RPC.RESOURCE_EXHAUSTED : RPC.INVALID_ARGUMENT,
        read.message,
        {
          connection: 'close',
        },
      );
      return read.status;
    }
    const startTime = performance.timeOrigin + performance.now();
    const peerIp = unwrapMappedIp(req.socket.remoteAddress);
    const toLoki = signal === 'logs' && logExporters.length > 0;
    let a = associateFor(peerIp);
    let processed: Processed;
    try {
      processed = process(signal, encoding, read.body, a.associate, peerIp, toLoki);
    } catch (err) {
      if (!(err instanceof ProtoWireError || err instanceof SyntaxError || err instanceof TypeError))
        throw err;
      if (read.buffer) pool.give(read.buffer);
      sendStatus(
        res,
        400,
        encoding,
        RPC.INVALID_ARGUMENT,
        `cannot decode the ${encoding} ${signal} request: ${err.message}`,
      );
      return 400;
    }
    // Labelcast's own spans pass through without a span of their own, or tracing would feed itself.
    const span: Span | undefined =
      a.self > 0 && a.self === a.total
        ? undefined
        : selfTracer().startSpan('otlp_http receive', {
            startTime,
            attributes: { 'otlp.signal': signal, 'otlp.encoding': encoding, 'otlp.items': processed.items },
          });
    try {
      if (a.misses.size > 0) {
        // A container.id the watcher has not reported yet: inspect it once, then splice again.
        const ids = [...a.misses];
        const parent = span ? trace.setSpan(context.active(), span) : context.active();
        // Within the receive span, so the store's Docker requests are traced as its children.
        const found = await context.with(parent, () => Promise.all(ids.map((id) => store.resolve(id))));
        if (found.some((e: ContainerEntry | undefined) => e !== undefined)) {
          if (processed.buffer) pool.give(processed.buffer);
          a = associateFor(peerIp);
          processed = process(signal, encoding, read.body, a.associate, peerIp, toLoki);
        }
      }
      a.count(signal);
      const { body, items } = processed;
      // The pooled buffer that holds what is forwarded goes back once every exporter has acked it; a
      // request buffer that is not forwarded goes back now (log records hold copied strings only).
      let owned: Buffer | undefined;
      if (processed.body === read.body) owned = read.buffer;
      else {
        owned = processed.buffer;
        if (read.buffer) pool.give(read.buffer);
      }
      let unacked = forwarders.length;
      const release = owned ? () => --unacked === 0 && pool.give(owned) : noAck;
      await Promise.all([
        ...forwarders.map((f) => f.forward(signal, body, encoding, items, release)),
        ...(toLoki && processed.records.length > 0
          ? logExporters.map((e) => e.consume({ records: processed.records.slice(), ack: noAck }))
          : []),
      ]);
      if (owned && forwarders.length === 0) pool.give(owned);
    } catch (err) {
      span?.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      span?.end();
      logger.warn({ err }, 'Cannot hand a received request to the exporters: answered 503');
      sendStatus(res, 503, encoding, RPC.UNAVAILABLE, 'the exporters cannot take the request now', {
        'retry-after': RETRY_AFTER_S,
      });
      return 503;
    }
    span?.end();
    itemsReceived.inc({ receiver: name, signal }, processed.items);
    // An empty Export*ServiceResponse: no bytes in protobuf, `{}` in JSON.
    const body = encoding === 'json' ? '{}' : '';
    res.writeHead(200, { 'content-type': CONTENT_TYPES[encoding], 'content-length': String(body.length) });
    res.end(body);
    return 200;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const signal = PATHS[path];
    const encoding = encodingOf(req.headers['content-type']);
    const errEncoding: Encoding = encoding ?? 'json';
    if (signal === undefined) {
      if ((path === '/healthz' || path === '/readyz') && (req.method === 'GET' || req.method === 'HEAD')) {
        const ready =
          path === '/healthz' ||
          (!closing && !Object.values(deps.forwarders).some((fs) => fs?.some((f) => f.saturated())));
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(ready ? 'ok\n' : 'not ready\n');
        return;
      }
      req.resume();
      const known = path === '/healthz' || path === '/readyz';
      if (known)
        sendStatus(res, 405, errEncoding, RPC.UNIMPLEMENTED, `${req.method} is not allowed on ${path}`, {
          allow: 'GET, HEAD',
        });
      else
        sendStatus(
          res,
          404,
          errEncoding,
          RPC.NOT_FOUND,
          `no such path ${path} (OTLP paths: /v1/traces, /v1/logs, /v1/metrics)`,
        );
      return;
    }
    let code: number;
    const held = { bytes: 0 };
    try {
      code = await route(req, res, signal, encoding, errEncoding, held);
    } finally {
      inflight -= held.bytes;
    }
    if (code !== 0) requests.inc({ receiver: name, signal, code: String(code) });
  }

  async function route(
    req: IncomingMessage,
    res: ServerResponse,
    signal: OtlpSignal,
    encoding: Encoding | undefined,
    errEncoding: Encoding,
    held: { bytes: number },
  ): Promise<number> {
    if (req.method !== 'POST') {
      req.resume();
      sendStatus(
        res,
        405,
        errEncoding,
        RPC.UNIMPLEMENTED,
        `${req.method} is not allowed on ${req.url}: use POST`,
        { allow: 'POST' },
      );
      return 405;
    }
    if (!serves(signal)) {
      req.resume();
      sendStatus(res, 404, errEncoding, RPC.NOT_FOUND, `no pipeline takes ${signal} from this receiver`);
      return 404;
    }
    if (token) {
      const given = digest(req.headers.authorization ?? '');
      if (!timingSafeEqual(given, token)) {
        req.resume();
        sendStatus(res, 401, errEncoding, RPC.UNAUTHENTICATED, 'missing or wrong bearer token', {
          'www-authenticate': 'Bearer',
        });
        return 401;
      }
    }
    if (encoding === undefined) {
      req.resume();
      sendStatus(
        res,
        415,
        errEncoding,
        RPC.INVALID_ARGUMENT,
        `unsupported content type ${JSON.stringify(req.headers['content-type'] ?? '')}: use application/x-protobuf or application/json`,
      );
      return 415;
    }
    const contentEncoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (contentEncoding !== 'gzip' && contentEncoding !== 'identity') {
      req.resume();
      sendStatus(
        res,
        415,
        encoding,
        RPC.INVALID_ARGUMENT,
        `unsupported content encoding ${JSON.stringify(contentEncoding)}: use gzip or none`,
      );
      return 415;
    }
    return handleExport(req, res, signal, encoding, held);
  }

  return {
    name,
    address() {
      if (!bound)
        throw new Error(
          `Cannot tell the address of receiver ${name}: it is not listening (call start() first)`,
        );
      return bound;
    },
    start() {
      if (stopped) return Promise.resolve();
      started ??= new Promise<void>((resolve, reject) => {
        const i = config.listen.lastIndexOf(':');
        const host = config.listen.slice(0, i).replace(/^\[|\]$/g, '');
        const port = Number(config.listen.slice(i + 1));
        const s = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
          handle(req, res).catch((err: unknown) => {
            logger.error({ err }, 'Cannot handle an OTLP request: answered 500');
            if (!res.headersSent) sendStatus(res, 500, 'json', 13, 'internal error');
            else res.destroy();
          });
        });
        s.once('error', (err) => {
          reject(
            new Error(
              `Cannot listen on ${config.listen} for receivers.${name}: ${err.message} (pick a free port in receivers.${name}.listen)`,
              { cause: err },
            ),
          );
        });
        s.listen(port, host, () => {
          const addr = s.address() as AddressInfo;
          bound = addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
          server = s;
          logger.info(
            { listen: bound, association: rules, target: config.target, auth: token !== undefined },
            'OTLP/HTTP receiver listening',
          );
          resolve();
        });
      });
      return started;
    },
    shutdown() {
      stopped ??= (async () => {
        closing = true;
        target.close();
        await started?.catch(() => undefined);
        const s = server;
        if (!s) return;
        // Requests still waiting for a full queue are cut off after a grace period.
        const cut = setTimeout(() => s.closeAllConnections(), SHUTDOWN_GRACE_MS);
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeIdleConnections();
        });
        clearTimeout(cut);
      })();
      return stopped;
    },
  };
}
