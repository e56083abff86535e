import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type Docker from 'dockerode';
import { mappingConfigSchema, metadataConfigSchema } from '../../../agent/metadata/config.ts';
import { createMapper } from '../../../agent/metadata/mapping.ts';
import {
  type ContainerStore,
  createStore,
  type ListedContainer,
  uptimeLowerBoundMs,
} from '../../../agent/metadata/store.ts';
import type { ContainerChange } from '../../../agent/metadata/types.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { createMetricsRegistry } from '../../../agent/telemetry/metrics.ts';

const fixtures = join(import.meta.dirname, '../../fixtures/docker');
const load = (name: string) => JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8'));
const APP = load('container-shop-web-1') as Docker.ContainerInspectInfo;
const IMAGES = ['app', 'legacy', 'base'].map((n) => ({
  inspect: load(`image-${n}`),
  history: load(`image-${n}.history`),
}));

interface Variant {
  id: string;
  name?: string;
  ips?: string[];
  running?: boolean;
  startedAt?: string;
  hostname?: string;
  labels?: Record<string, string>;
}

/** A container inspect payload: the recorded one, with another identity and state. */
function inspectOf(v: Variant): Docker.ContainerInspectInfo {
  const c = structuredClone(APP) as Docker.ContainerInspectInfo;
  c.Id = v.id;
  c.Name = `/${v.name ?? `c-${v.id.slice(0, 6)}`}`;
  c.Config.Hostname = v.hostname ?? v.id.slice(0, 12);
  c.State.Running = v.running ?? true;
  c.State.Pid = c.State.Running ? 4242 : 0;
  c.State.StartedAt = v.startedAt ?? '2026-12-04T15:00:00.000000001Z';
  if (v.labels) c.Config.Labels = { ...c.Config.Labels, ...v.labels };
  const net = Object.values(c.NetworkSettings.Networks)[0] as { IPAddress: string };
  c.NetworkSettings.Networks = {
    lcnet: { ...net, IPAddress: c.State.Running ? (v.ips?.[0] ?? '') : '' },
  } as never;
  return c;
}

const hex = (n: number) => n.toString(16).padStart(64, '0');

/** An engine in memory: answers inspects from its tables and counts them. A gate can hold answers back. */
function fakeEngine() {
  const containers = new Map<string, Docker.ContainerInspectInfo>();
  const calls = { container: 0, image: 0, history: 0 };
  let gate: Promise<void> | undefined;
  const notFound = () => Object.assign(new Error('(HTTP code 404) no such object'), { statusCode: 404 });
  const docker = {
    getContainer: (ref: string) => ({
      async inspect() {
        calls.container++;
        const snapshot = [...containers.values()].find(
          (c) => c.Id === ref || c.Id.startsWith(ref) || c.Name === `/${ref}`,
        );
        await gate;
        if (!snapshot) throw notFound();
        return structuredClone(snapshot);
      },
    }),
    getImage: (id: string) => {
      const image = IMAGES.find((i) => i.inspect.Id === id);
      return {
        async inspect() {
          calls.image++;
          await gate;
          if (!image) throw notFound();
          return structuredClone(image.inspect);
        },
        async history() {
          calls.history++;
          if (!image) throw notFound();
          return structuredClone(image.history);
        },
      };
    },
  } as unknown as Docker;
  return {
    docker,
    calls,
    containers,
    add(v: Variant) {
      const c = inspectOf(v);
      containers.set(c.Id, c);
      return c;
    },
    hold() {
      let release: () => void = () => {};
      gate = new Promise((r) => {
        release = r;
      });
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

function storeFor(
  engine: ReturnType<typeof fakeEngine>,
  config: Record<string, unknown> = {},
): ContainerStore {
  return createStore({
    docker: engine.docker,
    mapper: createMapper(mappingConfigSchema.parse({})),
    config: metadataConfigSchema.parse(config),
    logger: silentLogger(),
    metrics: createMetricsRegistry(),
  });
}

const listed = (c: Docker.ContainerInspectInfo, status = 'Up 2 hours'): ListedContainer => ({
  Id: c.Id,
  Names: [c.Name],
  ImageID: c.Image,
  State: c.State.Running ? 'running' : 'exited',
  Status: c.State.Running ? status : 'Exited (0) 1 minute ago',
  NetworkSettings: c.NetworkSettings as NonNullable<ListedContainer['NetworkSettings']>,
});

test('an entry is found by full id, short id, name, hostname and IP, and carries precomputed attributes', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1), name: 'web', hostname: 'web-host', ips: ['198.18.0.5'] });
  const store = storeFor(engine);
  const { entry } = await store.refresh(hex(1), 0);
  assert.ok(entry);
  assert.equal(store.get(hex(1)), entry);
  assert.equal(store.get(hex(1).slice(0, 12)), entry);
  assert.equal(store.byName('web'), entry);
  assert.equal(store.byName('/web'), entry);
  assert.equal(store.byHostname('web-host'), entry);
  assert.equal(store.byIp('198.18.0.5'), entry);
  assert.equal(entry.attributes['container.name'], 'web');
  assert.equal(entry.attributes['container.id'], hex(1));
  assert.equal(entry.image?.id, APP.Image);
  assert.ok(Object.isFrozen(entry));
  assert.deepEqual(store.running(), [entry]);
  store.close();
});

