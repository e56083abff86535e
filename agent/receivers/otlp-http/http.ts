import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGunzip } from 'node:zlib';
import type { BufferPool } from './pool.ts';
import { lenPrefix, varint } from './protowire.ts';

/**
 * The HTTP side of OTLP/HTTP (opentelemetry-proto specification.md): content types, bounded body
 * reading with streaming gzip, and google.rpc.Status error bodies in the request's encoding.
 */

export type Encoding = 'protobuf' | 'json';

export const CONTENT_TYPES: Readonly<Record<Encoding, string>> = {
  protobuf: 'application/x-protobuf',
  json: 'application/json',
};

/** The request's encoding from its Content-Type (parameters such as charset ignored), or undefined. */
export function encodingOf(contentType: string | undefined): Encoding | undefined {
  const type = contentType?.split(';', 1)[0]?.trim().toLowerCase();
  if (type === 'application/x-protobuf' || type === 'application/protobuf') return 'protobuf';
  if (type === 'application/json') return 'json';
  return undefined;
}

/** google.rpc.Code values used in error bodies. */
export const RPC = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** `google.rpc.Status{code = 1, message = 2}` in the given encoding. */
export function statusBody(encoding: Encoding, code: number, message: string): Buffer {
  if (encoding === 'json') return Buffer.from(JSON.stringify({ code, message }));
  const text = Buffer.from(message, 'utf8');
  return Buffer.concat([varint(1 << 3), varint(code), lenPrefix(2, text.length), text]);
}

export function sendStatus(
  res: ServerResponse,
  httpStatus: number,
  encoding: Encoding,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = statusBody(encoding, code, message);
  res.writeHead(httpStatus, {
    'content-type': CONTENT_TYPES[encoding],
    'content-length': String(body.length),
    ...headers,
  });
  res.end(body);
}

export type BodyResult =
  | {
      readonly ok: true;
      readonly body: Buffer;
      /** The pooled buffer holding `body`, when the pool was used (give it back once unused). */
      readonly buffer?: Buffer | undefined;
    }
  | { readonly ok: false; readonly status: 400 | 413; readonly message: string }
  | { readonly ok: false; readonly status: 0; readonly message: string };

/**
 * Reads the request body, gunzipping while streaming when `gzip` is set. More than `max` bytes after
 * decompression (or on the wire) stops reading at once and answers 413, so a gzip bomb is refused after
 * inflating at most `max` bytes. `onBytes` reports bytes held, for the receiver's in-flight budget.
 * Status 0: the client went away.
 */
export function readBody(
  req: IncomingMessage,
  max: number,
  gzip: boolean,
  onBytes: (n: number) => void,
  pool?: BufferPool,
): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let wire = 0;
    let settled = false;
    const gunzip = gzip ? createGunzip() : undefined;
    // A declared length lets the body go straight into one pooled buffer, without a concat. Node's
    // parser delivers exactly Content-Length bytes, so it always fits.
    const declared = Number(req.headers['content-length']);
    const target =
      !gzip && pool && Number.isInteger(declared) && declared > 0 && declared <= max
        ? pool.take(declared)
        : undefined;
    const finish = (result: BodyResult) => {
      if (settled) return;
      settled = true;
      if (!result.ok && target) pool?.give(target);
      if (!result.ok) {
        if (gunzip) {
          req.unpipe(gunzip);
          gunzip.destroy();
        }
        // Discard what the client still sends; the response closes the connection.
        req.resume();
      }
      resolve(result);
    };
    const tooLarge = () =>
      finish({
        ok: false,
        status: 413,
        message: `request body exceeds max_request_bytes (${max} bytes${gzip ? ' after decompression' : ''})`,
      });
    const source = gunzip ?? req;
    source.on('data', (chunk: Buffer) => {
      if (settled) return;
      if (size + chunk.length > max) return tooLarge();
      if (target) {
        if (size + chunk.length > declared)
          return finish({ ok: false, status: 400, message: 'request body longer than its Content-Length' });
        chunk.copy(target, size);
      } else chunks.push(chunk);
      size += chunk.length;
      onBytes(chunk.length);
    });
    source.on('end', () => {
      if (target) return finish({ ok: true, body: target.subarray(0, size), buffer: target });
      finish({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
    });
    if (gunzip) {
      req.on('data', (chunk: Buffer) => {
        wire += chunk.length;
        if (wire > max) tooLarge();
      });
      gunzip.on('error', (err) =>
        finish({ ok: false, status: 400, message: `cannot decompress the gzip body: ${err.message}` }),
      );
      req.pipe(gunzip);
    }
    req.on('error', () => finish({ ok: false, status: 0, message: 'client error' }));
    req.on('close', () => {
      if (!req.complete) finish({ ok: false, status: 0, message: 'client went away' });
    });
  });
}
