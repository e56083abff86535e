import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Metadata } from '../../agent/metadata/index.ts';
import { createMetricsRegistry, type Registry } from '../../agent/telemetry/metrics.ts';
import { runDetached } from '../helpers/containers.ts';
import { type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { startMetadata } from '../helpers/metadata.ts';
import { waitFor } from '../helpers/wait.ts';

let engine: Engine;

before(async () => {
  engine = await startEngine();
});

after(async () => {
  await engine?.close();
});

async function started(
  config: Record<string, unknown> = {},
): Promise<{ metadata: Metadata; metrics: Registry; shutdown: () => Promise<void> }> {
  const metrics = createMetricsRegistry();
  const metadata = await startMetadata(new Docker({ socketPath: engine.socketPath }), config, metrics);
  return { metadata, metrics, shutdown: () => metadata.watcher.shutdown() };
}

async function metricValue(metrics: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await metrics.getSingleMetric(name)?.get();
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

const run = (...args: string[]) => runDetached(engine, ...args);

test('twenty containers of one image cost one image inspect and one container inspect each', async (t) => {
  // A fresh image, so no container listed at startup has warmed the image cache.
  await engine.build(
    `FROM ${TEST_IMAGES.base}\nLABEL com.example.batch="twenty"\n`,
    'labelcast-test/twenty:1',
  );
  const { metadata, metrics, shutdown } = await started();
  t.after(shutdown);
  const before = metadata.counters();
  const ids = await Promise.all(Array.from({ length: 20 }, () => run('labelcast-test/twenty:1')));
  const entries = await waitFor('all twenty containers', () => {
    const found = ids.map((id) => metadata.store.get(id));
    return found.every((e) => e?.running) && found;
  });
  const afterCounts = metadata.counters();
  assert.equal(afterCounts.imageInspects - before.imageInspects, 1);
  assert.equal(afterCounts.containerInspects - before.containerInspects, 20);
  const image = entries[0]?.image;
  assert.ok(image);
  assert.equal(image.labels['com.example.batch'], 'twenty');
  for (const e of entries) assert.equal(e?.image, image, 'every entry shares the one image entry');
  assert.equal(
    await metricValue(metrics, 'labelcast_metadata_docker_requests_total', { request: 'image_inspect' }),
    afterCounts.imageInspects,
  );
  assert.equal(
    await metricValue(metrics, 'labelcast_metadata_entries', { cache: 'containers' }),
    afterCounts.size,
  );
  await engine.docker('rm', '-f', ...ids);
});

test('concurrent lookups of one unknown id make one inspect, and the miss is remembered', async (t) => {
  const { metadata, shutdown } = await started();
  t.after(shutdown);
  const { store } = metadata;
  const unknown = randomBytes(32).toString('hex');
  const before = metadata.counters();
  const answers = await Promise.all(Array.from({ length: 25 }, () => store.resolve(unknown)));
  assert.deepEqual(new Set(answers), new Set([undefined]));
  assert.equal(metadata.counters().containerInspects - before.containerInspects, 1);
  assert.equal(await store.resolve(unknown), undefined);
  assert.equal(metadata.counters().containerInspects - before.containerInspects, 1, 'negatively cached');
  assert.equal(metadata.counters().misses - before.misses, 26);
});

test('concurrent lookups of a container the store has not seen share one inspect and one entry', async (t) => {
  const { metadata, shutdown } = await started();
  t.after(shutdown);
  const { store } = metadata;
  // Created, never started: the watcher does not inspect on create, so only a lookup brings it in.
  const id = await engine.docker('create', '--network', 'none', '--name', 'lc-lookup', TEST_IMAGES.legacy);
  t.after(() => engine.docker('rm', '-f', id));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(store.get(id), undefined);
  const before = metadata.counters();
  const answers = await Promise.all(Array.from({ length: 25 }, () => store.resolve(id)));
  assert.equal(metadata.counters().containerInspects - before.containerInspects, 1);
  assert.equal(new Set(answers).size, 1);
  const entry = answers[0];
  assert.equal(entry?.id, id);
  assert.equal(entry?.running, false);
  assert.equal(entry?.attributes['vcs.ref.head.revision'], '0badc0de');
  assert.equal(store.get(id), entry);
  const hits = metadata.counters().hits;
  assert.equal(await store.resolve(id.slice(0, 12)), entry);
  assert.equal(metadata.counters().hits, hits + 1);
});

test('a removed container stays resolvable during the tombstone grace and is gone after it', async (t) => {
  const { metadata, shutdown } = await started({ tombstone_grace: '1500ms', negative_ttl: '100ms' });
  t.after(shutdown);
  const { store } = metadata;
  const id = await run('--name', 'lc-grace', TEST_IMAGES.app);
  await waitFor('the container', () => store.get(id));
  await engine.docker('rm', '-f', id);
  const tomb = await waitFor('the tombstone', () => store.get(id)?.removedAt !== undefined && store.get(id));
  assert.equal(tomb.running, false);
  assert.equal(await store.resolve(id), tomb);
  assert.equal(store.get(id.slice(0, 12)), tomb);
  assert.equal(store.byName('lc-grace'), tomb);
  assert.equal(tomb.attributes['support.contact'], 'oncall-api@example.com', 'late logs are still enriched');
  assert.equal(store.running().includes(tomb), false);

  await waitFor('the grace to end', () => store.get(id) === undefined, 10_000);
  assert.equal(store.get(id.slice(0, 12)), undefined);
  assert.equal(store.byName('lc-grace'), undefined);
  assert.equal(await store.resolve(id), undefined, 'the engine no longer knows it either');
});

test('an IP reused by a new container is never attributed to the old one', async (t) => {
  await engine.docker('network', 'create', '--subnet', '198.18.7.0/24', 'lc-store-net');
  const { metadata, shutdown } = await started();
  const ids: string[] = [];
  t.after(async () => {
    await shutdown();
    if (ids.length > 0) await engine.docker('rm', '-f', ...ids);
    await engine.docker('network', 'rm', 'lc-store-net');
  });
  const { store } = metadata;
  const ip = '198.18.7.10';
  const net = ['--network', 'lc-store-net', '--ip', ip];
  const first = await engine.docker('run', '-d', ...net, '--name', 'lc-ip-first', TEST_IMAGES.base);
  ids.push(first);
  assert.equal((await waitFor('the first holder', () => store.byIp(ip))).id, first);
  assert.deepEqual(store.get(first)?.ips, [ip]);

  await engine.docker('stop', '-t', '0', first);
  await waitFor('the first holder to stop', () => store.get(first)?.running === false);
  assert.equal(store.byIp(ip), undefined, 'a stopped container holds no IP');

  const second = await engine.docker('run', '-d', ...net, '--name', 'lc-ip-second', TEST_IMAGES.legacy);
  ids.push(second);
  assert.equal((await waitFor('the second holder', () => store.byIp(ip))).id, second);
  await engine.docker('rm', '-f', first);
  ids.shift();
  await waitFor('the first container removed', () => store.get(first)?.removedAt !== undefined);
  assert.equal(store.byIp(ip)?.id, second, 'removing the old holder does not unindex the new one');
});

test('tagging an image inspects it again and rebuilds the entries of its containers', async (t) => {
  const { metadata, shutdown } = await started();
  t.after(shutdown);
  const { store } = metadata;
  const id = await run('--name', 'lc-retag', TEST_IMAGES.app);
  t.after(() => engine.docker('rm', '-f', id));
  const before = await waitFor('the container', () => store.get(id));
  assert.deepEqual(before.attributes['container.image.tags'], ['2.3.1']);
  const updates: string[] = [];
  store.subscribe((c) => {
    if (c.entry.id === id) updates.push(c.type);
  });

  await engine.docker('tag', TEST_IMAGES.app, 'labelcast-test/app:stable');
  const after = await waitFor(
    'the rebuilt entry',
    () => store.get(id)?.image?.repoTags.length === 2 && store.get(id),
  );
  assert.notEqual(after, before);
  assert.deepEqual(after.attributes['container.image.tags'], ['2.3.1', 'stable']);
  assert.deepEqual(updates, ['update']);

  await engine.docker('rmi', 'labelcast-test/app:stable');
  const untagged = await waitFor(
    'the untag',
    () => store.get(id)?.image?.repoTags.length === 1 && store.get(id),
  );
  assert.deepEqual(untagged.attributes['container.image.tags'], ['2.3.1']);
});
