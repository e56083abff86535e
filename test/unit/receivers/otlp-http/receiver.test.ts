import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import type { ContainerEntry, MetadataStore } from '../../../../agent/metadata/types.ts';
import { otlpHttpReceiverConfigSchema } from '../../../../agent/receivers/otlp-http/config.ts';
import {
  createOtlpHttpReceiver,
  type OtlpForwarder,
  type OtlpHttpReceiver,
} from '../../../../agent/receivers/otlp-http/index.ts';
import { silentLogger } from '../../../../agent/telemetry/logger.ts';
import { SELF_INSTANCE_ID } from '../../../../agent/telemetry/tracing.ts';
import { post } from '../../../helpers/http.ts';
import { lifecycleSuite } from '../../../helpers/lifecycle.ts';
import { decodeToObject, ExportTraceServiceRequest } from '../../../helpers/otlp-proto.ts';

const ID = 'c'.repeat(64);
const entry = {
  id: ID,
  shortId: ID.slice(0, 12),
  name: 'api-1',
  hostname: 'api-host',
  labels: {},
  ips: ['198.18.7.9'],
  running: true,
  pid: 0,
  removedAt: undefined,
  attributes: { 'container.id': ID, 'container.name': 'api-1', 'service.name': 'api' },
} as unknown as ContainerEntry;

const store: MetadataStore = {
  get: (id) => (ID.startsWith(id) && id.length >= 12 ? entry : undefined),
  resolve: async (id) => (ID.startsWith(id) && id.length >= 12 ? entry : undefined),
  byName: (name) => (name === 'api-1' ? entry : undefined),
  byHostname: (host) => (host === 'api-host' ? entry : undefined),
  byIp: (ip) => (ip === '198.18.7.9' ? entry : undefined),
  running: () => [entry],
  subscribe: () => () => {},
};

interface Forwarded {
  signal: string;
  body: Buffer;
  encoding: string;
  records: number;
}

function forwarder(): OtlpForwarder & { got: Forwarded[]; full: boolean } {
  const got: Forwarded[] = [];
  return {
    name: 'otlp_http',
    got,
    full: false,
    async forward(signal, body, encoding, records, ack) {
      got.push({ signal, body: Buffer.from(body), encoding, records });
      ack();
    },
    saturated() {
      return this.full;
    },
  };
}

const str = (key: string, value: string) => ({ key, value: { stringValue: value } });

function traceBody(resource: { key: string; value: { stringValue: string } }[]): Buffer {
  const message = ExportTraceServiceRequest.fromObject({
    resourceSpans: [
      {
        resource: { attributes: resource },
        scopeSpans: [
          {
            scope: { name: 's' },
            spans: [
              {
                traceId: Buffer.alloc(16, 1),
                spanId: Buffer.alloc(8, 2),
                name: 'op',
                startTimeUnixNano: '1',
                endTimeUnixNano: '2',
              },
            ],
          },
        ],
      },
    ],
  });
  return Buffer.from(ExportTraceServiceRequest.encode(message).finish());
}

const PROTO = { 'content-type': 'application/x-protobuf' };
const JSON_TYPE = { 'content-type': 'application/json' };

function resourceOf(body: Buffer): Record<string, string> {
  const decoded = decodeToObject(ExportTraceServiceRequest, body) as {
    resourceSpans: { resource: { attributes: { key: string; value: { stringValue: string } }[] } }[];
  };
  return Object.fromEntries(
    (decoded.resourceSpans[0]?.resource.attributes ?? []).map((kv) => [kv.key, kv.value.stringValue]),
  );
}

