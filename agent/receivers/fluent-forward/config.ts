import { z } from 'zod';
import { byteSize, listenAddress } from '../../config/types.ts';

/** `receivers.fluent_forward`: the target of Docker's fluentd log driver. */
export const fluentForwardConfigSchema = z.strictObject({
  listen: listenAddress.default('127.0.0.1:24224'),
  /** Optional unix socket path, in addition to TCP. */
  socket: z.string().optional(),
  /**
   * Per connection: the largest Forward message accepted, and how many bytes of records may wait for the
   * pipeline; beyond that the receiver stops acking and reading (TCP backpressure).
   */
  max_buffer_bytes: byteSize.default(8 * 1024 * 1024),
  max_line_bytes: byteSize.default(1024 * 1024),
});
export type FluentForwardConfig = z.infer<typeof fluentForwardConfigSchema>;
