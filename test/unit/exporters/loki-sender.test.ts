import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { lokiExporterConfigSchema } from '../../../agent/exporters/loki/config.ts';
import { createLokiEncoder } from '../../../agent/exporters/loki/encode.ts';
import { createLabelPolicy } from '../../../agent/exporters/loki/labels.ts';
import { createLokiSender, pushUrl, rejectionReason } from '../../../agent/exporters/loki/sender.ts';
import { type LokiReceiver, startLokiReceiver } from '../../helpers/loki-receiver.ts';
import { containerEntry, logRecord } from './loki-fixtures.ts';

const execFileAsync = promisify(execFile);

let receiver: LokiReceiver;
before(async () => {
  receiver = await startLokiReceiver();
});
after(() => receiver.close());

const signal = new AbortController().signal;
const T0 = 1_764_860_400_000_000_001n;

function setup(extra: Record<string, unknown> = {}) {
  const config = lokiExporterConfigSchema.parse({ endpoint: receiver.url, ...extra });
  const encoder = createLokiEncoder({
    encoding: config.encoding,
    gzip: config.gzip,
    maxLineSize: config.max_line_size,
    policy: createLabelPolicy(config),
  });
  const sender = createLokiSender(config);
  const payload = encoder.encode([logRecord('hello', T0, containerEntry())]);
  return { sender, payload };
}

test('the push URL is the endpoint plus /loki/api/v1/push unless the endpoint already ends with it', () => {
  assert.equal(pushUrl('http://loki:3100').href, 'http://loki:3100/loki/api/v1/push');
  assert.equal(pushUrl('http://gw/tenant-a/').href, 'http://gw/tenant-a/loki/api/v1/push');
  assert.equal(pushUrl('https://x/loki/api/v1/push').href, 'https://x/loki/api/v1/push');
});

test('a 204 is success, and the tenant and basic auth headers are sent', async (t) => {
  const { sender, payload } = setup({ tenant: 'team-a', basic_auth: { username: 'u', password: 'p w' } });
  t.after(() => sender.close?.());
  const before = receiver.requests.length;
  assert.deepEqual(await sender.send(payload, signal), { status: 'success' });
  const req = receiver.requests[before];
  assert.equal(req?.status, 204);
  assert.equal(req?.headers['x-scope-orgid'], 'team-a');
  assert.equal(req?.headers.authorization, `Basic ${Buffer.from('u:p w').toString('base64')}`);
  assert.equal(req?.headers['content-type'], 'application/x-protobuf');
  assert.equal(receiver.entries.at(-1)?.timestampNs, T0);
});

test('a bearer token is sent as Authorization: Bearer', async (t) => {
  const { sender, payload } = setup({ bearer_token: 's3cret' });
  t.after(() => sender.close?.());
  await sender.send(payload, signal);
  assert.equal(receiver.requests.at(-1)?.headers.authorization, 'Bearer s3cret');
});

test('429 and 5xx are retryable without a delay of their own, since Loki sends no Retry-After', async (t) => {
  const { sender, payload } = setup();
  t.after(() => sender.close?.());
  for (const status of [429, 500, 503]) {
    receiver.enqueue({ status, body: 'Ingestion rate limit exceeded' });
    const result = await sender.send(payload, signal);
    assert.equal(result.status, 'retryable', String(status));
    assert.ok(result.status === 'retryable' && result.retryAfterMs === undefined);
  }
});

test('a 400 is permanent, with the Loki reason, and one message per reason', async (t) => {
  const { sender, payload } = setup();
  t.after(() => sender.close?.());
  receiver.enqueue(
    {
      status: 400,
      body: 'entry for stream \'{a="b"}\' has timestamp too old: 2020-01-01, oldest acceptable timestamp is: 2026-11-27',
    },
    {
      status: 400,
      body: 'entry for stream \'{a="b"}\' has timestamp too old: 2020-01-02, oldest acceptable timestamp is: 2026-11-27',
    },
    { status: 413, body: 'request body too large' },
  );
  const first = await sender.send(payload, signal);
  const second = await sender.send(payload, signal);
  const third = await sender.send(payload, signal);
  assert.ok(first.status === 'failure' && second.status === 'failure' && third.status === 'failure');
  assert.equal(first.reason, 'greater_than_max_sample_age');
  assert.equal(first.error.message, second.error.message, 'the delivery logs each distinct message once');
  assert.match(
    first.error.message,
    /refused a push with 400 \(greater_than_max_sample_age\), e\.g\.: entry for stream/,
  );
  assert.equal(third.reason, 'request_too_large');
});

