import { z } from 'zod';
import { lokiExporterConfigSchema } from '../exporters/loki/config.ts';
import { otlpHttpExporterConfigSchema } from '../exporters/otlp-http/config.ts';
import { stdoutExporterConfigSchema } from '../exporters/stdout/config.ts';
import { mappingConfigSchema, metadataConfigSchema } from '../metadata/config.ts';
import { dockerLogsConfigSchema } from '../receivers/docker-logs/config.ts';
import { fluentForwardConfigSchema } from '../receivers/fluent-forward/config.ts';
import { jsonFileConfigSchema } from '../receivers/json-file/config.ts';
import { otlpHttpReceiverConfigSchema } from '../receivers/otlp-http/config.ts';
import { duration, httpUrl, listenAddress } from './types.ts';

/** Component ids are `type` or `type/name` (as in the OpenTelemetry Collector), e.g. `loki/eu`. */
const componentId = (types: readonly string[]) =>
  z.string().refine((id) => types.includes(id.split('/')[0] ?? ''), {
    message: `expected one of ${types.join(', ')} (optionally followed by /NAME)`,
  });

export const RECEIVER_TYPES = ['json_file', 'docker_logs', 'fluent_forward', 'otlp_http'] as const;
export const EXPORTER_TYPES = ['stdout', 'loki', 'otlp_http'] as const;

/** The config schema of each receiver type, keyed by type. */
export const receiverSchemas = {
  json_file: jsonFileConfigSchema,
  docker_logs: dockerLogsConfigSchema,
  fluent_forward: fluentForwardConfigSchema,
  otlp_http: otlpHttpReceiverConfigSchema,
} as const;
/** The config schema of each exporter type, keyed by type. */
export const exporterSchemas = {
  stdout: stdoutExporterConfigSchema,
  loki: lokiExporterConfigSchema,
  otlp_http: otlpHttpExporterConfigSchema,
} as const;

/** Validates each `receivers.<id>` / `exporters.<id>` entry with the schema of its type. */
function componentMap<T extends Record<string, z.ZodType>>(schemas: T) {
  const types = Object.keys(schemas);
  return z.record(componentId(types), z.unknown()).transform((entries, ctx) => {
    const out: Record<string, unknown> = {};
    for (const [id, value] of Object.entries(entries)) {
      const schema = schemas[id.split('/')[0] as keyof T] as z.ZodType;
      // `stdout:` with nothing after it means "this component, with its defaults".
      const parsed = schema.safeParse(value ?? {});
      if (parsed.success) out[id] = parsed.data;
      else
        for (const issue of parsed.error.issues)
          ctx.addIssue({ ...issue, path: [id, ...issue.path] } as never);
    }
    return out;
  });
}

const pipelineSchema = z.strictObject({
  receivers: z.array(z.string()).min(1),
  exporters: z.array(z.string()).min(1),
});

export const configSchema = z
  .strictObject({
    docker: z
      .strictObject({
        /** unix:///path or tcp://host:port; default DOCKER_HOST, then unix:///var/run/docker.sock. */
        host: z
          .string()
          .regex(/^(unix:\/\/\/|tcp:\/\/).+/, 'expected unix:///path/to/docker.sock or tcp://HOST:PORT')
          .optional(),
        tls_verify: z.boolean().optional(),
        cert_path: z.string().optional(),
      })
      .prefault({}),
    /** Checkpoints and the disk spool live here. */
    state_dir: z.string().min(1).default('/var/lib/labelcast'),
    metadata: metadataConfigSchema,
    mapping: mappingConfigSchema,
    enrich: z
      .strictObject({
        /** How long a record of a not-yet-known container is held for its metadata. */
        max_wait: duration.default(2000),
        /** Skip the agent's own container (found through its cgroup / hostname). */
        exclude_self: z.boolean().default(true),
      })
      .prefault({}),
    receivers: componentMap(receiverSchemas).default({}),
    exporters: componentMap(exporterSchemas).default({}),
    pipelines: z.partialRecord(z.enum(['logs', 'traces', 'metrics']), pipelineSchema).default({}),
    telemetry: z
      .strictObject({
        log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        /** Prometheus /metrics listener; unset disables it. */
        metrics_listen: listenAddress.optional(),
        /** labelcast's own traces (agent/telemetry/tracing.ts); also enabled by OTEL_TRACES_EXPORTER=otlp. */
        traces: z
          .strictObject({
            enabled: z.boolean().default(false),
            /** Base URL; `/v1/traces` is appended. Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _ENDPOINT. */
            endpoint: httpUrl.optional(),
          })
          .prefault({}),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    for (const [signal, pipeline] of Object.entries(cfg.pipelines)) {
      pipeline.receivers.forEach((id, i) => {
        if (!(id in cfg.receivers)) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipelines', signal, 'receivers', i],
            input: id,
            message: `unknown receiver (defined: ${Object.keys(cfg.receivers).join(', ') || 'none'})`,
          });
        }
      });
      pipeline.exporters.forEach((id, i) => {
        if (!(id in cfg.exporters)) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipelines', signal, 'exporters', i],
            input: id,
            message: `unknown exporter (defined: ${Object.keys(cfg.exporters).join(', ') || 'none'})`,
          });
        }
      });
    }
  });

export type Config = z.infer<typeof configSchema>;
