import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createStdoutExporter, formatRecord } from '../../../agent/exporters/stdout/index.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { lifecycleSuite } from '../../helpers/lifecycle.ts';
import { batch, entry, idOf, record } from '../pipeline/fixtures.ts';

/** A writable that keeps what it gets; with `slow`, each write completes after a delay. */
function capture(options: { slow?: number; highWaterMark?: number } = {}) {
  const chunks: string[] = [];
  const out = new Writable({
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      if (options.slow) setTimeout(cb, options.slow);
      else cb();
    },
  });
  const lines = () =>
    chunks
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { out, chunks, lines };
}

const deps = () => ({ logger: silentLogger(), metrics: new Registry(), stateDir: '/nonexistent' });

test('a record is one NDJSON line shaped like the OpenTelemetry log data model', () => {
  const e = entry(idOf(1));
  const r = record(idOf(1), 'hello "world"', 'stderr');
  r.container = e;
  r.severityNumber = 17;
  r.severityText = 'ERROR';
  r.attributes = { 'log.file.path': '/x.log' };
  const line = formatRecord(r);
  assert.ok(line.endsWith('}\n') && !line.slice(0, -1).includes('\n'));
  assert.deepEqual(JSON.parse(line), {
    timeUnixNano: String(r.timeUnixNano),
    observedTimeUnixNano: String(r.observedUnixNano),
    severityNumber: 17,
    severityText: 'ERROR',
    body: 'hello "world"',
    attributes: { 'log.iostream': 'stderr', 'log.file.path': '/x.log' },
    resource: e.attributes,
  });
});

test('a record without a stream (an OTLP log) has no log.iostream but keeps its own attributes', () => {
  const r = record(idOf(1), 'from the SDK');
  r.stream = undefined;
  r.attributes = { 'http.route': '/pay', 'log.iostream': 'stderr' };
  const line = JSON.parse(formatRecord(r)) as { attributes: Record<string, string> };
  assert.deepEqual(line.attributes, { 'http.route': '/pay', 'log.iostream': 'stderr' });
  r.attributes = undefined;
  assert.deepEqual((JSON.parse(formatRecord(r)) as { attributes: object }).attributes, {});
});

test('an unenriched record carries at least container.id in its resource', () => {
  const line = JSON.parse(formatRecord(record(idOf(9), 'x'))) as Record<string, unknown>;
  assert.deepEqual(line.resource, { 'container.id': idOf(9) });
  assert.equal('severityText' in line, false);
});

test('nanosecond timestamps above 2^53 are written exactly', () => {
  const r = record(idOf(1), 'x');
  r.timeUnixNano = 1_767_225_600_123_456_789n;
  assert.match(formatRecord(r), /"timeUnixNano":"1767225600123456789"/);
});

test('each batch is one write, acked from the write callback', async () => {
  const { out, chunks, lines } = capture({ slow: 20 });
  const exporter = createStdoutExporter('stdout', {}, deps(), out);
  const acks: string[] = [];
  const records = [record(idOf(1), 'a'), record(idOf(1), 'b'), record(idOf(1), 'c')];
  await exporter.consume(batch(records, acks, 'b1'));
  assert.deepEqual(acks, [], 'not acked before the write completed');
  await exporter.shutdown();
  assert.deepEqual(acks, ['b1']);
  assert.equal(chunks.length, 1);
  assert.deepEqual(
    lines().map((l) => l.body),
    ['a', 'b', 'c'],
  );
});

test('consume waits for drain when the output is full', async () => {
  const { out, lines } = capture({ slow: 30, highWaterMark: 64 });
  const exporter = createStdoutExporter('stdout', {}, deps(), out);
  const big = 'x'.repeat(200);
  let resolved = false;
  const first = exporter.consume(batch([record(idOf(1), big)])).then(() => {
    resolved = true;
  });
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(resolved, false, 'consume is pending while the stream is above its high-water mark');
  await first;
  assert.equal(resolved, true);
  await exporter.shutdown();
  assert.equal(lines().length, 1);
});

test('the resource JSON of a container version is built once and reused', () => {
  const base = entry(idOf(1));
  let reads = 0;
  const e = {
    ...base,
    get attributes() {
      reads++;
      return base.attributes;
    },
  };
  const lines = ['a', 'b', 'c'].map((body) => {
    const r = record(idOf(1), body);
    r.container = e;
    return JSON.parse(formatRecord(r)) as { resource: unknown };
  });
  assert.equal(reads, 1);
  for (const line of lines) assert.deepEqual(line.resource, base.attributes);
});

test('after shutdown the exporter refuses new batches', async () => {
  const { out } = capture();
  const exporter = createStdoutExporter('stdout', {}, deps(), out);
  await exporter.shutdown();
  await assert.rejects(exporter.consume(batch([record(idOf(1), 'late')])), /shut down/);
});

test('a closed output drops and acks batches instead of stalling checkpoints', async () => {
  const { out } = capture();
  out.destroy();
  const metrics = new Registry();
  const exporter = createStdoutExporter('stdout', {}, { ...deps(), metrics }, out);
  const acks: string[] = [];
  await exporter.consume(batch([record(idOf(1), 'x')], acks, 'b1'));
  assert.deepEqual(acks, ['b1']);
  const failed = (await metrics.getSingleMetric('labelcast_stdout_records_failed_total')!.get()).values[0];
  assert.equal(failed?.value, 1);
  await exporter.shutdown();
});

lifecycleSuite('stdout exporter', async () => {
  const { out, lines } = capture({ slow: 5 });
  const exporter = createStdoutExporter('stdout', {}, deps(), out);
  return {
    component: exporter,
    async send() {
      for (let i = 0; i < 5; i++) {
        await exporter.consume(batch([record(idOf(1), `a${i}`), record(idOf(2), `b${i}`)]));
      }
      return 10;
    },
    received: () => lines().length,
  };
});

test('a batch is written as exactly the bytes of its records formatted one by one', async () => {
  const { out, chunks } = capture();
  const exporter = createStdoutExporter('stdout', {}, deps(), out);
  const e = entry(idOf(1));
  const records = [
    record(idOf(1), 'plain'),
    record(idOf(2), 'no container: "quoted" \\ and \u0001 control'),
    record(idOf(1), 'multi-byte: é 漢字 🙂 and a lone \ud800 surrogate'),
    record(idOf(1), 'x'.repeat(3 << 20)),
  ];
  records[0]!.container = e;
  records[2]!.container = e;
  records[2]!.severityNumber = 17;
  records[2]!.severityText = 'ERROR';
  records[2]!.attributes = { 'log.file.path': '/x.log', 'log.iostream': 'ignored' };
  records[3]!.container = e;
  await exporter.consume(batch(records));
  await exporter.shutdown();
  assert.equal(chunks.join(''), records.map(formatRecord).join(''));
});

test('a buffer is reused only after its write completed, so queued chunks stay intact', async () => {
  const { out, lines } = capture({ slow: 5, highWaterMark: 1 << 30 });
  const exporter = createStdoutExporter('stdout', {}, deps(), out);
  for (let i = 0; i < 6; i++) await exporter.consume(batch([record(idOf(1), `batch ${i}`)]));
  await exporter.shutdown();
  assert.deepEqual(
    lines().map((l) => l.body),
    Array.from({ length: 6 }, (_, i) => `batch ${i}`),
  );
});
