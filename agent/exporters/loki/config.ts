import { z } from 'zod';
import { byteSize, clientTls, duration, httpUrl } from '../../config/types.ts';
import { deliveryConfigSchema } from '../../pipeline/delivery/config.ts';
import { sanitizeLabelName } from './labels.ts';

/** Loki's default `max_label_names_per_series`: a stream with more labels is refused with a 400. */
export const MAX_STREAM_LABELS = 15;

/** Attributes that become stream labels unless `stream_labels` says otherwise (low cardinality). */
export const DEFAULT_STREAM_LABELS = [
  'service.name',
  'service.namespace',
  'container.name',
  'support.contact',
  'team',
] as const;

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `exporters.loki`: Grafana Loki push API (`POST /loki/api/v1/push`). */
export const lokiExporterConfigSchema = z
  .strictObject({
    /** Base URL, e.g. http://loki:3100; `/loki/api/v1/push` is appended unless the URL already ends with it. */
    endpoint: httpUrl,
    /** `protobuf`: PushRequest compressed with raw-block snappy (what Promtail and Alloy send). `json`: the JSON push body. */
    encoding: z.enum(['protobuf', 'json']).default('protobuf'),
    /** gzip the JSON body (`Content-Encoding: gzip`). Protobuf bodies are always snappy-compressed. */
    gzip: z.boolean().default(false),
    /** Sent as `X-Scope-OrgID` (multi-tenant Loki, Grafana Cloud). */
    tenant: z.string().min(1).optional(),
    basic_auth: z.strictObject({ username: z.string().min(1), password: z.string() }).optional(),
    bearer_token: z.string().min(1).optional(),
    tls: clientTls,
    /** Per request, including reading the response. */
    timeout: duration.default(10_000),
    /**
     * Container attributes that become stream labels, by attribute name; names are sanitised
     * (`support.contact` → `support_contact`). Every other attribute goes into structured metadata.
     */
    stream_labels: z.array(z.string().min(1)).default([...DEFAULT_STREAM_LABELS]),
    /** Fixed stream labels added to every stream, e.g. `{job: docker, host: node-1}`. */
    labels: z
      .record(
        z
          .string()
          .regex(LABEL_NAME, 'expected a Loki label name matching [a-zA-Z_][a-zA-Z0-9_]*')
          .refine((name) => !name.startsWith('__'), 'label names starting with __ are reserved by Loki'),
        z.string().min(1).max(2048),
      )
      .default({}),
    /** Longer lines are cut to this many bytes and get `labelcast_truncated="true"` in structured metadata. */
    max_line_size: byteSize.default(256 * 1024),
    /** Batching, queue, disk spool, retries and shutdown: see docs/delivery.md. */
    delivery: deliveryConfigSchema,
  })
  .superRefine((cfg, ctx) => {
    if (cfg.basic_auth !== undefined && cfg.bearer_token !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['bearer_token'],
        message: 'set either basic_auth or bearer_token, not both',
      });
    }
    if (cfg.gzip && cfg.encoding === 'protobuf') {
      ctx.addIssue({
        code: 'custom',
        path: ['gzip'],
        input: cfg.gzip,
        message: 'gzip applies to encoding: json only (protobuf bodies are always snappy-compressed)',
      });
    }
    if ((cfg.tls?.cert_file === undefined) !== (cfg.tls?.key_file === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: 'set cert_file and key_file together (client certificate authentication needs both)',
      });
    }
    if (cfg.max_line_size < 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_line_size'],
        input: 0,
        message: 'expected at least 1 byte',
      });
    }
    const names = new Map<string, string>();
    cfg.stream_labels.forEach((attribute, i) => {
      const name = sanitizeLabelName(attribute);
      const clash = names.get(name);
      if (clash !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['stream_labels', i],
          input: attribute,
          message: `becomes label ${name}, like ${clash}: list each label once`,
        });
      }
      names.set(name, attribute);
    });
    for (const name of Object.keys(cfg.labels)) {
      if (names.has(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['labels', name],
          input: name,
          message: `static label ${name} clashes with stream label from attribute ${names.get(name)}: rename one`,
        });
      }
      names.set(name, name);
    }
    if (names.size > MAX_STREAM_LABELS) {
      ctx.addIssue({
        code: 'custom',
        path: ['stream_labels'],
        message:
          `too many stream labels: ${names.size} (stream_labels ${cfg.stream_labels.length} + static labels ` +
          `${Object.keys(cfg.labels).length}) exceeds Loki's limit of ${MAX_STREAM_LABELS} label names per ` +
          'stream; move attributes out of stream_labels (they stay queryable as structured metadata)',
      });
    }
  });
export type LokiExporterConfig = z.infer<typeof lokiExporterConfigSchema>;
