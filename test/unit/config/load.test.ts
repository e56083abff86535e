import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { allowedKeys, envVarToPath, loadConfig } from '../../../agent/config/load.ts';
import { configSchema } from '../../../agent/config/schema.ts';
import { ConfigError } from '../../../agent/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'lc-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function yamlFile(text: string): string {
  const file = join(dir, `config-${files++}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The ConfigError's lines, asserting that loading fails with one. */
function errorLines(load: () => unknown): string[] {
  try {
    load();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'LABELCAST_ERR_CONFIG_INVALID');
    return err.message.split('\n');
  }
  assert.fail('expected loadConfig to throw');
}

describe('loadConfig', () => {
  test('with no file and no variables it returns the schema defaults', () => {
    assert.deepEqual(loadConfig({ env: {} }), configSchema.parse({}));
  });

  test('reads a YAML file and fills in defaults around the keys it sets', () => {
    const file = yamlFile('state_dir: /tmp/lc\nreceivers:\n  json_file:\n    start_at: beginning\n');
    const config = loadConfig({ file, env: {} });
    assert.equal(config.state_dir, '/tmp/lc');
    assert.deepEqual(config.receivers.json_file, {
      ...(configSchema.parse({ receivers: { json_file: {} } }).receivers.json_file as object),
      start_at: 'beginning',
    });
    assert.equal(config.metadata.max_containers, 10_000);
  });

  test('takes the file from LABELCAST_CONFIG when no file is passed', () => {
    const file = yamlFile('state_dir: /from/env/file\n');
    assert.equal(loadConfig({ env: { LABELCAST_CONFIG: file } }).state_dir, '/from/env/file');
  });

  test('an empty file means the defaults', () => {
    assert.deepEqual(loadConfig({ file: yamlFile('# nothing yet\n'), env: {} }), configSchema.parse({}));
  });

  test('environment variables override the file, with aliases and __ for nesting', () => {
    const file = yamlFile(
      'state_dir: /from/file\ntelemetry:\n  log_level: warn\nmetadata:\n  max_images: 5\n',
    );
    const config = loadConfig({
      file,
      env: {
        LABELCAST_STATE_DIR: '/from/env',
        LABELCAST_LOG_LEVEL: 'debug',
        LABELCAST_DOCKER_HOST: 'unix:///run/other.sock',
        LABELCAST_METADATA__MAX_CONTAINERS: '500',
        LABELCAST_RECEIVERS__JSON_FILE__START_AT: 'beginning',
        LABELCAST_MAPPING__REDACT: '[a*, b*]',
        LABELCAST_ENRICH__EXCLUDE_SELF: 'false',
        UNRELATED: 'x',
      },
    });
    assert.equal(config.state_dir, '/from/env');
    assert.equal(config.telemetry.log_level, 'debug');
    assert.equal(config.docker.host, 'unix:///run/other.sock');
    assert.equal(config.metadata.max_containers, 500);
    assert.equal(config.metadata.max_images, 5, 'keys the environment does not name keep the file value');
    assert.equal((config.receivers.json_file as { start_at: string }).start_at, 'beginning');
    assert.deepEqual(config.mapping.redact, ['a*', 'b*']);
    assert.equal(config.enrich.exclude_self, false);
  });

  test('empty variables are ignored, as an unset DOCKER_HOST would be', () => {
    assert.equal(loadConfig({ env: { LABELCAST_STATE_DIR: '' } }).state_dir, '/var/lib/labelcast');
  });

  test('maps variable names to key paths', () => {
    assert.deepEqual(envVarToPath('LABELCAST_STATE_DIR'), ['state_dir']);
    assert.deepEqual(envVarToPath('LABELCAST_DOCKER_HOST'), ['docker', 'host']);
    assert.deepEqual(envVarToPath('LABELCAST_LOG_LEVEL'), ['telemetry', 'log_level']);
    assert.deepEqual(envVarToPath('LABELCAST_EXPORTERS__LOKI__ENDPOINT'), ['exporters', 'loki', 'endpoint']);
    assert.equal(envVarToPath('LABELCAST_CONFIG'), undefined);
    assert.equal(envVarToPath('LABELCAST_A____B'), undefined);
    assert.equal(envVarToPath('DOCKER_HOST'), undefined);
  });

  test('a bad enum value names the path, the value given and the allowed values', () => {
    const file = yamlFile('receivers:\n  json_file:\n    start_at: middle\n');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [`Invalid config ${file}: receivers.json_file.start_at: got "middle", expected one of beginning, end`],
    );
  });

  test('a misspelled key is an error that lists the allowed keys and the likely one', () => {
    const file = yamlFile('telemetry:\n  log_levle: debug\n');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [
        `Invalid config ${file}: telemetry.log_levle: unknown key, expected one of log_level, metrics_listen, traces (did you mean log_level?)`,
      ],
    );
  });

  test('a misspelled top-level section is an error too', () => {
    const file = yamlFile('metdata:\n  max_containers: 10\n');
    const [line] = errorLines(() => loadConfig({ file, env: {} }));
    assert.match(
      line ?? '',
      /: metdata: unknown key, expected one of docker, state_dir, metadata, .* \(did you mean metadata\?\)$/,
    );
  });

  test('every problem gets its own line', () => {
    const file = yamlFile('state_dir: 5\nmetadata:\n  max_containers: -1\n  tombstone_grace: soon\n');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [
        `Invalid config ${file}: state_dir: got 5, expected a string`,
        `Invalid config ${file}: metadata.max_containers: got -1, expected a number > 0`,
        `Invalid config ${file}: metadata.tombstone_grace: got "soon", expected a duration such as 250ms, 2s, 5m or 1h`,
      ],
    );
  });

  test('an error in a value from the environment names the variable', () => {
    assert.deepEqual(
      errorLines(() => loadConfig({ env: { LABELCAST_LOG_LEVEL: 'loud' } })),
      [
        'Invalid config from environment: telemetry.log_level (from LABELCAST_LOG_LEVEL): got "loud", expected one of trace, debug, info, warn, error, fatal, silent',
      ],
    );
    assert.deepEqual(
      errorLines(() => loadConfig({ env: { LABELCAST_DOCKER__HOTS: 'x' } })),
      [
        'Invalid config from environment: docker.hots (from LABELCAST_DOCKER__HOTS): unknown key, expected one of host, tls_verify, cert_path (did you mean host?)',
      ],
    );
  });

  test('a bad docker.host says which forms are allowed', () => {
    const file = yamlFile('docker:\n  host: ftp://x\n');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [
        `Invalid config ${file}: docker.host: got "ftp://x", expected unix:///path/to/docker.sock or tcp://HOST:PORT`,
      ],
    );
  });

  test('an unknown component type is named with the allowed types', () => {
    const file = yamlFile('receivers:\n  journald: {}\n');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [
        `Invalid config ${file}: receivers.journald: unknown name "journald", expected one of json_file, docker_logs, fluent_forward, otlp_http (optionally followed by /NAME)`,
      ],
    );
  });

  test('a pipeline naming an undefined component is an error naming what is defined', () => {
    const file = yamlFile(
      'receivers:\n  json_file: {}\nexporters:\n  stdout: {}\npipelines:\n  logs:\n    receivers: [json_file]\n    exporters: [loki]\n',
    );
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [`Invalid config ${file}: pipelines.logs.exporters.0: got "loki": unknown exporter (defined: stdout)`],
    );
  });

  test('values of secret-looking keys and nested mappings are not echoed in errors', () => {
    const file = yamlFile(
      'exporters:\n  loki:\n    endpoint: http://loki:3100\n    bearer_token: 42\n    basic_auth: {username: u, password: hunter2}\n',
    );
    const lines = errorLines(() => loadConfig({ file, env: {} }));
    assert.ok(lines.length > 0);
    for (const line of lines) assert.doesNotMatch(line, /hunter2|42/);
    assert.ok(
      lines.some((l) => l.includes('exporters.loki.bearer_token: got [REDACTED], expected a string')),
    );
  });

  test('a wrong type says what type is expected', () => {
    const file = yamlFile('mapping:\n  redact: "*password*"\n');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [`Invalid config ${file}: mapping.redact: got "*password*", expected a list`],
    );
  });

  test('a missing file says so and how to point at another', () => {
    const file = join(dir, 'missing.yaml');
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [`Cannot read config ${file}: no such file (pass an existing file with --config or LABELCAST_CONFIG)`],
    );
  });

  test('unparsable YAML names the line', () => {
    const file = yamlFile('metadata:\n  max_containers: [1\n');
    const [line] = errorLines(() => loadConfig({ file, env: {} }));
    assert.match(
      line ?? '',
      new RegExp(`^Cannot parse config ${file}: .* at line \\d+, column \\d+ \\(fix the YAML syntax\\)$`),
    );
  });

  test('a file whose top level is not a mapping is refused', () => {
    const file = yamlFile('- a\n- b\n');
    assert.match(errorLines(() => loadConfig({ file, env: {} }))[0] ?? '', /top level must be a mapping/);
  });
});

