import { z } from 'zod';

/** `exporters.stdout`: one NDJSON line per record, shaped like the OpenTelemetry log data model. */
export const stdoutExporterConfigSchema = z.strictObject({}).prefault({});
export type StdoutExporterConfig = z.infer<typeof stdoutExporterConfigSchema>;
