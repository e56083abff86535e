/**
 * npm run bench:metadata            (node test/bench/metadata.ts --offline: parts 1 and 2 only)
 *
 * Prints, each with a baseline from the same run:
 * 1. store lookups per second (baseline: a bare Map.get over the same ids);
 * 2. memory per 1,000 cached containers built from the recorded payloads in test/fixtures/docker: heap
 *    in this process, and RSS of child processes caching 0, 10,000 and 20,000
 *    (baseline: keeping the parsed inspect payloads themselves);
 * 3. Docker API calls per container start, counted at a socket proxy in front of a private engine;
 * 4. event → ready latency p50/p99 over 200 real container starts: from the event's arrival at the
 *    agent to the entry being in the store, in total and without the engine's inspect round trips.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import Docker from 'dockerode';
import { mappingConfigSchema, metadataConfigSchema } from '../../agent/metadata/config.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import { imageLabelOrigins } from '../../agent/metadata/provenance.ts';
import { createStore } from '../../agent/metadata/store.ts';
import type { ImageEntry } from '../../agent/metadata/types.ts';
import { type AppliedEvent, createWatcher } from '../../agent/metadata/watcher.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { createMetricsRegistry } from '../../agent/telemetry/metrics.ts';
import { startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const fixtures = join(import.meta.dirname, '../fixtures/docker');
const read = (name: string) => readFileSync(join(fixtures, `${name}.json`), 'utf8');
const mapper = createMapper(mappingConfigSchema.parse({}));
const hex = (n: number) => n.toString(16).padStart(64, '0');

function settle(): { heap: number; rss: number } {
  for (let i = 0; i < 4; i++) gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

const CONTAINER_FIXTURES = [
  'container-shop-web-1',
  'container-stack-api-1-x7',
  'container-worker',
  'container-registry-port',
  'container-by-id',
];

/** Each container's inspect JSON as the engine would send it: the recorded text with its own identity. */
function payload(i: number): string {
  const text = read(CONTAINER_FIXTURES[i % CONTAINER_FIXTURES.length] as string);
  const original = (JSON.parse(text) as { Id: string }).Id;
  return text
    .replaceAll(original, hex(i + 1))
    .replaceAll(original.slice(0, 12), hex(i + 1).slice(0, 12))
    .replace(/"Name": "\/[^"]*"/, `"Name": "/bench-${i}"`);
}

function imageEntries(): Map<string, ImageEntry> {
  const out = new Map<string, ImageEntry>();
  for (const name of ['app', 'legacy', 'base']) {
    const inspect = JSON.parse(read(`image-${name}`));
    const history = JSON.parse(read(`image-${name}.history`));
    out.set(inspect.Id, {
      id: inspect.Id,
      repoTags: inspect.RepoTags ?? [],
      repoDigests: inspect.RepoDigests ?? [],
      created: inspect.Created,
      labels: inspect.Config?.Labels ?? {},
      labelOrigins: imageLabelOrigins(inspect, history),
    });
  }
  return out;
}

function newStore(docker: Docker, config: Record<string, unknown> = {}) {
  return createStore({
    docker,
    mapper,
    config: metadataConfigSchema.parse({ max_containers: 100_000, ...config }),
    logger: silentLogger(),
    metrics: createMetricsRegistry(),
  });
}

function benchMemory(): void {
  const N = 10_000;
  const images = imageEntries();
  // Flat copies, so that no string flattening during the measurement is counted.
  const texts = Array.from({ length: N }, (_, i) => Buffer.from(payload(i)).toString());

  const store = newStore({} as Docker);
  const s0 = settle();
  for (const text of texts) {
    const inspect = JSON.parse(text) as Docker.ContainerInspectInfo;
    store.ingest(inspect, images.get(inspect.Image));
  }
  const s1 = settle();
  if (store.counters().size !== N) throw new Error(`expected ${N} entries, have ${store.counters().size}`);

  const base0 = settle();
  const raw: unknown[] = texts.map((t) => JSON.parse(t));
  const base1 = settle();
  if (raw.length !== N) throw new Error('baseline lost payloads');
  const per = (bytes: number) => `${((bytes / N) * 1000) / 1024 / 1024}`.slice(0, 5);
  console.log(
    `\n## Memory per 1,000 cached containers (${N} entries from ${CONTAINER_FIXTURES.length} recorded payloads)`,
  );
  console.log(`store entries:          heap ${per(s1.heap - s0.heap)} MiB`);
  console.log(
    `baseline, raw payloads: heap ${per(base1.heap - base0.heap)} MiB (the parsed inspect JSON kept as is)`,
  );
  store.close();
}

