import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { deliveryConfigSchema } from '../../../agent/pipeline/delivery/config.ts';
import { createDelivery, type Payload, type Sender } from '../../../agent/pipeline/delivery/index.ts';
import type { ExportResult } from '../../../agent/pipeline/types.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';

interface Harness {
  stateDir: string;
  started: { shutdown(): Promise<void> }[];
  metrics: Registry;
  sent: string[][];
  attempts: number;
}

async function harness(t: { after(fn: () => Promise<void>): void }): Promise<Harness> {
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-delivery-'));
  const h: Harness = { stateDir, started: [], metrics: new Registry(), sent: [], attempts: 0 };
  t.after(async () => {
    for (const d of h.started) await d.shutdown();
    await rm(stateDir, { recursive: true, force: true });
  });
  return h;
}

/** Encodes string items as a JSON array body. */
const encode = (items: string[]): Payload => ({
  body: Buffer.from(JSON.stringify(items)),
  headers: { 'content-type': 'application/json' },
  route: 'logs',
  records: items.length,
});

function recordingSender(
  h: Harness,
  respond: (attempt: number) => ExportResult = () => ({ status: 'success' }),
): Sender {
  return {
    async send(payload) {
      const result = respond(h.attempts++);
      if (result.status === 'success')
        h.sent.push(JSON.parse(Buffer.from(payload.body).toString()) as string[]);
      return result;
    },
  };
}

/** Answers retryable (the endpoint is down) until `restore()`, then success. */
function outage(): { respond: () => ExportResult; restore(): void } {
  let down = true;
  return {
    respond: () => (down ? { status: 'retryable', error: new Error('down') } : { status: 'success' }),
    restore() {
      down = false;
    },
  };
}

async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { value: number; labels: Record<string, string> }[];
  return values
    .filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))
    .reduce((sum, v) => sum + v.value, 0);
}

function make(h: Harness, sender: Sender, config: Record<string, unknown> = {}) {
  const d = createDelivery<string>({
    id: 'test',
    config: deliveryConfigSchema.parse(config),
    encode,
    sizeOf: (s) => s.length,
    sender,
    deps: { logger: silentLogger(), metrics: h.metrics, stateDir: h.stateDir },
  });
  h.started.push(d);
  return d;
}

/** A sink that never answers: each request hangs until the delivery aborts it. */
const hangingSender: Sender = {
  send: (_payload, signal) =>
    new Promise((resolve) =>
      signal.addEventListener('abort', () => resolve({ status: 'retryable', error: new Error('aborted') })),
    ),
};

test('batches by bytes and by age, and acks each source batch once after its records are sent', async (t) => {
  const h = await harness(t);
  const d = make(h, recordingSender(h), { max_batch_bytes: 10, max_delay: '50ms' });
  await d.start();
  const acks: number[] = [];
  await d.consume({ records: ['aaaa', 'bbbb', 'cccc'], ack: () => acks.push(1) });
  await d.consume({ records: ['dd'], ack: () => acks.push(2) });
  await new Promise((r) => setTimeout(r, 200));
  await d.shutdown();
  assert.deepEqual(h.sent.flat(), ['aaaa', 'bbbb', 'cccc', 'dd']);
  assert.deepEqual(h.sent[0], ['aaaa', 'bbbb', 'cccc']);
  assert.deepEqual(acks.sort(), [1, 2]);
});

test('retries a retryable failure honouring retryAfterMs, then succeeds', async (t) => {
  const h = await harness(t);
  const d = make(
    h,
    recordingSender(h, (n) =>
      n === 0 ? { status: 'retryable', error: new Error('busy'), retryAfterMs: 300 } : { status: 'success' },
    ),
    { max_delay: '10ms' },
  );
  await d.start();
  const t0 = Date.now();
  await d.consume({ records: ['x'], ack: () => {} });
  while (h.sent.length === 0) await new Promise((r) => setTimeout(r, 10));
  const sentAt = Date.now();
  await d.shutdown();
  assert.ok(sentAt - t0 >= 300, `sent after ${sentAt - t0} ms`);
  assert.equal(h.attempts, 2);
  assert.equal(await metricValue(h.metrics, 'labelcast_exporter_retries_total'), 1);
});

test('drops a permanent failure without retrying, counts it by reason and acks', async (t) => {
  const h = await harness(t);
  const d = make(
    h,
    recordingSender(h, () => ({ status: 'failure', error: new Error('bad'), reason: 'http_400' })),
    { max_delay: '10ms' },
  );
  await d.start();
  let acked = 0;
  await d.consume({ records: ['a', 'b'], ack: () => acked++ });
  while (!acked) await new Promise((r) => setTimeout(r, 10));
  await d.shutdown();
  assert.equal(h.attempts, 1);
  assert.equal(
    await metricValue(h.metrics, 'labelcast_exporter_dropped_records_total', { reason: 'http_400' }),
    2,
  );
});

