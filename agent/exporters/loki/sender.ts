import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ConfigError } from '../../errors.ts';
import { parseRetryAfter } from '../../pipeline/delivery/retry.ts';
import type { Payload, Sender } from '../../pipeline/delivery/types.ts';
import type { LokiExporterConfig } from './config.ts';

export const PUSH_PATH = '/loki/api/v1/push';

/** Loki's 400 messages (pkg/validation/validate.go) mapped to its own bounded reason names. */
const REJECTION_REASONS: readonly (readonly [RegExp, string])[] = [
  [/Max entry size .* exceeded|line too long/i, 'line_too_long'],
  [/at least one label pair is required/i, 'missing_labels'],
  [/label names; limit/i, 'max_label_names_per_series'],
  [/label name too long/i, 'label_name_too_long'],
  [/label value too long/i, 'label_value_too_long'],
  [/duplicate label name/i, 'duplicate_label_names'],
  [/error parsing labels|invalid labels|invalid label/i, 'invalid_labels'],
  [/structured metadata too large/i, 'structured_metadata_too_large'],
  [/too many structured metadata/i, 'structured_metadata_too_many'],
  [/timestamp too old/i, 'greater_than_max_sample_age'],
  [/timestamp too new/i, 'too_far_in_future'],
  [/too far behind|out of order/i, 'out_of_order'],
];

/** The reason name of a permanent rejection, from the status and Loki's error text. */
export function rejectionReason(status: number, body: string): string {
  if (status === 413) return 'request_too_large';
  if (status === 400) {
    for (const [pattern, reason] of REJECTION_REASONS) if (pattern.test(body)) return reason;
    return 'bad_request';
  }
  return `http_${status}`;
}

/** Where to POST: the base URL plus the push path, unless the URL already names it. */
export function pushUrl(endpoint: string): URL {
  const url = new URL(endpoint);
  if (!url.pathname.endsWith(PUSH_PATH)) url.pathname = `${url.pathname.replace(/\/+$/, '')}${PUSH_PATH}`;
  return url;
}

type SenderConfig = Pick<
  LokiExporterConfig,
  'endpoint' | 'tenant' | 'basic_auth' | 'bearer_token' | 'tls' | 'timeout'
>;

function readTlsFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(
      `Cannot read tls.${key} ${path}: ${(err as Error).message} (check the path and the agent's permissions)`,
      { cause: err },
    );
  }
}

function readBody(res: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      if (size < limit) chunks.push(chunk);
      size += chunk.length;
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8', 0, Math.min(size, limit))));
    res.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/**
 * Builds the HTTP side of one Loki exporter: headers, auth, TLS and Loki's response rules. One
 * `send` is one POST: 2xx (Loki answers 204) is success; 429, 5xx and network errors are retryable
 * (Loki sends no Retry-After, so the delivery backs off with jitter); 400, 413 and other 4xx are
 * permanent, with Loki's reason (`line_too_long`, `greater_than_max_sample_age`…) in `reason`.
 */
export function createLokiSender(config: SenderConfig): Sender {
  const url = pushUrl(config.endpoint);
  const https = url.protocol === 'https:';
  const tls = config.tls;
  const agent = https
    ? new HttpsAgent({
        keepAlive: true,
        ...(tls?.ca_file === undefined ? {} : { ca: readTlsFile(tls.ca_file, 'ca_file') }),
        ...(tls?.cert_file === undefined ? {} : { cert: readTlsFile(tls.cert_file, 'cert_file') }),
        ...(tls?.key_file === undefined ? {} : { key: readTlsFile(tls.key_file, 'key_file') }),
        rejectUnauthorized: !(tls?.insecure_skip_verify ?? false),
      })
    : new HttpAgent({ keepAlive: true });
  const request = https ? httpsRequest : httpRequest;
  const headers: Record<string, string> = { 'User-Agent': 'labelcast' };
  if (config.tenant !== undefined) headers['X-Scope-OrgID'] = config.tenant;
  if (config.basic_auth !== undefined) {
    const { username, password } = config.basic_auth;
    headers.Authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  } else if (config.bearer_token !== undefined) {
    headers.Authorization = `Bearer ${config.bearer_token}`;
  }
  // One error message per reason, carrying Loki's first text for it: the delivery logs each distinct
  // message once, so every reason is logged once with a real example and then only counted.
  const reasonErrors = new Map<string, string>();

  const post = (payload: Payload, signal: AbortSignal) =>
    new Promise<{ status: number; body: string; retryAfter: string | undefined }>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          agent,
          signal,
          headers: { ...headers, ...payload.headers, 'Content-Length': String(payload.body.length) },
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const retryAfter = res.headers['retry-after'];
          // Success bodies are empty; error bodies are short texts worth reading for the reason.
          readBody(res, status >= 200 && status < 300 ? 0 : 4096).then(
            (body) => resolve({ status, body: body.trim(), retryAfter }),
            reject,
          );
        },
      );
      req.on('error', reject);
      req.end(payload.body);
    });

  return {
    async send(payload, signal) {
      const timeout = AbortSignal.timeout(config.timeout);
      let res: Awaited<ReturnType<typeof post>>;
      try {
        res = await post(payload, AbortSignal.any([signal, timeout]));
      } catch (err) {
        const detail = timeout.aborted ? `no answer within ${config.timeout} ms` : (err as Error).message;
        return {
          status: 'retryable',
          error: new Error(`Cannot push to Loki at ${url.href}: ${detail}`, { cause: err }),
        };
      }
      const { status, body } = res;
      if (status >= 200 && status < 300) return { status: 'success' };
      if (status === 429 || status >= 500) {
        const error = new Error(
          `Loki at ${url.href} answered ${status}: ${body.slice(0, 300) || '(no body)'}`,
        );
        // Loki sends no Retry-After (the delivery backs off with jitter); a proxy in front of it might.
        const retryAfterMs = parseRetryAfter(res.retryAfter);
        return retryAfterMs === undefined
          ? { status: 'retryable', error }
          : { status: 'retryable', error, retryAfterMs };
      }
      const reason = rejectionReason(status, body);
      let message = reasonErrors.get(reason);
      if (message === undefined) {
        message =
          `Loki at ${url.href} refused a push with ${status} (${reason}), e.g.: ${body.slice(0, 300) || '(no body)'}; ` +
          `later refusals for ${reason} are counted in labelcast_exporter_dropped_records_total{reason="${reason}"}`;
        reasonErrors.set(reason, message);
      }
      return { status: 'failure', error: new Error(message), reason };
    },
    close() {
      agent.destroy();
    },
  };
}
