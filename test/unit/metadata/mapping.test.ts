import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { mappingConfigSchema } from '../../../agent/metadata/config.ts';
import {
  createMapper,
  type MappingInput,
  normalizeRepositoryUrl,
  parseImageReference,
} from '../../../agent/metadata/mapping.ts';
import { imageLabelOrigins } from '../../../agent/metadata/provenance.ts';
import type { ImageEntry } from '../../../agent/metadata/types.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures/docker');
const APP_REVISION = '3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39';

// biome-ignore lint/suspicious/noExplicitAny: recorded engine JSON
function fixture(name: string): any {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8'));
}

function imageEntry(name: string): ImageEntry {
  const inspect = fixture(`image-${name}`);
  return {
    id: inspect.Id,
    repoTags: inspect.RepoTags ?? [],
    repoDigests: inspect.RepoDigests ?? [],
    created: inspect.Created,
    labels: inspect.Config.Labels ?? {},
    labelOrigins: imageLabelOrigins(inspect, fixture(`image-${name}.history`)),
  };
}

/** A MappingInput from a recorded `GET /containers/{id}/json`, as the store builds it. */
function inputFromContainer(name: string, image: ImageEntry | undefined): MappingInput {
  const c = fixture(`container-${name}`);
  return {
    id: c.Id,
    name: c.Name,
    imageRef: c.Config.Image,
    imageId: c.Image,
    image,
    labels: c.Config.Labels ?? {},
  };
}

function input(labels: Record<string, string>, over: Partial<MappingInput> = {}): MappingInput {
  return {
    id: 'c'.repeat(64),
    name: '/x',
    imageRef: 'acme/x:1',
    imageId: `sha256:${'f'.repeat(64)}`,
    image: undefined,
    labels,
    ...over,
  };
}

const defaults = () => createMapper(mappingConfigSchema.parse(undefined));

describe('parseImageReference', () => {
  const cases: [string, string, string | undefined, string | undefined][] = [
    ['busybox', 'busybox', undefined, undefined],
    ['busybox:1.36', 'busybox', '1.36', undefined],
    ['ghcr.io/acme/api:1.2', 'ghcr.io/acme/api', '1.2', undefined],
    ['localhost:5000/acme/api', 'localhost:5000/acme/api', undefined, undefined],
    ['localhost:5000/acme/api:2.3.1', 'localhost:5000/acme/api', '2.3.1', undefined],
    [
      'registry.example.com:443/team/app:v1@sha256:abc123',
      'registry.example.com:443/team/app',
      'v1',
      'sha256:abc123',
    ],
    ['acme/api@sha256:abc123', 'acme/api', undefined, 'sha256:abc123'],
    ['[::1]:5000/app:3', '[::1]:5000/app', '3', undefined],
  ];
  for (const [ref, name, tag, digest] of cases) {
    test(`splits ${ref} into name, tag and digest`, () => {
      assert.deepEqual(parseImageReference(ref), { name, tag, digest });
    });
  }

  test('gives no name for an image id reference', () => {
    const id = `sha256:${'ab'.repeat(32)}`;
    assert.deepEqual(parseImageReference(id), { name: '', tag: undefined, digest: id });
    assert.equal(parseImageReference('ab'.repeat(32)).name, '');
  });
});

describe('normalizeRepositoryUrl', () => {
  const cases: [string, string | undefined][] = [
    ['https://github.com/acme/api', 'https://github.com/acme/api'],
    ['https://github.com/acme/api.git', 'https://github.com/acme/api'],
    ['https://github.com/acme/api/', 'https://github.com/acme/api'],
    ['git@github.com:acme/api.git', 'https://github.com/acme/api'],
    [
      'https://github.com/docker-library/busybox.git#0f1b1c2d:latest/glibc',
      'https://github.com/docker-library/busybox',
    ],
    ['ssh://git@gitlab.example.com:2222/group/sub/repo.git', 'https://gitlab.example.com/group/sub/repo'],
    ['git+https://github.com/acme/api.git', 'https://github.com/acme/api'],
    ['https://user:ghp_secret@github.com/acme/api.git', 'https://github.com/acme/api'],
    ['HTTPS://GitHub.com/Acme/Api', 'https://github.com/Acme/Api'],
    ['https://git.example.com:8443/acme/api', 'https://git.example.com:8443/acme/api'],
    ['github.com/acme/api', 'https://github.com/acme/api'],
    ['', undefined],
    ['not a url', undefined],
    ['https://github.com', undefined],
    ['ftp://example.com/acme/api', undefined],
  ];
  for (const [raw, expected] of cases) {
    test(`normalises ${JSON.stringify(raw)} to ${expected ?? 'nothing'}`, () => {
      assert.equal(normalizeRepositoryUrl(raw), expected);
    });
  }
});

