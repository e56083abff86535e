import { z } from 'zod';
import { byteSize } from '../../config/types.ts';

/** `receivers.docker_logs`: follow `/containers/{id}/logs` over the API (remote or rootless engines). */
export const dockerLogsConfigSchema = z
  .strictObject({
    /**
     * Where a container with no checkpoint starts: its whole log, or only lines logged after the
     * receiver started (by the agent's clock).
     */
    start_at: z.enum(['beginning', 'end']).default('end'),
    /** A line joined from the engine's 16 KiB pieces is cut at this size. */
    max_line_bytes: byteSize.default(1024 * 1024),
  })
  .prefault({});
export type DockerLogsConfig = z.infer<typeof dockerLogsConfigSchema>;
