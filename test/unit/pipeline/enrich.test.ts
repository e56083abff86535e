import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createEnrichStage, detectOwnContainerId } from '../../../agent/pipeline/enrich.ts';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import { lifecycleSuite } from '../../helpers/lifecycle.ts';
import { batch, entry, fakeStore, idOf, record, sink } from './fixtures.ts';

async function counters(metrics: Registry): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const metric of await metrics.getMetricsAsJSON()) {
    for (const value of metric.values) {
      const label = Object.values(value.labels).join(',');
      out[label ? `${metric.name}{${label}}` : metric.name] = value.value;
    }
  }
  return out;
}

function stage(store: ReturnType<typeof fakeStore>, maxWaitMs = 2000) {
  const next = sink();
  const metrics = new Registry();
  const enrich = createEnrichStage({ store, next, maxWaitMs, logger: silentLogger(), metrics });
  return { enrich, next, metrics };
}

test('records of a known container carry its metadata entry', async () => {
  const known = entry(idOf(1));
  const { enrich, next, metrics } = stage(fakeStore([known]));
  await enrich.consume(batch([record(idOf(1), 'a'), record(idOf(1), 'b')]));
  assert.deepEqual(
    next.records().map((r) => r.container),
    [known, known],
  );
  const c = await counters(metrics);
  assert.equal(c.labelcast_enrich_records_enriched_total, 2);
  assert.equal(c.labelcast_enrich_records_held_total, 0);
});

test('a record of an unknown container waits for the on-demand lookup and is enriched', async () => {
  const late = entry(idOf(2));
  const store = fakeStore([entry(idOf(1))], { later: [late], delayMs: 30 });
  const { enrich, next, metrics } = stage(store);
  await enrich.consume(batch([record(idOf(2), 'first line'), record(idOf(1), 'other')]));
  assert.equal(next.records()[0]!.container, late);
  assert.deepEqual(store.resolves, [idOf(2)]);
  const c = await counters(metrics);
  assert.equal(c.labelcast_enrich_records_held_total, 1);
  assert.equal(c.labelcast_enrich_records_enriched_total, 2);
  assert.equal(c.labelcast_enrich_records_unenriched_total, 0);
});

test('a lookup slower than max_wait lets the record go out unenriched with its container id', async () => {
  const store = fakeStore([], { later: [entry(idOf(3))], delayMs: 500 });
  const { enrich, next, metrics } = stage(store, 30);
  const started = Date.now();
  await enrich.consume(batch([record(idOf(3), 'x')]));
  assert.ok(Date.now() - started < 400, 'the batch is released at max_wait, not when the lookup ends');
  const [out] = next.records();
  assert.equal(out!.container, undefined);
  assert.equal(out!.containerId, idOf(3));
  assert.equal((await counters(metrics)).labelcast_enrich_records_unenriched_total, 1);
});

test('a failed lookup lets the record go out unenriched', async () => {
  const { enrich, next, metrics } = stage(fakeStore([], { fail: true }));
  await enrich.consume(batch([record(idOf(4), 'x')]));
  assert.equal(next.records()[0]!.container, undefined);
  assert.equal((await counters(metrics)).labelcast_enrich_records_unenriched_total, 1);
});

test('a batch waiting for a lookup does not hold batches of known containers', async () => {
  const store = fakeStore([entry(idOf(1))], { later: [entry(idOf(5))], delayMs: 200 });
  const { enrich, next } = stage(store);
  const slow = enrich.consume(batch([record(idOf(5), 'slow')]));
  await enrich.consume(batch([record(idOf(1), 'fast')]));
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['fast'],
  );
  await slow;
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['fast', 'slow'],
  );
});

test('records of an io.labelcast.ignore container are dropped and an emptied batch is acked', async () => {
  const ignored = entry(idOf(6), { settings: { ignore: true, multilineStart: undefined } });
  const { enrich, next, metrics } = stage(fakeStore([ignored, entry(idOf(1))]));
  const acks: string[] = [];
  await enrich.consume(batch([record(idOf(6), 'secret'), record(idOf(1), 'kept')], acks, 'mixed'));
  await enrich.consume(batch([record(idOf(6), 'secret')], acks, 'only-ignored'));
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['kept'],
  );
  assert.deepEqual(acks, ['mixed', 'only-ignored']);
  assert.equal((await counters(metrics))['labelcast_enrich_records_dropped_total{ignore}'], 2);
});

test('records of an excluded container (the agent itself) are dropped', async () => {
  const { enrich, next, metrics } = stage(fakeStore([entry(idOf(7)), entry(idOf(1))]));
  enrich.exclude(idOf(7));
  await enrich.consume(batch([record(idOf(7), 'me'), record(idOf(1), 'you')]));
  assert.deepEqual(
    next.records().map((r) => r.body),
    ['you'],
  );
  assert.equal((await counters(metrics))['labelcast_enrich_records_dropped_total{self}'], 1);
});

test('the own container id is read from cgroup v1, systemd scopes and mountinfo', () => {
  const id = 'f'.repeat(64);
  const files = (map: Record<string, string>) => (path: string) => {
    const text = map[path];
    if (text === undefined) throw new Error('ENOENT');
    return text;
  };
  assert.equal(detectOwnContainerId(files({ '/proc/self/cgroup': `12:memory:/docker/${id}\n` })), id);
  assert.equal(
    detectOwnContainerId(files({ '/proc/self/cgroup': `0::/system.slice/docker-${id}.scope\n` })),
    id,
  );
  assert.equal(
    detectOwnContainerId(
      files({
        '/proc/self/cgroup': '0::/\n',
        '/proc/self/mountinfo': `612 600 8:1 /var/lib/docker/containers/${id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n`,
      }),
    ),
    id,
  );
  assert.equal(detectOwnContainerId(files({ '/proc/self/cgroup': '0::/user.slice\n' })), undefined);
});

lifecycleSuite('enrich stage', async () => {
  const next = sink();
  const enrich = createEnrichStage({
    store: fakeStore([entry(idOf(1))], { later: [entry(idOf(2))], delayMs: 20 }),
    next,
    maxWaitMs: 1000,
    logger: silentLogger(),
    metrics: new Registry(),
  });
  return {
    component: enrich,
    async send() {
      // One batch still waits for its lookup when shutdown() begins.
      void enrich.consume(batch([record(idOf(2), 'late'), record(idOf(2), 'late')]));
      await enrich.consume(batch([record(idOf(1), 'a'), record(idOf(1), 'b'), record(idOf(1), 'c')]));
      return 5;
    },
    received: () => next.records().length,
  };
});
