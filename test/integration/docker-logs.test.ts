import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type Docker from 'dockerode';
import { parseRfc3339Nano } from '../../agent/docker/log-stream.ts';
import type { Metadata } from '../../agent/metadata/index.ts';
import { type CheckpointStore, openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import type { LogRecord, Receiver } from '../../agent/pipeline/types.ts';
import { dockerLogsConfigSchema } from '../../agent/receivers/docker-logs/config.ts';
import { createDockerLogsReceiver } from '../../agent/receivers/docker-logs/index.ts';
import { jsonFileConfigSchema } from '../../agent/receivers/json-file/config.ts';
import { createJsonFileReceiver } from '../../agent/receivers/json-file/index.ts';
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
  metadata = await startMetadata(docker);
});

after(async () => {
  await metadata?.watcher.shutdown();
  await engine?.close();
});

async function startReceiver(
  checkpoints: CheckpointStore,
  config: Record<string, unknown> = { start_at: 'beginning' },
): Promise<{ receiver: Receiver; collector: Collector }> {
  const collector = new Collector();
  const receiver = createDockerLogsReceiver(
    dockerLogsConfigSchema.parse(config),
    receiverDeps(docker, metadata, collector, checkpoints),
  );
  await receiver.start();
  return { receiver, collector };
}

interface Line {
  stream: string;
  body: string;
  time: bigint;
}

/**
 * The container's log as the engine stored it (json-file on disk), read independently of labelcast:
 * 16 KiB partials (no trailing `\n`) joined per stream, the newline (and a TTY's `\r`) removed.
 */
function engineLog(id: string, tty: boolean): Line[] {
  const text = readFileSync(join(engine.dataRoot, 'containers', id, `${id}-json.log`), 'utf8');
  const out: Line[] = [];
  const pending = new Map<string, Line>();
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    const { log, stream, time } = JSON.parse(raw) as { log: string; stream: string; time: string };
    const t = parseRfc3339Nano(time) as bigint;
    const open = pending.get(stream);
    const line = open ?? { stream, body: '', time: t };
    line.body += log;
    if (!log.endsWith('\n')) {
      pending.set(stream, line);
      continue;
    }
    pending.delete(stream);
    line.body = line.body.slice(0, tty && line.body.endsWith('\r\n') ? -2 : -1);
    out.push(line);
  }
  out.push(...pending.values());
  return out;
}

const view = (lines: { stream: string | undefined; body: string }[]): string[] =>
  lines.map((l) => `${l.stream}|${l.body}`);

const running = async (id: string): Promise<boolean> =>
  (await engine.docker('inspect', '-f', '{{.State.Running}}', id)) === 'true';

// stdout and stderr lines, a 40,000-byte line (three 16 KiB pieces), multi-byte UTF-8, an empty line
// and an unterminated last line.
const SCRIPT = [
  'for i in $(seq 1 300); do echo "out $i ünïcødé ✓"; echo "err $i" >&2; done',
  'head -c 40000 /dev/zero | tr "\\0" x; echo',
  'echo',
  'echo \'{"level":"warn","msg":"json"}\'',
  'printf "no newline at the end"',
].join('; ');

for (const tty of [false, true]) {
  test(`docker_logs gives exactly the engine's json-file content, and the json_file receiver's records, for a ${tty ? 'TTY' : 'non-TTY'} container`, async (t) => {
    const checkpoints = await openCheckpointStore(await tempDir(t, 'lc-dl-state-'), silentLogger());
    const { receiver, collector } = await startReceiver(checkpoints);
    t.after(() => receiver.shutdown());
    const fromFiles = new Collector();
    const jsonFile = createJsonFileReceiver(
      jsonFileConfigSchema.parse({ docker_root: engine.dataRoot, start_at: 'beginning' }),
      receiverDeps(
        docker,
        metadata,
        fromFiles,
        await openCheckpointStore(await tempDir(t, 'lc-dl-state-'), silentLogger()),
      ),
    );
    await jsonFile.start();
    t.after(() => jsonFile.shutdown());
    const args = [
      'run',
      '-d',
      '--network',
      'none',
      ...(tty ? ['-t'] : []),
      TEST_IMAGES.base,
      'sh',
      '-c',
      SCRIPT,
    ];
    const id = await engine.docker(...args);
    await until('the container to exit', async () => !(await running(id)));
    const expected = engineLog(id, tty);
    assert.ok(expected.length > 600, 'the engine logged the lines');
    await until('every line', () => collector.of(id).length >= expected.length).catch((err: unknown) => {
      throw new Error(
        `${(err as Error).message}: ${collector.of(id).length} of ${expected.length}, store ${JSON.stringify(metadata.store.get(id)?.startedAt)} ${metadata.store.get(id)?.running}`,
      );
    });
    const got = collector.of(id);
    assert.deepEqual(view(got), view(expected));
    assert.deepEqual(
      got.map((r) => r.timeUnixNano),
      expected.map((l) => l.time),
      'each record carries the engine timestamp, exactly',
    );
    assert.ok(got.some((r) => r.body.length === 40_000));
    assert.equal(got.find((r) => r.body.startsWith('{"level"'))?.severityText, 'WARN');
    if (!tty) assert.equal(got.find((r) => r.stream === 'stderr')?.severityText, 'ERROR');

    await until('every line through json_file', () => fromFiles.of(id).length >= expected.length).catch(
      (err: unknown) => {
        throw new Error(
          `${(err as Error).message}: ${fromFiles.of(id).length} of ${expected.length}, last ${JSON.stringify(fromFiles.of(id).at(-1)?.body)}`,
        );
      },
    );
    const same = (records: LogRecord[]) =>
      records.map((r) => [r.timeUnixNano, r.stream, r.body, r.severityNumber, r.severityText]);
    assert.deepEqual(same(fromFiles.of(id)), same(got), 'both receivers produce the same records');
  });
}

