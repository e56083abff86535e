import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import snappyjs from 'snappyjs';
import { snappyCompress } from '../../../agent/exporters/loki/snappy.ts';

/** snappyjs's decoder is the independent check: it follows format_description.txt. */
const roundTrip = (input: Buffer, repeats?: { data: number[]; count: number }): Buffer => {
  const compressed = snappyCompress(input, repeats);
  const back = Buffer.from(snappyjs.uncompress(new Uint8Array(compressed)));
  assert.equal(back.length, input.length);
  assert.ok(back.equals(input), 'decompresses to the input');
  return compressed;
};

test('empty, tiny, random and repetitive inputs round-trip through an independent snappy decoder', () => {
  roundTrip(Buffer.alloc(0));
  roundTrip(Buffer.from('a'));
  roundTrip(Buffer.from('abcd'));
  roundTrip(randomBytes(100_000));
  const text = Buffer.from('GET /api/v1/orders/1 200\n'.repeat(10_000));
  assert.ok(roundTrip(text).length < text.length / 10, 'repetitive text compresses');
});

test('literals longer than 64 KiB and matches further back than 64 KiB use the long forms', () => {
  const block = randomBytes(70_000);
  const input = Buffer.concat([block, randomBytes(5), block]);
  assert.ok(roundTrip(input).length < 80_000);
});

test('known repeats become copies, including ones longer than 64 bytes and further back than 64 KiB', () => {
  const meta = randomBytes(1000);
  const parts: Buffer[] = [];
  const repeats: number[] = [];
  let pos = 0;
  let prev = -1;
  for (let i = 0; i < 200; i++) {
    const line = Buffer.from(`line ${i} ${'x'.repeat(i % 7)}`);
    parts.push(line);
    pos += line.length;
    if (prev >= 0) repeats.push(pos, meta.length, pos - prev);
    prev = pos;
    parts.push(meta);
    pos += meta.length;
  }
  // One entry far away: its metadata repeats one 100 KB back.
  const gap = randomBytes(100_000);
  parts.push(gap);
  pos += gap.length;
  repeats.push(pos, meta.length, pos - prev);
  parts.push(meta);
  const input = Buffer.concat(parts);
  const compressed = roundTrip(input, { data: repeats, count: repeats.length / 3 });
  assert.ok(compressed.length < 100_000 + 200 * 80 + 2000, `compressed to ${compressed.length} bytes`);
});
