import { z } from 'zod';
import { byteSize } from '../../config/types.ts';

/** `receivers.json_file`: tail the engine's json-file logs from disk. */
export const jsonFileConfigSchema = z
  .strictObject({
    /** The engine's data root; LogPath from inspect is re-rooted here when the agent sees a mounted copy. */
    docker_root: z.string().default('/var/lib/docker'),
    /** Where a container with no checkpoint starts: its whole log, or only new lines. */
    start_at: z.enum(['beginning', 'end']).default('end'),
    /** A line joined from 16 KiB partials is cut at this size. */
    max_line_bytes: byteSize.default(1024 * 1024),
  })
  .prefault({});
export type JsonFileConfig = z.infer<typeof jsonFileConfigSchema>;