describe('otlp_http receiver over HTTP', () => {
  let receiver: OtlpHttpReceiver;
  let fwd: ReturnType<typeof forwarder>;
  let metrics: Registry;

  before(async () => {
    fwd = forwarder();
    metrics = new Registry();
    receiver = createOtlpHttpReceiver(
      otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0', max_request_bytes: 64 * 1024 }),
      { store, forwarders: { traces: [fwd] }, logger: silentLogger(), metrics },
    );
    await receiver.start();
  });
  after(() => receiver.shutdown());

  test('a protobuf request with a known container.id is forwarded with the container attributes and answered 200 with an empty response', async () => {
    const reply = await post(receiver.address(), '/v1/traces', traceBody([str('container.id', ID)]), PROTO);
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'application/x-protobuf');
    assert.equal(reply.body.length, 0);
    const last = fwd.got.at(-1);
    assert.equal(last?.signal, 'traces');
    assert.equal(last?.records, 1);
    assert.deepEqual(resourceOf(last.body), {
      'container.id': ID,
      'container.name': 'api-1',
      'service.name': 'api',
    });
  });

  test('a gzip JSON request associated by host.name is answered {} in JSON', async () => {
    const json = JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [str('host.name', 'api-host')] },
          scopeSpans: [{ spans: [{ traceId: '01'.repeat(16), spanId: '02'.repeat(8), name: 'x' }] }],
        },
      ],
    });
    const reply = await post(receiver.address(), '/v1/traces', gzipSync(json), {
      ...JSON_TYPE,
      'content-encoding': 'gzip',
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(reply.body.toString()), {});
    const forwarded = JSON.parse(fwd.got.at(-1)?.body.toString() ?? '{}');
    const attrs = forwarded.resourceSpans[0].resource.attributes as { key: string }[];
    assert.deepEqual(
      attrs.map((kv) => kv.key),
      ['host.name', 'container.id', 'container.name', 'service.name'],
    );
    assert.equal(forwarded.resourceSpans[0].scopeSpans[0].spans[0].traceId, '01'.repeat(16));
  });

  test('labelcast own spans (its service.instance.id) are forwarded unchanged', async () => {
    const own = traceBody([str('container.id', ID), str('service.instance.id', SELF_INSTANCE_ID)]);
    const reply = await post(receiver.address(), '/v1/traces', own, PROTO);
    assert.equal(reply.status, 200);
    assert.deepEqual(fwd.got.at(-1)?.body, own);
  });

  test('an unmatched Resource is forwarded byte for byte and counted', async () => {
    const body = traceBody([str('host.name', 'nobody')]);
    await post(receiver.address(), '/v1/traces', body, PROTO);
    assert.deepEqual(fwd.got.at(-1)?.body, body);
    const text = await metrics.metrics();
    assert.match(
      text,
      /labelcast_otlp_resources_total\{receiver="otlp_http",signal="traces",association="unmatched"\} 1/,
    );
    assert.match(
      text,
      /labelcast_otlp_association_rule_total\{receiver="otlp_http",rule="container.id",result="matched"\} 1/,
    );
  });

  test('garbage protobuf gets 400 with a google.rpc.Status body', async () => {
    const reply = await post(receiver.address(), '/v1/traces', Buffer.from([0x0a, 0xff, 0xff, 0xff]), PROTO);
    assert.equal(reply.status, 400);
    // Status{code=1: 3 (INVALID_ARGUMENT), message=2}
    assert.equal(reply.body[0], 0x08);
    assert.equal(reply.body[1], 3);
    assert.match(reply.body.subarray(4).toString(), /cannot decode the protobuf traces request/);
  });

  test('invalid JSON gets 400 with a JSON Status', async () => {
    const reply = await post(receiver.address(), '/v1/traces', '{"resourceSpans": [', JSON_TYPE);
    assert.equal(reply.status, 400);
    assert.equal(JSON.parse(reply.body.toString()).code, 3);
  });

  test('an unknown content type gets 415, other paths 404, other methods 405', async () => {
    assert.equal(
      (await post(receiver.address(), '/v1/traces', 'x', { 'content-type': 'text/plain' })).status,
      415,
    );
    assert.equal((await post(receiver.address(), '/v1/other', 'x', PROTO)).status, 404);
    const get = await post(receiver.address(), '/v1/traces', '', {}, 'GET');
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
  });

  test('a signal without a pipeline gets 404', async () => {
    assert.equal((await post(receiver.address(), '/v1/metrics', traceBody([]), PROTO)).status, 404);
  });

  test('a body above max_request_bytes gets 413, plain or gzip-inflated, and the receiver keeps serving', async () => {
    const big = Buffer.alloc(100 * 1024, 0x41);
    assert.equal((await post(receiver.address(), '/v1/traces', big, PROTO)).status, 413);
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024));
    assert.ok(bomb.length < 64 * 1024);
    const reply = await post(receiver.address(), '/v1/traces', bomb, {
      ...PROTO,
      'content-encoding': 'gzip',
    });
    assert.equal(reply.status, 413);
    assert.equal(
      (await post(receiver.address(), '/v1/traces', traceBody([str('container.id', ID)]), PROTO)).status,
      200,
    );
  });

  test('a full exporter queue gets 503 with Retry-After and nothing is held', async () => {
    fwd.full = true;
    const before = fwd.got.length;
    const reply = await post(receiver.address(), '/v1/traces', traceBody([]), PROTO);
    fwd.full = false;
    assert.equal(reply.status, 503);
    assert.equal(reply.headers['retry-after'], '1');
    assert.equal(fwd.got.length, before);
    const ready = await post(receiver.address(), '/readyz', '', {}, 'GET');
    assert.equal(ready.status, 200);
  });

  test('GET /healthz and /readyz answer 200', async () => {
    assert.equal((await post(receiver.address(), '/healthz', '', {}, 'GET')).status, 200);
    assert.equal((await post(receiver.address(), '/readyz', '', {}, 'GET')).status, 200);
  });
});

