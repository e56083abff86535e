/** What an Export*ServiceResponse's `partial_success` says; undefined when it is absent or empty. */
export interface PartialSuccess {
  /** rejected_log_records / rejected_spans / rejected_data_points. */
  readonly rejected: number;
  readonly message: string;
}

function readVarint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new RangeError('truncated varint');
    const byte = buf[pos++] as number;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, pos];
    shift += 7;
    if (shift > 63) throw new RangeError('varint too long');
  }
}

/** Skips one field of `wireType` at `pos`; returns the new position. */
function skip(buf: Buffer, pos: number, wireType: number): number {
  if (wireType === 0) return readVarint(buf, pos)[1];
  if (wireType === 1) return pos + 8;
  if (wireType === 5) return pos + 4;
  if (wireType === 2) {
    const [len, at] = readVarint(buf, pos);
    return at + len;
  }
  throw new RangeError(`unsupported wire type ${wireType}`);
}

/**
 * Reads `partial_success` from an OTLP response. All three signals share the layout
 * `{partial_success = 1 {rejected_* = 1 (int64), error_message = 2}}`, and the JSON names differ only
 * in the rejected field. Undecodable bodies count as no partial success (the request was accepted).
 */
export function parsePartialSuccess(body: Buffer, contentType: string): PartialSuccess | undefined {
  try {
    if (contentType.includes('json')) {
      const parsed = JSON.parse(body.toString('utf8')) as { partialSuccess?: Record<string, unknown> };
      const p = parsed.partialSuccess;
      if (!p) return undefined;
      const rejected = Number(p.rejectedLogRecords ?? p.rejectedSpans ?? p.rejectedDataPoints ?? 0);
      const message = typeof p.errorMessage === 'string' ? p.errorMessage : '';
      return rejected > 0 || message
        ? { rejected: Number.isFinite(rejected) ? rejected : 0, message }
        : undefined;
    }
    let pos = 0;
    while (pos < body.length) {
      const [tag, at] = readVarint(body, pos);
      if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
        pos = skip(body, at, tag & 7);
        continue;
      }
      const [len, start] = readVarint(body, at);
      const end = start + len;
      let rejected = 0;
      let message = '';
      let p = start;
      while (p < end) {
        const [t, q] = readVarint(body, p);
        if (t === 0x08) [rejected, p] = readVarint(body, q);
        else if (t === 0x12) {
          const [l, s] = readVarint(body, q);
          message = body.toString('utf8', s, s + l);
          p = s + l;
        } else p = skip(body, q, t & 7);
      }
      return rejected > 0 || message ? { rejected, message } : undefined;
    }
    return undefined;
  } catch {
    return undefined;
  }
}
