import assert from 'node:assert/strict';
import {
  appendFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Counter, Registry } from 'prom-client';
import { TRUNCATED_ATTRIBUTE } from '../../../agent/pipeline/log-record.ts';
import type { LogBatch, LogRecord } from '../../../agent/pipeline/types.ts';
import { type FilePosition, Tailer } from '../../../agent/receivers/json-file/tailer.ts';

const ID = 'a'.repeat(64);
let clock = Date.parse('2026-12-04T10:00:00Z') * 1_000_000;

/** One engine line; each gets a later timestamp, as the engine's writer does. */
function line(log: string, stream = 'stdout'): string {
  clock += 1000;
  const sec = Math.floor(clock / 1e9);
  const iso = new Date(sec * 1000).toISOString().slice(0, 19);
  const frac = String(clock % 1e9).padStart(9, '0');
  return `{"log":${JSON.stringify(log)},"stream":"${stream}","time":"${iso}.${frac}Z"}\n`;
}

function metrics() {
  const registers = [new Registry()];
  const c = (name: string) => new Counter({ name, help: name, registers });
  return { lines: c('l'), bytes: c('b'), parseErrors: c('p'), truncated: c('t'), rotations: c('r') };
}

interface Harness {
  logPath: string;
  batches: LogBatch[];
  bodies(): string[];
  committed: FilePosition[];
  errors: unknown[];
  tailer(
    start: FilePosition | 'beginning' | 'end',
    opts?: { maxLineBytes?: number; autoAck?: boolean; reject?: () => boolean },
  ): Tailer;
}

async function harness(t: { after(fn: () => unknown): void }): Promise<Harness> {
  const root = await mkdtemp(join(tmpdir(), 'lc-tail-'));
  const dir = join(root, 'containers', ID);
  mkdirSync(dir, { recursive: true });
  const logPath = join(dir, `${ID}-json.log`);
  writeFileSync(logPath, '');
  const h: Harness = {
    logPath,
    batches: [],
    committed: [],
    errors: [],
    bodies: () => h.batches.flatMap((b) => b.records.map((r: LogRecord) => r.body)),
    tailer(start, opts = {}) {
      const tailer = new Tailer(
        {
          containerId: ID,
          logPath,
          consumer: {
            async consume(batch) {
              if (opts.reject?.()) throw new Error('backpressure');
              h.batches.push(batch);
              if (opts.autoAck !== false) batch.ack();
            },
          },
          start,
          maxLineBytes: opts.maxLineBytes ?? 1024 * 1024,
          chunkBytes: 4096,
          commit: (p) => h.committed.push(p),
          onError: (err) => h.errors.push(err),
          metrics: metrics(),
        },
        undefined,
      );
      t.after(() => tailer.stop());
      return tailer;
    },
  };
  t.after(() => rm(root, { recursive: true, force: true }));
  return h;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Docker's rotation: rename current → .1 (shifting older ones up), then create a new current file. */
function rotate(logPath: string, maxFile: number, compress = false): void {
  const ext = compress ? '.gz' : '';
  rmSync(`${logPath}.${maxFile - 1}${ext}`, { force: true });
  for (let i = maxFile - 2; i >= 1; i--) {
    try {
      renameSync(`${logPath}.${i}${ext}`, `${logPath}.${i + 1}${ext}`);
    } catch {}
  }
  if (compress) {
    writeFileSync(`${logPath}.1.gz`, gzipSync(readFileSync(logPath)));
    unlinkSync(logPath);
  } else renameSync(logPath, `${logPath}.1`);
  writeFileSync(logPath, '');
}

test('lines written across several rotations arrive exactly once and in order', async (t) => {
  const h = await harness(t);
  const tailer = h.tailer('beginning');
  tailer.resume();
  const expected: string[] = [];
  for (let i = 0; i < 2000; i++) {
    appendFileSync(h.logPath, line(`line ${i}\n`));
    expected.push(`line ${i}`);
    if (i % 300 === 299) {
      await until('reader to catch up', () => h.bodies().length === i + 1);
      rotate(h.logPath, 3);
    }
  }
  await until('all lines', () => h.bodies().length >= expected.length);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(h.bodies(), expected);
});

test('16 KiB partials are joined into one record, and a joined record is cut at max_line_bytes', async (t) => {
  const h = await harness(t);
  const chunk = 'x'.repeat(16 * 1024);
  appendFileSync(h.logPath, line(chunk) + line(chunk) + line('end\n') + line('next\n'));
  appendFileSync(h.logPath, line(chunk) + line('tail\n'));
  const tailer = h.tailer('beginning', { maxLineBytes: 20_000 });
  tailer.resume();
  await until('three records', () => h.bodies().length === 3);
  const [first, second, third] = h.batches.flatMap((b) => b.records);
  assert.equal(first?.body.length, 20_000);
  assert.equal(first?.attributes?.[TRUNCATED_ATTRIBUTE], 'true');
  assert.equal(second?.body, 'next');
  assert.equal(second?.attributes, undefined);
  assert.equal(third?.body, `${chunk}tail`);
  assert.equal(third?.attributes, undefined);
});

test('a new tailer resumes after the last acked batch and skips nothing written meanwhile', async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 500; i++) appendFileSync(h.logPath, line(`a${i}\n`));
  const first = h.tailer('beginning');
  first.resume();
  await until('first 500', () => h.bodies().length === 500);
  await first.stop();
  const checkpoint = h.committed.at(-1);
  assert.ok(checkpoint);
  for (let i = 0; i < 500; i++) appendFileSync(h.logPath, line(`b${i}\n`));
  rotate(h.logPath, 5);
  for (let i = 0; i < 100; i++) appendFileSync(h.logPath, line(`c${i}\n`));
  h.batches.length = 0;
  const second = h.tailer(checkpoint);
  second.resume();
  await until('the rest', () => h.bodies().length === 600);
  assert.deepEqual(h.bodies(), [
    ...Array.from({ length: 500 }, (_, i) => `b${i}`),
    ...Array.from({ length: 100 }, (_, i) => `c${i}`),
  ]);
});

