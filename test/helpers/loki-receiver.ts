import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import snappy from 'snappyjs';

/**
 * A Grafana Loki push endpoint written to the spec (loki-http-api.md, pkg/push/push.proto,
 * pkg/validation), for tests: it decodes what Loki decodes, refuses what Loki refuses with Loki's
 * status codes and messages, and records everything it accepted.
 */

// pkg/push/push.proto without the gogoproto options; decoded by protobufjs, independent of the agent's encoder.
const PUSH_PROTO = `
syntax = "proto3";
package logproto;
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message PushRequest { repeated StreamAdapter streams = 1; }
message StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
message LabelPairAdapter { string name = 1; string value = 2; }
message EntryAdapter {
  Timestamp timestamp = 1;
  string line = 2;
  repeated LabelPairAdapter structuredMetadata = 3;
  repeated LabelPairAdapter parsed = 4;
}
`;
const PushRequest = protobuf.parse(PUSH_PROTO, { keepCase: true }).root.lookupType('logproto.PushRequest');

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export interface LokiEntry {
  /** Stream labels, as Loki parsed them. */
  readonly labels: Record<string, string>;
  readonly timestampNs: bigint;
  readonly line: string;
  /** Structured metadata in the order sent. */
  readonly metadataPairs: readonly [string, string][];
  readonly structuredMetadata: Record<string, string>;
}

export interface LokiRequest {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly bodyBytes: number;
  /** `Date.now()` when the request arrived. */
  readonly at: number;
  readonly entries: number;
}

export interface LokiResponse {
  readonly status: number;
  readonly body?: string;
}

export interface LokiReceiverOptions {
  /** Loki `max_line_size` (default 256 KB); 0 disables the check. */
  readonly maxLineSize?: number;
  /** Loki `max_label_names_per_series` (default 15). */
  readonly maxLabelNames?: number;
  /** Decompressed body cap, answered with 413. */
  readonly maxBodyBytes?: number;
}

export interface LokiReceiver {
  /** Base URL, `http://127.0.0.1:<port>`; the push path is `/loki/api/v1/push`. */
  readonly url: string;
  /** Every entry accepted, in arrival order. */
  readonly entries: LokiEntry[];
  /** Every push request, accepted or not. */
  readonly requests: LokiRequest[];
  /** Answers the next requests with these responses, one each, before normal handling resumes. */
  enqueue(...responses: LokiResponse[]): void;
  /** Answers every request with this response until cleared with `undefined`. */
  override(response: LokiResponse | undefined): void;
  /** Resolves when at least `count` entries were accepted; rejects after `timeoutMs`. */
  waitForEntries(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

class PushError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Parses a stream selector `{a="x", b="y"}` as Loki's label parser does (Go string literals). */
export function parseSelector(text: string): [string, string][] {
  const pairs: [string, string][] = [];
  const s = text.trim();
  if (!s.startsWith('{') || !s.endsWith('}')) throw new Error('expected {...}');
  let i = 1;
  const end = s.length - 1;
  const skip = () => {
    while (i < end && (s[i] === ' ' || s[i] === ',')) i++;
  };
  skip();
  while (i < end) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`expected = after position ${i}`);
    const name = s.slice(i, eq).trim();
    i = eq + 1;
    if (s[i] !== '"') throw new Error(`expected a quoted value for ${name}`);
    let j = i + 1;
    while (j < end && s[j] !== '"') j += s[j] === '\\' ? 2 : 1;
    pairs.push([name, JSON.parse(s.slice(i, j + 1)) as string]);
    i = j + 1;
    skip();
  }
  return pairs;
}

function validateLabels(pairs: [string, string][], selector: string, maxLabelNames: number): void {
  if (pairs.length === 0) throw new PushError(400, 'error at least one label pair is required per stream');
  const seen = new Set<string>();
  for (const [name, value] of pairs) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) {
      throw new PushError(400, `Error parsing labels '${selector}' with error: invalid label name ${name}`);
    }
    if (seen.has(name)) throw new PushError(400, `stream '${selector}' has duplicate label name: '${name}'`);
    seen.add(name);
    if (Buffer.byteLength(value) > 2048) {
      throw new PushError(400, `stream '${selector}' has label value too long: '${value}'`);
    }
  }
  if (pairs.length > maxLabelNames) {
    throw new PushError(
      400,
      `entry for stream '${selector}' has ${pairs.length} label names; limit ${maxLabelNames}`,
    );
  }
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** One stream of a decoded push request, before Loki's validation. */
export interface RawStream {
  pairs: [string, string][];
  selector: string;
  entries: { ts: bigint; line: string; meta: [string, string][] }[];
}

function decodeProtobuf(body: Buffer, maxBodyBytes: number): RawStream[] {
  let raw: Uint8Array;
  try {
    raw = snappy.uncompress(new Uint8Array(body), maxBodyBytes);
  } catch (err) {
    throw new PushError(400, `snappy: ${(err as Error).message}`);
  }
  // biome-ignore lint/suspicious/noExplicitAny: protobufjs plain-object output
  const msg = PushRequest.toObject(PushRequest.decode(raw), { longs: String, defaults: true }) as any;
  type Entry = {
    timestamp?: { seconds: string; nanos: number };
    line: string;
    structuredMetadata?: { name: string; value: string }[];
  };
  return (msg.streams as { labels: string; entries: Entry[] }[]).map((st) => {
    let pairs: [string, string][];
    try {
      pairs = parseSelector(st.labels);
    } catch (err) {
      throw new PushError(400, `Error parsing labels '${st.labels}' with error: ${(err as Error).message}`);
    }
    return {
      pairs,
      selector: st.labels,
      entries: st.entries.map((e) => {
        const ts = e.timestamp ?? { seconds: '0', nanos: 0 };
        return {
          ts: BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos),
          line: e.line,
          meta: (e.structuredMetadata ?? []).map((p) => [p.name, p.value] as [string, string]),
        };
      }),
    };
  });
}