test('spills to the spool beyond queue_bytes, acks spooled batches, and replays them in order', async (t) => {
  const h = await harness(t);
  const link = outage();
  const d = make(h, recordingSender(h, link.respond), {
    max_batch_bytes: 100,
    max_delay: '10ms',
    queue_bytes: 300,
    concurrency: 1,
    retry: { initial_interval: '20ms', max_interval: '50ms' },
  });
  await d.start();
  const acked: number[] = [];
  const lines = Array.from({ length: 200 }, (_, i) => `line-${String(i).padStart(5, '0')}`);
  for (let i = 0; i < lines.length; i += 20) {
    await d.consume({ records: lines.slice(i, i + 20), ack: () => acked.push(i) });
  }
  await new Promise((r) => setTimeout(r, 100));
  // Spooled batches are acked although nothing was sent yet; only the memory-held ones are not.
  assert.ok(acked.length >= 7, `acked ${acked.length}`);
  assert.ok((await metricValue(h.metrics, 'labelcast_exporter_spooled_records_total')) > 0);
  const queueBytes = await metricValue(h.metrics, 'labelcast_exporter_queue_bytes');
  assert.ok(queueBytes <= 300, `queue ${queueBytes}`);
  link.restore();
  while (h.sent.flat().length < lines.length) await new Promise((r) => setTimeout(r, 20));
  await d.shutdown();
  assert.deepEqual(h.sent.flat(), lines);
  assert.equal(acked.length, 10);
  assert.deepEqual(
    (await readdir(join(h.stateDir, 'spool', 'test'))).filter((f) => f.endsWith('.seg')),
    [],
  );
});

test('shutdown spools what it cannot send in time, and a restart replays it before new records', async (t) => {
  const h = await harness(t);
  const down = make(h, hangingSender, { max_delay: '10ms', shutdown_timeout: '200ms' });
  await down.start();
  let acked = 0;
  await down.consume({ records: ['old-1', 'old-2'], ack: () => acked++ });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(acked, 0);
  await down.shutdown();
  assert.equal(acked, 1, 'spooled at shutdown counts as acked');

  const up = make(h, recordingSender(h), { max_delay: '10ms' });
  await up.start();
  await up.consume({ records: ['new-1'], ack: () => {} });
  while (h.sent.flat().length < 3) await new Promise((r) => setTimeout(r, 10));
  await up.shutdown();
  assert.deepEqual(h.sent.flat(), ['old-1', 'old-2', 'new-1']);

  // Nothing is replayed twice after a clean restart.
  const again = make(h, recordingSender(h), { max_delay: '10ms' });
  await again.start();
  await new Promise((r) => setTimeout(r, 100));
  await again.shutdown();
  assert.deepEqual(h.sent.flat(), ['old-1', 'old-2', 'new-1']);
});

