import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Decoder, Encoder } from '@msgpack/msgpack';
import type Docker from 'dockerode';
import { Registry } from 'prom-client';
import type { CheckpointStore } from '../../../agent/pipeline/checkpoints.ts';
import type { Consumer, LogBatch, LogRecord } from '../../../agent/pipeline/types.ts';
import { fluentForwardConfigSchema } from '../../../agent/receivers/fluent-forward/config.ts';
import {
  createFluentForwardReceiver,
  type FluentForwardReceiver,
} from '../../../agent/receivers/fluent-forward/index.ts';
import { EventTime, forwardExtensionCodec } from '../../../agent/receivers/fluent-forward/protocol.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { lifecycleSuite } from '../../helpers/lifecycle.ts';
import { fakeStore } from '../pipeline/fixtures.ts';

const encoder = new Encoder({ extensionCodec: forwardExtensionCodec });
const pack = (value: unknown): Buffer => Buffer.from(encoder.encode(value));
const CID = 'c'.repeat(64);

const noCheckpoints: CheckpointStore = {
  get: () => undefined,
  set() {},
  delete() {},
  keys: () => [],
  flush: async () => {},
};

interface Harness {
  receiver: FluentForwardReceiver;
  records: LogRecord[];
  batches: number;
  registry: Registry;
  port: number;
}

async function startReceiver(
  consumer?: (batch: LogBatch, h: Harness) => Promise<void>,
  overrides: Record<string, unknown> = {},
  listen = true,
): Promise<Harness> {
  const registry = new Registry();
  const h = { records: [], batches: 0, registry, port: 0 } as unknown as Harness;
  const sink: Consumer<LogBatch> = {
    async consume(batch) {
      h.batches++;
      if (consumer) await consumer(batch, h);
      h.records.push(...batch.records);
    },
  };
  h.receiver = createFluentForwardReceiver(
    fluentForwardConfigSchema.parse({ listen: '127.0.0.1:0', ...overrides }),
    {
      docker: {} as Docker,
      store: fakeStore([]),
      consumer: sink,
      checkpoints: noCheckpoints,
      logger: silentLogger(),
      metrics: registry,
    },
  );
  if (!listen) return h;
  await h.receiver.start();
  h.port = Number(h.receiver.address().tcp.split(':').pop());
  return h;
}

async function connect(port: number): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port });
  // The receiver resets connections it refuses; the tests observe 'close'.
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

const closed = (socket: Socket): Promise<void> =>
  new Promise((resolve) => socket.once('close', () => resolve()));

/** Reads msgpack replies ({ack}) from the socket as they come. */
function replies(socket: Socket): unknown[] {
  const out: unknown[] = [];
  const decoder = new Decoder();
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    try {
      for (const v of decoder.decodeMulti(pending)) out.push(v);
      pending = Buffer.alloc(0);
    } catch {
      // An incomplete reply: wait for the rest.
    }
  });
  return out;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const metric = async (registry: Registry, name: string): Promise<number> => {
  const m = await registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((sum, v) => sum + v.value, 0);
};

const dockerRecord = (log: string, extra: Record<string, string> = {}) => ({
  container_id: CID,
  container_name: '/web',
  source: 'stdout',
  log,
  ...extra,
});

