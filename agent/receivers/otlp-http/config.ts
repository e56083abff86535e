import { z } from 'zod';
import { byteSize, listenAddress } from '../../config/types.ts';

const RULES = ['container.id', 'host.name', 'peer_ip', 'target'] as const;

/**
 * `target:` for sidecar mode, one of:
 * - `network_namespace`: the container whose network namespace the agent shares;
 * - `name:<container name>`, `id:<full or short id>`, `label:<key>=<value>`.
 */
const TARGET = /^(network_namespace|name:.+|id:[0-9a-f]{12,64}|label:[^=]+=.*)$/;

export const targetSpec = z
  .string()
  .regex(TARGET, 'expected network_namespace, name:NAME, id:CONTAINER_ID or label:KEY=VALUE');

/** `receivers.otlp_http`: OTLP/HTTP from applications, enriched by container association. */
export const otlpHttpReceiverConfigSchema = z
  .strictObject({
    /** Loopback by default; binding to all interfaces (`0.0.0.0:4318`) is an explicit choice. */
    listen: listenAddress.default('127.0.0.1:4318'),
    /** Checked after gzip decompression, while streaming: larger bodies get 413. */
    max_request_bytes: byteSize.default(16 * 1024 * 1024),
    /** When set, requests must carry `Authorization: Bearer <token>`. */
    bearer_token: z.string().min(1).optional(),
    /** Association rules tried in order, first match wins; `[]` forwards everything unchanged. */
    association: z
      .array(z.enum(RULES))
      .refine((rules) => new Set(rules).size === rules.length, 'expected each rule at most once')
      .default(['container.id', 'host.name', 'peer_ip', 'target']),
    /** The fixed container of the `target` rule (sidecar mode); unset: the rule matches nothing. */
    target: targetSpec.optional(),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.target !== undefined && !cfg.association.includes('target')) {
      ctx.addIssue({
        code: 'custom',
        path: ['association'],
        input: cfg.association,
        message: 'target is set but the target rule is not in association (add target to the list)',
      });
    }
  });
export type OtlpHttpReceiverConfig = z.infer<typeof otlpHttpReceiverConfigSchema>;
