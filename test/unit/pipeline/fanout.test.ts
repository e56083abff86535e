import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFanout } from '../../../agent/pipeline/fanout.ts';
import type { LogBatch, LogExporter } from '../../../agent/pipeline/types.ts';
import { batch, idOf, record } from './fixtures.ts';

function holdingExporter(name: string): LogExporter & { held: LogBatch[] } {
  const held: LogBatch[] = [];
  return {
    name,
    held,
    async start() {},
    async shutdown() {},
    async consume(b) {
      held.push(b);
    },
  };
}

test('the source ack fires only after every exporter has acked its copy', async () => {
  const a = holdingExporter('a');
  const b = holdingExporter('b');
  const acks: string[] = [];
  await createFanout([a, b]).consume(batch([record(idOf(1), 'x')], acks, 'src'));
  assert.equal(a.held.length, 1);
  assert.equal(b.held.length, 1);
  assert.equal(a.held[0]!.records, b.held[0]!.records, 'the records array is shared, not copied');
  a.held[0]!.ack();
  assert.deepEqual(acks, []);
  b.held[0]!.ack();
  assert.deepEqual(acks, ['src']);
});

test('an exporter acking twice does not count as another exporter acking', async () => {
  const a = holdingExporter('a');
  const b = holdingExporter('b');
  const acks: string[] = [];
  await createFanout([a, b]).consume(batch([record(idOf(1), 'x')], acks, 'src'));
  a.held[0]!.ack();
  a.held[0]!.ack();
  assert.deepEqual(acks, []);
  b.held[0]!.ack();
  assert.deepEqual(acks, ['src']);
});

test('a single exporter gets the batch itself, with its original ack', async () => {
  const a = holdingExporter('a');
  const acks: string[] = [];
  const input = batch([record(idOf(1), 'x')], acks, 'src');
  await createFanout([a]).consume(input);
  assert.equal(a.held[0], input);
});

test('consume waits for the slowest exporter and passes on its rejection', async () => {
  const fast = holdingExporter('fast');
  const failing: LogExporter = {
    name: 'failing',
    async start() {},
    async shutdown() {},
    async consume() {
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('queue full');
    },
  };
  await assert.rejects(createFanout([fast, failing]).consume(batch([record(idOf(1), 'x')])), /queue full/);
  assert.equal(fast.held.length, 1);
});

test('a pipeline without exporters is refused', () => {
  assert.throws(() => createFanout([]), /no exporter/);
});
