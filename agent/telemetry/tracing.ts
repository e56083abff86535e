import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { type Attributes, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type Docker from 'dockerode';
import pkg from '../../package.json' with { type: 'json' };
import { ConfigError } from '../errors.ts';
import type { Attributes as ContainerAttributes } from '../metadata/types.ts';
import type { Logger } from './logger.ts';

/**
 * Self-telemetry: labelcast traces its own work (received OTLP requests and the Docker lookups they
 * cause, every Docker API request) with @opentelemetry/sdk-node. Off by default. Until startSelfTelemetry() registers the SDK,
 * `selfTracer()` is the API's no-op tracer, so instrumented code costs next to nothing.
 */

/** This process's `service.instance.id`: the otlp_http receiver never enriches a Resource carrying it. */
export const SELF_INSTANCE_ID = randomUUID();
export const SELF_SERVICE_NAME = 'labelcast';

/** The current tracer; fetched per use so a restarted SDK (tests) is picked up, not a cached one. */
export function selfTracer(): Tracer {
  return trace.getTracer('labelcast', pkg.version);
}

/** Runs `fn` in an active span named `name`; a rejection marks the span as an error and is rethrown. */
export function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return selfTracer().startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** `telemetry.traces` in the config. */
export interface SelfTracesConfig {
  readonly enabled?: boolean | undefined;
  /** Base URL; `/v1/traces` is appended. Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _ENDPOINT. */
  readonly endpoint?: string | undefined;
}

export interface SelfTelemetryOptions {
  readonly config: SelfTracesConfig;
  readonly env: NodeJS.ProcessEnv;
  readonly logger: Logger;
  /** The `listen` addresses of this agent's otlp_http receivers: self-traces must not go there. */
  readonly receiverListens: readonly string[];
  /** The agent's own container's attributes, when it runs in a container. */
  readonly container?: ContainerAttributes | undefined;
  /** The Docker client: each API request (inspect, list, history) becomes a span; streams do not. */
  readonly docker?: Docker | undefined;
}

export interface SelfTelemetry {
  /** The URL spans are exported to. */
  readonly endpoint: string;
  /** Flushes buffered spans and unregisters the SDK. */
  shutdown(): Promise<void>;
}

/**
 * On when `telemetry.traces.enabled` is true or OTEL_TRACES_EXPORTER lists `otlp`; OTEL_SDK_DISABLED=true
 * or OTEL_TRACES_EXPORTER=none turn it off. An unset OTEL_TRACES_EXPORTER means off here (unlike the SDK
 * default), because OTEL_EXPORTER_OTLP_ENDPOINT alone already configures where *received* data goes.
 */
export function selfTracesEnabled(config: SelfTracesConfig, env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (exporters.includes('none')) return false;
  return config.enabled === true || exporters.includes('otlp');
}

/** Where the OTLP/HTTP trace exporter will send, by the OTel rules (a per-signal URL is used as given). */
export function selfTracesEndpoint(config: SelfTracesConfig, env: NodeJS.ProcessEnv): string {
  const base = (url: string) => `${url.replace(/\/+$/, '')}/v1/traces`;
  if (config.endpoint) return base(config.endpoint);
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT) return base(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  return 'http://localhost:4318/v1/traces';
}

// The SDK and its exporter weigh about 55 MB of RSS once loaded, and self-telemetry is off by default:
// they are loaded only when it is enabled (synchronously, so starting it stays a plain call).
const require = createRequire(import.meta.url);
type SdkModules = {
  NodeSDK: typeof import('@opentelemetry/sdk-node').NodeSDK;
  OTLPTraceExporter: typeof import('@opentelemetry/exporter-trace-otlp-http').OTLPTraceExporter;
  resourceFromAttributes: typeof import('@opentelemetry/resources').resourceFromAttributes;
};
function loadSdk(): SdkModules {
  const { NodeSDK } = require('@opentelemetry/sdk-node') as typeof import('@opentelemetry/sdk-node');
  const { OTLPTraceExporter } =
    require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } =
    require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  return { NodeSDK, OTLPTraceExporter, resourceFromAttributes };
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1', '[::1]', '0.0.0.0', '::', '[::]']);

/** True when `url` reaches a listener bound to `listen` on this host. */
function pointsAt(url: string, listen: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i);
  const port = listen.slice(i + 1);
  const urlPort = u.port || (u.protocol === 'https:' ? '443' : '80');
  if (urlPort !== port) return false;
  const h = u.hostname;
  if (h === host || h === host.replace(/^\[|\]$/g, '')) return true;
  // 0.0.0.0 / :: listen on every address, including loopback.
  return LOOPBACK.has(h) && LOOPBACK.has(host);
}

