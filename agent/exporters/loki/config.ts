import { z } from 'zod';
import { httpUrl } from '../../config/types.ts';

/** `exporters.loki`: Grafana Loki push API. */
export const lokiExporterConfigSchema = z.strictObject({
  /** Base URL, e.g. http://loki:3100; `/loki/api/v1/push` is appended. */
  endpoint: httpUrl,
});
export type LokiExporterConfig = z.infer<typeof lokiExporterConfigSchema>;
