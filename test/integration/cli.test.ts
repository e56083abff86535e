import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliRun, runCli } from '../helpers/cli.ts';
import { runDetached } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';

const SECRET = 'hunter2';

let engine: Engine;
let dir: string;

/** Runs the labelcast CLI as a child process with a clean environment (no inherited LABELCAST_*). */
const cli = (args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> =>
  runCli(engine, args, env);

async function cliJson<T>(args: readonly string[], env: Record<string, string> = {}): Promise<T> {
  const run = await cli([...args, '--json'], env);
  assert.equal(run.code, 0, `labelcast ${args.join(' ')} failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/** Table rows as cells: columns are separated by at least two spaces. */
function rows(table: string): string[][] {
  return table
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.split(/ {2,}/));
}

/** An expected failure: non-zero exit, one line on stderr, no stack trace. */
function assertOneLineError(run: CliRun, pattern: RegExp): void {
  assert.notEqual(run.code, 0);
  assert.equal(run.stdout, '');
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0] ?? '', pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at /);
}

interface InspectJson {
  id: string;
  name: string;
  running: boolean;
  image: { ref: string; id: string; tags: string[] };
  attributes: Record<string, string | string[]>;
  labels: Record<string, { value: string; origin: string }>;
}

interface ImageJson {
  id: string;
  repoTags: string[];
  created: string;
  title?: string;
  revision?: string;
  source?: string;
  contact?: string;
  labels: Record<string, string>;
}

before(async () => {
  engine = await startEngine();
  dir = await mkdtemp(join(tmpdir(), 'lc-cli-'));
  await runDetached(engine, '--name', 'checkout', '--label', 'io.labelcast.team=checkout', TEST_IMAGES.app);
});

after(async () => {
  await engine?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('labelcast inspect', () => {
  test('--json shows revision, normalised source, contact and each label with its origin', async () => {
    const report = await cliJson<InspectJson>(['inspect', 'checkout']);
    assert.equal(report.name, 'checkout');
    assert.equal(report.running, true);
    assert.equal(report.image.ref, TEST_IMAGES.app);
    assert.equal(report.attributes['vcs.ref.head.revision'], APP_REVISION);
    assert.equal(report.attributes['vcs.repository.url.full'], 'https://github.com/acme/api');
    assert.equal(report.attributes['support.contact'], 'oncall-api@example.com');
    assert.equal(report.attributes.team, 'checkout', 'the container label overrides the image label');
    assert.deepEqual(report.labels['io.labelcast.team'], { value: 'checkout', origin: 'container' });
    assert.deepEqual(report.labels['org.opencontainers.image.revision'], {
      value: APP_REVISION,
      origin: 'image',
    });
    assert.deepEqual(report.labels['org.opencontainers.image.source'], {
      value: 'git@github.com:acme/api.git',
      origin: 'image',
    });
    assert.deepEqual(report.labels['com.example.base-only'], { value: 'yes', origin: 'base-image' });
    assert.deepEqual(report.labels['org.opencontainers.image.authors'], {
      value: 'platform@example.com',
      origin: 'base-image',
    });
  });

  test('the table shows the same attributes and label origins', async () => {
    const run = await cli(['inspect', 'checkout']);
    assert.equal(run.code, 0, run.stderr);
    const cells = rows(run.stdout);
    const row = (first: string, header: string): string[] | undefined => {
      const start = cells.findIndex((r) => r[0] === header);
      return cells.slice(start).find((r) => r[0] === first);
    };
    assert.deepEqual(row('CONTAINER', 'CONTAINER'), ['CONTAINER', 'checkout']);
    assert.deepEqual(row('vcs.ref.head.revision', 'ATTRIBUTE'), ['vcs.ref.head.revision', APP_REVISION]);
    assert.deepEqual(row('vcs.repository.url.full', 'ATTRIBUTE'), [
      'vcs.repository.url.full',
      'https://github.com/acme/api',
    ]);
    assert.deepEqual(row('support.contact', 'ATTRIBUTE'), ['support.contact', 'oncall-api@example.com']);
    assert.deepEqual(row('io.labelcast.team', 'LABEL'), ['io.labelcast.team', 'checkout', 'container']);
    assert.deepEqual(row('org.opencontainers.image.revision', 'LABEL'), [
      'org.opencontainers.image.revision',
      APP_REVISION,
      'image',
    ]);
    assert.deepEqual(row('com.example.base-only', 'LABEL'), ['com.example.base-only', 'yes', 'base-image']);
  });

  test('finds a container by a unique id prefix', async () => {
    const id = await engine.docker('inspect', '--format', '{{.Id}}', 'checkout');
    const report = await cliJson<InspectJson>(['inspect', id.slice(0, 10)]);
    assert.equal(report.id, id);
  });

  test('an image made with docker commit keeps its parent labels, as inherited', async () => {
    await engine.docker('create', '--network', 'none', '--name', 'commit-src', TEST_IMAGES.app);
    const imageId = await engine.docker('commit', 'commit-src');
    await runDetached(engine, '--name', 'from-commit', imageId);
    const report = await cliJson<InspectJson>(['inspect', 'from-commit']);
    assert.equal(report.attributes['vcs.ref.head.revision'], APP_REVISION);
    assert.equal(report.attributes['vcs.repository.url.full'], 'https://github.com/acme/api');
    assert.equal(report.attributes['support.contact'], 'oncall-api@example.com');
    assert.deepEqual(report.labels['org.opencontainers.image.revision'], {
      value: APP_REVISION,
      origin: 'base-image',
    });
    assert.deepEqual(report.labels['com.example.base-only'], { value: 'yes', origin: 'base-image' });
  });

  test('an unknown container is a one-line error and exit code 1', async () => {
    const run = await cli(['inspect', 'no-such-container']);
    assert.equal(run.code, 1);
    assertOneLineError(run, /^Cannot inspect container "no-such-container": no such container/);
  });
});

describe('labelcast images', () => {
  test('lists an untagged image with its labels, title, revision, source and contact', async () => {
    const untagged = await engine.build(`FROM ${TEST_IMAGES.base}
LABEL org.opencontainers.image.revision="c0ffee0000000000000000000000000000000001" \\
      org.opencontainers.image.source="https://github.com/acme/worker.git" \\
      org.opencontainers.image.title="worker"
`);
    const images = await cliJson<ImageJson[]>(['images']);
    const image = images.find((i) => i.id === untagged);
    assert.ok(image, `untagged image ${untagged} is listed`);
    assert.deepEqual(image.repoTags, []);
    assert.equal(image.title, 'worker');
    assert.equal(image.revision, 'c0ffee0000000000000000000000000000000001');
    assert.equal(image.source, 'https://github.com/acme/worker');
    assert.equal(image.contact, 'platform@example.com', 'the base image authors label is inherited');
    assert.equal(image.labels['org.opencontainers.image.title'], 'worker');
    assert.equal(image.labels['com.example.base-only'], 'yes');
    assert.match(image.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const run = await cli(['images']);
    assert.equal(run.code, 0, run.stderr);
    const table = rows(run.stdout);
    assert.deepEqual(table[0], [
      'REPOSITORY',
      'TAG',
      'IMAGE ID',
      'CREATED',
      'TITLE',
      'REVISION',
      'SOURCE',
      'CONTACT',
    ]);
    const row = table.find((r) => r[2] === untagged.replace('sha256:', '').slice(0, 12));
    assert.deepEqual(row, [
      '<none>',
      '<none>',
      untagged.replace('sha256:', '').slice(0, 12),
      image.created,
      'worker',
      'c0ffee0000000000000000000000000000000001',
      'https://github.com/acme/worker',
      'platform@example.com',
    ]);
    const app = table.find((r) => r[0] === 'labelcast-test/app' && r[1] === '2.3.1');
    assert.equal(app?.[5], APP_REVISION);
    assert.equal(app?.[6], 'https://github.com/acme/api');
    assert.equal(app?.[7], 'oncall-api@example.com');
  });
});

describe('labelcast containers', () => {
  test('lists running containers with image, revision and contact', async () => {
    const list = await cliJson<{ name: string; image: string; revision?: string; contact?: string }[]>([
      'containers',
    ]);
    const checkout = list.find((c) => c.name === 'checkout');
    assert.equal(checkout?.image, TEST_IMAGES.app);
    assert.equal(checkout?.revision, APP_REVISION);
    assert.equal(checkout?.contact, 'oncall-api@example.com');
    assert.equal(
      list.find((c) => c.name === 'commit-src'),
      undefined,
      'a created, never started container is not running',
    );

    const run = await cli(['containers']);
    assert.equal(run.code, 0, run.stderr);
    const table = rows(run.stdout);
    assert.deepEqual(table[0], ['NAME', 'CONTAINER ID', 'IMAGE', 'REVISION', 'SOURCE', 'CONTACT']);
    const row = table.find((r) => r[0] === 'checkout');
    assert.deepEqual(row?.slice(2), [
      TEST_IMAGES.app,
      APP_REVISION,
      'https://github.com/acme/api',
      'oncall-api@example.com',
    ]);
  });
});

describe('redaction', () => {
  test('a secret-looking label never appears in output or in trace-level logs', async () => {
    const env = { LABELCAST_LOG_LEVEL: 'trace' };
    const json = await cli(['inspect', 'checkout', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as InspectJson;
    assert.deepEqual(report.labels['com.example.db-password'], { value: '[REDACTED]', origin: 'image' });
    assert.equal(report.attributes['container.label.com.example.db-password'], '[REDACTED]');
    const runs = [
      json,
      await cli(['inspect', 'checkout'], env),
      await cli(['images', '--json', '--all'], env),
      await cli(['containers', '--json'], env),
    ];
    for (const run of runs) {
      assert.equal(run.code, 0, run.stderr);
      assert.ok(!run.stdout.includes(SECRET), 'stdout holds no secret');
      assert.ok(!run.stderr.includes(SECRET), 'the logs hold no secret');
    }
    // The logs are pino JSON lines; make sure they were really written at trace level.
    const logLines = runs.flatMap((r) => r.stderr.split('\n').filter(Boolean));
    assert.ok(logLines.length > 0, 'trace level produced log lines to check');
    for (const line of logLines) assert.equal((JSON.parse(line) as { service: string }).service, 'labelcast');
  });
});

describe('bad input', () => {
  test('a DOCKER_HOST socket that does not exist names the fix', async () => {
    const run = await cli(['containers'], { DOCKER_HOST: 'unix:///nonexistent.sock' });
    assert.equal(run.code, 1);
    assertOneLineError(
      run,
      /^Cannot connect to Docker at unix:\/\/\/nonexistent\.sock: no such socket .*DOCKER_HOST/,
    );
  });

  test('a DOCKER_HOST with an unsupported scheme says which forms are allowed', async () => {
    const run = await cli(['inspect', 'checkout'], { DOCKER_HOST: 'ftp://x' });
    assert.equal(run.code, 1);
    assertOneLineError(
      run,
      /^Invalid Docker host "ftp:\/\/x": expected unix:\/\/\/path\/to\/docker\.sock or tcp:\/\/HOST:PORT$/,
    );
  });

  test('a misspelled config key fails check-config and every command, naming the key', async () => {
    const file = join(dir, 'typo.yaml');
    await writeFile(file, 'metadata:\n  max_contianers: 5\n');
    const expected = new RegExp(
      `^Invalid config ${file}: metadata\\.max_contianers: unknown key, expected one of .*max_containers.* \\(did you mean max_containers\\?\\)$`,
    );
    assertOneLineError(await cli(['check-config', '--config', file]), expected);
    assertOneLineError(await cli(['inspect', 'checkout', '--config', file]), expected);
    assertOneLineError(await cli(['images'], { LABELCAST_CONFIG: file }), expected);
  });

  test('a bad config value names the path, the value and what is allowed', async () => {
    const file = join(dir, 'bad-value.yaml');
    await writeFile(file, 'receivers:\n  json_file:\n    start_at: middle\n');
    const run = await cli(['check-config', '--config', file]);
    assert.equal(run.code, 1);
    assertOneLineError(
      run,
      new RegExp(
        `^Invalid config ${file}: receivers\\.json_file\\.start_at: got "middle", expected one of beginning, end$`,
      ),
    );
  });

  test('a bad value in a LABELCAST_ variable names the variable', async () => {
    const run = await cli(['check-config'], { LABELCAST_LOG_LEVEL: 'loud' });
    assertOneLineError(
      run,
      /telemetry\.log_level \(from LABELCAST_LOG_LEVEL\): got "loud", expected one of trace, debug/,
    );
  });

  test('check-config accepts a valid file and prints a summary', async () => {
    const file = join(dir, 'good.yaml');
    await writeFile(
      file,
      'receivers:\n  json_file: {}\nexporters:\n  stdout: {}\npipelines:\n  logs:\n    receivers: [json_file]\n    exporters: [stdout]\n',
    );
    const run = await cli(['check-config', '--config', file]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout,
      `config OK: ${file}; docker ${engine.host}; receivers json_file; exporters stdout; pipelines logs (json_file -> stdout); state /var/lib/labelcast; log level info\n`,
    );
  });

  test('an unknown command or option is a usage error with exit code 2', async () => {
    assert.equal((await cli(['frobnicate'])).code, 2);
    assert.equal((await cli(['images', '--bogus'])).code, 2);
  });
});
