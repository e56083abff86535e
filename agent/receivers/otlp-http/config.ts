import { z } from 'zod';
import { byteSize, listenAddress } from '../../config/types.ts';

/** `receivers.otlp_http`: OTLP/HTTP from applications, enriched by container association. */
export const otlpHttpReceiverConfigSchema = z.strictObject({
  listen: listenAddress.default('127.0.0.1:4318'),
  max_request_bytes: byteSize.default(16 * 1024 * 1024),
  /** When set, requests must carry `Authorization: Bearer <token>`. */
  bearer_token: z.string().min(1).optional(),
});
export type OtlpHttpReceiverConfig = z.infer<typeof otlpHttpReceiverConfigSchema>;
