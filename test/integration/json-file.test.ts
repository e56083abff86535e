import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type Docker from 'dockerode';
import type { Metadata } from '../../agent/metadata/index.ts';
import { type CheckpointStore, openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import type { LogRecord } from '../../agent/pipeline/types.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import {
  checkpointKey,
  createJsonFileReceiver,
  type JsonFileReceiver,
} from '../../agent/receivers/json-file/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { Collector } from '../helpers/collector.ts';
import { runDetached } from '../helpers/containers.ts';
import { type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { lifecycleSuite } from '../helpers/lifecycle.ts';
import { engineClient, receiverDeps, startMetadata } from '../helpers/metadata.ts';
import { tempDir } from '../helpers/state-dir.ts';
import { until } from '../helpers/wait.ts';

let engine: Engine;
let docker: Docker;
let metadata: Metadata;

before(async () => {
  engine = await startEngine();
  docker = engineClient(engine);
  metadata = await startMetadata(docker, { tombstone_grace: '1s' });
});

after(async () => {
  await metadata?.watcher.shutdown();
  await engine?.close();
});

interface Running {
  receiver: JsonFileReceiver;
  collector: Collector;
  checkpoints: CheckpointStore;
}

async function startReceiver(
  dir: string,
  config: Record<string, unknown> = {},
  collector = new Collector(),
): Promise<Running> {
  const checkpoints = await openCheckpointStore(join(dir, 'checkpoints'), silentLogger());
  const receiver = createJsonFileReceiver(
    jsonFileConfigSchema.parse({ docker_root: engine.dataRoot, ...config }),
    receiverDeps(docker, metadata, collector, checkpoints),
  );
  await receiver.start();
  return { receiver, collector, checkpoints };
}

const numbers = (from: number, to: number): string[] =>
  Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

/** Every `log` in the container's json-file logs as the engine wrote them, oldest file first. */
function engineBodies(id: string): string[] {
  const dir = join(engine.dataRoot, 'containers', id);
  const files = readdirSync(dir)
    .filter((n) => n.includes('-json.log'))
    .sort((a, b) => Number(b.split('.log.')[1] ?? 0) - Number(a.split('.log.')[1] ?? 0));
  return files.flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { log: string }).log.replace(/\n$/, '')),
  );
}