describe('createMapper().attributes on recorded containers', () => {
  test('maps a Compose container of an OCI-labelled image to the full attribute set in table order', () => {
    const attrs = defaults().attributes(inputFromContainer('shop-web-1', imageEntry('app')));
    const c = fixture('container-shop-web-1');
    assert.deepEqual(attrs, {
      'container.id': c.Id,
      'container.name': 'shop-web-1',
      'container.image.name': 'labelcast-test/app',
      'container.image.tags': ['2.3.1'],
      'container.image.id': c.Image,
      'container.runtime.name': 'docker',
      'service.name': 'web',
      'service.version': '2.3.1',
      'service.namespace': 'shop',
      'vcs.ref.head.revision': APP_REVISION,
      'vcs.repository.url.full': 'https://github.com/acme/api',
      'vcs.repository.name': 'api',
      'vcs.owner.name': 'acme',
      'vcs.provider.name': 'github',
      'support.contact': 'oncall-api@example.com',
      team: 'checkout',
      'container.label.api.token': '[REDACTED]',
      'container.label.com.docker.compose.project': 'shop',
      'container.label.com.docker.compose.service': 'web',
      'container.label.com.example.base-only': 'yes',
      'container.label.com.example.db-password': '[REDACTED]',
      'container.label.io.labelcast.contact': 'oncall-api@example.com',
      'container.label.io.labelcast.team': 'checkout',
      'container.label.org.opencontainers.image.authors': 'platform@example.com',
      'container.label.org.opencontainers.image.revision': APP_REVISION,
      'container.label.org.opencontainers.image.source': 'git@github.com:acme/api.git',
      'container.label.org.opencontainers.image.title': 'api',
      'container.label.org.opencontainers.image.vendor': 'Acme',
      'container.label.org.opencontainers.image.version': '2.3.1',
    });
    assert.deepEqual(Object.keys(attrs).slice(0, 6), [
      'container.id',
      'container.name',
      'container.image.name',
      'container.image.tags',
      'container.image.id',
      'container.runtime.name',
    ]);
  });

  test('maps Label Schema and maintainer labels of a legacy image', () => {
    const attrs = defaults().attributes(inputFromContainer('worker', imageEntry('legacy')));
    assert.equal(attrs['service.name'], 'legacy-worker');
    assert.equal(attrs['service.version'], '0.9');
    assert.equal(attrs['vcs.ref.head.revision'], '0badc0de');
    assert.equal(attrs['vcs.repository.url.full'], 'https://gitlab.com/acme/legacy-worker');
    assert.equal(attrs['vcs.provider.name'], 'gitlab');
    assert.equal(attrs['vcs.owner.name'], 'acme');
    assert.equal(attrs['support.contact'], 'Legacy Team <legacy@example.com>');
    assert.equal(attrs['service.namespace'], undefined);
  });

  test('takes the Swarm service name without its stack prefix and the stack as namespace', () => {
    const attrs = defaults().attributes(inputFromContainer('stack-api-1-x7', imageEntry('app')));
    assert.equal(attrs['service.name'], 'api');
    assert.equal(attrs['service.namespace'], 'stack');
    assert.equal(attrs['container.name'], 'stack_api.1.x7');
  });

  test('gives no image name or tags for a container run by image id', () => {
    const attrs = defaults().attributes(inputFromContainer('by-id', imageEntry('app')));
    assert.equal(attrs['container.image.name'], undefined);
    assert.equal(attrs['container.image.tags'], undefined);
    assert.match(attrs['container.image.id'] as string, /^sha256:[0-9a-f]{64}$/);
  });

  test('keeps a host:port registry in the image name', () => {
    const attrs = defaults().attributes(inputFromContainer('registry-port', imageEntry('app')));
    assert.equal(attrs['container.image.name'], 'localhost:5000/acme/api');
    assert.deepEqual(attrs['container.image.tags'], ['2.3.1']);
  });
});