describe('fluent_forward receiver', () => {
  const open: Harness[] = [];
  after(async () => {
    for (const h of open) await h.receiver.shutdown();
  });
  const start = async (...args: Parameters<typeof startReceiver>) => {
    const h = await startReceiver(...args);
    open.push(h);
    return h;
  };

  it('decodes Message mode with an integer time and maps Docker fields onto the record', async () => {
    const h = await start();
    const c = await connect(h.port);
    c.end(pack(['docker.web', 1796397764, dockerRecord('hello', { source: 'stderr', team: 'payments' })]));
    await until(() => h.records.length === 1, 'one record');
    const [r] = h.records;
    assert.equal(r?.body, 'hello');
    assert.equal(r?.containerId, CID);
    assert.equal(r?.stream, 'stderr');
    assert.equal(r?.timeUnixNano, 1796397764_000000000n);
    assert.deepEqual(r?.attributes, { team: 'payments' });
  });

  it('decodes EventTime (ext type 0) to exact nanoseconds', async () => {
    const h = await start();
    const c = await connect(h.port);
    c.end(pack(['t', new EventTime(1796397764_123456789n), dockerRecord('precise')]));
    await until(() => h.records.length === 1, 'one record');
    assert.equal(h.records[0]?.timeUnixNano, 1796397764_123456789n);
  });

  it('decodes Forward, PackedForward and CompressedPackedForward modes, one batch per message', async () => {
    const h = await start();
    const c = await connect(h.port);
    const entries = (prefix: string) => [
      [1796397764, dockerRecord(`${prefix}-1`)],
      [new EventTime(1796397765_000000001n), dockerRecord(`${prefix}-2`)],
    ];
    const packed = Buffer.concat(entries('packed').map(pack));
    const gz = gzipSync(Buffer.concat(entries('gzip').map(pack)));
    c.write(pack(['t', entries('forward')]));
    c.write(pack(['t', packed]));
    c.end(pack(['t', gz, { compressed: 'gzip' }]));
    await until(() => h.records.length === 6, 'six records');
    assert.deepEqual(
      h.records.map((r) => r.body),
      ['forward-1', 'forward-2', 'packed-1', 'packed-2', 'gzip-1', 'gzip-2'],
    );
    assert.equal(h.batches, 3);
    assert.equal(h.records[5]?.timeUnixNano, 1796397765_000000001n);
  });

  it('answers option.chunk with {ack: chunk} once the batch is queued, and stops at max_buffer_bytes', async () => {
    const releases: (() => void)[] = [];
    const h = await start(
      async () => {
        await new Promise<void>((r) => {
          releases.push(r);
        });
      },
      { max_buffer_bytes: 4096 },
    );
    const c = await connect(h.port);
    const acks = replies(c);
    // Each record counts its body plus a fixed overhead: three ~1.3 KiB records stay within 4 KiB.
    const body = 'z'.repeat(1000);
    for (let i = 0; i < 6; i++)
      c.write(pack(['t', 1796397764, dockerRecord(`${i} ${body}`), { chunk: `k${i}` }]));
    await until(() => acks.length === 3, 'acks within the bound');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      acks.map((a) => (a as { ack: string }).ack),
      ['k0', 'k1', 'k2'],
      'the batch that crosses the bound waits for its ack, and nothing more is read',
    );
    assert.equal(h.batches, 1, 'batches go to the consumer one at a time');
    releases.shift()?.();
    await until(() => acks.length === 4, 'one more ack once one consume() resolves');
    while (h.records.length < 6) {
      releases.shift()?.();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(
      acks.map((a) => (a as { ack: string }).ack),
      ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'],
    );
    c.destroy();
  });

  it('joins partial_message pieces by partial_id until partial_last', async () => {
    const h = await start();
    const c = await connect(h.port);
    const piece = (log: string, ordinal: number, last: boolean) =>
      pack([
        't',
        1796397764,
        dockerRecord(log, {
          partial_message: 'true',
          partial_id: 'p1',
          partial_ordinal: String(ordinal),
          partial_last: String(last),
        }),
      ]);
    c.write(piece('a'.repeat(16384), 1, false));
    c.write(pack(['t', 1796397764, dockerRecord('between')]));
    c.write(piece('b'.repeat(16384), 2, false));
    c.end(piece('end', 3, true));
    await until(() => h.records.length === 2, 'two records');
    assert.equal(h.records[0]?.body, 'between');
    assert.equal(h.records[1]?.body, `${'a'.repeat(16384)}${'b'.repeat(16384)}end`);
    assert.equal(h.records[1]?.attributes, undefined);
  });

  it('closes only the connection that sent a malformed frame, and counts it', async () => {
    const h = await start();
    const good = await connect(h.port);
    const bad = await connect(h.port);
    bad.write(Buffer.from([0xc1, 0x00, 0x01]));
    await closed(bad);
    const notForward = await connect(h.port);
    notForward.write(pack({ not: 'an array' }));
    await closed(notForward);
    good.end(pack(['t', 1796397764, dockerRecord('still here')]));
    await until(() => h.records.length === 1, 'a record from the good connection');
    assert.equal(h.records[0]?.body, 'still here');
    assert.equal(await metric(h.registry, 'labelcast_fluent_forward_malformed_total'), 2);
  });

  it('closes a connection whose message exceeds max_buffer_bytes', async () => {
    const h = await start(undefined, { max_buffer_bytes: 64 * 1024 });
    const c = await connect(h.port);
    c.write(pack(['t', 1796397764, dockerRecord('x'.repeat(200 * 1024))]));
    await closed(c);
    assert.equal(h.records.length, 0);
    assert.equal(await metric(h.registry, 'labelcast_fluent_forward_malformed_total'), 1);
  });

  it('stops reading the socket while the consumer applies backpressure, then delivers everything', async () => {
    let open: (() => void) | undefined;
    let gate: Promise<void> | undefined = new Promise((r) => {
      open = r;
    });
    const h = await start(
      async () => {
        if (gate) await gate;
      },
      { max_buffer_bytes: 1024 * 1024 },
    );
    const c = await connect(h.port);
    const line = 'y'.repeat(1000);
    const total = 20_000; // ~20 MB: far beyond the bound and every socket buffer
    let writable = true;
    for (let i = 0; i < total; i++) {
      writable = c.write(pack(['t', 1796397764, dockerRecord(`${i} ${line}`)]));
    }
    assert.equal(writable, false);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(h.batches, 1, 'one batch is with the consumer; at most max_buffer_bytes more are queued');
    assert.ok(c.writableLength > 10_000_000, 'the client is held back by TCP');
    gate = undefined;
    open?.();
    c.end();
    await until(() => h.records.length === total, 'every record after the consumer resumes');
    assert.deepEqual(
      h.records.map((r) => Number(r.body.split(' ')[0])),
      Array.from({ length: total }, (_, i) => i),
    );
  });

  it('listens on a unix socket as well, replacing a stale socket file', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'lc-ff-sock-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'forward.sock');
    // A process killed while listening leaves its socket file behind.
    const child = spawn(process.execPath, [
      '-e',
      "require('node:net').createServer().listen(process.argv[1], () => console.log('up'))",
      path,
    ]);
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    assert.ok(existsSync(path), 'the stale socket file is there');
    const h = await start(undefined, { socket: path });
    assert.equal(h.receiver.address().socket, path);
    const c = createConnection(path);
    c.on('error', () => {});
    await once(c, 'connect');
    c.end(pack(['t', 1796397764, dockerRecord('over the socket')]));
    await until(() => h.records.length === 1, 'one record');
    assert.equal(h.records[0]?.body, 'over the socket');
  });

  it('reports the actual bound port for a port-0 listen address', async () => {
    const h = await start();
    assert.match(h.receiver.address().tcp, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(h.port, 0);
  });
});

lifecycleSuite('fluent_forward receiver', async () => {
  const h = await startReceiver(undefined, {}, false);
  return {
    component: h.receiver,
    async send() {
      const c = await connect(Number(h.receiver.address().tcp.split(':').pop()));
      const acks = replies(c);
      for (let i = 0; i < 10; i++)
        c.write(pack(['t', 1796397764, dockerRecord(`line ${i}`), { chunk: `c${i}` }]));
      await until(() => acks.length === 10, 'ten acks');
      c.destroy();
      return 10;
    },
    received: () => h.records.length,
  };
});