test('unacked batches are not committed: a restart from the checkpoint re-reads only them', async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 300; i++) appendFileSync(h.logPath, line(`n${i}\n`));
  const first = h.tailer('beginning', { autoAck: false });
  first.resume();
  await until('all read', () => h.bodies().length === 300);
  const batches = [...h.batches];
  assert.ok(batches.length >= 3, `expected several batches, got ${batches.length}`);
  // Ack out of order, leaving the second batch in flight.
  batches[2]?.ack();
  batches[0]?.ack();
  await first.stop();
  const checkpoint = h.committed.at(-1);
  assert.ok(checkpoint);
  h.batches.length = 0;
  h.tailer(checkpoint).resume();
  const unacked = batches.slice(1).flatMap((b) => b.records.map((r) => r.body));
  await until('re-read', () => h.bodies().length === unacked.length);
  assert.deepEqual(h.bodies(), unacked);
});

test('a checkpoint in a file that was compressed meanwhile resumes by time in the .gz file', async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 200; i++) appendFileSync(h.logPath, line(`a${i}\n`));
  const first = h.tailer('beginning');
  first.resume();
  await until('first 200', () => h.bodies().length === 200);
  await first.stop();
  const checkpoint = h.committed.at(-1);
  assert.ok(checkpoint);
  for (let i = 0; i < 50; i++) appendFileSync(h.logPath, line(`b${i}\n`));
  rotate(h.logPath, 3, true);
  for (let i = 0; i < 50; i++) appendFileSync(h.logPath, line(`c${i}\n`));
  h.batches.length = 0;
  h.tailer(checkpoint).resume();
  await until('the rest', () => h.bodies().length === 100);
  assert.deepEqual(h.bodies(), [
    ...Array.from({ length: 50 }, (_, i) => `b${i}`),
    ...Array.from({ length: 50 }, (_, i) => `c${i}`),
  ]);
});

test('start_at end skips what was written before and reads what follows', async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 10; i++) appendFileSync(h.logPath, line(`old${i}\n`));
  const tailer = h.tailer('end');
  tailer.resume();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.committed[0]?.offset, statSync(h.logPath).size, 'the start is checkpointed at once');
  appendFileSync(h.logPath, line('new\n', 'stderr'));
  await until('new line', () => h.bodies().length === 1);
  const record = h.batches[0]?.records[0];
  assert.equal(record?.body, 'new');
  assert.equal(record?.stream, 'stderr');
  assert.equal(record?.severityText, 'ERROR');
  assert.equal(record?.containerId, ID);
});

test('a rejected consume is backpressure: the same batch is offered again and nothing is lost', async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 50; i++) appendFileSync(h.logPath, line(`r${i}\n`));
  let rejections = 0;
  const tailer = h.tailer('beginning', { reject: () => rejections++ < 1 });
  tailer.resume();
  await until('all lines', () => h.bodies().length === 50);
  assert.deepEqual(
    h.bodies(),
    Array.from({ length: 50 }, (_, i) => `r${i}`),
  );
  assert.equal(h.committed.at(-1)?.offset, statSync(h.logPath).size);
  assert.equal(h.errors.length, 1);
});

test('start_at end begins after the last whole line when the file ends mid-line', async (t) => {
  const h = await harness(t);
  appendFileSync(h.logPath, line('old\n'));
  const next = line('next\n');
  appendFileSync(h.logPath, next.slice(0, 20));
  const tailer = h.tailer('end');
  tailer.resume();
  await new Promise((r) => setTimeout(r, 100));
  appendFileSync(h.logPath, next.slice(20));
  await until('the line being written', () => h.bodies().length === 1);
  assert.deepEqual(h.bodies(), ['next']);
});

test('a tailer resumed right after a drain goes on reading from where it was', async (t) => {
  const h = await harness(t);
  appendFileSync(h.logPath, line('one\n'));
  const tailer = h.tailer('beginning');
  tailer.resume();
  await until('one', () => h.bodies().length === 1);
  // Drained and resumed in the same tick (a quick die/start), then drained to the end and resumed.
  void tailer.drain(true);
  tailer.resume();
  await tailer.drain(false);
  tailer.resume();
  appendFileSync(h.logPath, line('two\n'));
  await until('two', () => h.bodies().length === 2);
  assert.deepEqual(h.bodies(), ['one', 'two']);
});
