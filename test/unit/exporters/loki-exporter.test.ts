import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { lokiExporterConfigSchema } from '../../../agent/exporters/loki/config.ts';
import { createLokiExporter } from '../../../agent/exporters/loki/index.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { lifecycleSuite } from '../../helpers/lifecycle.ts';
import { startLokiReceiver } from '../../helpers/loki-receiver.ts';
import { containerEntry, logRecord } from './loki-fixtures.ts';

const T0 = 1_764_860_400_000_000_000n;

async function harness(extra: Record<string, unknown> = {}) {
  const receiver = await startLokiReceiver();
  const stateDir = await mkdtemp(join(tmpdir(), 'lc-loki-'));
  const metrics = new Registry();
  const config = lokiExporterConfigSchema.parse({
    endpoint: receiver.url,
    delivery: { max_delay: '20ms', retry: { initial_interval: '50ms' }, spool: { max_bytes: 0 } },
    ...extra,
  });
  const exporter = createLokiExporter('loki/test', config, { logger: silentLogger(), metrics, stateDir });
  const close = async () => {
    await exporter.shutdown();
    await receiver.close();
    await rm(stateDir, { recursive: true, force: true });
  };
  return { receiver, exporter, metrics, close };
}

const metric = async (metrics: Registry, name: string, labels: Record<string, string>) => {
  const m = (await metrics.getSingleMetric(name)?.get())?.values ?? [];
  return m.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
};

lifecycleSuite('loki exporter', async () => {
  const h = await harness();
  const entry = containerEntry();
  return {
    component: h.exporter,
    async send() {
      const records = Array.from({ length: 50 }, (_, i) => logRecord(`line ${i}`, T0 + BigInt(i), entry));
      await h.exporter.consume({ records, ack: () => {} });
      return records.length;
    },
    received: () => h.receiver.entries.length,
    close: h.close,
  };
});

test('a batch is acked once, after Loki accepted it', async (t) => {
  const h = await harness();
  t.after(h.close);
  await h.exporter.start();
  let acks = 0;
  await h.exporter.consume({ records: [logRecord('one', T0, containerEntry())], ack: () => acks++ });
  await h.receiver.waitForEntries(1);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(acks, 1);
  assert.equal(
    await metric(h.metrics, 'labelcast_exporter_sent_records_total', { exporter: 'loki/test' }),
    1,
  );
});

test('429 answers are retried with growing backoff until Loki accepts', async (t) => {
  const h = await harness();
  t.after(h.close);
  h.receiver.enqueue({ status: 429 }, { status: 429 }, { status: 429 });
  await h.exporter.start();
  let acks = 0;
  await h.exporter.consume({ records: [logRecord('retry me', T0, containerEntry())], ack: () => acks++ });
  await h.receiver.waitForEntries(1, 10_000);
  const times = h.receiver.requests.map((r) => r.at);
  assert.deepEqual(
    h.receiver.requests.map((r) => r.status),
    [429, 429, 429, 204],
  );
  const gaps = times.slice(1).map((at, i) => at - (times[i] as number));
  // initial_interval 50 ms doubling, ±20 % jitter: ≥ 40, 80, 160 ms.
  assert.ok((gaps[0] as number) >= 35 && (gaps[2] as number) >= 140, `gaps ${gaps.join(', ')}`);
  assert.equal(await metric(h.metrics, 'labelcast_exporter_retries_total', { exporter: 'loki/test' }), 3);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(acks, 1);
});

test('a 400 is not retried: the batch is dropped, counted by reason, and acked', async (t) => {
  const h = await harness();
  t.after(h.close);
  h.receiver.enqueue({
    status: 400,
    body: 'entry for stream \'{service_name="api"}\' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-27T00:00:00Z',
  });
  await h.exporter.start();
  let acks = 0;
  await h.exporter.consume({
    records: [
      logRecord('old', 1_577_836_800_000_000_000n, containerEntry()),
      logRecord('old 2', 1_577_836_800_000_000_001n, containerEntry()),
    ],
    ack: () => acks++,
  });
  const deadline = Date.now() + 5000;
  while (acks === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 300)); // room for a wrong retry to show up
  assert.equal(acks, 1);
  assert.deepEqual(
    h.receiver.requests.map((r) => r.status),
    [400],
  );
  assert.equal(
    await metric(h.metrics, 'labelcast_exporter_dropped_records_total', {
      exporter: 'loki/test',
      reason: 'greater_than_max_sample_age',
    }),
    2,
  );
});

test('truncated lines are counted and reach Loki within its line limit', async (t) => {
  const h = await harness({ max_line_size: '1KiB' });
  t.after(h.close);
  await h.exporter.start();
  await h.exporter.consume({ records: [logRecord('z'.repeat(5000), T0, containerEntry())], ack: () => {} });
  await h.receiver.waitForEntries(1);
  assert.equal(h.receiver.entries[0]?.line.length, 1024);
  assert.equal(h.receiver.entries[0]?.structuredMetadata.labelcast_truncated, 'true');
  assert.equal(await metric(h.metrics, 'labelcast_loki_truncated_lines_total', { exporter: 'loki/test' }), 1);
});
