/**
 * Raw-block snappy (format_description.txt of google/snappy; what Loki's push endpoint decodes) that
 * knows where the input repeats itself. Every Loki entry repeats its container's structured metadata
 * (often 1 KB) right after the line; a generic compressor re-scans those bytes byte by byte on every
 * line, and with snappyjs that was half of the exporter's CPU (test/bench/export-loki.ts). The encoder
 * passes those regions as known repeats, emitted as copy elements without scanning; the bytes between
 * them (timestamps, lines) go through the usual greedy hash matcher, as in snappyjs and the reference.
 */

const HASH_BITS = 14;
const HASH_SHIFT = 32 - HASH_BITS;
/** Reused between calls: compression is synchronous and never re-enters. */
const table = new Int32Array(1 << HASH_BITS);
let scratch = Buffer.allocUnsafe(0);

/** Known repeats as flat triples: start, length, offset (distance back to the earlier copy), sorted by start. */
export interface Repeats {
  readonly data: Int32Array | number[];
  readonly count: number;
}

function load32(a: Uint8Array, p: number): number {
  return (
    (a[p] as number) |
    ((a[p + 1] as number) << 8) |
    ((a[p + 2] as number) << 16) |
    ((a[p + 3] as number) << 24)
  );
}

function emitLiteral(input: Uint8Array, from: number, len: number, out: Uint8Array, op: number): number {
  const n = len - 1;
  if (n < 60) out[op++] = n << 2;
  else if (n < 0x100) {
    out[op++] = 60 << 2;
    out[op++] = n;
  } else if (n < 0x10000) {
    out[op++] = 61 << 2;
    out[op++] = n & 0xff;
    out[op++] = n >>> 8;
  } else if (n < 0x1000000) {
    out[op++] = 62 << 2;
    out[op++] = n & 0xff;
    out[op++] = (n >>> 8) & 0xff;
    out[op++] = n >>> 16;
  } else {
    out[op++] = 63 << 2;
    out[op++] = n & 0xff;
    out[op++] = (n >>> 8) & 0xff;
    out[op++] = (n >>> 16) & 0xff;
    out[op++] = n >>> 24;
  }
  if (len < 32) for (let i = 0; i < len; i++) out[op + i] = input[from + i] as number;
  else out.set(input.subarray(from, from + len), op);
  return op + len;
}

/** One copy element of 1..64 bytes. */
function emitCopyElement(out: Uint8Array, op: number, offset: number, len: number): number {
  if (len >= 4 && len <= 11 && offset < 2048) {
    out[op++] = 1 | ((len - 4) << 2) | ((offset >>> 8) << 5);
    out[op++] = offset & 0xff;
  } else if (offset < 0x10000) {
    out[op++] = 2 | ((len - 1) << 2);
    out[op++] = offset & 0xff;
    out[op++] = offset >>> 8;
  } else {
    out[op++] = 3 | ((len - 1) << 2);
    out[op++] = offset & 0xff;
    out[op++] = (offset >>> 8) & 0xff;
    out[op++] = (offset >>> 16) & 0xff;
    out[op++] = offset >>> 24;
  }
  return op;
}

function emitCopy(out: Uint8Array, op: number, offset: number, len: number): number {
  while (len > 64) {
    op = emitCopyElement(out, op, offset, 64);
    len -= 64;
  }
  return emitCopyElement(out, op, offset, len);
}

/** Greedy hash matching over `[start, end)`, with matches anywhere earlier in the input. */
function compressSegment(input: Uint8Array, start: number, end: number, out: Uint8Array, op: number): number {
  let ip = start;
  let nextEmit = start;
  const limit = end - 4;
  let skip = 32;
  while (ip <= limit) {
    const word = load32(input, ip);
    const h = Math.imul(word, 0x1e35a7bd) >>> HASH_SHIFT;
    const candidate = table[h] as number;
    table[h] = ip;
    if (candidate >= 0 && load32(input, candidate) === word) {
      if (ip > nextEmit) op = emitLiteral(input, nextEmit, ip - nextEmit, out, op);
      let len = 4;
      while (ip + len < end && input[ip + len] === input[candidate + len]) len++;
      op = emitCopy(out, op, ip - candidate, len);
      ip += len;
      nextEmit = ip;
      skip = 32;
    } else {
      // Incompressible stretches are skipped faster and faster, as in the reference compressor.
      ip += skip >>> 5;
      skip++;
    }
  }
  if (end > nextEmit) op = emitLiteral(input, nextEmit, end - nextEmit, out, op);
  return op;
}

/** Compresses `input` into one raw snappy block; `repeats` become copies without being scanned. */
export function snappyCompress(input: Uint8Array, repeats: Repeats = { data: [], count: 0 }): Buffer {
  const n = input.length;
  const bound = 32 + n + Math.ceil(n / 6);
  if (scratch.length < bound) scratch = Buffer.allocUnsafe(bound);
  const out = scratch;
  let op = 0;
  let len = n;
  while (len >= 0x80) {
    out[op++] = (len & 0x7f) | 0x80;
    len = Math.floor(len / 128);
  }
  out[op++] = len;
  table.fill(-1);
  let pos = 0;
  const { data, count } = repeats;
  for (let r = 0; r < count; r++) {
    const start = data[3 * r] as number;
    const length = data[3 * r + 1] as number;
    if (start > pos) op = compressSegment(input, pos, start, out, op);
    op = emitCopy(out, op, data[3 * r + 2] as number, length);
    pos = start + length;
  }
  if (n > pos) op = compressSegment(input, pos, n, out, op);
  // A copy of exactly the compressed size: the payload may sit in a queue, the scratch must not.
  return Buffer.from(out.subarray(0, op));
}
