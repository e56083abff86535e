import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { postSpanFrom } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { createTestNetwork } from '../helpers/test-network.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Sidecar mode on the real engine: the agent process runs in the application container's network
 * namespace (`nsenter -n`, what Compose's `network_mode: service:app` gives a labelcast container),
 * the application sends to 127.0.0.1:4318, and the `target: network_namespace` rule finds the app.
 */

const NODE = process.execPath;
const MAIN = join(process.cwd(), 'agent/main.ts');
const EXAMPLE = join(process.cwd(), 'deploy/compose/sidecar');

let engine: Engine;
let dir: string;

before(async () => {
  engine = await startEngine();
  dir = await mkdtemp(join(tmpdir(), 'lc-sidecar-'));
});

after(async () => {
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A TCP relay on the test network's gateway to a receiver on loopback (the agent's namespace has no loopback route to the host). */
async function relayTo(host: string, target: string): Promise<{ url: string; close(): void }> {
  const { hostname, port } = new URL(target);
  const server = createServer((socket) => {
    const upstream = connect(Number(port), hostname);
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port: relayPort } = server.address() as AddressInfo;
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    url: `http://${host}:${relayPort}`,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test('an agent sharing the app container network namespace enriches what the app sends to localhost with the app container', async (t) => {
  // The bridge only lets the agent reach the upstream receiver on the host; the app talks to localhost.
  const { gateway } = await createTestNetwork(engine, 'lcnet');
  const upstream = await startOtlpReceiver();
  const relay = await relayTo(gateway, upstream.url);
  const app = await engine.docker(
    'run',
    '-d',
    '--network',
    'lcnet',
    '--name',
    'shop-app',
    '--label',
    'io.labelcast.team=shop',
    TEST_IMAGES.app,
  );
  // Another container on the same network must not be taken for the target.
  const neighbour = await engine.docker('run', '-d', '--network', 'lcnet', TEST_IMAGES.legacy);
  const pid = Number(await engine.docker('inspect', '-f', '{{.State.Pid}}', app));

  // The Compose example's own config, with this engine, a temp state dir and the relay as the collector.
  const example = parse(await readFile(join(EXAMPLE, 'labelcast.yaml'), 'utf8'));
  example.docker = { host: engine.host };
  example.state_dir = join(dir, 'state');
  example.exporters.otlp_http = {
    ...example.exporters.otlp_http,
    endpoint: relay.url,
    compression: 'none',
    delivery: { max_delay: '50ms' },
  };
  const config = join(dir, 'labelcast.yaml');
  await writeFile(config, stringify(example));
  const agent = spawn('nsenter', ['-t', String(pid), '-n', NODE, MAIN, 'run', '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, OTEL_TRACES_EXPORTER: '' },
  });
  let stderr = '';
  agent.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(agent, 'exit');
  t.after(async () => {
    if (agent.exitCode === null) agent.kill('SIGTERM');
    await exited;
    relay.close();
    await upstream.close();
    await engine.docker('rm', '-f', app, neighbour);
    await engine.docker('network', 'rm', 'lcnet');
  });

  await waitFor('the agent to listen in the app network namespace', () => {
    if (agent.exitCode !== null) throw new Error(`the agent exited: ${stderr}`);
    return stderr.includes('OTLP/HTTP receiver listening') ? true : undefined;
  });
  const out = await postSpanFrom(engine, app, 'http://127.0.0.1:4318/v1/traces', {
    serviceName: 'unknown_service:shop',
    traceId: '5a'.repeat(16),
    spanId: '5b'.repeat(8),
    name: 'checkout',
  });
  assert.equal(out, '{}');
  const request = await waitFor('the forwarded spans', () => upstream.requests[0]);
  const rs = (
    request.decoded.resourceSpans as {
      resource: { attributes: { key: string; value: { stringValue?: string } }[] };
      scopeSpans: { spans: { name: string }[] }[];
    }[]
  )[0];
  const resource = Object.fromEntries(
    rs?.resource.attributes.map((kv) => [kv.key, kv.value.stringValue]) ?? [],
  );
  assert.equal(resource['container.id'], app);
  assert.equal(resource['container.name'], 'shop-app');
  assert.equal(resource['container.label.io.labelcast.team'], 'shop');
  assert.equal(resource['vcs.ref.head.revision'], APP_REVISION);
  assert.equal(resource['service.name'], 'api', 'unknown_service* is replaced by the image title');
  assert.equal(rs?.scopeSpans[0]?.spans[0]?.name, 'checkout');
});

test('the Compose example runs labelcast in the app network namespace with its config mounted', async () => {
  const compose = parse(await readFile(join(EXAMPLE, 'compose.yaml'), 'utf8'));
  const labelcast = compose.services.labelcast;
  assert.equal(labelcast.network_mode, 'service:app');
  assert.ok(labelcast.volumes.includes('./labelcast.yaml:/etc/labelcast/labelcast.yaml:ro'));
  assert.deepEqual(labelcast.command, ['run', '--config', '/etc/labelcast/labelcast.yaml']);
  assert.ok(compose.services.app.command.includes('--otlp-endpoint=localhost:4318'));
  const config = parse(await readFile(join(EXAMPLE, 'labelcast.yaml'), 'utf8'));
  assert.equal(config.receivers.otlp_http.listen, '127.0.0.1:4318');
  assert.equal(config.receivers.otlp_http.target, 'network_namespace');
  assert.equal(config.exporters.otlp_http.endpoint, 'http://collector:4318');
});