describe('otlp_http receiver with a bearer token', () => {
  test('requests without the token get 401; with it 200', async (t) => {
    const fwd = forwarder();
    const receiver = createOtlpHttpReceiver(
      otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0', bearer_token: 's3cret' }),
      { store, forwarders: { traces: [fwd] }, logger: silentLogger(), metrics: new Registry() },
    );
    await receiver.start();
    t.after(() => receiver.shutdown());
    const body = traceBody([]);
    const none = await post(receiver.address(), '/v1/traces', body, PROTO);
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assert.equal(
      (await post(receiver.address(), '/v1/traces', body, { ...PROTO, authorization: 'Bearer wrong' }))
        .status,
      401,
    );
    assert.equal(
      (await post(receiver.address(), '/v1/traces', body, { ...PROTO, authorization: 'Bearer s3cret' }))
        .status,
      200,
    );
  });
});

describe('otlp_http receiver config', () => {
  test('defaults to loopback, 16 MiB and every association rule in order', () => {
    assert.deepEqual(otlpHttpReceiverConfigSchema.parse({}), {
      listen: '127.0.0.1:4318',
      max_request_bytes: 16 * 1024 * 1024,
      association: ['container.id', 'host.name', 'peer_ip', 'target'],
    });
  });

  test('rejects an unknown target form and a target without the target rule', () => {
    assert.equal(otlpHttpReceiverConfigSchema.safeParse({ target: 'app' }).success, false);
    assert.equal(
      otlpHttpReceiverConfigSchema.safeParse({ target: 'name:app', association: ['container.id'] }).success,
      false,
    );
    assert.equal(otlpHttpReceiverConfigSchema.safeParse({ target: 'label:role=app' }).success, true);
  });
});

lifecycleSuite('otlp_http receiver', async () => {
  const fwd = forwarder();
  const receiver = createOtlpHttpReceiver(otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0' }), {
    store,
    forwarders: { traces: [fwd] },
    logger: silentLogger(),
    metrics: new Registry(),
  });
  return {
    component: receiver,
    async send() {
      for (let i = 0; i < 3; i++) {
        const reply = await post(
          receiver.address(),
          '/v1/traces',
          traceBody([str('container.id', ID)]),
          PROTO,
        );
        assert.equal(reply.status, 200);
      }
      return 3;
    },
    received: () => fwd.got.length,
  };
});