test('an IP taken over by another container points at the new holder; the old one never answers for it', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1), ips: ['198.18.0.9'] });
  const store = storeFor(engine);
  await store.refresh(hex(1), 0);
  store.markDied(hex(1), 0, performance.now());
  assert.equal(store.byIp('198.18.0.9'), undefined);
  engine.add({ id: hex(2), ips: ['198.18.0.9'] });
  await store.refresh(hex(2), 0);
  assert.equal(store.byIp('198.18.0.9')?.id, hex(2));
  store.markDestroyed(hex(1), performance.now());
  assert.equal(store.byIp('198.18.0.9')?.id, hex(2), 'removing the old holder keeps the new index entry');
  store.markDied(hex(2), 137, performance.now());
  assert.equal(store.byIp('198.18.0.9'), undefined);
  store.close();
});

test('a rename stores a new entry with recomputed attributes and moves the name index', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1), name: 'old' });
  const store = storeFor(engine);
  const changes: ContainerChange[] = [];
  store.subscribe((c) => changes.push(c));
  const { entry: before } = await store.refresh(hex(1), 0);
  store.markRenamed(hex(1), 'new', performance.now());
  const after = store.get(hex(1));
  assert.ok(before && after && after !== before);
  assert.equal(after.attributes['container.name'], 'new');
  assert.equal(before.attributes['container.name'], 'old');
  assert.equal(after.labels, before.labels);
  assert.equal(store.byName('old'), undefined);
  assert.equal(store.byName('new'), after);
  assert.deepEqual(
    changes.map((c) => c.type),
    ['start', 'rename'],
  );
  store.close();
});

test('a refresh that finds nothing changed keeps the same entry object and emits nothing', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1) });
  const store = storeFor(engine);
  const { entry } = await store.refresh(hex(1), 0);
  let emitted = 0;
  store.subscribe(() => emitted++);
  const again = await store.refresh(hex(1), performance.now() + 1);
  assert.equal(again.entry, entry);
  assert.equal(emitted, 0);
  assert.equal(engine.calls.container, 2);
  store.close();
});

test('a die that arrives while an older inspect is out is not overwritten by that inspect', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1) });
  const store = storeFor(engine);
  await store.refresh(hex(1), 0);
  const release = engine.hold();
  const stale = store.refresh(hex(1), performance.now() + 1);
  store.markDied(hex(1), 1, performance.now() + 2);
  release();
  await stale;
  assert.equal(store.get(hex(1))?.running, false);
  store.close();
});

test('twenty containers of one image, refreshed at once, inspect the image once', async () => {
  const engine = fakeEngine();
  for (let i = 1; i <= 20; i++) engine.add({ id: hex(i) });
  const store = storeFor(engine);
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.refresh(hex(i + 1), 0)));
  assert.deepEqual(engine.calls, { container: 20, image: 1, history: 1 });
  const images = new Set(Array.from({ length: 20 }, (_, i) => store.get(hex(i + 1))?.image));
  assert.equal(images.size, 1);
  assert.equal(store.counters().images, 1);
  store.close();
});

