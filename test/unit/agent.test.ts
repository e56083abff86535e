import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createAgent, resolveStateDir } from '../../agent/agent.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';

/** A path that cannot become a directory, even for root: its parent is a character device. */
const UNWRITABLE = '/dev/null/labelcast';

test('a writable state_dir is used as configured, and created when missing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const wanted = join(dir, 'nested', 'state');
  assert.equal(await resolveStateDir(wanted, {}, silentLogger()), wanted);
  assert.ok((await stat(wanted)).isDirectory());
});

test('the default state_dir falls back to $XDG_STATE_HOME/labelcast when it is not writable', async (t) => {
  const xdg = await mkdtemp(join(tmpdir(), 'lc-xdg-'));
  t.after(() => rm(xdg, { recursive: true, force: true }));
  const got = await resolveStateDir(UNWRITABLE, { XDG_STATE_HOME: xdg }, silentLogger(), UNWRITABLE);
  assert.equal(got, join(xdg, 'labelcast'));
});

test('without XDG_STATE_HOME the fallback is ~/.local/state/labelcast', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'lc-home-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const got = await resolveStateDir(UNWRITABLE, { HOME: home }, silentLogger(), UNWRITABLE);
  assert.equal(got, join(home, '.local', 'state', 'labelcast'));
});

test('an explicitly configured state_dir that is not writable is an error naming the fix', async () => {
  await assert.rejects(resolveStateDir(UNWRITABLE, {}, silentLogger()), {
    code: 'LABELCAST_ERR_STATE',
    message: /^Cannot use state_dir \/dev\/null\/labelcast: .*LABELCAST_STATE_DIR/,
  });
});

test('a pipeline with a component that cannot carry its signal is refused before Docker is contacted', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'labelcast.yaml');
  await writeFile(
    file,
    `receivers:
  json_file: {}
  otlp_http: {}
exporters:
  loki:
    endpoint: http://127.0.0.1:3100
pipelines:
  traces:
    receivers: [json_file]
    exporters: [loki]
`,
  );
  const deps = {
    logger: silentLogger(),
    metrics: new Registry(),
    env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
  };
  await assert.rejects(createAgent(loadConfig({ file, env: {} }), deps), {
    code: 'LABELCAST_ERR_CONFIG_INVALID',
    message:
      'Invalid config: pipelines.traces.receivers.0: "json_file" cannot receive traces (use otlp_http)',
  });
});