test('a corrupted spool record is detected by CRC, skipped and counted, and the rest is replayed', async (t) => {
  const h = await harness(t);
  const down = make(
    h,
    recordingSender(h, () => ({ status: 'retryable', error: new Error('down') })),
    {
      max_batch_bytes: 1,
      max_delay: '10ms',
      queue_bytes: 1,
      concurrency: 1,
      shutdown_timeout: '100ms',
    },
  );
  await down.start();
  for (const r of ['first', 'second', 'third']) await down.consume({ records: [r], ack: () => {} });
  await down.shutdown();
  const dir = join(h.stateDir, 'spool', 'test');
  const segment = (await readdir(dir)).find((f) => f.endsWith('.seg'));
  assert.ok(segment);
  const bytes = await readFile(join(dir, segment));
  const at = bytes.indexOf('second');
  assert.ok(at > 0);
  bytes[at] = 'X'.charCodeAt(0);
  await writeFile(join(dir, segment), bytes);

  const up = make(h, recordingSender(h), { max_delay: '10ms', concurrency: 1 });
  await up.start();
  const deadline = Date.now() + 5000;
  while (h.sent.flat().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await up.shutdown();
  // 'first' was in memory at shutdown, so it was spooled behind the others.
  assert.deepEqual(h.sent.flat().sort(), ['first', 'third']);
  assert.equal(await metricValue(h.metrics, 'labelcast_exporter_spool_corrupt_records_total'), 1);
});

test('drop_oldest deletes the oldest segment when the spool is full, and counts its records', async (t) => {
  const h = await harness(t);
  const d = make(
    h,
    recordingSender(h, () => ({ status: 'retryable', error: new Error('down') })),
    {
      max_batch_bytes: 1,
      max_delay: '10ms',
      queue_bytes: 1,
      concurrency: 1,
      shutdown_timeout: '50ms',
      spool: { max_bytes: 2000, segment_bytes: 200, policy: 'drop_oldest' },
    },
  );
  await d.start();
  let acked = 0;
  for (let i = 0; i < 100; i++) await d.consume({ records: [`record-${i}`], ack: () => acked++ });
  assert.ok(acked >= 99);
  await d.shutdown();
  assert.ok(
    (await metricValue(h.metrics, 'labelcast_exporter_dropped_records_total', { reason: 'spool_full' })) > 0,
  );
  assert.ok((await metricValue(h.metrics, 'labelcast_exporter_spool_bytes')) <= 2000);
});

test('block applies backpressure when memory and spool are full', async (t) => {
  const h = await harness(t);
  const link = outage();
  const d = make(h, recordingSender(h, link.respond), {
    max_batch_bytes: 1,
    max_delay: '10ms',
    queue_bytes: 1,
    concurrency: 1,
    retry: { initial_interval: '20ms', max_interval: '20ms' },
    spool: { max_bytes: 1000, segment_bytes: 200 },
  });
  await d.start();
  let blocked = false;
  for (let i = 0; i < 100 && !blocked; i++) {
    const accepted = d.consume({ records: [`record-${i}`], ack: () => {} });
    const outcome = await Promise.race([
      accepted.then(() => 'ok'),
      new Promise((r) => setTimeout(() => r('wait'), 200)),
    ]);
    if (outcome === 'wait') {
      blocked = true;
      const saturated = d.saturated();
      link.restore();
      assert.equal(saturated, true);
      await accepted;
    }
  }
  await d.shutdown();
  assert.ok(blocked, 'consume waited once the spool was full');
});

test('shutdown before start and twice is safe', async (t) => {
  const h = await harness(t);
  const d = make(h, recordingSender(h));
  await d.shutdown();
  await d.shutdown();
  await assert.rejects(d.consume({ records: ['x'], ack: () => {} }), /shut down/);
});

test('when the sink fails, payloads held in memory move to the spool in order and are acked', async (t) => {
  const h = await harness(t);
  const link = outage();
  const d = make(h, recordingSender(h, link.respond), {
    max_batch_bytes: 1,
    max_delay: '10ms',
    concurrency: 1,
    retry: { initial_interval: '50ms', max_interval: '50ms' },
  });
  await d.start();
  const acked: string[] = [];
  for (const r of ['a', 'b', 'c', 'd', 'e']) await d.consume({ records: [r], ack: () => acked.push(r) });
  const deadline = Date.now() + 5000;
  while (acked.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(acked.sort(), ['a', 'b', 'c', 'd', 'e'], 'durable on disk, so acked during the outage');
  assert.equal((await metricValue(h.metrics, 'labelcast_exporter_queue_bytes')) <= 30, true);
  link.restore();
  while (h.sent.flat().length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(h.sent.flat(), ['a', 'b', 'c', 'd', 'e']);
});

test('a Retry-After holds every sender, also for payloads replayed from the spool', async (t) => {
  const h = await harness(t);
  const at: number[] = [];
  const d = make(
    h,
    {
      async send() {
        at.push(Date.now());
        return at.length === 1
          ? { status: 'retryable', error: new Error('slow down'), retryAfterMs: 500 }
          : { status: 'success' };
      },
    },
    { max_delay: '10ms' },
  );
  await d.start();
  let acked = 0;
  await d.consume({ records: ['x'], ack: () => acked++ });
  while (at.length < 2) await new Promise((r) => setTimeout(r, 10));
  assert.ok(
    (at[1] as number) - (at[0] as number) >= 480,
    `retried after ${(at[1] as number) - (at[0] as number)} ms`,
  );
});

test('a streaming encoder gets records as they arrive and finishes one payload per batch', async (t) => {
  const h = await harness(t);
  const added: string[][] = [];
  let open: string[] = [];
  const d = createDelivery<string>({
    id: 'stream',
    config: deliveryConfigSchema.parse({ max_batch_bytes: 8, max_delay: '20ms' }),
    encoder: {
      add(items, from, to) {
        added.push(items.slice(from, to));
        open.push(...items.slice(from, to));
      },
      finish() {
        const payload = encode(open);
        open = [];
        return payload;
      },
    },
    sizeOf: (s) => s.length,
    sender: recordingSender(h),
    deps: { logger: silentLogger(), metrics: h.metrics, stateDir: h.stateDir },
  });
  h.started.push(d);
  await d.start();
  let acks = 0;
  await d.consume({ records: ['aaaa', 'bbbb', 'cc'], ack: () => acks++ });
  await d.consume({ records: ['dd'], ack: () => acks++ });
  const deadline = Date.now() + 5000;
  while (acks < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(added, [['aaaa', 'bbbb'], ['cc'], ['dd']]);
  assert.deepEqual(h.sent, [
    ['aaaa', 'bbbb'],
    ['cc', 'dd'],
  ]);
  assert.equal(acks, 2);
});