test('unknown ids are remembered for negative_ttl, then asked again', async () => {
  const engine = fakeEngine();
  const store = storeFor(engine, { negative_ttl: '50ms' });
  assert.equal(await store.resolve(hex(9)), undefined);
  assert.equal(await store.resolve(hex(9)), undefined);
  assert.equal(engine.calls.container, 1);
  await new Promise((r) => setTimeout(r, 80));
  engine.add({ id: hex(9) });
  assert.equal((await store.resolve(hex(9)))?.id, hex(9));
  assert.equal(engine.calls.container, 2);
  store.close();
});

test('a create event forgets that the engine did not know the id', async () => {
  const engine = fakeEngine();
  const store = storeFor(engine, { negative_ttl: '1h' });
  assert.equal(await store.resolve(hex(3)), undefined);
  engine.add({ id: hex(3), name: 'fresh' });
  store.noteCreated(hex(3), 'fresh');
  assert.equal((await store.resolve(hex(3)))?.name, 'fresh');
  store.close();
});

test('ids that cannot be container references never reach the engine', async () => {
  const engine = fakeEngine();
  const store = storeFor(engine);
  assert.equal(await store.resolve('../images/json'), undefined);
  assert.equal(await store.resolve(''), undefined);
  assert.equal(engine.calls.container, 0);
  store.close();
});

test('the container cache is bounded: the least recently used entry is evicted with its index keys, and counted', async () => {
  const engine = fakeEngine();
  for (let i = 1; i <= 3; i++) engine.add({ id: hex(i), name: `n${i}`, ips: [`198.18.0.${i}`] });
  const store = storeFor(engine, { max_containers: 2 });
  for (let i = 1; i <= 3; i++) await store.refresh(hex(i), 0);
  const c = store.counters();
  assert.equal(c.size, 2);
  assert.equal(c.evictions, 1);
  assert.equal(store.get(hex(1)), undefined);
  assert.equal(store.byName('n1'), undefined);
  assert.equal(store.byIp('198.18.0.1'), undefined);
  assert.equal(store.byName('n3')?.id, hex(3));
  store.close();
});

test('a tombstone answers lookups for the grace, then is dropped with its index keys', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1), name: 'gone' });
  const store = storeFor(engine, { tombstone_grace: '60ms' });
  const changes: ContainerChange[] = [];
  store.subscribe((c) => changes.push(c));
  await store.refresh(hex(1), 0);
  engine.containers.delete(hex(1));
  store.markDestroyed(hex(1), performance.now());
  const tomb = store.get(hex(1));
  assert.ok(tomb?.removedAt !== undefined);
  assert.equal(await store.resolve(hex(1)), tomb);
  assert.equal(store.byName('gone'), tomb);
  assert.deepEqual(store.running(), []);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(store.get(hex(1)), undefined);
  assert.equal(store.byName('gone'), undefined);
  assert.equal(store.counters().size, 0);
  assert.deepEqual(
    changes.map((c) => c.type),
    ['start', 'destroy'],
  );
  store.close();
});

test('reconciling a re-list removes vanished containers, inspects new and changed ones, and leaves the rest alone', async () => {
  const engine = fakeEngine();
  const keep = engine.add({ id: hex(1), name: 'keep' });
  engine.add({ id: hex(2), name: 'vanish' });
  const stop = engine.add({ id: hex(3), name: 'stops' });
  const store = storeFor(engine);
  await store.reconcile(
    [keep, engine.containers.get(hex(2)), stop].map((c) => listed(c as never)),
    performance.now(),
    undefined,
  );
  assert.equal(engine.calls.container, 3);
  const kept = store.get(hex(1));

  engine.containers.delete(hex(2));
  const stopped = engine.add({ id: hex(3), name: 'stops', running: false });
  const fresh = engine.add({ id: hex(4), name: 'new' });
  await store.reconcile(
    [keep, stopped, fresh].map((c) => listed(c)),
    performance.now(),
    60_000,
  );
  assert.equal(engine.calls.container, 5, 'only the stopped and the new container are inspected');
  assert.equal(store.get(hex(1)), kept);
  assert.ok(store.get(hex(2))?.removedAt !== undefined);
  assert.equal(store.get(hex(3))?.running, false);
  assert.equal(store.get(hex(4))?.name, 'new');
});

