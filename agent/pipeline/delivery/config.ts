import { z } from 'zod';
import { byteSize, duration } from '../../config/types.ts';

/**
 * `exporters.<id>.delivery`: batching, the in-memory queue, the disk spool, retries and shutdown.
 * Every exporter that sends over the network embeds this schema under its `delivery` key.
 */
export const deliveryConfigSchema = z
  .strictObject({
    /** A batch is sent when its records reach this many bytes (before encoding)… */
    max_batch_bytes: byteSize.default(1024 * 1024),
    /** …or when its oldest record is this old. */
    max_delay: duration.default(1000),
    /** Requests in flight at once for this exporter. */
    concurrency: z.number().int().min(1).max(64).default(4),
    /** Encoded payloads held in memory (queued or in flight); beyond this they go to the spool. */
    queue_bytes: byteSize.default(32 * 1024 * 1024),
    spool: z
      .strictObject({
        /** Disk cap of `<state_dir>/spool/<exporter id>/`; 0 disables the spool (memory only). */
        max_bytes: byteSize.default(1024 ** 3),
        /** At the cap: `block` applies backpressure to receivers; `drop_oldest` deletes the oldest segment (counted). */
        policy: z.enum(['block', 'drop_oldest']).default('block'),
        /** Size at which a new segment file is started. */
        segment_bytes: byteSize.default(16 * 1024 * 1024),
      })
      .prefault({}),
    retry: z
      .strictObject({
        /** First backoff after a retryable failure; doubled each time, with ±20 % jitter. */
        initial_interval: duration.default(500),
        max_interval: duration.default(30_000),
        /** Give up (drop, counted) after this long; 0 retries until delivered or spooled at shutdown. */
        max_elapsed_time: duration.default(0),
      })
      .prefault({}),
    /** On shutdown, how long to keep sending before the rest is spooled. */
    shutdown_timeout: duration.default(5000),
  })
  .prefault({});
export type DeliveryConfig = z.infer<typeof deliveryConfigSchema>;
