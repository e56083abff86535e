import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Encoder } from '@msgpack/msgpack';
import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import type { Metadata } from '../../agent/metadata/index.ts';
import type { CheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { openCheckpointStore } from '../../agent/pipeline/checkpoints.ts';
import { createEnrichStage } from '../../agent/pipeline/enrich.ts';
import type { LogRecord } from '../../agent/pipeline/types.ts';
import { fluentForwardConfigSchema } from '../../agent/receivers/fluent-forward/config.ts';
import {
  createFluentForwardReceiver,
  type FluentForwardReceiver,
} from '../../agent/receivers/fluent-forward/index.ts';
import { forwardExtensionCodec } from '../../agent/receivers/fluent-forward/protocol.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { Collector } from '../helpers/collector.ts';
import { runDetached } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { engineClient, receiverDeps, startMetadata } from '../helpers/metadata.ts';
import { until } from '../helpers/wait.ts';

let engine: Engine;
let docker: Docker;
let metadata: Metadata;
let stateDir: string;
let checkpoints: CheckpointStore;

before(async () => {
  engine = await startEngine();
  docker = engineClient(engine);
  metadata = await startMetadata(docker);
  stateDir = await mkdtemp(join(tmpdir(), 'lc-ff-state-'));
  checkpoints = await openCheckpointStore(stateDir, silentLogger());
});

after(async () => {
  await metadata?.watcher.shutdown();
  await engine?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

/** Receiver → real enrich stage → this collector, which acknowledges every batch. */
async function startPipeline(t: { after(fn: () => Promise<void>): void }): Promise<{
  receiver: FluentForwardReceiver;
  records: LogRecord[];
  registry: Registry;
  port: number;
}> {
  const collector = new Collector();
  const registry = new Registry();
  const enrich = createEnrichStage({
    store: metadata.store,
    next: collector,
    maxWaitMs: 2000,
    logger: silentLogger(),
    metrics: registry,
  });
  await enrich.start();
  const receiver = createFluentForwardReceiver(
    fluentForwardConfigSchema.parse({ listen: '127.0.0.1:0' }),
    receiverDeps(docker, metadata, enrich, checkpoints, registry),
  );
  await receiver.start();
  t.after(async () => {
    await receiver.shutdown();
    await enrich.shutdown();
  });
  return {
    receiver,
    records: collector.records,
    registry,
    port: Number(receiver.address().tcp.split(':').pop()),
  };
}

const LINES = 500;
const script = (stderr: boolean): string =>
  `for i in $(seq 1 ${LINES}); do echo "line $i"; done; ${stderr ? 'echo "to stderr" >&2; ' : ''}head -c 40000 /dev/zero | tr "\\0" y; echo`;

for (const ack of [false, true]) {
  const opts = ack ? ['--log-opt', 'fluentd-request-ack=true'] : [];
  // With acks, Docker's client (fluent-logger-golang) reads acks in write order while its stdout and
  // stderr copiers write concurrently: crossed acks make it reconnect and resend (duplicates, its
  // issue #103). Exactly-once is asserted on one stream there.
  const expected = ack ? LINES + 1 : LINES + 2;
  test(`a fluentd-driver container (${ack ? 'with fluentd-request-ack' : 'without acks'}) yields every line, in order, enriched`, async (t) => {
    const { receiver, records, registry } = await startPipeline(t);
    const id = await runDetached(
      engine,
      '--log-driver',
      'fluentd',
      '--log-opt',
      `fluentd-address=${receiver.address().tcp}`,
      ...opts,
      TEST_IMAGES.app,
      'sh',
      '-c',
      script(!ack),
    );
    t.after(() => engine.docker('rm', '-f', id).then(() => undefined));
    await until('every line', () => records.length >= expected).catch((err: unknown) => {
      throw new Error(
        `${(err as Error).message}: ${records.length} records, last ${records.at(-1)?.body.slice(0, 40)}`,
      );
    });
    const mine = records.filter((r) => r.containerId === id);
    assert.equal(mine.length, expected);
    // stdout and stderr are copied by two goroutines: order holds within a stream.
    assert.deepEqual(
      mine.filter((r) => r.stream === 'stdout' && r.body.startsWith('line ')).map((r) => r.body),
      Array.from({ length: LINES }, (_, i) => `line ${i + 1}`),
    );
    if (!ack) assert.equal(mine.find((r) => r.body === 'to stderr')?.stream, 'stderr');
    const long = mine.find((r) => r.body.startsWith('yyy'));
    assert.equal(long?.body, 'y'.repeat(40_000), 'the 16 KiB partials are joined');
    for (const r of mine) {
      assert.equal(r.container?.attributes['vcs.ref.head.revision'], APP_REVISION);
      assert.equal(r.container?.attributes['container.id'], id);
    }
    const acks =
      (await registry.getSingleMetric('labelcast_fluent_forward_acks_total')?.get())?.values[0]?.value ?? 0;
    if (ack) assert.ok(acks >= LINES, `every message acknowledged (${acks})`);
    else assert.equal(acks, 0);
  });
}

test('fluentd-sub-second-precision sends EventTime, decoded to the nanosecond', async (t) => {
  const { receiver, records } = await startPipeline(t);
  const before = BigInt(Date.now()) * 1_000_000n;
  const id = await runDetached(
    engine,
    '--log-driver',
    'fluentd',
    '--log-opt',
    `fluentd-address=${receiver.address().tcp}`,
    '--log-opt',
    'fluentd-sub-second-precision=true',
    TEST_IMAGES.base,
    'sh',
    '-c',
    'for i in 1 2 3 4 5; do echo "precise $i"; done',
  );
  t.after(() => engine.docker('rm', '-f', id).then(() => undefined));
  await until('five lines', () => records.filter((r) => r.containerId === id).length === 5);
  const times = records.filter((r) => r.containerId === id).map((r) => r.timeUnixNano);
  assert.ok(
    times.some((ns) => ns % 1_000_000_000n !== 0n),
    'sub-second parts are present',
  );
  for (const ns of times) assert.ok(ns >= before - 1_000_000_000n && ns < before + 60_000_000_000n);
});

test('a malformed frame from one client closes only that connection; another keeps working', async (t) => {
  const { port, records, registry } = await startPipeline(t);
  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => resolve(s));
      s.once('error', reject);
    });
  const good = await open();
  const bad = await open();
  bad.on('error', () => {});
  const badClosed = new Promise<void>((resolve) => bad.once('close', () => resolve()));
  bad.write(Buffer.from([0x93, 0xa1, 0x74, 0xc1, 0xff, 0xff]));
  await badClosed;
  const encoder = new Encoder({ extensionCodec: forwardExtensionCodec });
  good.write(encoder.encode(['test', Math.floor(Date.now() / 1000), { log: 'after the bad client' }]));
  await until('the good connection', () => records.some((r) => r.body === 'after the bad client'));
  assert.equal(good.destroyed, false);
  good.destroy();
  const malformed =
    (await registry.getSingleMetric('labelcast_fluent_forward_malformed_total')?.get())?.values ?? [];
  assert.equal(
    malformed.reduce((n, v) => n + v.value, 0),
    1,
  );
});