describe('otlp_http receiver buffer reuse', () => {
  test('a forwarded body is not reused before every exporter has acked it', async (t) => {
    const held: { body: Uint8Array; ack: () => void }[] = [];
    const holding: OtlpForwarder = {
      name: 'slow',
      async forward(_signal, body, _encoding, _records, ack) {
        held.push({ body, ack });
      },
      saturated: () => false,
    };
    const fast = forwarder();
    const receiver = createOtlpHttpReceiver(otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0' }), {
      store,
      forwarders: { traces: [fast, holding] },
      logger: silentLogger(),
      metrics: new Registry(),
    });
    await receiver.start();
    t.after(() => receiver.shutdown());
    const bodies = ['first', 'second', 'third'].map((host) =>
      traceBody([str('container.id', ID), str('host.name', host)]),
    );
    for (const body of bodies) {
      assert.equal((await post(receiver.address(), '/v1/traces', body, PROTO)).status, 200);
      // The slow exporter has not acked yet: every body it holds is still intact.
      for (const [i, h] of held.entries()) assert.deepEqual(Buffer.from(h.body), fast.got[i]?.body);
    }
    for (const h of held) h.ack();
    // Acked buffers are reused, and new requests still come out right.
    for (const body of bodies.reverse()) {
      assert.equal((await post(receiver.address(), '/v1/traces', body, PROTO)).status, 200);
      const last = held.at(-1);
      assert.deepEqual(Buffer.from(last?.body ?? []), fast.got.at(-1)?.body);
      last?.ack();
    }
    assert.equal(resourceOf(Buffer.from(held.at(-1)?.body ?? []))['host.name'], 'first');
  });
});

describe('otlp_http receiver memory bounds', () => {
  test('request bodies held beyond 4 × max_request_bytes get 429 with Retry-After until they are released', async (t) => {
    const waiting: (() => void)[] = [];
    let stuckUntilReleased = true;
    const stuck: OtlpForwarder = {
      name: 'stuck',
      forward: () =>
        stuckUntilReleased ? new Promise<void>((resolve) => waiting.push(resolve)) : Promise.resolve(),
      saturated: () => false,
    };
    const receiver = createOtlpHttpReceiver(
      otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0', max_request_bytes: '4KiB' }),
      { store, forwarders: { traces: [stuck] }, logger: silentLogger(), metrics: new Registry() },
    );
    await receiver.start();
    t.after(async () => {
      for (const resolve of waiting) resolve();
      await receiver.shutdown();
    });
    const big = traceBody(Array.from({ length: 60 }, (_, i) => str(`k${i}`, 'v'.repeat(40))));
    assert.ok(big.length > 3000 && big.length <= 4096, `body ${big.length} bytes`);
    // Six bodies of ~3 KiB are in flight (above the 16 KiB budget) while the exporter does not take them.
    const pending = Array.from({ length: 6 }, () => post(receiver.address(), '/v1/traces', big, PROTO));
    await new Promise((r) => setTimeout(r, 200));
    const refused = await post(receiver.address(), '/v1/traces', big, PROTO);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1');
    stuckUntilReleased = false;
    for (const resolve of waiting) resolve();
    const statuses = (await Promise.all(pending)).map((r) => r.status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200]);
    assert.equal((await post(receiver.address(), '/v1/traces', big, PROTO)).status, 200);
  });

  test('a chunked body without Content-Length is read and forwarded', async (t) => {
    const fwd = forwarder();
    const receiver = createOtlpHttpReceiver(otlpHttpReceiverConfigSchema.parse({ listen: '127.0.0.1:0' }), {
      store,
      forwarders: { traces: [fwd] },
      logger: silentLogger(),
      metrics: new Registry(),
    });
    await receiver.start();
    t.after(() => receiver.shutdown());
    const body = traceBody([str('container.id', ID)]);
    const [host, port] = receiver.address().split(':');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host, port: Number(port), path: '/v1/traces', method: 'POST', headers: PROTO },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write(body.subarray(0, 10));
      req.end(body.subarray(10));
    });
    assert.equal(status, 200);
    assert.equal(resourceOf(fwd.got[0]?.body ?? Buffer.alloc(0))['container.name'], 'api-1');
  });
});
