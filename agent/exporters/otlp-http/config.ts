import { z } from 'zod';
import { httpUrl } from '../../config/types.ts';

/** `exporters.otlp_http`: any OTLP/HTTP backend. Unset keys fall back to OTEL_EXPORTER_OTLP_* variables. */
export const otlpHttpExporterConfigSchema = z.strictObject({
  /** Base URL; `/v1/<signal>` is appended. */
  endpoint: httpUrl.optional(),
});
export type OtlpHttpExporterConfig = z.infer<typeof otlpHttpExporterConfigSchema>;