test("the receiver itself refuses 16 stream labels with Loki's message, which the sender classifies", async (t) => {
  const stream_labels = Array.from({ length: 15 }, (_, i) => `l.${i}`);
  const attributes: Record<string, string> = Object.fromEntries(stream_labels.map((k) => [k, 'v']));
  // Build a 16-label stream past config validation, as a misconfigured Loki client would send it.
  const config = {
    ...lokiExporterConfigSchema.parse({ endpoint: receiver.url }),
    stream_labels,
    labels: { job: 'x' },
  };
  const encoder = createLokiEncoder({
    encoding: 'protobuf',
    gzip: false,
    maxLineSize: 1000,
    policy: createLabelPolicy(config),
  });
  const sender = createLokiSender(config);
  t.after(() => sender.close?.());
  const result = await sender.send(encoder.encode([logRecord('x', T0, containerEntry(attributes))]), signal);
  assert.equal(receiver.requests.at(-1)?.status, 400);
  assert.ok(result.status === 'failure');
  assert.equal(result.reason, 'max_label_names_per_series');
});

test('Loki 400 texts map to bounded reasons', () => {
  assert.equal(
    rejectionReason(400, "Max entry size '262144' bytes exceeded for stream '{a=\"b\"}'"),
    'line_too_long',
  );
  assert.equal(
    rejectionReason(400, 'error at least one label pair is required per stream'),
    'missing_labels',
  );
  assert.equal(
    rejectionReason(400, 'Error parsing labels \'{a.b="c"}\' with error: parse error'),
    'invalid_labels',
  );
  assert.equal(rejectionReason(400, 'entry too far behind, entry timestamp is: …'), 'out_of_order');
  assert.equal(rejectionReason(400, 'something new'), 'bad_request');
  assert.equal(rejectionReason(401, 'no org id'), 'http_401');
});

test('a connection refused and a silent server are retryable', async (t) => {
  const silent = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const slow = createLokiSender(
    lokiExporterConfigSchema.parse({
      endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
      timeout: '200ms',
    }),
  );
  const { payload } = setup();
  const timedOut = await slow.send(payload, signal);
  assert.equal(timedOut.status, 'retryable');
  assert.match(timedOut.status === 'retryable' ? timedOut.error.message : '', /no answer within 200 ms/);
  slow.close?.();
  const refused = createLokiSender(lokiExporterConfigSchema.parse({ endpoint: 'http://127.0.0.1:1' }));
  assert.equal((await refused.send(payload, signal)).status, 'retryable');
  refused.close?.();
});

test('https: the CA file, a client certificate and insecure_skip_verify are honoured', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-loki-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const openssl = (...args: string[]) => execFileAsync('openssl', args, { cwd: dir });
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=test-ca',
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
  );
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ]) {
    await openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
    );
    await writeFile(join(dir, `${name}.ext`), `${ext}\n`);
    await openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  }
  const file = (name: string) => join(dir, name);
  const seen: (string | undefined)[] = [];
  const server = createHttpsServer(
    {
      key: await readFile(file('server-key.pem')),
      cert: await readFile(file('server.pem')),
      ca: await readFile(file('ca.pem')),
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      seen.push((req.socket as TLSSocket).authorized ? String(peer.subject?.CN) : undefined);
      req.resume();
      req.on('end', () => {
        res.writeHead(204);
        res.end();
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { payload } = setup();
  const send = async (tls: Record<string, unknown> | undefined) => {
    const sender = createLokiSender(lokiExporterConfigSchema.parse({ endpoint, ...(tls ? { tls } : {}) }));
    try {
      return await sender.send(payload, signal);
    } finally {
      sender.close?.();
    }
  };
  const untrusted = await send(undefined);
  assert.equal(untrusted.status, 'retryable');
  assert.match(untrusted.status === 'retryable' ? untrusted.error.message : '', /certificate/i);
  assert.deepEqual(await send({ ca_file: file('ca.pem') }), { status: 'success' });
  assert.deepEqual(
    await send({ ca_file: file('ca.pem'), cert_file: file('client.pem'), key_file: file('client-key.pem') }),
    { status: 'success' },
  );
  assert.deepEqual(await send({ insecure_skip_verify: true }), { status: 'success' });
  assert.deepEqual(seen, [undefined, 'client', undefined]);
});

test('an unreadable TLS file is a config error naming the key', () => {
  assert.throws(
    () =>
      createLokiSender(
        lokiExporterConfigSchema.parse({ endpoint: 'https://x', tls: { ca_file: '/nonexistent/ca.pem' } }),
      ),
    /Cannot read tls\.ca_file \/nonexistent\/ca\.pem: .*check the path/,
  );
});
