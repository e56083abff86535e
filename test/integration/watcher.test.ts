import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { ContainerChange } from '../../agent/metadata/types.ts';
import { runDetached } from '../helpers/containers.ts';
import { type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { lifecycleSuite } from '../helpers/lifecycle.ts';
import { createTestMetadata } from '../helpers/metadata.ts';
import { waitFor } from '../helpers/wait.ts';

let engine: Engine;

before(async () => {
  engine = await startEngine();
});

after(async () => {
  await engine?.close();
});

/**
 * A unix-socket proxy in front of the engine, so a test can cut the agent's connections (as a network
 * fault or a proxy restart would) and keep it cut off while the engine changes.
 */
async function startProxy(target: string): Promise<{
  path: string;
  /** Destroys every open connection and refuses new ones until `open()`. */
  cut(): void;
  open(): void;
  close(): Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'lc-proxy-'));
  const path = join(dir, 'docker.sock');
  const sockets = new Set<Socket>();
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = createConnection(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    cut() {
      refusing = true;
      for (const s of sockets) s.destroy();
    },
    open() {
      refusing = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const run = (...args: string[]) => runDetached(engine, ...args);

test('start, rename, die and destroy are reflected in the store, with a new entry for each change', async (t) => {
  const metadata = createTestMetadata(new Docker({ socketPath: engine.socketPath }));
  t.after(() => metadata.watcher.shutdown());
  const changes: ContainerChange[] = [];
  metadata.store.subscribe((c) => changes.push(c));
  await metadata.watcher.start();
  await metadata.ready;
  const { store } = metadata;

  const id = await run(
    '--name',
    'lc-watch-one',
    '--label',
    'com.example.owner=qa',
    TEST_IMAGES.app,
    'sleep',
    '300',
  );
  const started = await waitFor('the started container', () => store.get(id));
  assert.equal(started.running, true);
  assert.equal(started.name, 'lc-watch-one');
  assert.equal(started.shortId, id.slice(0, 12));
  assert.equal(store.get(id.slice(0, 12)), started);
  assert.equal(store.byName('lc-watch-one'), started);
  assert.equal(store.byHostname(started.hostname), started);
  assert.equal(started.attributes['container.name'], 'lc-watch-one');
  assert.equal(started.labels['com.example.owner'], 'qa');
  assert.equal(started.labelOrigins['com.example.owner'], 'container');
  assert.equal(started.image?.repoTags.includes(TEST_IMAGES.app), true);
  assert.ok(started.pid > 0);
  assert.ok(store.running().includes(started));

  await engine.docker('rename', 'lc-watch-one', 'lc-watch-two');
  const renamed = await waitFor('the rename', () => store.get(id)?.name === 'lc-watch-two' && store.get(id));
  assert.notEqual(renamed, started, 'a rename stores a new, immutable entry');
  assert.equal(started.name, 'lc-watch-one', 'the old entry is unchanged');
  assert.equal(renamed.attributes['container.name'], 'lc-watch-two');
  assert.equal(store.byName('lc-watch-two'), renamed);
  assert.equal(store.byName('lc-watch-one'), undefined);

  await engine.docker('kill', id);
  const died = await waitFor('the die', () => store.get(id)?.running === false && store.get(id));
  assert.equal(died.removedAt, undefined);
  assert.equal(died.attributes, renamed.attributes, 'a state change keeps the precomputed attributes');
  assert.ok(!store.running().some((e) => e.id === id));

  await engine.docker('rm', id);
  const tomb = await waitFor('the destroy', () => store.get(id)?.removedAt !== undefined && store.get(id));
  assert.equal(tomb.name, 'lc-watch-two');

  const mine = changes.filter((c) => c.entry.id === id).map((c) => c.type);
  assert.deepEqual(mine, ['start', 'rename', 'die', 'destroy']);
  const die = changes.find((c) => c.entry.id === id && c.type === 'die');
  assert.equal(die?.type === 'die' ? die.exitCode : undefined, 137);
});

test('after its event connection is killed, the agent reconnects and a container started and one removed meanwhile are right', async (t) => {
  const proxy = await startProxy(engine.socketPath);
  const metadata = createTestMetadata(new Docker({ socketPath: proxy.path }));
  t.after(async () => {
    await metadata.watcher.shutdown();
    await proxy.close();
  });
  const removed = await run('--name', 'lc-cut-removed', TEST_IMAGES.base);
  await metadata.watcher.start();
  await metadata.ready;
  const { store } = metadata;
  assert.equal(store.get(removed)?.running, true);

  proxy.cut();
  await engine.docker('rm', '-f', removed);
  const startedMeanwhile = await run('--name', 'lc-cut-started', TEST_IMAGES.legacy);
  // Still cut off: nothing of this can have reached the agent.
  assert.equal(store.get(startedMeanwhile), undefined);
  assert.equal(store.get(removed)?.removedAt, undefined);
  proxy.open();

  const gone = await waitFor(
    'the removed container as a tombstone',
    () => store.get(removed)?.removedAt !== undefined,
  );
  assert.equal(gone, true);
  const fresh = await waitFor('the container started while cut off', () => store.get(startedMeanwhile));
  assert.equal(fresh.running, true);
  assert.equal(fresh.name, 'lc-cut-started');
  assert.equal(store.byName('lc-cut-started'), fresh);

  // The reconnected stream is live again.
  const later = await run('--name', 'lc-cut-later', TEST_IMAGES.base);
  assert.equal(
    (await waitFor('a container started after the reconnect', () => store.get(later))).running,
    true,
  );
});

test('after the engine is stopped and restarted, a container started and one removed while the agent was cut off are right', async (t) => {
  const proxy = await startProxy(engine.socketPath);
  const metadata = createTestMetadata(new Docker({ socketPath: proxy.path }));
  t.after(async () => {
    await metadata.watcher.shutdown();
    await proxy.close();
  });
  const running = await run('--name', 'lc-restart-running', TEST_IMAGES.base);
  const toRemove = await engine.docker(
    'create',
    '--network',
    'none',
    '--name',
    'lc-restart-removed',
    TEST_IMAGES.app,
  );
  await metadata.watcher.start();
  await metadata.ready;
  const { store } = metadata;
  assert.equal(store.get(running)?.running, true);
  assert.equal(store.get(toRemove)?.running, false);

  await engine.stopDaemon();
  // Keep the agent out while the engine is back, so the changes below happen while it is disconnected;
  // the engine lost its event buffer with the restart, so only the re-list can tell.
  proxy.cut();
  await engine.startDaemon();
  await engine.docker('rm', '-f', toRemove);
  const startedMeanwhile = await run('--name', 'lc-restart-started', TEST_IMAGES.app);
  proxy.open();

  const fresh = await waitFor('the container started while cut off', () => store.get(startedMeanwhile));
  assert.equal(fresh.running, true);
  assert.equal(fresh.attributes['service.version'], '2.3.1');
  await waitFor('the removed container as a tombstone', () => store.get(toRemove)?.removedAt !== undefined);
  const stopped = await waitFor(
    'the container the restart stopped',
    () => store.get(running)?.running === false && store.get(running),
  );
  assert.equal(stopped.removedAt, undefined);
  assert.deepEqual(
    store
      .running()
      .map((e) => e.name)
      .filter((n) => n.startsWith('lc-restart-'))
      .sort(),
    ['lc-restart-started'],
  );
});

lifecycleSuite('metadata watcher', async () => {
  const metadata = createTestMetadata(new Docker({ socketPath: engine.socketPath }));
  const ids: string[] = [];
  return {
    component: metadata.watcher,
    async send() {
      await metadata.ready;
      for (let i = 0; i < 3; i++) ids.push(await run(TEST_IMAGES.base));
      return ids.length;
    },
    received: () => ids.filter((id) => metadata.store.get(id)?.running === true).length,
    async close() {
      if (ids.length > 0) await engine.docker('rm', '-f', ...ids);
    },
  };
});