function decodeJson(body: Buffer): RawStream[] {
  let doc: { streams?: { stream?: Record<string, string>; values?: unknown[][] }[] };
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new PushError(400, `loghttp: ${(err as Error).message}`);
  }
  if (!Array.isArray(doc.streams)) throw new PushError(400, 'loghttp: expected "streams" to be an array');
  return doc.streams.map((st) => {
    const pairs = Object.entries(st.stream ?? {});
    return {
      pairs,
      selector: `{${pairs.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`,
      entries: (st.values ?? []).map((v) => {
        if (
          !Array.isArray(v) ||
          (v.length !== 2 && v.length !== 3) ||
          typeof v[0] !== 'string' ||
          typeof v[1] !== 'string'
        ) {
          throw new PushError(
            400,
            'loghttp: each value must be [timestamp, line] or [timestamp, line, {metadata}]',
          );
        }
        if (!/^\d+$/.test(v[0])) throw new PushError(400, `loghttp: invalid timestamp ${v[0]}`);
        const meta = v[2] === undefined ? [] : Object.entries(v[2] as Record<string, string>);
        return { ts: BigInt(v[0]), line: v[1], meta };
      }),
    };
  });
}

/** Decodes a push body (snappy+protobuf, or JSON; gzip first when `contentEncoding` says so). */
export function decodePushRequest(body: Buffer, contentType: string, contentEncoding?: string): RawStream[] {
  const raw = contentEncoding === 'gzip' ? gunzipSync(body) : body;
  return contentType === 'application/json' ? decodeJson(raw) : decodeProtobuf(raw, 64 * 1024 * 1024);
}

/** Starts the receiver on 127.0.0.1 with a free port. */
export async function startLokiReceiver(options: LokiReceiverOptions = {}): Promise<LokiReceiver> {
  const maxLineSize = options.maxLineSize ?? 256 * 1024;
  const maxLabelNames = options.maxLabelNames ?? 15;
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const entries: LokiEntry[] = [];
  const requests: LokiRequest[] = [];
  const queued: LokiResponse[] = [];
  let persistent: LokiResponse | undefined;
  const waiters = new Set<() => void>();

  const handle = async (
    req: IncomingMessage,
  ): Promise<{ status: number; body: string; accepted: LokiEntry[] }> => {
    if (req.url !== '/loki/api/v1/push') return { status: 404, body: '404 page not found', accepted: [] };
    if (req.method !== 'POST') return { status: 405, body: 'method not allowed', accepted: [] };
    let body = await readAll(req);
    const forced = queued.shift() ?? persistent;
    if (forced !== undefined) return { status: forced.status, body: forced.body ?? '', accepted: [] };
    try {
      const encoding = req.headers['content-encoding'];
      if (encoding === 'gzip') {
        try {
          body = gunzipSync(body, { maxOutputLength: maxBodyBytes });
        } catch (err) {
          throw new PushError(400, `gzip: ${(err as Error).message}`);
        }
      } else if (encoding !== undefined && encoding !== 'identity') {
        throw new PushError(415, `Content-Encoding ${encoding} not supported`);
      }
      if (body.length > maxBodyBytes) throw new PushError(413, 'request body too large');
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
      // Loki parses anything that is not JSON as snappy-compressed protobuf.
      const streams =
        contentType === 'application/json' ? decodeJson(body) : decodeProtobuf(body, maxBodyBytes);
      const accepted: LokiEntry[] = [];
      for (const st of streams) {
        validateLabels(st.pairs, st.selector, maxLabelNames);
        const labels = Object.fromEntries(st.pairs);
        for (const e of st.entries) {
          if (maxLineSize > 0 && Buffer.byteLength(e.line) > maxLineSize) {
            throw new PushError(
              400,
              `Max entry size '${maxLineSize}' bytes exceeded for stream '${st.selector}' while adding an entry with length '${Buffer.byteLength(e.line)}' bytes`,
            );
          }
          if (e.meta.length > 128) {
            throw new PushError(
              400,
              `stream '${st.selector}' has too many structured metadata labels: '${e.meta.length}', limit: '128'`,
            );
          }
          accepted.push({
            labels,
            timestampNs: e.ts,
            line: e.line,
            metadataPairs: e.meta,
            structuredMetadata: Object.fromEntries(e.meta),
          });
        }
      }
      return { status: 204, body: '', accepted };
    } catch (err) {
      if (err instanceof PushError) return { status: err.status, body: err.message, accepted: [] };
      return { status: 400, body: (err as Error).message, accepted: [] };
    }
  };

  const server = createServer((req, res) => {
    handle(req).then(
      ({ status, body, accepted }) => {
        const bodyBytes = Number(req.headers['content-length'] ?? 0);
        requests.push({ status, headers: req.headers, bodyBytes, at: Date.now(), entries: accepted.length });
        entries.push(...accepted);
        res.writeHead(status, body === '' ? {} : { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(body === '' ? undefined : `${body}\n`);
        for (const wake of waiters) wake();
      },
      (err: Error) => {
        res.writeHead(500);
        res.end(err.message);
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    entries,
    requests,
    enqueue(...responses) {
      queued.push(...responses);
    },
    override(response) {
      persistent = response;
    },
    waitForEntries(count, timeoutMs = 30_000) {
      if (entries.length >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const check = () => {
          if (entries.length < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`Loki receiver got ${entries.length} of ${count} entries within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