lifecycleSuite('json_file receiver', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-jf-life-'));
  const checkpoints = await openCheckpointStore(dir, silentLogger());
  const collector = new Collector();
  const receiver = createJsonFileReceiver(
    jsonFileConfigSchema.parse({ docker_root: engine.dataRoot }),
    receiverDeps(docker, metadata, collector, checkpoints),
  );
  let id = '';
  return {
    component: receiver,
    async send() {
      id = await runDetached(engine, TEST_IMAGES.base, 'seq', '1', '300');
      await engine.docker('wait', id);
      // The receiver follows the container once the metadata store has seen it start.
      await until('the first line', () => collector.bodies(id).length > 0);
      return 300;
    },
    received: () => (id ? collector.bodies(id).length : 0),
    async close() {
      await checkpoints.flush();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

test('50,000 numbered lines arrive exactly once and in order across size-based rotations', async (t) => {
  const { receiver, collector } = await startReceiver(await tempDir(t, 'lc-jf-state-'));
  t.after(() => receiver.shutdown());
  const id = await runDetached(
    engine,
    '--log-opt',
    'max-size=64k',
    '--log-opt',
    'max-file=3',
    TEST_IMAGES.base,
    'sh',
    '-c',
    // Start writing once the receiver follows the container, and write in bursts of about half a file:
    // files the engine rotated away and deleted before anyone read them are the engine's loss.
    'sleep 1; i=0; while [ $i -lt 100 ]; do seq $((i*500+1)) $((i*500+500)); usleep 40000; i=$((i+1)); done',
  );
  await until('50,000 lines', () => collector.bodies(id).length >= 50_000).catch((err: Error) => {
    const got = collector.bodies(id);
    const gaps = got.flatMap((b, i) =>
      i > 0 && Number(b) !== Number(got[i - 1]) + 1 ? [`${got[i - 1]}→${b}`] : [],
    );
    throw new Error(`${err.message}: got ${got.length}, gaps ${gaps.slice(0, 10).join(' ')}`);
  });
  await engine.docker('wait', id);
  await new Promise((r) => setTimeout(r, 300));
  const bodies = collector.bodies(id);
  assert.equal(bodies.length, 50_000);
  assert.deepEqual(bodies, numbers(1, 50_000));
  const rotated = readdirSync(join(engine.dataRoot, 'containers', id)).filter((n) =>
    /-json\.log\.\d+$/.test(n),
  );
  assert.ok(rotated.length > 0, 'the engine rotated the log');
  const records = collector.of(id);
  assert.ok(records.every((r) => r.stream === 'stdout' && r.containerId === id));
  assert.ok(records.every((r, i) => i === 0 || r.timeUnixNano >= (records[i - 1] as LogRecord).timeUnixNano));
  assert.equal(records[0]?.container?.id, id, 'records carry the container entry when the store has it');
});

test('a 100 KiB line, split by the engine into 16 KiB partials, arrives as one record', async (t) => {
  const { receiver, collector } = await startReceiver(await tempDir(t, 'lc-jf-state-'));
  t.after(() => receiver.shutdown());
  const id = await runDetached(
    engine,
    TEST_IMAGES.base,
    'sh',
    '-c',
    "echo before; head -c 102400 /dev/zero | tr '\\0' a; echo; echo after >&2",
  );
  await until('three records', () => collector.bodies(id).length >= 3);
  await new Promise((r) => setTimeout(r, 300));
  const records = collector.of(id);
  // stdout and stderr are copied by separate engine goroutines: only the order within a stream holds.
  const stdout = records.filter((r) => r.stream === 'stdout');
  const stderr = records.filter((r) => r.stream === 'stderr');
  assert.deepEqual(
    stdout.map((r) => r.body.length),
    [6, 102_400],
  );
  assert.deepEqual(
    stderr.map((r) => r.body),
    ['after'],
  );
  assert.equal(stdout[1]?.body, 'a'.repeat(102_400));
  assert.equal(stdout[1]?.attributes, undefined);
  assert.equal(stderr[0]?.severityText, 'ERROR');
  // The engine really wrote partials: more physical lines than records.
  assert.ok(engineBodies(id).length > 3);
});

test('a container stop/start keeps the checkpoint: old lines are not sent again, also by a new receiver', async (t) => {
  const dir = await tempDir(t, 'lc-jf-state-');
  const first = await startReceiver(dir, { start_at: 'beginning' });
  const id = await runDetached(
    engine,
    TEST_IMAGES.base,
    'sh',
    '-c',
    'echo run-$(cat /proc/uptime | tr -d " ."); seq 1 100; sleep 2',
  );
  await until('first run', () => first.collector.bodies(id).length === 101);
  await engine.docker('stop', '-t', '0', id);
  await engine.docker('start', id);
  await until('second run', () => first.collector.bodies(id).length === 202);
  await engine.docker('wait', id);
  await first.receiver.shutdown();
  await first.checkpoints.flush();
  const bodies = first.collector.bodies(id);
  assert.deepEqual(bodies.slice(1, 101), numbers(1, 100));
  assert.deepEqual(bodies.slice(102), numbers(1, 100));
  assert.notEqual(bodies[0], bodies[101]);

  // Started while no receiver runs; the next receiver starts from the checkpoint, not from start_at.
  await engine.docker('start', id);
  await until('the third run to log', () => engineBodies(id).length === 303, 10_000);
  const second = await startReceiver(dir, { start_at: 'beginning' });
  t.after(() => second.receiver.shutdown());
  await until('third run', () => second.collector.bodies(id).length >= 101);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(second.collector.bodies(id), engineBodies(id).slice(202));
  assert.ok(second.checkpoints.get(checkpointKey(id)));
});

test('a receiver restarted mid-stream loses nothing and re-sends at most its unacked batches', async (t) => {
  const dir = await tempDir(t, 'lc-jf-state-');
  const collector = new Collector();
  let acked = 0;
  // Ack the first batches, then keep every later batch in flight.
  collector.hold = () => ++acked > 3;
  const first = await startReceiver(dir, {}, collector);
  const id = await runDetached(
    engine,
    TEST_IMAGES.base,
    'sh',
    '-c',
    'i=1; while [ $i -le 30000 ]; do echo $i; [ $((i % 100)) -eq 0 ] && usleep 10000; i=$((i+1)); done',
  );
  await until('unacked batches', () => collector.unacked.length >= 3);
  await first.receiver.shutdown();
  await first.checkpoints.flush();
  const unackedBodies = new Set(collector.unacked.flatMap((b) => b.records.map((r) => r.body)));
  const firstBodies = collector.bodies(id);
  assert.ok(firstBodies.length < 30_000, 'the restart happened mid-stream');

  const second = await startReceiver(dir);
  t.after(() => second.receiver.shutdown());
  await engine.docker('wait', id);
  await until('the rest', () => second.collector.bodies(id).at(-1) === '30000');
  const secondBodies = second.collector.bodies(id);
  const seen = new Set([...firstBodies, ...secondBodies]);
  assert.deepEqual(
    [...seen].sort((a, b) => Number(a) - Number(b)),
    numbers(1, 30_000),
    'nothing lost',
  );
  const duplicates = secondBodies.filter((b) => firstBodies.includes(b));
  assert.ok(duplicates.length > 0, 'unacked batches are sent again');
  assert.ok(
    duplicates.every((b) => unackedBodies.has(b)),
    'only unacked batches are sent again',
  );
  assert.deepEqual(secondBodies, [...new Set(secondBodies)], 'the second receiver sends each line once');
});

test('a dockerd restart mid-stream neither loses nor duplicates lines of a restarting container', async (t) => {
  const { receiver, collector } = await startReceiver(await tempDir(t, 'lc-jf-state-'));
  t.after(() => receiver.shutdown());
  const id = await runDetached(
    engine,
    '--restart',
    'always',
    '--stop-timeout',
    '1',
    TEST_IMAGES.base,
    'sh',
    '-c',
    'i=1; while [ $i -le 2000 ]; do echo $i; i=$((i+1)); usleep 1000; done; sleep 1000',
  );
  await until('lines before the restart', () => collector.bodies(id).length > 200);
  await engine.restart();
  await until('the container to log again', () => collector.bodies(id).filter((b) => b === '1').length === 2);
  await until('the second run to end', () => collector.bodies(id).at(-1) === '2000');
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(collector.bodies(id), engineBodies(id));
});

test('a removed container’s checkpoint is deleted once its tombstone is gone', async (t) => {
  const { receiver, collector, checkpoints } = await startReceiver(await tempDir(t, 'lc-jf-state-'));
  t.after(() => receiver.shutdown());
  const id = await runDetached(engine, TEST_IMAGES.base, 'sh', '-c', 'seq 1 10; sleep 30');
  await until('ten lines', () => collector.bodies(id).length === 10);
  await until('the checkpoint', () => checkpoints.get(checkpointKey(id)) !== undefined, 5000);
  await engine.docker('rm', '-f', id);
  await until('the checkpoint to go', () => checkpoints.get(checkpointKey(id)) === undefined, 20_000);
  assert.deepEqual(collector.bodies(id), numbers(1, 10));
});

test('containers labelled io.labelcast.ignore=true and excluded ids are not read', async (t) => {
  const { receiver, collector } = await startReceiver(await tempDir(t, 'lc-jf-state-'));
  t.after(() => receiver.shutdown());
  const script = 'i=0; while [ $i -lt 50 ]; do echo $i; i=$((i+1)); usleep 20000; done';
  const ignored = await runDetached(
    engine,
    '--label',
    'io.labelcast.ignore=true',
    TEST_IMAGES.base,
    'sh',
    '-c',
    script,
  );
  const excluded = await runDetached(engine, TEST_IMAGES.base, 'sh', '-c', `sleep 1; ${script}`);
  receiver.exclude(excluded);
  const read = await runDetached(engine, TEST_IMAGES.base, 'sh', '-c', script);
  await engine.docker('wait', ignored, excluded, read);
  await until('the read container', () => collector.bodies(read).length === 50);
  assert.equal(collector.bodies(ignored).length, 0);
  assert.equal(collector.bodies(excluded).length, 0);
});
