import { z } from 'zod';

/** `receivers.docker_logs`: follow `/containers/{id}/logs` over the API (remote or rootless engines). */
export const dockerLogsConfigSchema = z
  .strictObject({
    start_at: z.enum(['beginning', 'end']).default('end'),
  })
  .prefault({});
export type DockerLogsConfig = z.infer<typeof dockerLogsConfigSchema>;