test('after a gap, a running container whose uptime fits in the gap is inspected again (it may have restarted)', async () => {
  const engine = fakeEngine();
  const c = engine.add({ id: hex(1), startedAt: '2026-12-04T15:00:00Z' });
  const store = storeFor(engine);
  await store.reconcile([listed(c)], performance.now(), undefined);
  const restarted = engine.add({ id: hex(1), startedAt: '2026-12-04T16:00:00Z' });
  const changes: ContainerChange[] = [];
  store.subscribe((ch) => changes.push(ch));
  await store.reconcile([listed(restarted, 'Up 3 seconds')], performance.now(), 5000);
  assert.equal(store.get(hex(1))?.startedAt, '2026-12-04T16:00:00Z');
  assert.deepEqual(
    changes.map((ch) => ch.type),
    ['start'],
  );
  await store.reconcile([listed(restarted, 'Up 2 hours')], performance.now(), 5000);
  assert.equal(engine.calls.container, 2, 'a long-running container is not inspected again');
});

test('the uptime lower bound follows the engine’s human durations', () => {
  assert.equal(uptimeLowerBoundMs('Up Less than a second'), 0);
  assert.equal(uptimeLowerBoundMs('Up 1 second'), 1000);
  assert.equal(uptimeLowerBoundMs('Up 42 seconds (healthy)'), 42_000);
  assert.equal(uptimeLowerBoundMs('Up About a minute'), 60_000);
  assert.equal(uptimeLowerBoundMs('Up 5 minutes (Paused)'), 300_000);
  assert.equal(uptimeLowerBoundMs('Up About an hour'), 3_600_000);
  assert.equal(uptimeLowerBoundMs('Up 3 hours'), 2.5 * 3_600_000);
  assert.equal(uptimeLowerBoundMs('Up 4 days'), 3.5 * 86_400_000);
  assert.equal(uptimeLowerBoundMs('Restarting (1) 2 seconds ago'), 0);
  assert.equal(uptimeLowerBoundMs(undefined), 0);
});

test('the counters are exported on the registry', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1) });
  const metrics = createMetricsRegistry();
  const store = createStore({
    docker: engine.docker,
    mapper: createMapper(mappingConfigSchema.parse({})),
    config: metadataConfigSchema.parse({}),
    logger: silentLogger(),
    metrics,
  });
  await store.resolve(hex(1));
  store.get(hex(1));
  store.get(hex(2));
  const text = await metrics.metrics();
  assert.match(text, /labelcast_metadata_lookups_total\{result="hit"\} 1/);
  assert.match(text, /labelcast_metadata_lookups_total\{result="miss"\} 2/);
  assert.match(text, /labelcast_metadata_docker_requests_total\{request="container_inspect"\} 1/);
  assert.match(text, /labelcast_metadata_docker_requests_total\{request="image_inspect"\} 1/);
  assert.match(text, /labelcast_metadata_entries\{cache="containers"\} 1/);
  // A second scrape adds only what happened since.
  store.get(hex(1));
  assert.match(await metrics.metrics(), /labelcast_metadata_lookups_total\{result="hit"\} 2/);
  store.close();
});

test('a re-tagged image rebuilds its running containers, and a tombstone of that image still expires', async () => {
  const engine = fakeEngine();
  engine.add({ id: hex(1) });
  engine.add({ id: hex(2) });
  const store = storeFor(engine, { tombstone_grace: '60ms' });
  await store.refresh(hex(1), 0);
  const { entry: before } = await store.refresh(hex(2), 0);
  store.markDestroyed(hex(1), performance.now());
  const app = IMAGES[0] as { inspect: { RepoTags: string[] } };
  const tags = app.inspect.RepoTags;
  app.inspect.RepoTags = [...tags, 'labelcast-test/app:stable'];
  try {
    await store.refreshImage(APP.Image, performance.now());
  } finally {
    app.inspect.RepoTags = tags;
  }
  const after = store.get(hex(2));
  assert.ok(before && after && after !== before);
  assert.deepEqual(after.attributes['container.image.tags'], ['2.3.1', 'stable']);
  assert.equal(after.attributes['container.id'], hex(2));
  assert.equal(engine.calls.image, 2);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(store.get(hex(1)), undefined);
  assert.equal(store.get(hex(2)), after);
  store.close();
});