test('docker_logs resumes from its checkpoint: no line lost and none repeated across an agent restart', async (t) => {
  const dir = await tempDir(t, 'lc-dl-state-');
  let checkpoints = await openCheckpointStore(dir, silentLogger());
  const first = await startReceiver(checkpoints, { start_at: 'end' });
  const id = await runDetached(
    engine,
    TEST_IMAGES.base,
    'sh',
    '-c',
    'trap "exit 0" TERM; i=0; while [ $i -lt 3000 ]; do echo "n $i"; i=$((i+1)); usleep 1000; done',
  );
  t.after(() => engine.docker('rm', '-f', id).then(() => undefined));
  await until('the first receiver to read some lines', () => first.collector.of(id).length >= 200);
  await first.receiver.shutdown();
  await checkpoints.flush();
  const before = first.collector.of(id).map((r) => r.body);

  checkpoints = await openCheckpointStore(dir, silentLogger());
  const second = await startReceiver(checkpoints, { start_at: 'end' });
  t.after(() => second.receiver.shutdown());
  await until('the container to finish', async () => !(await running(id)), 60_000);
  await until('the rest of the lines', () => before.length + second.collector.of(id).length >= 3000);
  const all = [...before, ...second.collector.of(id).map((r) => r.body)];
  assert.deepEqual(
    all,
    Array.from({ length: 3000 }, (_, i) => `n ${i}`),
  );
});

test('docker_logs follows a container through its restart and skips ignored containers', async (t) => {
  const checkpoints = await openCheckpointStore(await tempDir(t, 'lc-dl-state-'), silentLogger());
  const { receiver, collector } = await startReceiver(checkpoints, { start_at: 'end' });
  t.after(() => receiver.shutdown());
  const ignored = await runDetached(
    engine,
    '--label',
    'io.labelcast.ignore=true',
    TEST_IMAGES.base,
    'sh',
    '-c',
    'echo secret; sleep 30',
  );
  const id = await runDetached(engine, TEST_IMAGES.base, 'sh', '-c', 'echo "run $$-$RANDOM"');
  t.after(() => engine.docker('rm', '-f', id, ignored).then(() => undefined));
  await until('the first run', () => collector.of(id).length === 1);
  await until('the first run to exit', async () => !(await running(id)));
  await engine.docker('start', id);
  await until('the second run', () => collector.of(id).length === 2);
  await until('the second run to exit', async () => !(await running(id)));
  assert.deepEqual(view(collector.of(id)), view(engineLog(id, false)));
  assert.equal(collector.of(ignored).length, 0);
});

test('docker_logs loses nothing when dockerd restarts mid-stream (--restart=always)', async (t) => {
  const checkpoints = await openCheckpointStore(await tempDir(t, 'lc-dl-state-'), silentLogger());
  const { receiver, collector } = await startReceiver(checkpoints, { start_at: 'beginning' });
  t.after(() => receiver.shutdown());
  const id = await runDetached(
    engine,
    '--restart=always',
    TEST_IMAGES.base,
    'sh',
    '-c',
    'trap "exit 0" TERM; r=$RANDOM; i=0; while [ $i -lt 100000 ]; do echo "run $r line $i"; i=$((i+1)); usleep 2000; done',
  );
  await until('lines before the restart', () => collector.of(id).length >= 100);
  await engine.restart();
  await until('the engine to restart the container', async () => await running(id));
  await until('the store to see it running', () => metadata.store.get(id)?.running === true);
  const countAfterRestart = collector.of(id).length;
  await until('lines after the restart', () => collector.of(id).length >= countAfterRestart + 100);
  await engine.docker('update', '--restart=no', id);
  await engine.docker('stop', '-t', '1', id);
  const expected = engineLog(id, false);
  await until('every line the engine stored', () => collector.of(id).length >= expected.length);
  const got = collector.of(id);
  assert.deepEqual(view(got), view(expected));
  const runs = new Set(got.map((r) => r.body.split(' ')[1]));
  assert.ok(runs.size >= 2, 'lines from before and after the restart');
  await engine.docker('rm', '-f', id);
});

lifecycleSuite('docker_logs receiver', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-dl-life-'));
  const checkpoints = await openCheckpointStore(dir, silentLogger());
  const collector = new Collector();
  const receiver = createDockerLogsReceiver(
    dockerLogsConfigSchema.parse({ start_at: 'beginning' }),
    receiverDeps(docker, metadata, collector, checkpoints),
  );
  let id = '';
  return {
    component: receiver,
    async send() {
      id = await runDetached(engine, TEST_IMAGES.base, 'sh', '-c', 'seq 1 50');
      await until('fifty lines', () => collector.of(id).length === 50);
      return 50;
    },
    received: () => collector.of(id).length,
    async close() {
      if (id) await engine.docker('rm', '-f', id);
      await rm(dir, { recursive: true, force: true });
    },
  };
});
