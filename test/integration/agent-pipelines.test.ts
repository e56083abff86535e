/**
 * The agent's wiring with every kind of pipeline, in process, against the private engine and the spec
 * test receivers: one logs pipeline fanned out to otlp_http, loki and stdout; a traces pipeline from the
 * otlp_http receiver to the otlp_http exporter.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { type Agent, createAgent } from '../../agent/agent.ts';
import { loadConfig } from '../../agent/config/load.ts';
import type { FluentForwardReceiver } from '../../agent/receivers/fluent-forward/index.ts';
import type { OtlpHttpReceiver } from '../../agent/receivers/otlp-http/index.ts';
import { silentLogger } from '../../agent/telemetry/logger.ts';
import { runDetached } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { type LokiReceiver, startLokiReceiver } from '../helpers/loki-receiver.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { waitFor } from '../helpers/wait.ts';

let engine: Engine;
let root: string;
let otlp: OtlpReceiver;
let loki: LokiReceiver;
let agent: Agent;
let stdoutText = '';
const metrics = new Registry();

before(async () => {
  engine = await startEngine();
  root = await mkdtemp(join(tmpdir(), 'lc-agent-pipelines-'));
  otlp = await startOtlpReceiver();
  loki = await startLokiReceiver();
  const file = join(root, 'labelcast.yaml');
  await writeFile(
    file,
    `state_dir: ${join(root, 'state')}
receivers:
  json_file:
    docker_root: ${engine.dataRoot}
  otlp_http:
    listen: 127.0.0.1:0
  fluent_forward:
    listen: 127.0.0.1:0
exporters:
  stdout: {}
  loki:
    endpoint: ${loki.url}
    delivery:
      max_delay: 100ms
  otlp_http:
    endpoint: ${otlp.url}
    delivery:
      max_delay: 100ms
pipelines:
  logs:
    receivers: [json_file, otlp_http, fluent_forward]
    exporters: [otlp_http, loki, stdout]
  traces:
    receivers: [otlp_http]
    exporters: [otlp_http]
`,
  );
  const stdout = new Writable({
    write(chunk: Buffer, _enc, cb) {
      stdoutText += chunk.toString();
      cb();
    },
  });
  agent = await createAgent(loadConfig({ file, env: {} }), {
    logger: silentLogger(),
    metrics,
    env: { DOCKER_HOST: engine.host },
    stdout,
  });
  await agent.start();
});

after(async () => {
  await agent?.shutdown();
  await otlp?.close();
  await loki?.close();
  await engine?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

test('one container line reaches every exporter of the logs pipeline, enriched', async () => {
  const id = await runDetached(
    engine,
    '--name',
    'fanout',
    TEST_IMAGES.app,
    'sh',
    '-c',
    'echo fan-out-marker; sleep 1',
  );
  const viaOtlp = await waitFor('the OTLP log record', () =>
    otlp.logRecords().find((r) => r.body === 'fan-out-marker'),
  );
  assert.equal(viaOtlp.resource['container.id'], id);
  assert.equal(viaOtlp.resource['vcs.ref.head.revision'], APP_REVISION);
  const viaLoki = await waitFor('the Loki entry', () =>
    loki.entries.find((e) => e.line === 'fan-out-marker'),
  );
  assert.equal(viaLoki.labels.support_contact, 'oncall-api@example.com');
  assert.equal(viaLoki.structuredMetadata.vcs_ref_head_revision, APP_REVISION);
  assert.equal(viaLoki.timestampNs.toString(), viaOtlp.timeUnixNano);
  const viaStdout = await waitFor('the stdout line', () =>
    stdoutText
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { body: string; timeUnixNano: string; resource: Record<string, unknown> })
      .find((l) => l.body === 'fan-out-marker'),
  );
  assert.equal(viaStdout.timeUnixNano, viaOtlp.timeUnixNano);
  assert.equal(viaStdout.resource['container.name'], 'fanout');
});

test('a span sent to the otlp_http receiver with a container.id leaves with that container’s attributes', async () => {
  const id = await runDetached(engine, TEST_IMAGES.app, 'sleep', '60');
  const receiver = agent.receivers.find((r) => r.name === 'otlp_http') as OtlpHttpReceiver;
  const body = {
    resourceSpans: [
      {
        resource: {
          attributes: [
            { key: 'container.id', value: { stringValue: id } },
            { key: 'service.name', value: { stringValue: 'checkout' } },
          ],
        },
        scopeSpans: [
          {
            scope: { name: 'test' },
            spans: [
              {
                traceId: '5b8efff798038103d269b633813fc60c',
                spanId: 'eee19b7ec3c1b174',
                name: 'GET /cart',
                kind: 2,
                startTimeUnixNano: '1767225600000000000',
                endTimeUnixNano: '1767225600100000000',
              },
            ],
          },
        ],
      },
    ],
  };
  const res = await fetch(`http://${receiver.address()}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200);
  const request = await waitFor('the forwarded traces request', () =>
    otlp.requests.find((r) => r.path === '/v1/traces'),
  );
  const resourceSpans = request.decoded.resourceSpans as {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: { name: string }[] }[];
  }[];
  const attrs = Object.fromEntries(
    resourceSpans[0]!.resource.attributes.map((kv) => [kv.key, kv.value.stringValue]),
  );
  assert.equal(attrs['container.id'], id);
  assert.equal(attrs['service.name'], 'checkout', 'an attribute the application set is kept');
  assert.equal(attrs['vcs.ref.head.revision'], APP_REVISION);
  assert.equal(attrs['support.contact'], 'oncall-api@example.com');
  assert.equal(resourceSpans[0]!.scopeSpans[0]!.spans[0]!.name, 'GET /cart');
});

test('the first line a fluentd-driver container sends, possibly before its start event, is enriched', async () => {
  const receiver = agent.receivers.find((r) => r.name === 'fluent_forward') as FluentForwardReceiver;
  const id = await runDetached(
    engine,
    '--log-driver',
    'fluentd',
    '--log-opt',
    `fluentd-address=tcp://${receiver.address().tcp}`,
    TEST_IMAGES.app,
    'sh',
    '-c',
    'echo via-fluentd; sleep 1',
  );
  const line = await waitFor('the fluentd line', () =>
    otlp.logRecords().find((r) => r.body === 'via-fluentd'),
  );
  assert.equal(line.resource['container.id'], id);
  assert.equal(line.resource['support.contact'], 'oncall-api@example.com');
  const unenriched = (await metrics.getSingleMetric('labelcast_enrich_records_unenriched_total')!.get())
    .values;
  assert.equal(unenriched[0]?.value ?? 0, 0);
});