function benchLookups(): void {
  const N = 1000;
  const images = imageEntries();
  const store = newStore({} as Docker);
  const ids: string[] = [];
  const names: string[] = [];
  for (let i = 0; i < N; i++) {
    const inspect = JSON.parse(payload(i)) as Docker.ContainerInspectInfo;
    const e = store.ingest(inspect, images.get(inspect.Image));
    ids.push(e.id);
    names.push(e.name);
  }
  const shorts = ids.map((id) => id.slice(0, 12));
  const map = new Map(ids.map((id) => [id, store.get(id)]));
  const ROUNDS = 5_000_000;
  const time = (label: string, fn: (i: number) => unknown) => {
    for (let i = 0; i < 200_000; i++) fn(i);
    const t0 = process.hrtime.bigint();
    let found = 0;
    for (let i = 0; i < ROUNDS; i++) if (fn(i) !== undefined) found++;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (found !== ROUNDS) throw new Error(`${label}: ${ROUNDS - found} lookups missed`);
    console.log(`${label.padEnd(24)} ${(ROUNDS / s / 1e6).toFixed(1)} M lookups/s`);
  };
  console.log(`\n## Store lookups (${N} cached containers, ${ROUNDS / 1e6} M lookups each)`);
  time('baseline Map.get(id)', (i) => map.get(ids[i % N] as string));
  time('store.get(full id)', (i) => store.get(ids[i % N] as string));
  time('store.get(short id)', (i) => store.get(shorts[i % N] as string));
  time('store.byName(name)', (i) => store.byName(names[i % N] as string));
  store.close();
}

