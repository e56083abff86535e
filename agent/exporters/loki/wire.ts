/**
 * The few protobuf wire primitives the Loki PushRequest needs. Hand-written because the message is
 * tiny (strings, one Timestamp, nesting) and the per-container parts are pre-encoded once and copied.
 */

/** Bytes a base-128 varint of `n` (0 ≤ n < 2^53) takes. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes `n` as a varint at `pos`; returns the position after it. */
export function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n >= 128) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Tag byte of a length-delimited field (wire type 2); every field we write has a number below 16. */
export function lenTag(field: number): number {
  return (field << 3) | 2;
}

/** One length-delimited string field, ready to copy into a message. */
export function encodeStringField(field: number, value: string): Buffer {
  const len = Buffer.byteLength(value);
  const buf = Buffer.allocUnsafe(1 + varintSize(len) + len);
  buf[0] = lenTag(field);
  const pos = writeVarint(buf, 1, len);
  buf.write(value, pos, 'utf8');
  return buf;
}

/**
 * Repeated `LabelPairAdapter{name=1,value=2}` entries as field `field` of the enclosing message
 * (EntryAdapter.structuredMetadata is field 3).
 */
export function encodeLabelPairs(field: number, pairs: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of pairs) {
    const inner = Buffer.concat([encodeStringField(1, name), encodeStringField(2, value)]);
    const head = Buffer.allocUnsafe(1 + varintSize(inner.length));
    head[0] = lenTag(field);
    writeVarint(head, 1, inner.length);
    parts.push(head, inner);
  }
  return Buffer.concat(parts);
}