describe('createMapper().attributes', () => {
  test('adds the other tags of the same repository and the repo digests from the image', () => {
    const image: ImageEntry = {
      id: `sha256:${'f'.repeat(64)}`,
      repoTags: ['busybox:1.36', 'busybox:latest', 'other/name:9'],
      repoDigests: ['busybox@sha256:aaa'],
      created: '2026-01-01T00:00:00Z',
      labels: {},
      labelOrigins: {},
    };
    const attrs = defaults().attributes(input({}, { imageRef: 'docker.io/library/busybox:1.36', image }));
    assert.equal(attrs['container.image.name'], 'docker.io/library/busybox');
    assert.deepEqual(attrs['container.image.tags'], ['1.36', 'latest']);
    assert.deepEqual(attrs['container.image.repo_digests'], ['busybox@sha256:aaa']);
  });

  test('treats an untagged reference as latest and a digest reference as having no tag', () => {
    assert.deepEqual(defaults().attributes(input({}, { imageRef: 'busybox' }))['container.image.tags'], [
      'latest',
    ]);
    const pinned = defaults().attributes(input({}, { imageRef: 'busybox@sha256:abc' }));
    assert.equal(pinned['container.image.name'], 'busybox');
    assert.equal(pinned['container.image.tags'], undefined);
  });

  test('treats a short image id reference as an id', () => {
    const attrs = defaults().attributes(
      input({}, { imageRef: 'b8492aa2f460', imageId: `sha256:b8492aa2f460${'0'.repeat(52)}` }),
    );
    assert.equal(attrs['container.image.name'], undefined);
  });

  test('resolves service.name by compose service, then swarm service, then OCI title, then Label Schema name', () => {
    const m = defaults();
    const all = {
      'com.docker.compose.service': 'compose',
      'com.docker.swarm.service.name': 'swarm',
      'org.opencontainers.image.title': 'oci',
      'org.label-schema.name': 'ls',
    };
    assert.equal(m.attributes(input(all))['service.name'], 'compose');
    const { 'com.docker.compose.service': _c, ...noCompose } = all;
    assert.equal(m.attributes(input(noCompose))['service.name'], 'swarm');
    const { 'com.docker.swarm.service.name': _s, ...noSwarm } = noCompose;
    assert.equal(m.attributes(input(noSwarm))['service.name'], 'oci');
    assert.equal(m.attributes(input({ 'org.label-schema.name': 'ls' }))['service.name'], 'ls');
    assert.equal(m.attributes(input({}))['service.name'], undefined);
  });

  test('prefers OCI over Label Schema for revision, source and version, and compose project over stack', () => {
    const attrs = defaults().attributes(
      input({
        'org.opencontainers.image.revision': 'oci-rev',
        'org.label-schema.vcs-ref': 'ls-rev',
        'org.opencontainers.image.source': 'https://github.com/acme/oci',
        'org.label-schema.vcs-url': 'https://github.com/acme/ls',
        'org.opencontainers.image.version': '2',
        'org.label-schema.version': '1',
        'com.docker.compose.project': 'proj',
        'com.docker.stack.namespace': 'stack',
      }),
    );
    assert.equal(attrs['vcs.ref.head.revision'], 'oci-rev');
    assert.equal(attrs['vcs.repository.url.full'], 'https://github.com/acme/oci');
    assert.equal(attrs['service.version'], '2');
    assert.equal(attrs['service.namespace'], 'proj');
  });

  test('falls back to the Label Schema URL when the OCI source is not a repository URL', () => {
    const attrs = defaults().attributes(
      input({
        'org.opencontainers.image.source': 'internal',
        'org.label-schema.vcs-url': 'git@bitbucket.org:t/r.git',
      }),
    );
    assert.equal(attrs['vcs.repository.url.full'], 'https://bitbucket.org/t/r');
    assert.equal(attrs['vcs.provider.name'], 'bitbucket');
  });

  test('derives no provider for an unknown host but still names the repository', () => {
    const attrs = defaults().attributes(
      input({ 'org.opencontainers.image.source': 'https://git.acme.dev/o/r' }),
    );
    assert.equal(attrs['vcs.repository.name'], 'r');
    assert.equal(attrs['vcs.owner.name'], 'o');
    assert.equal(attrs['vcs.provider.name'], undefined);
  });

  test('emits only labels matched by include and not by exclude', () => {
    const m = createMapper(
      mappingConfigSchema.parse({
        labels: { include: ['org.opencontainers.*', 'app'], exclude: ['*.vendor'] },
      }),
    );
    const attrs = m.attributes(
      input({
        'org.opencontainers.image.title': 't',
        'org.opencontainers.image.vendor': 'v',
        app: 'a',
        'com.docker.compose.service': 'web',
      }),
    );
    const labelKeys = Object.keys(attrs).filter((k) => k.startsWith('container.label.'));
    assert.deepEqual(labelKeys, ['container.label.app', 'container.label.org.opencontainers.image.title']);
    // Unselected labels still feed the mapped attributes.
    assert.equal(attrs['service.name'], 'web');
  });

  test('emits no labels with an empty include list', () => {
    const m = createMapper(mappingConfigSchema.parse({ labels: { include: [] } }));
    assert.equal(
      Object.keys(m.attributes(input({ a: '1' }))).some((k) => k.startsWith('container.label.')),
      false,
    );
  });

  test('redacts values whose keys match the redact globs, case-insensitively, including keys with a slash', () => {
    const m = defaults();
    const secrets = {
      DB_PASSWORD: 'p1',
      'app.example.io/api-Token': 'p2',
      'com.acme.SecretName': 'p3',
      apikey: 'p4',
    };
    const attrs = m.attributes(input({ ...secrets, plain: 'ok' }));
    for (const key of Object.keys(secrets)) assert.equal(attrs[`container.label.${key}`], '[REDACTED]');
    assert.equal(attrs['container.label.plain'], 'ok');
    const values = JSON.stringify(Object.values(attrs));
    for (const secret of Object.values(secrets)) assert.equal(values.includes(secret), false);
    assert.equal(m.isRedacted('DB_PASSWORD'), true);
    assert.equal(m.isRedacted('plain'), false);
  });

  test('never uses a redacted label as the source of a mapped or ownership attribute', () => {
    const m = createMapper(
      mappingConfigSchema.parse({
        redact: ['org.opencontainers.image.source', 'io.labelcast.contact', '*title*'],
      }),
    );
    const attrs = m.attributes(
      input({
        'org.opencontainers.image.source': 'https://tok@github.com/acme/private',
        'org.label-schema.vcs-url': 'https://github.com/acme/public',
        'io.labelcast.contact': 'secret-contact',
        maintainer: 'public-contact',
        'org.opencontainers.image.title': 'hidden-title',
      }),
    );
    assert.equal(attrs['vcs.repository.url.full'], 'https://github.com/acme/public');
    assert.equal(attrs['support.contact'], 'public-contact');
    assert.equal(attrs['service.name'], undefined);
    const values = JSON.stringify(Object.values(attrs));
    for (const secret of ['private', 'secret-contact', 'hidden-title'])
      assert.equal(values.includes(secret), false);
  });

  test('hides credentials embedded in URL label values', () => {
    const m = defaults();
    const labels = {
      'org.opencontainers.image.source': 'https://ci:glpat-abc123@gitlab.com/acme/api.git',
      'org.opencontainers.image.documentation': 'https://bot:pw@wiki.example.com/runbook',
    };
    const attrs = m.attributes(input(labels));
    assert.equal(
      attrs['container.label.org.opencontainers.image.source'],
      'https://[REDACTED]@gitlab.com/acme/api.git',
    );
    assert.equal(attrs['vcs.repository.url.full'], 'https://gitlab.com/acme/api');
    assert.equal(attrs['runbook.url'], 'https://[REDACTED]@wiki.example.com/runbook');
    assert.equal(JSON.stringify(attrs).includes('glpat-abc123'), false);
    assert.equal(JSON.stringify(m.presentLabels(labels)).includes(':pw@'), false);
  });

  test('cuts long values to max_value_length', () => {
    const m = createMapper(mappingConfigSchema.parse({ max_value_length: 5 }));
    const attrs = m.attributes(input({ 'org.opencontainers.image.title': 'abcdefgh', note: 'x😀yz😀' }));
    assert.equal(attrs['service.name'], 'abcde');
    assert.equal(attrs['container.label.org.opencontainers.image.title'], 'abcde');
    // Never half a surrogate pair.
    assert.equal(attrs['container.label.note'], 'x😀yz');
  });

  test('resolves each ownership attribute from the first present label in its list', () => {
    const m = defaults();
    const labels = {
      maintainer: 'm@example.com',
      'org.opencontainers.image.authors': 'authors@example.com',
      team: 'plain-team',
      'org.opencontainers.image.documentation': 'https://docs.example.com/runbook',
    };
    let attrs = m.attributes(input(labels));
    assert.equal(attrs['support.contact'], 'authors@example.com');
    assert.equal(attrs.team, 'plain-team');
    assert.equal(attrs['runbook.url'], 'https://docs.example.com/runbook');
    attrs = m.attributes(
      input({ ...labels, 'io.labelcast.contact': 'oncall@example.com', 'io.labelcast.team': 'pay' }),
    );
    assert.equal(attrs['support.contact'], 'oncall@example.com');
    assert.equal(attrs.team, 'pay');
    assert.equal(m.attributes(input({ maintainer: 'm@example.com' }))['support.contact'], 'm@example.com');
  });

  test('uses configured ownership attribute names and label keys in their order', () => {
    const m = createMapper(mappingConfigSchema.parse({ ownership: { 'acme.owner': ['owner', 'fallback'] } }));
    const attrs = m.attributes(input({ fallback: 'b', owner: 'a', 'io.labelcast.contact': 'c' }));
    assert.equal(attrs['acme.owner'], 'a');
    assert.equal(attrs['support.contact'], undefined);
    assert.equal(m.attributes(input({ fallback: 'b' }))['acme.owner'], 'b');
  });

  test('returns a frozen set', () => {
    assert.equal(Object.isFrozen(defaults().attributes(input({}))), true);
  });
});