/** A unix-socket proxy in front of the engine that counts the HTTP requests passing through it. */
async function countingProxy(target: string) {
  const dir = await mkdtemp(join(tmpdir(), 'lc-bench-proxy-'));
  const path = join(dir, 'docker.sock');
  const requests = new Map<string, number>();
  const server = createServer((client) => {
    const upstream = createConnection(target);
    client.on('data', (chunk: Buffer) => {
      for (const m of chunk.toString('latin1').matchAll(/^(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP\/1\.1$/gm)) {
        const route = `${m[1]} ${(m[2] as string)
          .replace(/\?.*/, '')
          .replace(/\/v1\.\d+/, '')
          .replace(/[0-9a-f]{64}/, '{id}')
          .replace(/sha256:\{id\}/, '{id}')}`;
        requests.set(route, (requests.get(route) ?? 0) + 1);
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    requests,
    async close() {
      server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function benchEngine(): Promise<void> {
  const STARTS = 200;
  const engine = await startEngine();
  const proxy = await countingProxy(engine.socketPath);
  try {
    // A fresh image, so the run also shows what a new image costs.
    await engine.build(
      `FROM ${TEST_IMAGES.base}\nLABEL com.example.bench="metadata"\n`,
      'labelcast-test/bench:1',
    );
    const applied: AppliedEvent[] = [];
    const docker = new Docker({ socketPath: proxy.path });
    const store = newStore(docker);
    const watcher = createWatcher({
      docker,
      store,
      logger: silentLogger(),
      onApplied: (a) => applied.push(a),
    });
    await watcher.start();
    await watcher.ready;
    proxy.requests.clear();

    const t0 = performance.now();
    const ids: string[] = [];
    // Driven through the API on the engine's own socket (not the counting proxy), from this process
    // without spawning a CLI per start, so the agent's event loop measures its own work.
    const driver = new Docker({ socketPath: engine.socketPath });
    const CONCURRENCY = 4;
    for (let i = 0; i < STARTS; i += CONCURRENCY) {
      const batch = Array.from({ length: Math.min(CONCURRENCY, STARTS - i) }, async () => {
        const container = await driver.createContainer({
          Image: 'labelcast-test/bench:1',
          HostConfig: { NetworkMode: 'none' },
        });
        await container.start();
        return container.id;
      });
      ids.push(...(await Promise.all(batch)));
    }
    const deadline = Date.now() + 30_000;
    while (applied.length < STARTS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const startSeconds = (performance.now() - t0) / 1000;
    const startRequests = new Map(proxy.requests);
    const missing = ids.filter((id) => store.get(id)?.running !== true).length;

    proxy.requests.clear();
    await engine.docker('rm', '-f', ...ids);
    while (ids.some((id) => store.get(id)?.removedAt === undefined) && Date.now() < deadline + 30_000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const removeRequests = new Map(proxy.requests);
    await watcher.shutdown();

    const total = applied.map((a) => a.totalMs).sort((a, b) => a - b);
    const agent = applied.map((a) => a.totalMs - a.engineMs).sort((a, b) => a - b);
    const engineOnly = applied.map((a) => a.engineMs).sort((a, b) => a - b);
    const fmt = (xs: number[]) =>
      `p50 ${percentile(xs, 50).toFixed(2)} ms, p99 ${percentile(xs, 99).toFixed(2)} ms`;
    console.log(`\n## Docker API calls by the agent (counted at a socket proxy)`);
    console.log(`during ${STARTS} container starts (${startSeconds.toFixed(1)} s, one new image):`);
    for (const [route, n] of [...startRequests].sort()) {
      console.log(`  ${route.padEnd(34)} ${String(n).padStart(4)}  (${(n / STARTS).toFixed(3)} per start)`);
    }
    console.log(`during their removal (${STARTS} die + destroy events):`);
    if (removeRequests.size === 0) console.log('  none');
    for (const [route, n] of [...removeRequests].sort())
      console.log(`  ${route.padEnd(34)} ${String(n).padStart(4)}`);
    console.log(`containers missing from the store after their start: ${missing}`);
    console.log(`\n## Event → ready latency over ${applied.length} real container starts`);
    console.log(`agent (total minus engine round trips): ${fmt(agent)}`);
    console.log(`total, event arrival → entry stored:    ${fmt(total)}`);
    console.log(`baseline, engine inspect round trips:   ${fmt(engineOnly)}`);
  } finally {
    await proxy.close();
    await engine.close();
  }
}

const RSS_PARSED = 20_000;

/**
 * In a child process: parses the same 20,000 payloads one at a time, and caches the first `keep` of
 * them, so RSS differences between children are what the cache holds.
 */
function rssChild(keep: number): void {
  const images = imageEntries();
  const store = newStore({} as Docker);
  let parsed = 0;
  for (let i = 0; i < RSS_PARSED; i++) {
    const inspect = JSON.parse(payload(i)) as Docker.ContainerInspectInfo;
    parsed += inspect.Id.length === 64 ? 1 : 0;
    if (i < keep) store.ingest(inspect, images.get(inspect.Image));
  }
  const { rss } = settle();
  process.stdout.write(JSON.stringify({ rss, parsed, size: store.counters().size }));
}

function childRss(keep: number): number {
  const args = [import.meta.filename, '--rss-child', String(keep)];
  const { rss, parsed, size } = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' })) as {
    rss: number;
    parsed: number;
    size: number;
  };
  if (parsed !== RSS_PARSED || size !== keep) throw new Error('RSS child went wrong');
  return rss;
}

function benchRss(): void {
  const runs = 3;
  const counts = [0, 10_000, 20_000];
  const samples = counts.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) {
    for (const [i, n] of counts.entries()) samples[i]?.push(childRss(n));
  }
  const median = (xs: number[] = []) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const [none, ten, twenty] = samples.map(median) as [number, number, number];
  const mib = (bytes: number, n: number) => `${((bytes / n) * 1000) / 1024 / 1024}`.slice(0, 5);
  console.log(
    `process RSS of child processes that parse the same ${RSS_PARSED} payloads (median of ${runs}):`,
  );
  console.log(`  caching 10,000 vs none:      ${mib(ten - none, 10_000)} MiB per 1,000 containers`);
  console.log(
    `  caching 20,000 vs 10,000:    ${mib(twenty - ten, 10_000)} MiB per 1,000 containers (marginal)`,
  );
}

const childArg = process.argv.indexOf('--rss-child');
if (childArg !== -1) {
  rssChild(Number(process.argv[childArg + 1]));
  process.exit(0);
}

console.log(`labelcast bench:metadata — Node ${process.version}, ${new Date().toISOString()}`);
benchLookups();
benchMemory();
benchRss();
// `--offline` skips the private engine (parts 3 and 4).
if (!process.argv.includes('--offline')) await benchEngine();
