import { z } from 'zod';

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** A duration written as `250ms`, `2s`, `5m` or `1h`; parsed to milliseconds. */
export const duration = z.union([z.string(), z.number().nonnegative()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const m = DURATION.exec(value.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: 'expected a duration such as 250ms, 2s, 5m or 1h' });
    return z.NEVER;
  }
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
});

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i;
const UNIT_BYTES: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1_000_000,
  mib: 1024 ** 2,
  gb: 1_000_000_000,
  gib: 1024 ** 3,
};

/** A size written as a number of bytes or `64KiB`, `1MiB`, `2GB`; parsed to bytes. */
export const byteSize = z.union([z.string(), z.number().int().nonnegative()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const m = SIZE.exec(value.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: 'expected a size such as 65536, 64KiB, 1MiB or 2GB' });
    return z.NEVER;
  }
  return Math.floor(Number(m[1]) * (UNIT_BYTES[(m[2] ?? 'b').toLowerCase()] ?? 1));
});

/** `host:port` to listen on; port 0 picks a free one. */
export const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:4318');

/** An http(s) URL. */
export const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

/** Client TLS for an exporter's HTTPS endpoint. Unset: the system's CAs, no client certificate. */
export const clientTls = z
  .strictObject({
    ca_file: z.string().min(1).optional(),
    cert_file: z.string().min(1).optional(),
    key_file: z.string().min(1).optional(),
    /** Accept any server certificate. For tests only. */
    insecure_skip_verify: z.boolean().default(false),
  })
  .optional();