describe('allowedKeys', () => {
  test('walks sections, component types and nested objects', () => {
    assert.ok(allowedKeys([]).includes('state_dir'));
    assert.deepEqual(allowedKeys(['docker']), ['host', 'tls_verify', 'cert_path']);
    assert.ok(allowedKeys(['receivers', 'json_file']).includes('start_at'));
    assert.ok(allowedKeys(['receivers', 'docker_logs/b']).includes('start_at'));
    assert.deepEqual(allowedKeys(['mapping', 'labels']), ['include', 'exclude']);
    assert.deepEqual(allowedKeys(['pipelines']), ['logs', 'traces', 'metrics']);
    assert.deepEqual(allowedKeys(['pipelines', 'logs']), ['receivers', 'exporters']);
  });
});

describe('empty keys', () => {
  test('a section left empty means its defaults, a component left empty means that component with defaults', () => {
    const file = yamlFile('docker:\nmetadata:\nexporters:\n  stdout:\nreceivers:\n  json_file:\n');
    const config = loadConfig({ file, env: {} });
    assert.deepEqual(config.docker, {});
    assert.equal(config.metadata.max_containers, 10_000);
    assert.deepEqual(Object.keys(config.exporters), ['stdout']);
    assert.deepEqual(Object.keys(config.receivers), ['json_file']);
  });
});

