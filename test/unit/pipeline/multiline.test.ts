import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createMultilineStage } from '../../../agent/pipeline/multiline.ts';
import type { LogRecord } from '../../../agent/pipeline/types.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { lifecycleSuite } from '../../helpers/lifecycle.ts';
import { batch, entry, idOf, record, sink } from './fixtures.ts';

const JAVA = entry(idOf(1), { settings: { ignore: false, multilineStart: /^\d{4}-\d\d-\d\d / } });
const PLAIN = entry(idOf(2));

function enriched(e: typeof JAVA, body: string, stream: 'stdout' | 'stderr' = 'stdout'): LogRecord {
  const r = record(e.id, body, stream);
  r.container = e;
  return r;
}

function stage(options: { flushTimeoutMs?: number; maxChars?: number; autoAck?: boolean } = {}) {
  const next = sink(options.autoAck ?? true);
  const multiline = createMultilineStage({
    next,
    flushTimeoutMs: options.flushTimeoutMs ?? 10_000,
    maxChars: options.maxChars ?? 1_000_000,
    logger: silentLogger(),
    metrics: new Registry(),
  });
  return { multiline, next };
}

test('lines that do not match the start pattern are appended to the previous record', async (t) => {
  const { multiline, next } = stage();
  t.after(() => multiline.shutdown());
  await multiline.consume(
    batch([
      enriched(JAVA, '2026-01-01 ERROR boom'),
      enriched(JAVA, 'java.lang.IllegalStateException: boom'),
      enriched(JAVA, '\tat Main.main(Main.java:3)'),
      enriched(JAVA, '2026-01-01 INFO next'),
    ]),
  );
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['2026-01-01 ERROR boom\njava.lang.IllegalStateException: boom\n\tat Main.main(Main.java:3)'],
  );
  await multiline.shutdown();
  assert.deepEqual(
    next.records().map((r) => r.body),
    [
      '2026-01-01 ERROR boom\njava.lang.IllegalStateException: boom\n\tat Main.main(Main.java:3)',
      '2026-01-01 INFO next',
    ],
  );
});

test('a record continues across batches and keeps the first line’s timestamp', async (t) => {
  const { multiline, next } = stage();
  t.after(() => multiline.shutdown());
  const first = enriched(JAVA, '2026-01-01 ERROR boom');
  await multiline.consume(batch([first]));
  await multiline.consume(batch([enriched(JAVA, '\tat A'), enriched(JAVA, '2026-01-01 INFO ok')]));
  const [out] = next.records();
  assert.equal(out!.body, '2026-01-01 ERROR boom\n\tat A');
  assert.equal(out!.timeUnixNano, first.timeUnixNano);
});

test('stdout and stderr of one container are joined separately', async () => {
  const { multiline, next } = stage();
  await multiline.consume(
    batch([
      enriched(JAVA, '2026-01-01 out', 'stdout'),
      enriched(JAVA, '2026-01-01 err', 'stderr'),
      enriched(JAVA, 'out cont', 'stdout'),
      enriched(JAVA, 'err cont', 'stderr'),
    ]),
  );
  await multiline.shutdown();
  assert.deepEqual(
    next
      .records()
      .map((r) => r.body)
      .sort(),
    ['2026-01-01 err\nerr cont', '2026-01-01 out\nout cont'],
  );
});

test('records of containers without a start pattern pass through in the same batch', async () => {
  const { multiline, next } = stage();
  const input = batch([enriched(PLAIN, 'one'), enriched(PLAIN, '  two')]);
  await multiline.consume(input);
  assert.equal(next.batches[0], input);
  await multiline.shutdown();
});

test('a held record goes out on its own after the flush timeout', async () => {
  const { multiline, next } = stage({ flushTimeoutMs: 30 });
  const acks: string[] = [];
  await multiline.consume(
    batch([enriched(JAVA, '2026-01-01 ERROR boom'), enriched(JAVA, '\tat A')], acks, 'b1'),
  );
  assert.equal(next.records().length, 0);
  assert.deepEqual(acks, [], 'the batch is not acked while its lines are held');
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['2026-01-01 ERROR boom\n\tat A'],
  );
  assert.deepEqual(acks, ['b1']);
  await multiline.shutdown();
});

test('a joined record is not grown beyond the size cap', async () => {
  const { multiline, next } = stage({ maxChars: 25 });
  await multiline.consume(
    batch([enriched(JAVA, '2026-01-01 E'), enriched(JAVA, 'aaaaaaaaaa'), enriched(JAVA, 'bbbbbbbbbb')]),
  );
  await multiline.shutdown();
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['2026-01-01 E\naaaaaaaaaa', 'bbbbbbbbbb'],
  );
});

test('batches are acked in arrival order, never past a line that is still held', async () => {
  const { multiline, next } = stage({ autoAck: false });
  const acks: string[] = [];
  await multiline.consume(batch([enriched(JAVA, '2026-01-01 A'), enriched(JAVA, '\tat 1')], acks, 'b1'));
  await multiline.consume(batch([enriched(JAVA, '\tat 2')], acks, 'b2'));
  await multiline.consume(batch([enriched(JAVA, '2026-01-01 B')], acks, 'b3'));
  // b3 flushed b1+b2's record; b3's own line is held.
  assert.equal(next.batches.length, 1);
  next.batches[0]!.ack();
  assert.deepEqual(acks, ['b1', 'b2'], 'b3 holds a line, so it is not acked yet');
  await multiline.shutdown();
  next.batches[1]!.ack();
  assert.deepEqual(acks, ['b1', 'b2', 'b3']);
});

test('a later batch acked downstream first still waits for the earlier one', async () => {
  const { multiline, next } = stage({ autoAck: false });
  const acks: string[] = [];
  await multiline.consume(
    batch([enriched(JAVA, '2026-01-01 A'), enriched(JAVA, '2026-01-01 B')], acks, 'b1'),
  );
  await multiline.consume(batch([enriched(JAVA, '2026-01-01 C')], acks, 'b2'));
  await multiline.shutdown();
  // batches: [A] from b1, [B] (b1) from b2's consume, [C] at shutdown
  assert.equal(next.batches.length, 3);
  next.batches[2]!.ack();
  next.batches[1]!.ack();
  assert.deepEqual(acks, []);
  next.batches[0]!.ack();
  assert.deepEqual(acks, ['b1', 'b2']);
});

lifecycleSuite('multiline stage', async () => {
  const next = sink();
  const multiline = createMultilineStage({
    next,
    flushTimeoutMs: 10_000,
    maxChars: 1_000_000,
    logger: silentLogger(),
    metrics: new Registry(),
  });
  return {
    component: multiline,
    async send() {
      // The last record of each batch is held: only shutdown() can deliver it.
      await multiline.consume(batch([enriched(JAVA, '2026-01-01 A'), enriched(JAVA, '\tat x')]));
      await multiline.consume(batch([enriched(JAVA, '2026-01-01 B'), enriched(PLAIN, 'plain')]));
      return 3;
    },
    received: () => next.records().length,
  };
});
