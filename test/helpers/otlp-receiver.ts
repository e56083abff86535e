import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import {
  decodeToObject,
  ExportLogsServiceRequest,
  ExportMetricsServiceRequest,
  ExportTraceServiceRequest,
} from './otlp-proto.ts';

/** What the test receiver answers. `partialSuccess` turns a 200 into an OTLP partial success. */
export type OtlpReply =
  | {
      readonly status: 200;
      readonly partialSuccess?: { readonly rejected: number; readonly message: string };
    }
  | { readonly status: 429 | 502 | 503 | 504; readonly retryAfter?: string }
  | { readonly status: 400 | 401 | 403 | 404 | 413 | 415 | 500; readonly message?: string };

export interface ReceivedOtlpRequest {
  readonly path: string;
  readonly at: number;
  readonly contentType: string;
  readonly contentEncoding: string | undefined;
  readonly headers: IncomingMessage['headers'];
  /** Body size on the wire (compressed). */
  readonly wireBytes: number;
  /** What the receiver answered. */
  readonly reply: OtlpReply;
  /** The request decoded with the official protos (protobuf) or parsed per the OTLP JSON mapping. */
  readonly decoded: Record<string, unknown>;
}

/** One log record with its Resource, flattened for assertions. */
export interface ReceivedLogRecord {
  readonly resource: Record<string, string | string[]>;
  readonly scope: { name?: string; version?: string };
  readonly timeUnixNano: string;
  readonly observedTimeUnixNano: string;
  readonly severityNumber: number;
  readonly severityText: string | undefined;
  readonly body: string;
  readonly attributes: Record<string, string | string[]>;
}

export interface OtlpReceiver {
  /** Base URL, `http://127.0.0.1:<port>`; the exporter appends `/v1/logs`. */
  readonly url: string;
  /** Every request, including those answered with an error. */
  readonly requests: ReceivedOtlpRequest[];
  /** Sets how the next requests are answered (default: always 200). */
  respond(handler: (request: { path: string; index: number }) => OtlpReply): void;
  /** Log records of requests answered 200, in arrival order. */
  logRecords(): ReceivedLogRecord[];
  close(): Promise<void>;
}

const TYPES = {
  '/v1/logs': ExportLogsServiceRequest,
  '/v1/traces': ExportTraceServiceRequest,
  '/v1/metrics': ExportMetricsServiceRequest,
} as const;

/** google.rpc.Status {code = 1, message = 2}, protobuf. */
function rpcStatus(code: number, message: string): Buffer {
  const text = Buffer.from(message.slice(0, 120)); // one length byte
  return Buffer.concat([Buffer.from([0x08, code, 0x12, text.length]), text]);
}

interface AnyValueObject {
  stringValue?: string;
  arrayValue?: { values?: AnyValueObject[] };
}

function flatten(
  kvs: { key: string; value?: AnyValueObject }[] | undefined,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const kv of kvs ?? []) {
    const v = kv.value ?? {};
    out[kv.key] = v.arrayValue
      ? (v.arrayValue.values ?? []).map((x) => x.stringValue ?? '')
      : (v.stringValue ?? '');
  }
  return out;
}

