import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { AgentError, ConfigError } from '../../errors.ts';
import type { ExportResult } from '../types.ts';
import { parseRetryAfter } from './retry.ts';
import type { Payload, Sender } from './types.ts';

/** Response bodies are read up to this size, for error messages and partial-success decoding. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** TLS settings shared by the HTTP exporters (`tls:` in their config). Files are read once, at creation. */
export interface TlsOptions {
  readonly ca_file?: string | undefined;
  readonly cert_file?: string | undefined;
  readonly key_file?: string | undefined;
  /** Accept any server certificate; for tests only. */
  readonly insecure_skip_verify?: boolean | undefined;
}

export interface HttpSenderOptions {
  /** Exporter id, for error messages. */
  readonly id: string;
  /** The URL for a payload's route (e.g. `logs` → `https://otlp.example.com/v1/logs`). */
  readonly url: (route: string) => string;
  /** Sent with every request (auth, tenant…); a payload's own headers win. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly tls?: TlsOptions | undefined;
  /** Per-request timeout in milliseconds. */
  readonly timeoutMs: number;
  /** Sockets kept open per host; match the delivery's `concurrency`. */
  readonly maxSockets: number;
  /** Which non-2xx statuses are worth retrying. Default: 429, 502, 503, 504 (the OTLP rule). */
  readonly retryable?: (status: number) => boolean;
  /**
   * Inspects a 2xx response body (e.g. OTLP partial_success). Return a result to override `success`;
   * the body is empty when the server sent none.
   */
  readonly onSuccess?: (
    body: Buffer,
    headers: IncomingHttpHeaders,
    payload: Payload,
  ) => ExportResult | undefined;
  /** A short reason label for a permanent failure's `dropped` metric, from the status and body. */
  readonly failureReason?: (status: number, body: string) => string;
}

const OTLP_RETRYABLE = new Set([429, 502, 503, 504]);

function readTlsFile(id: string, key: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(
      `Cannot read exporters.${id}.tls.${key} ${path}: ${(err as Error).message} (check the path and its permissions)`,
      { cause: err },
    );
  }
}

/**
 * A `Sender` over node:http/https with keep-alive, TLS files, a timeout and the OTLP status rules:
 * 2xx success, retryable statuses honour Retry-After (seconds or HTTP date), other statuses are
 * permanent. Network errors and timeouts are retryable.
 */
export function createHttpSender(options: HttpSenderOptions): Sender {
  const tls = options.tls ?? {};
  const ca = readTlsFile(options.id, 'ca_file', tls.ca_file);
  const cert = readTlsFile(options.id, 'cert_file', tls.cert_file);
  const key = readTlsFile(options.id, 'key_file', tls.key_file);
  const common = { keepAlive: true, maxSockets: options.maxSockets };
  const httpAgent = new HttpAgent(common);
  const httpsAgent = new HttpsAgent({
    ...common,
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    rejectUnauthorized: !tls.insecure_skip_verify,
  });
  const isRetryable = options.retryable ?? ((status: number) => OTLP_RETRYABLE.has(status));
  const urls = new Map<string, URL>();

  return {
    send(payload, signal) {
      let url = urls.get(payload.route);
      if (!url) {
        url = new URL(options.url(payload.route));
        urls.set(payload.route, url);
      }
      const target = url;
      const https = target.protocol === 'https:';
      return new Promise<ExportResult>((resolve) => {
        const req = (https ? httpsRequest : httpRequest)(
          target,
          {
            method: 'POST',
            agent: https ? httpsAgent : httpAgent,
            headers: {
              ...options.headers,
              ...payload.headers,
              'content-length': String(payload.body.length),
            },
            timeout: options.timeoutMs,
            signal,
          },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (chunk: Buffer) => {
              if (size < MAX_RESPONSE_BYTES) chunks.push(chunk);
              size += chunk.length;
            });
            res.on('error', (err) => resolve({ status: 'retryable', error: err }));
            res.on('end', () => {
              const status = res.statusCode ?? 0;
              const body = Buffer.concat(chunks);
              if (status >= 200 && status < 300) {
                resolve(options.onSuccess?.(body, res.headers, payload) ?? { status: 'success' });
                return;
              }
              const text = body.toString('utf8', 0, Math.min(body.length, 512)).replace(/\s+/g, ' ').trim();
              const error = new AgentError(
                'LABELCAST_ERR_EXPORT',
                `Cannot export to ${target.origin}${target.pathname}: HTTP ${status} ${res.statusMessage ?? ''}${text ? `: ${text}` : ''}`,
                { retryable: isRetryable(status) },
              );
              if (isRetryable(status)) {
                const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
                resolve(
                  retryAfterMs === undefined
                    ? { status: 'retryable', error }
                    : { status: 'retryable', error, retryAfterMs },
                );
              } else {
                resolve({
                  status: 'failure',
                  error,
                  reason: options.failureReason?.(status, text) ?? `http_${status}`,
                });
              }
            });
          },
        );
        req.on('timeout', () =>
          req.destroy(
            new AgentError(
              'LABELCAST_ERR_EXPORT',
              `Cannot export to ${target.origin}: no answer within ${options.timeoutMs} ms`,
              {
                retryable: true,
              },
            ),
          ),
        );
        req.on('error', (err) => resolve({ status: 'retryable', error: err }));
        req.end(payload.body);
      });
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