describe('createMapper().settings', () => {
  test('reads io.labelcast.ignore as a boolean', () => {
    const m = defaults();
    for (const v of ['true', 'TRUE', '1', 'yes'])
      assert.equal(m.settings({ 'io.labelcast.ignore': v }).ignore, true);
    for (const v of ['false', '0', '']) assert.equal(m.settings({ 'io.labelcast.ignore': v }).ignore, false);
    assert.equal(m.settings({}).ignore, false);
  });

  test('compiles io.labelcast.multiline.start', () => {
    const re = defaults().settings({ 'io.labelcast.multiline.start': '^\\d{4}-' }).multilineStart;
    assert.ok(re);
    assert.equal(re.test('2026-01-01 boom'), true);
    assert.equal(re.test('  at frame'), false);
  });

  test('reports an invalid multiline pattern once and leaves multiline off', () => {
    const warnings: string[] = [];
    const m = createMapper(mappingConfigSchema.parse(undefined), (msg) => warnings.push(msg));
    assert.equal(m.settings({ 'io.labelcast.multiline.start': '(' }).multilineStart, undefined);
    assert.equal(m.settings({ 'io.labelcast.multiline.start': '(' }).multilineStart, undefined);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /io\.labelcast\.multiline\.start.*fix the pattern/);
  });
});

describe('createMapper().presentLabels', () => {
  test('shows every label with redacted values hidden and long values cut', () => {
    const m = createMapper(mappingConfigSchema.parse({ max_value_length: 3, labels: { include: [] } }));
    assert.deepEqual(m.presentLabels({ b: 'long value', 'x.Password': 'hunter2', a: '1' }), {
      a: '1',
      b: 'lon',
      'x.Password': '[REDACTED]',
    });
  });
});
