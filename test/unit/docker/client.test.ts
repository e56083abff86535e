import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  connectDocker,
  describeConnectionError,
  MIN_API_VERSION,
  resolveDockerTarget,
} from '../../../agent/docker/client.ts';
import { ConfigError, DockerApiVersionError, DockerUnavailableError } from '../../../agent/errors.ts';

test('the target comes from the option, then DOCKER_HOST, then the default socket', () => {
  assert.deepEqual(resolveDockerTarget({}, {}).options, { socketPath: '/var/run/docker.sock' });
  assert.deepEqual(resolveDockerTarget({}, { DOCKER_HOST: 'unix:///run/a.sock' }).options, {
    socketPath: '/run/a.sock',
  });
  assert.deepEqual(
    resolveDockerTarget({ host: 'tcp://127.0.0.1:2375' }, { DOCKER_HOST: 'unix:///run/a.sock' }).options,
    { host: '127.0.0.1', port: '2375', protocol: 'http' },
  );
});

test('tcp:// with DOCKER_TLS_VERIFY reads the certificates, and names DOCKER_CERT_PATH when they are missing', () => {
  assert.throws(
    () =>
      resolveDockerTarget(
        {},
        { DOCKER_HOST: 'tcp://127.0.0.1', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/nonexistent' },
      ),
    (err: unknown) =>
      err instanceof ConfigError && /\/nonexistent\/ca\.pem.*DOCKER_CERT_PATH/.test(err.message),
  );
});

test('a host that is neither unix:// nor tcp:// is a config error naming both forms', () => {
  assert.throws(
    () => resolveDockerTarget({ host: 'http://localhost:2375' }),
    (err: unknown) =>
      err instanceof ConfigError && err.message.includes('unix:///path/to/docker.sock or tcp://HOST:PORT'),
  );
  assert.throws(() => resolveDockerTarget({ host: 'unix://relative.sock' }), ConfigError);
});

test('a missing socket gives one line naming the socket and the fix', async () => {
  const target = resolveDockerTarget({ host: 'unix:///nonexistent/labelcast/docker.sock' });
  await assert.rejects(connectDocker(target), (err: unknown) => {
    assert.ok(err instanceof DockerUnavailableError);
    assert.equal(err.code, 'LABELCAST_ERR_DOCKER_UNAVAILABLE');
    assert.equal(err.message.includes('\n'), false);
    assert.match(
      err.message,
      /^Cannot connect to Docker at unix:\/\/\/nonexistent\/labelcast\/docker\.sock: no such socket/,
    );
    assert.match(err.message, /DOCKER_HOST/);
    return true;
  });
});

test('a denied permission names the docker group and a socket proxy', () => {
  const target = resolveDockerTarget({ host: 'unix:///var/run/docker.sock' });
  const err = describeConnectionError(target, Object.assign(new Error('connect EACCES'), { code: 'EACCES' }));
  assert.match(err.message, /permission denied \(run as root, add the user to the docker group/);
});

test('an engine older than the minimum API version is refused with the upgrade to make', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lc-old-engine-'));
  const socketPath = join(dir, 'docker.sock');
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url?.endsWith('/version')) res.end(JSON.stringify({ Version: '17.06.0', ApiVersion: '1.30' }));
    else res.writeHead(404).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.after(async () => {
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });
  await assert.rejects(
    connectDocker(resolveDockerTarget({ host: `unix://${socketPath}` })),
    (err: unknown) => {
      assert.ok(err instanceof DockerApiVersionError);
      assert.match(
        err.message,
        new RegExp(
          `Engine API 1\\.30 is older than ${MIN_API_VERSION.replace('.', '\\.')} \\(upgrade Docker`,
        ),
      );
      return true;
    },
  );
});
