import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../../agent/telemetry/logger.ts';
import {
  dockerRoute,
  selfTracesEnabled,
  selfTracesEndpoint,
  startSelfTelemetry,
} from '../../../agent/telemetry/tracing.ts';

test('self-traces are off by default, on with telemetry.traces.enabled or OTEL_TRACES_EXPORTER=otlp', () => {
  assert.equal(selfTracesEnabled({}, {}), false);
  assert.equal(selfTracesEnabled({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), false);
  assert.equal(selfTracesEnabled({ enabled: true }, {}), true);
  assert.equal(selfTracesEnabled({}, { OTEL_TRACES_EXPORTER: 'console, otlp' }), true);
  assert.equal(selfTracesEnabled({ enabled: true }, { OTEL_TRACES_EXPORTER: 'none' }), false);
  assert.equal(selfTracesEnabled({ enabled: true }, { OTEL_SDK_DISABLED: 'true' }), false);
});

test('the endpoint follows config, then the per-signal variable as given, then the base + /v1/traces', () => {
  const env = {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4318/custom',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:4318/',
  };
  assert.equal(selfTracesEndpoint({ endpoint: 'http://c:4318/' }, env), 'http://c:4318/v1/traces');
  assert.equal(selfTracesEndpoint({}, env), 'http://t:4318/custom');
  assert.equal(
    selfTracesEndpoint({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:4318/' }),
    'http://b:4318/v1/traces',
  );
  assert.equal(selfTracesEndpoint({}, {}), 'http://localhost:4318/v1/traces');
});

test('sending own traces to the agent own otlp_http receiver is refused with the fix', () => {
  for (const [endpoint, listen] of [
    ['http://localhost:4318', '127.0.0.1:4318'],
    ['http://127.0.0.1:4318', '0.0.0.0:4318'],
    ['http://198.18.7.1:4318', '198.18.7.1:4318'],
  ] as const) {
    assert.throws(
      () =>
        startSelfTelemetry({
          config: { enabled: true, endpoint },
          env: {},
          logger: silentLogger(),
          receiverListens: [listen],
        }),
      (err: Error & { code?: string }) =>
        err.code === 'LABELCAST_ERR_CONFIG_INVALID' && /its own otlp_http receiver/.test(err.message),
      `${endpoint} vs ${listen}`,
    );
  }
  // The defaults (enabled by OTEL_TRACES_EXPORTER, no endpoint) point at localhost:4318 too.
  assert.throws(() =>
    startSelfTelemetry({
      config: {},
      env: { OTEL_TRACES_EXPORTER: 'otlp' },
      logger: silentLogger(),
      receiverListens: ['127.0.0.1:4318'],
    }),
  );
});

test('a different port or host is not the own receiver', async () => {
  const telemetry = startSelfTelemetry({
    config: { enabled: true, endpoint: 'http://127.0.0.1:4319' },
    env: {},
    logger: silentLogger(),
    receiverListens: ['127.0.0.1:4318'],
  });
  assert.equal(telemetry?.endpoint, 'http://127.0.0.1:4319/v1/traces');
  await telemetry?.shutdown();
});

test('Docker request paths become span names without ids', () => {
  assert.equal(dockerRoute(`/containers/${'a'.repeat(64)}/json?`), '/containers/{id}/json');
  assert.equal(dockerRoute('/images/ghcr.io/acme/api:1.2/history?'), '/images/{id}/history');
  assert.equal(dockerRoute('/containers/json?all=true'), '/containers/json');
  assert.equal(dockerRoute('/_ping'), '/_ping');
});
