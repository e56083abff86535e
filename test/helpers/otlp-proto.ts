import { createRequire } from 'node:module';

/**
 * The independent OTLP decoder for tests: protobufjs code generated from the official
 * opentelemetry-proto files, shipped in @opentelemetry/otlp-transformer 0.52.1 (REFERENCE.md §3).
 */
// biome-ignore lint/suspicious/noExplicitAny: generated protobufjs module without usable types
const root: any = createRequire(import.meta.url)(
  '@opentelemetry/otlp-transformer/build/src/generated/root.js',
);

interface MessageType {
  decode(buf: Uint8Array): unknown;
  encode(message: unknown): { finish(): Uint8Array };
  fromObject(obj: unknown): unknown;
  toObject(message: unknown, options?: Record<string, unknown>): Record<string, unknown>;
}

const collector = root.opentelemetry.proto.collector;
export const ExportTraceServiceRequest: MessageType = collector.trace.v1.ExportTraceServiceRequest;
export const ExportLogsServiceRequest: MessageType = collector.logs.v1.ExportLogsServiceRequest;
export const ExportMetricsServiceRequest: MessageType = collector.metrics.v1.ExportMetricsServiceRequest;

/** Decodes to plain objects with longs as strings and bytes as hex, for deep comparisons. */
export function decodeToObject(type: MessageType, body: Uint8Array): Record<string, unknown> {
  return type.toObject(type.decode(body), { longs: String, bytes: String, defaults: false, arrays: true });
}