describe('environment values', () => {
  test('keys that take a string get the text as written, other keys get YAML-typed values', () => {
    const config = loadConfig({
      env: {
        LABELCAST_STATE_DIR: '007',
        LABELCAST_METADATA__MAX_IMAGES: '0x10',
        LABELCAST_METADATA__TOMBSTONE_GRACE: '90000',
      },
    });
    assert.equal(config.state_dir, '007');
    assert.equal(config.metadata.max_images, 16);
    assert.equal(config.metadata.tombstone_grace, 90_000);
  });

  test('an empty list where one entry is required says so', () => {
    const file = yamlFile(
      'pipelines:\n  logs:\n    receivers: []\n    exporters: [stdout]\nexporters:\n  stdout:\n',
    );
    assert.deepEqual(
      errorLines(() => loadConfig({ file, env: {} })),
      [`Invalid config ${file}: pipelines.logs.receivers: got [], expected at least 1 item`],
    );
  });
});

describe('pipelines', () => {
  test('named instances count as their type', () => {
    const file = yamlFile(
      'receivers:\n  otlp_http/apps:\nexporters:\n  otlp_http/eu:\n    endpoint: http://127.0.0.1:4318\npipelines:\n  traces:\n    receivers: [otlp_http/apps]\n    exporters: [otlp_http/eu]\n',
    );
    assert.deepEqual(loadConfig({ file, env: {} }).pipelines.traces, {
      receivers: ['otlp_http/apps'],
      exporters: ['otlp_http/eu'],
    });
  });
});
