/**
 * The whole agent as a process (`labelcast run --config …`) against the private engine: json_file →
 * enrich → stdout, parsed from the agent's stdout NDJSON.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { createAgent } from '../../agent/agent.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { runDetached } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { lifecycleSuite } from '../helpers/lifecycle.ts';
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { waitFor } from '../helpers/wait.ts';

const NODE = join(process.cwd(), 'node_modules/.bin/node');
const MAIN = join(process.cwd(), 'agent/main.ts');

interface OutLine {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityText?: string;
  body: string;
  attributes: Record<string, string>;
  resource: Record<string, string | string[]>;
}

interface AgentProcess {
  readonly child: ChildProcess;
  readonly lines: OutLine[];
  readonly stderr: () => string;
  /** Lines of one container, in output order. */
  of(containerId: string): OutLine[];
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

let engine: Engine;
let root: string;

before(async () => {
  engine = await startEngine();
  root = await mkdtemp(join(tmpdir(), 'lc-agent-logs-'));
});

after(async () => {
  await engine?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

let configs = 0;
async function writeConfig(stateDir: string): Promise<string> {
  const file = join(root, `config-${configs++}.yaml`);
  await writeFile(
    file,
    `state_dir: ${stateDir}
enrich:
  max_wait: 2s
receivers:
  json_file:
    docker_root: ${engine.dataRoot}
    start_at: end
exporters:
  stdout: {}
pipelines:
  logs:
    receivers: [json_file]
    exporters: [stdout]
`,
  );
  return file;
}

/** What a timed-out wait shows: the end of the agent's stderr. */
const stderrOf = (agent: AgentProcess) => () =>
  `agent stderr:
${agent.stderr().slice(-4000)}`;

async function startAgent(
  stateDir: string,
  options: { config?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<AgentProcess> {
  const args = [MAIN, 'run'];
  if (options.config !== false) args.push('--config', await writeConfig(stateDir));
  // The agent reads LABELCAST_* and OTEL_* variables: only the test's own may reach it.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(LABELCAST|OTEL)_/.test(name)),
  );
  Object.assign(env, { DOCKER_HOST: engine.host, LABELCAST_LOG_LEVEL: 'info' });
  const child = spawn(NODE, args, { env: { ...env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: OutLine[] = [];
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts) if (part) lines.push(JSON.parse(part) as OutLine);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit');
  const agent: AgentProcess = {
    child,
    lines,
    stderr: () => stderr,
    of: (id) => lines.filter((l) => l.resource['container.id'] === id),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const [code] = await exited;
      return code as number | null;
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  await waitFor(
    'the agent to report it is running',
    () => stderr.includes('labelcast running') || child.exitCode !== null,
  );
  if (child.exitCode !== null) throw new Error(`The agent exited at startup:\n${stderr}`);
  return agent;
}

/** Every json-file record the engine wrote for a container: the ground truth, as `time body`. */
async function engineLog(id: string): Promise<string[]> {
  const text = await readFile(join(engine.dataRoot, 'containers', id, `${id}-json.log`), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const { log, time } = JSON.parse(line) as { log: string; time: string };
      return `${rfc3339ToNano(time)} ${log.replace(/\n$/, '')}`;
    });
}

function rfc3339ToNano(time: string): string {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) throw new Error(`not RFC 3339: ${time}`);
  const seconds = BigInt(Date.parse(`${m[1]}${m[3]}`)) / 1000n;
  return String(seconds * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0')));
}

/** Without a config file the agent also listens for OTLP: on a free port here, never the fixed 4318. */
const NO_CONFIG_ENV = { LABELCAST_RECEIVERS__OTLP_HTTP__LISTEN: '127.0.0.1:0' };

const key = (l: OutLine): string => `${l.timeUnixNano} ${l.body}`;

async function run(...args: string[]): Promise<string> {
  return runDetached(engine, ...args);
}

test('the very first line of a container that starts while the agent runs is enriched', async (t) => {
  const agent = await startAgent(await mkdtemp(join(root, 'state-')));
  t.after(() => agent.kill());
  // It logs at once and exits: the hardest case, the container may be gone before it is inspected.
  const id = await run(
    '--name',
    'first-line',
    TEST_IMAGES.app,
    'sh',
    '-c',
    'echo first-line-marker; echo second',
  );
  const first = await waitFor('the first line', () => agent.of(id)[0], undefined, stderrOf(agent));
  assert.equal(first.body, 'first-line-marker');
  assert.equal(first.attributes['log.iostream'], 'stdout');
  assert.equal(first.resource['container.id'], id);
  assert.equal(first.resource['container.name'], 'first-line');
  assert.equal(first.resource['vcs.ref.head.revision'], APP_REVISION);
  assert.equal(first.resource['vcs.repository.url.full'], 'https://github.com/acme/api');
  assert.equal(first.resource['support.contact'], 'oncall-api@example.com');
  assert.equal(first.resource['service.version'], '2.3.1');
  assert.match(first.timeUnixNano, /^\d{19}$/);
  await waitFor('the second line', () => agent.of(id).length === 2, undefined, stderrOf(agent));
  assert.equal(await agent.stop(), 0);
});

test('a container labelled io.labelcast.ignore=true is not collected', async (t) => {
  const agent = await startAgent(await mkdtemp(join(root, 'state-')));
  t.after(() => agent.kill());
  const ignored = await run(
    '--label',
    'io.labelcast.ignore=true',
    TEST_IMAGES.app,
    'sh',
    '-c',
    'echo ignored-marker; sleep 1',
  );
  await engine.docker('wait', ignored);
  const control = await run(TEST_IMAGES.app, 'sh', '-c', 'echo control-marker; sleep 1');
  await waitFor('the control container', () => agent.of(control).length === 1, undefined, stderrOf(agent));
  assert.deepEqual(agent.of(ignored), []);
  assert.equal(
    agent.lines.some((l) => l.body === 'ignored-marker'),
    false,
  );
  assert.equal(await agent.stop(), 0);
});

test('io.labelcast.multiline.start joins a stack trace into one record', async (t) => {
  const agent = await startAgent(await mkdtemp(join(root, 'state-')));
  t.after(() => agent.kill());
  const script = [
    'sleep 1',
    "printf '2026-01-01 12:00:00 INFO starting\\n'",
    "printf '2026-01-01 12:00:01 ERROR request failed\\n'",
    "printf 'java.lang.IllegalStateException: boom\\n'",
    "printf '\\tat com.acme.Api.handle(Api.java:42)\\n'",
    "printf '\\tat com.acme.Main.main(Main.java:7)\\n'",
    "printf '2026-01-01 12:00:02 INFO recovered\\n'",
    'sleep 3',
  ].join('; ');
  const id = await run(
    '--label',
    'io.labelcast.multiline.start=^\\d{4}-\\d\\d-\\d\\d ',
    TEST_IMAGES.app,
    'sh',
    '-c',
    script,
  );
  // The last record is held until the flush timeout (1 s) since nothing follows it.
  await waitFor('three records', () => agent.of(id).length === 3, undefined, stderrOf(agent));
  assert.deepEqual(
    agent.of(id).map((l) => l.body),
    [
      '2026-01-01 12:00:00 INFO starting',
      '2026-01-01 12:00:01 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.acme.Api.handle(Api.java:42)\n\tat com.acme.Main.main(Main.java:7)',
      '2026-01-01 12:00:02 INFO recovered',
    ],
  );
  assert.equal(await agent.stop(), 0);
});

/** ~6,000 numbered lines over ~3 s, then idle: enough to be caught mid-stream. */
const STREAM =
  'i=0; while [ $i -lt 60 ]; do seq $((i*100+1)) $((i*100+100)) | sed s/^/line-/; i=$((i+1)); sleep 0.05; done; sleep 3600';

/**
 * Compares the union of what the agents printed with the engine's own file. Returns the duplicates,
 * after asserting that none was lost and that the duplicates are one run at the cut.
 */
function assertNoLoss(truth: string[], before: OutLine[], afterCut: OutLine[]): number {
  const seenBefore = new Set(before.map(key));
  const seenAfter = new Set(afterCut.map(key));
  const lost = truth.filter((line) => !seenBefore.has(line) && !seenAfter.has(line));
  assert.deepEqual(lost.slice(0, 5), [], `${lost.length} lines lost`);
  const union = [...before.map(key), ...afterCut.map(key).filter((k) => !seenBefore.has(k))];
  assert.deepEqual(union, truth, 'the agents together printed the log in order');
  const duplicates = afterCut.map(key).filter((k) => seenBefore.has(k));
  // Duplicates are re-reads from the last persisted checkpoint: the tail of the first run, in order.
  assert.deepEqual(duplicates, before.map(key).slice(before.length - duplicates.length));
  return duplicates.length;
}

test('after SIGKILL mid-stream the restarted agent loses no line and repeats at most the unacked batch', async (t) => {
  const stateDir = await mkdtemp(join(root, 'state-'));
  const first = await startAgent(stateDir);
  t.after(() => first.kill());
  const id = await run(TEST_IMAGES.base, 'sh', '-c', STREAM);
  await waitFor('the stream to be under way', () => first.of(id).length >= 1500, undefined, stderrOf(first));
  await first.kill();
  const cut = first.of(id);
  assert.ok(cut.length < 6000, 'the agent was killed mid-stream');
  const second = await startAgent(stateDir);
  t.after(() => second.kill());
  await waitFor(
    'the rest of the stream',
    () => second.of(id).some((l) => l.body === 'line-6000'),
    30_000,
    stderrOf(second),
  );
  assert.equal(await second.stop(), 0);
  const duplicates = assertNoLoss(await engineLog(id), cut, second.of(id));
  // One acked-but-not-yet-persisted checkpoint write at most: a read chunk is 256 KiB.
  assert.ok(duplicates <= 3000, `${duplicates} duplicates`);
  t.diagnostic(`duplicates after SIGKILL: ${duplicates}`);
});

test('after SIGTERM mid-stream the agent exits 0 and a restart resumes with no loss and no duplicate', async (t) => {
  const stateDir = await mkdtemp(join(root, 'state-'));
  const first = await startAgent(stateDir);
  t.after(() => first.kill());
  const id = await run(TEST_IMAGES.base, 'sh', '-c', STREAM);
  await waitFor('the stream to be under way', () => first.of(id).length >= 1500, undefined, stderrOf(first));
  assert.equal(await first.stop(), 0);
  const cut = first.of(id);
  assert.ok(cut.length < 6000, 'the agent was stopped mid-stream');
  const second = await startAgent(stateDir);
  t.after(() => second.kill());
  await waitFor(
    'the rest of the stream',
    () => second.of(id).some((l) => l.body === 'line-6000'),
    30_000,
    stderrOf(second),
  );
  assert.equal(await second.stop(), 0);
  // Shutdown flushed the checkpoint of everything it printed: the second run starts right after it.
  assert.equal(assertNoLoss(await engineLog(id), cut, second.of(id)), 0);
});

test('a dockerd restart mid-stream loses no line and repeats none', async (t) => {
  const stateDir = await mkdtemp(join(root, 'state-'));
  const agent = await startAgent(stateDir);
  t.after(() => agent.kill());
  // Each start of the container is one numbered run; --stop-timeout 1 cuts the first run short.
  const script = `echo >> /runs; r=$(wc -l < /runs); ${STREAM.replace('s/^/line-/', 's/^/run-$r-line-/')}`;
  const id = await run('--restart', 'always', '--stop-timeout', '1', TEST_IMAGES.base, 'sh', '-c', script);
  await waitFor('the stream to be under way', () => agent.of(id).length >= 1500, undefined, stderrOf(agent));
  await engine.restart();
  // The container comes back (restart policy) and streams again into the same log file.
  await waitFor(
    'the second run to finish',
    () => agent.of(id).at(-1)?.body === 'run-2-line-6000',
    60_000,
    stderrOf(agent),
  );
  assert.equal(await agent.stop(), 0);
  const truth = await engineLog(id);
  const firstRun = truth.filter((line) => line.includes(' run-1-')).length;
  assert.ok(firstRun > 0 && firstRun < 6000, `the restart cut the first run short (${firstRun} lines)`);
  assert.equal(assertNoLoss(truth, agent.of(id), []), 0);
  await engine.docker('rm', '-f', id);
});

test('labelcast run without a config file collects the local engine’s json-file logs to stdout and OTEL_EXPORTER_OTLP_ENDPOINT', async (t) => {
  const stateDir = await mkdtemp(join(root, 'state-'));
  const otlp = await startOtlpReceiver();
  t.after(() => otlp.close());
  // The data root is found through an existing container's LogPath.
  const idle = await run(TEST_IMAGES.base, 'sleep', '3600');
  t.after(() => engine.docker('rm', '-f', idle));
  const agent = await startAgent(stateDir, {
    config: false,
    env: { ...NO_CONFIG_ENV, LABELCAST_STATE_DIR: stateDir, OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url },
  });
  t.after(() => agent.kill());
  assert.match(agent.stderr(), /"receiver":"json_file"/);
  const id = await run(TEST_IMAGES.legacy, 'sh', '-c', 'echo default-pipeline; sleep 1');
  const line = await waitFor('the line', () => agent.of(id)[0], undefined, stderrOf(agent));
  assert.equal(line.body, 'default-pipeline');
  assert.equal(line.resource['vcs.ref.head.revision'], '0badc0de');
  const upstream = await waitFor('the line upstream', () =>
    otlp.logRecords().find((r) => r.body === 'default-pipeline'),
  );
  assert.equal(upstream.resource['vcs.ref.head.revision'], '0badc0de');
  assert.equal(upstream.timeUnixNano, line.timeUnixNano);
  assert.equal(await agent.stop(), 0);
});

test('without a config file and with unreadable engine files, run uses the Docker log API', async (t) => {
  const stateDir = await mkdtemp(join(root, 'state-'));
  const agent = await startAgent(stateDir, {
    config: false,
    env: {
      ...NO_CONFIG_ENV,
      LABELCAST_STATE_DIR: stateDir,
      LABELCAST_RECEIVERS__JSON_FILE__DOCKER_ROOT: '/nonexistent',
    },
  });
  t.after(() => agent.kill());
  assert.match(agent.stderr(), /"receiver":"docker_logs"/);
  const id = await run(TEST_IMAGES.app, 'sh', '-c', 'echo through-the-api; sleep 2');
  const line = await waitFor('the line', () => agent.of(id)[0], undefined, stderrOf(agent));
  assert.equal(line.body, 'through-the-api');
  assert.equal(line.resource['support.contact'], 'oncall-api@example.com');
  assert.equal(await agent.stop(), 0);
});

test('an unreachable Docker engine at startup is a one-line error and exit code 1', async () => {
  const child = spawn(NODE, [MAIN, 'run'], {
    env: { ...process.env, DOCKER_HOST: `unix://${join(root, 'no-such.sock')}`, LABELCAST_STATE_DIR: root },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  const [code] = await once(child, 'exit');
  assert.equal(code, 1);
  assert.equal(stdout, '');
  const errors = stderr.split('\n').filter((l) => l && !l.startsWith('{'));
  assert.deepEqual(errors, [
    `Cannot connect to Docker at unix://${join(root, 'no-such.sock')}: no such socket (is dockerd running? set DOCKER_HOST or docker.host to the engine's socket)`,
  ]);
});

lifecycleSuite('agent (json_file → enrich → stdout, in process)', async () => {
  const stateDir = await mkdtemp(join(root, 'state-'));
  let text = '';
  const stdout = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const config = loadConfig({ file: await writeConfig(stateDir), env: {} });
  const agent = await createAgent(config, {
    logger: silentLogger(),
    metrics: new Registry(),
    env: { DOCKER_HOST: engine.host },
    stdout,
  });
  let id = '';
  return {
    component: agent,
    async send() {
      // The container has written everything before shutdown() begins: shutdown must still deliver it.
      id = await run(TEST_IMAGES.app, 'sh', '-c', 'seq 1 2000 | sed s/^/lifecycle-/; sleep 2');
      await waitFor(
        'the container to write',
        async () => (await engineLog(id).catch(() => [])).length === 2000,
      );
      return 2000;
    },
    received: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as OutLine)
        .filter((l) => l.resource['container.id'] === id && l.resource['support.contact'] !== undefined)
        .length,
  };
});
