import { z } from 'zod';
import { clientTls, duration, httpUrl } from '../../config/types.ts';
import { ConfigError } from '../../errors.ts';
import { deliveryConfigSchema } from '../../pipeline/delivery/config.ts';

/**
 * `exporters.otlp_http`: any OTLP/HTTP backend. Keys left unset fall back to the standard
 * `OTEL_EXPORTER_OTLP_*` environment variables (see `resolveOtlpHttpConfig`).
 */
export const otlpHttpExporterConfigSchema = z
  .strictObject({
    /** Base URL; `/v1/<signal>` is appended. Default: OTEL_EXPORTER_OTLP_ENDPOINT. */
    endpoint: httpUrl.optional(),
    /** Full URLs per signal, used as given. Default: OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT, else endpoint + /v1/<signal>. */
    logs_endpoint: httpUrl.optional(),
    traces_endpoint: httpUrl.optional(),
    metrics_endpoint: httpUrl.optional(),
    /** `protobuf` (application/x-protobuf) or `json` (the OTLP JSON mapping). */
    encoding: z.enum(['protobuf', 'json']).default('protobuf'),
    /** Request body compression. Default: OTEL_EXPORTER_OTLP_COMPRESSION, else gzip. */
    compression: z.enum(['gzip', 'none']).optional(),
    /** Extra request headers (auth, tenant). Merged over OTEL_EXPORTER_OTLP_HEADERS. */
    headers: z.record(z.string().min(1), z.string()).optional(),
    tls: clientTls,
    /** Per request. Default: OTEL_EXPORTER_OTLP_TIMEOUT (milliseconds), else 10s. */
    timeout: duration.optional(),
    /** Batching, queue, disk spool, retries and shutdown: see docs/delivery.md. */
    delivery: deliveryConfigSchema,
  })
  .superRefine((cfg, ctx) => {
    if ((cfg.tls?.cert_file === undefined) !== (cfg.tls?.key_file === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls', cfg.tls?.cert_file === undefined ? 'cert_file' : 'key_file'],
        message: 'set tls.cert_file and tls.key_file together (client certificate and its key)',
      });
    }
  })
  .prefault({});
export type OtlpHttpExporterConfig = z.infer<typeof otlpHttpExporterConfigSchema>;

export type OtlpSignal = 'logs' | 'traces' | 'metrics';

/** The exporter's settings once config and environment are merged. */
export interface ResolvedOtlpHttpConfig {
  /** The URL each signal is POSTed to. */
  readonly urls: Readonly<Record<OtlpSignal, string>>;
  readonly encoding: 'protobuf' | 'json';
  readonly compression: 'gzip' | 'none';
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

function envUrl(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  if (!value) return undefined;
  const parsed = httpUrl.safeParse(value);
  if (!parsed.success)
    throw new ConfigError(
      `Invalid ${name}: got ${JSON.stringify(value)}: expected an http:// or https:// URL`,
    );
  return parsed.data;
}

/** Parses `OTEL_EXPORTER_OTLP_HEADERS` (`k1=v1,k2=v2`, values URL-encoded, per the OTel spec). */
export function parseOtlpHeaders(
  value: string | undefined,
  name = 'OTEL_EXPORTER_OTLP_HEADERS',
): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!value?.trim()) return headers;
  for (const pair of value.split(',')) {
    if (!pair.trim()) continue;
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq).trim() : '';
    if (!key)
      throw new ConfigError(
        `Invalid ${name}: entry ${JSON.stringify(pair.trim())} is not key=value (e.g. api-key=secret)`,
      );
    try {
      headers[key.toLowerCase()] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new ConfigError(`Invalid ${name}: the value of ${key} is not URL-encoded correctly`);
    }
  }
  return headers;
}

function appendPath(base: string, signal: OtlpSignal): string {
  return `${base.replace(/\/+$/, '')}/v1/${signal}`;
}

/**
 * Merges the config with the OpenTelemetry exporter variables, config first:
 * endpoint ← OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT (as given) or OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/<signal>);
 * headers ← OTEL_EXPORTER_OTLP_HEADERS, _LOGS_HEADERS (config headers win per key);
 * compression ← OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, _COMPRESSION; timeout ← _LOGS_TIMEOUT, _TIMEOUT (ms).
 * Throws a ConfigError naming the key or variable when something is missing or malformed.
 */
export function resolveOtlpHttpConfig(
  id: string,
  config: OtlpHttpExporterConfig,
  env: NodeJS.ProcessEnv,
): ResolvedOtlpHttpConfig {
  const base = config.endpoint ?? envUrl(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const urlFor = (signal: OtlpSignal): string | undefined => {
    const key = `${signal}_endpoint` as const;
    return (
      config[key] ??
      (config.endpoint === undefined
        ? envUrl(env, `OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`)
        : undefined) ??
      (base === undefined ? undefined : appendPath(base, signal))
    );
  };
  const logs = urlFor('logs');
  if (logs === undefined)
    throw new ConfigError(
      `Cannot configure exporters.${id}: no endpoint (set exporters.${id}.endpoint, or OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)`,
    );
  const pick = (suffix: string): [string, string] | undefined => {
    for (const name of [`OTEL_EXPORTER_OTLP_LOGS_${suffix}`, `OTEL_EXPORTER_OTLP_${suffix}`]) {
      const value = env[name]?.trim();
      if (value) return [name, value];
    }
    return undefined;
  };
  let compression = config.compression;
  if (compression === undefined) {
    const fromEnv = pick('COMPRESSION');
    if (fromEnv && fromEnv[1] !== 'gzip' && fromEnv[1] !== 'none')
      throw new ConfigError(
        `Invalid ${fromEnv[0]}: got ${JSON.stringify(fromEnv[1])}: expected gzip or none`,
      );
    compression = (fromEnv?.[1] as 'gzip' | 'none' | undefined) ?? 'gzip';
  }
  let timeoutMs = config.timeout;
  if (timeoutMs === undefined) {
    const fromEnv = pick('TIMEOUT');
    if (fromEnv && !/^\d+$/.test(fromEnv[1]))
      throw new ConfigError(
        `Invalid ${fromEnv[0]}: got ${JSON.stringify(fromEnv[1])}: expected milliseconds, e.g. 10000`,
      );
    timeoutMs = fromEnv ? Number(fromEnv[1]) : DEFAULT_TIMEOUT_MS;
  }
  const headers: Record<string, string> = {
    ...parseOtlpHeaders(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseOtlpHeaders(env.OTEL_EXPORTER_OTLP_LOGS_HEADERS, 'OTEL_EXPORTER_OTLP_LOGS_HEADERS'),
  };
  for (const [key, value] of Object.entries(config.headers ?? {})) headers[key.toLowerCase()] = value;
  return {
    urls: {
      logs,
      traces: urlFor('traces') ?? appendPath(new URL(logs).origin, 'traces'),
      metrics: urlFor('metrics') ?? appendPath(new URL(logs).origin, 'metrics'),
    },
    encoding: config.encoding,
    compression,
    headers,
    timeoutMs,
  };
}