/**
 * A spec OTLP/HTTP server on 127.0.0.1:0 for tests: `POST /v1/{logs,traces,metrics}` in protobuf or
 * JSON, gzip bodies, decoded with the official protos (opentelemetry-proto via otlp-transformer 0.52.1),
 * with programmable answers (200, partial_success, 429 + Retry-After, 503, 400…).
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const requests: ReceivedOtlpRequest[] = [];
  let handler: (request: { path: string; index: number }) => OtlpReply = () => ({ status: 200 });

  const answer = (
    res: ServerResponse,
    json: boolean,
    reply: OtlpReply,
    type: (typeof TYPES)[keyof typeof TYPES],
  ) => {
    const contentType = json ? 'application/json' : 'application/x-protobuf';
    if (reply.status === 200) {
      let body: Uint8Array = Buffer.alloc(0);
      if (reply.partialSuccess) {
        // JSON int64 as a string, per the OTLP JSON mapping.
        const partialSuccess = {
          rejectedLogRecords: String(reply.partialSuccess.rejected),
          errorMessage: reply.partialSuccess.message,
        };
        const response = responseType(type);
        body = json
          ? Buffer.from(JSON.stringify({ partialSuccess }))
          : response.encode(response.fromObject({ partialSuccess })).finish();
      } else if (json) body = Buffer.from('{}');
      res.writeHead(200, { 'content-type': contentType }).end(body);
      return;
    }
    const headers: Record<string, string> = { 'content-type': contentType };
    if ('retryAfter' in reply && reply.retryAfter !== undefined) headers['retry-after'] = reply.retryAfter;
    const message = ('message' in reply && reply.message) || `test receiver answered ${reply.status}`;
    res
      .writeHead(reply.status, headers)
      .end(json ? JSON.stringify({ code: 3, message }) : rpcStatus(reply.status === 400 ? 3 : 14, message));
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const type = TYPES[path as keyof typeof TYPES];
      if (req.method !== 'POST' || !type) {
        res.writeHead(404).end();
        return;
      }
      const contentType = String(req.headers['content-type'] ?? '');
      const json = contentType.startsWith('application/json');
      if (!json && !contentType.startsWith('application/x-protobuf')) {
        res.writeHead(415).end();
        return;
      }
      const wire = Buffer.concat(chunks);
      let decoded: Record<string, unknown>;
      try {
        const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(wire) : wire;
        decoded = json
          ? decodeToObject(type, type.encode(type.fromObject(JSON.parse(body.toString('utf8')))).finish())
          : decodeToObject(type, body);
      } catch (err) {
        res.writeHead(400, { 'content-type': contentType }).end(rpcStatus(3, (err as Error).message));
        return;
      }
      const reply = handler({ path, index: requests.length });
      requests.push({
        path,
        at: Date.now(),
        contentType,
        contentEncoding: req.headers['content-encoding'],
        headers: req.headers,
        wireBytes: wire.length,
        reply,
        decoded,
      });
      answer(res, json, reply, type);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond(next) {
      handler = next;
    },
    logRecords() {
      const out: ReceivedLogRecord[] = [];
      for (const request of requests) {
        if (request.path !== '/v1/logs' || request.reply.status !== 200) continue;
        const resourceLogs = (request.decoded.resourceLogs ?? []) as {
          resource?: { attributes?: { key: string; value?: AnyValueObject }[] };
          scopeLogs?: {
            scope?: { name?: string; version?: string };
            logRecords?: {
              timeUnixNano?: string;
              observedTimeUnixNano?: string;
              severityNumber?: number;
              severityText?: string;
              body?: AnyValueObject;
              attributes?: { key: string; value?: AnyValueObject }[];
            }[];
          }[];
        }[];
        for (const rl of resourceLogs) {
          const resource = flatten(rl.resource?.attributes);
          for (const sl of rl.scopeLogs ?? [])
            for (const lr of sl.logRecords ?? [])
              out.push({
                resource,
                scope: sl.scope ?? {},
                timeUnixNano: lr.timeUnixNano ?? '0',
                observedTimeUnixNano: lr.observedTimeUnixNano ?? '0',
                severityNumber: lr.severityNumber ?? 0,
                severityText: lr.severityText,
                body: lr.body?.stringValue ?? '',
                attributes: flatten(lr.attributes),
              });
        }
      }
      return out;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// biome-ignore lint/suspicious/noExplicitAny: generated protobufjs module without usable types
const collector: any = createRequire(import.meta.url)(
  '@opentelemetry/otlp-transformer/build/src/generated/root.js',
).opentelemetry.proto.collector;

const RESPONSES = new Map<unknown, (typeof TYPES)[keyof typeof TYPES]>([
  [ExportLogsServiceRequest, collector.logs.v1.ExportLogsServiceResponse],
  [ExportTraceServiceRequest, collector.trace.v1.ExportTraceServiceResponse],
  [ExportMetricsServiceRequest, collector.metrics.v1.ExportMetricsServiceResponse],
]);

/** The Export*ServiceResponse type paired with a request type. */
function responseType(type: (typeof TYPES)[keyof typeof TYPES]): (typeof TYPES)[keyof typeof TYPES] {
  return RESPONSES.get(type) as (typeof TYPES)[keyof typeof TYPES];
}