/**
 * Starts the SDK when enabled (see selfTracesEnabled); returns undefined when off. Throws ConfigError
 * when the exporter would send to this agent's own otlp_http receiver: each forwarded batch would be
 * traced, and its span received and forwarded again, forever.
 */
export function startSelfTelemetry(options: SelfTelemetryOptions): SelfTelemetry | undefined {
  const { config, env, logger } = options;
  if (!selfTracesEnabled(config, env)) return undefined;
  const endpoint = selfTracesEndpoint(config, env);
  const own = options.receiverListens.find((listen) => pointsAt(endpoint, listen));
  if (own !== undefined) {
    throw new ConfigError(
      `Cannot send labelcast's own traces to ${endpoint}: that is its own otlp_http receiver (${own}), which would trace its own forwarding in a loop (set telemetry.traces.endpoint or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to a collector or backend)`,
    );
  }
  const { NodeSDK, OTLPTraceExporter, resourceFromAttributes } = loadSdk();
  const resource = resourceFromAttributes({ ...(options.container ?? {}) } as Record<
    string,
    string | string[]
  >).merge(
    resourceFromAttributes({
      'service.name': SELF_SERVICE_NAME,
      'service.version': pkg.version,
      'service.instance.id': SELF_INSTANCE_ID,
    }),
  );
  const sdk = new NodeSDK({
    resource,
    autoDetectResources: false,
    traceExporter: new OTLPTraceExporter({ url: endpoint }),
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  const untrace = options.docker ? traceDockerRequests(options.docker) : () => {};
  logger.info({ component: 'telemetry/tracing', endpoint }, 'self-telemetry: exporting own traces');
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    shutdown() {
      untrace();
      stopped ??= sdk.shutdown().then(() => {
        trace.disable();
      });
      return stopped;
    },
  };
}

interface DialOptions {
  readonly path?: string;
  readonly method?: string;
  readonly isStream?: boolean;
  readonly hijack?: boolean;
}
type Dial = (options: DialOptions, callback?: (err: unknown, data: unknown) => void) => unknown;

/** `/containers/<id>/json?` → `/containers/{id}/json`: span names stay few, whatever the ids. */
export function dockerRoute(path: string): string {
  const bare = path.split('?', 1)[0] ?? '';
  return bare.replace(/^\/(containers|images|networks|volumes|exec)\/.+\/([a-z]+)$/, '/$1/{id}/$2');
}

/**
 * Traces the Docker client's one-shot requests at docker-modem's `dial`, the one call every dockerode
 * API method goes through. Streams (`/events`, logs) are left alone: a span per stream would last
 * for hours. Returns the function that restores the original.
 */
function traceDockerRequests(docker: Docker): () => void {
  const modem = docker.modem as unknown as { dial: Dial };
  const original = modem.dial;
  modem.dial = function (this: unknown, options, callback) {
    if (!callback || options.isStream || options.hijack) return original.call(this, options, callback);
    const method = options.method ?? 'GET';
    const route = dockerRoute(options.path ?? '/');
    const span = selfTracer().startSpan(`docker ${method} ${route}`, {
      kind: SpanKind.CLIENT,
      attributes: { 'http.request.method': method, 'url.template': route },
    });
    return original.call(this, options, (err, data) => {
      if (err) span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      span.end();
      callback(err, data);
    });
  };
  return () => {
    modem.dial = original;
  };
}
