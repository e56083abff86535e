/**
 * Just enough of the protobuf wire format to walk OTLP requests field by field and re-emit them with
 * Buffer slices, so span, log and metric bytes are copied through without being decoded.
 */

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

export class ProtoWireError extends Error {}

/** One field of a message: its number, wire type, and the byte range of the whole field (tag included). */
export interface WireField {
  readonly field: number;
  readonly wireType: number;
  /** Start of the tag. */
  readonly start: number;
  /** Start and end of the LEN payload (equal to the field range for other wire types). */
  readonly valueStart: number;
  readonly end: number;
}

function readVarint(buf: Buffer, pos: number, end: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  for (let i = pos; i < end && shift < 64; i++) {
    const byte = buf[i] as number;
    // Lengths and tags fit in 2^53; the high bits of 64-bit varints are only skipped, never used.
    if (shift < 53) value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) return [value, i + 1];
  }
  throw new ProtoWireError('truncated varint');
}

/** Calls `visit` for each field of the message in `buf[start, end)`. Throws ProtoWireError on malformed input. */
export function forEachField(buf: Buffer, start: number, end: number, visit: (f: WireField) => void): void {
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, afterTag] = readVarint(buf, pos, end);
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) throw new ProtoWireError('field number 0');
    let valueStart = afterTag;
    switch (wireType) {
      case WIRE_VARINT:
        pos = readVarint(buf, afterTag, end)[1];
        break;
      case WIRE_I64:
        pos = afterTag + 8;
        break;
      case WIRE_I32:
        pos = afterTag + 4;
        break;
      case WIRE_LEN: {
        const [len, afterLen] = readVarint(buf, afterTag, end);
        valueStart = afterLen;
        pos = afterLen + len;
        break;
      }
      default:
        throw new ProtoWireError(`unsupported wire type ${wireType}`);
    }
    if (pos > end) throw new ProtoWireError('field overruns its message');
    visit({ field, wireType, start: fieldStart, valueStart, end: pos });
  }
}

export function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** The tag and length prefix of a LEN field. */
export function lenPrefix(field: number, length: number): Buffer {
  return Buffer.concat([varint(field * 8 + WIRE_LEN), varint(length)]);
}

/** A complete LEN field from its parts. */
export function lenField(field: number, parts: readonly Buffer[]): Buffer[] {
  let length = 0;
  for (const p of parts) length += p.length;
  return [lenPrefix(field, length), ...parts];
}

export function stringField(field: number, value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  return Buffer.concat([lenPrefix(field, bytes.length), bytes]);
}
