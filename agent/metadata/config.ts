import { z } from 'zod';
import { duration } from '../config/types.ts';

/** `metadata`: the container/image caches the watcher keeps. */
export const metadataConfigSchema = z
  .strictObject({
    max_containers: z.number().int().positive().default(10_000),
    max_images: z.number().int().positive().default(2_000),
    /** How long a removed container stays resolvable, so late logs are still enriched. */
    tombstone_grace: duration.default(5 * 60_000),
    /** How long an id the engine does not know is answered from memory. */
    negative_ttl: duration.default(10_000),
  })
  .prefault({});
export type MetadataConfig = z.infer<typeof metadataConfigSchema>;

/** `mapping`: which labels become which attributes. See the README's mapping table. */
export const mappingConfigSchema = z
  .strictObject({
    labels: z
      .strictObject({
        /** Globs over label keys; matching labels are emitted as `container.label.<key>`. */
        include: z.array(z.string().min(1)).default(['*']),
        exclude: z.array(z.string().min(1)).default([]),
      })
      .prefault({}),
    /** Globs over label keys (case-insensitive) whose values are replaced by `[REDACTED]` everywhere. */
    redact: z.array(z.string().min(1)).default(['*password*', '*secret*', '*token*', '*key*']),
    /** Longer label values are cut to this many characters. */
    max_value_length: z.number().int().positive().default(1024),
    /** Ownership attributes, each from the first present label key in its list. */
    ownership: z.record(z.string().min(1), z.array(z.string().min(1)).min(1)).default({
      'support.contact': ['io.labelcast.contact', 'org.opencontainers.image.authors', 'maintainer'],
      team: ['io.labelcast.team', 'team'],
      'runbook.url': ['io.labelcast.runbook', 'org.opencontainers.image.documentation'],
    }),
  })
  .prefault({});
export type MappingConfig = z.infer<typeof mappingConfigSchema>;
