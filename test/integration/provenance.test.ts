import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type Docker from 'dockerode';
import { mappingConfigSchema } from '../../agent/metadata/config.ts';
import { createMapper } from '../../agent/metadata/mapping.ts';
import {
  containerLabelOrigins,
  type ImageHistoryEntry,
  imageLabelOrigins,
} from '../../agent/metadata/provenance.ts';
import type { ImageEntry } from '../../agent/metadata/types.ts';
import { runDetached } from '../helpers/containers.ts';
import { APP_REVISION, type Engine, startEngine, TEST_IMAGES } from '../helpers/dockerd.ts';
import { engineClient } from '../helpers/metadata.ts';

let engine: Engine;
let docker: Docker;

before(async () => {
  engine = await startEngine();
  docker = engineClient(engine);
});

after(async () => {
  await engine?.close();
});

/** What the store does for an image: inspect + history, then provenance. */
async function loadImage(ref: string): Promise<ImageEntry> {
  const image = docker.getImage(ref);
  const inspect = await image.inspect();
  const history = (await image.history()) as ImageHistoryEntry[];
  return {
    id: inspect.Id,
    repoTags: inspect.RepoTags ?? [],
    repoDigests: inspect.RepoDigests ?? [],
    created: inspect.Created,
    labels: inspect.Config.Labels ?? {},
    labelOrigins: imageLabelOrigins(inspect, history),
  };
}

describe('label provenance against a real engine', () => {
  test('a container of an image built FROM a labelled base shows container, image and base-image origins', async () => {
    await runDetached(
      engine,
      '--name',
      'prov-app',
      '--label',
      'io.labelcast.team=checkout',
      '--label',
      'deploy.ring=canary',
      TEST_IMAGES.app,
    );
    const container = await docker.getContainer('prov-app').inspect();
    const image = await loadImage(container.Image);
    const origins = containerLabelOrigins(container.Config.Labels, image);
    assert.equal(origins['deploy.ring'], 'container');
    // Overrides the app image's io.labelcast.team=payments.
    assert.equal(origins['io.labelcast.team'], 'container');
    assert.equal(origins['org.opencontainers.image.revision'], 'image');
    assert.equal(origins['org.opencontainers.image.source'], 'image');
    assert.equal(origins['org.opencontainers.image.vendor'], 'base-image');
    assert.equal(origins['com.example.base-only'], 'base-image');
  });

  test('an image made by docker commit keeps its parent labels as base-image', async () => {
    await engine.docker(
      'run',
      '--network',
      'none',
      '--name',
      'prov-commit',
      TEST_IMAGES.app,
      'sh',
      '-c',
      'true',
    );
    await engine.docker('commit', '--change', 'LABEL hotfix=1', 'prov-commit', 'lc-test/prov-commit:1');
    const image = await loadImage('lc-test/prov-commit:1');
    assert.equal(image.labels['org.opencontainers.image.revision'], APP_REVISION);
    assert.equal(image.labelOrigins['org.opencontainers.image.revision'], 'base-image');
    assert.equal(image.labelOrigins['org.opencontainers.image.vendor'], 'base-image');
    assert.equal(image.labelOrigins.hotfix, 'image');
  });

  test("an untagged image's labels are readable and mapped", async () => {
    const id = await engine.build(
      `FROM ${TEST_IMAGES.base}\nLABEL org.opencontainers.image.title=nightly org.opencontainers.image.revision=abc123\n`,
    );
    const image = await loadImage(id);
    assert.deepEqual(image.repoTags, []);
    assert.equal(image.labels['org.opencontainers.image.title'], 'nightly');
    assert.equal(image.labelOrigins['org.opencontainers.image.title'], 'image');
    assert.equal(image.labelOrigins['org.opencontainers.image.source'], 'base-image');

    await runDetached(engine, '--name', 'prov-untagged', id);
    const c = await docker.getContainer('prov-untagged').inspect();
    const attrs = createMapper(mappingConfigSchema.parse(undefined)).attributes({
      id: c.Id,
      name: c.Name,
      imageRef: c.Config.Image,
      imageId: c.Image,
      image,
      labels: c.Config.Labels,
    });
    assert.equal(attrs['container.image.name'], undefined);
    assert.equal(attrs['container.image.id'], id);
    assert.equal(attrs['service.name'], 'nightly');
    assert.equal(attrs['vcs.ref.head.revision'], 'abc123');
    assert.equal(attrs['vcs.repository.url.full'], 'https://github.com/acme/base');
    assert.equal(attrs['support.contact'], 'platform@example.com');
  });

  test("an image whose base ids show <missing> still has its labels, all counted as the image's own", async () => {
    const id = await engine.build(`FROM ${TEST_IMAGES.base}\nLABEL stage=loaded\n`, 'lc-test/prov-loaded:1');
    const tar = `${engine.dataRoot}/../prov-loaded.tar`;
    await engine.docker('save', '-o', tar, 'lc-test/prov-loaded:1');
    await engine.docker('rmi', 'lc-test/prov-loaded:1');
    await engine.docker('load', '-q', '-i', tar);
    const history = (await docker.getImage(id).history()) as ImageHistoryEntry[];
    assert.equal(history[0]?.Id, id);
    assert.equal(history[1]?.Id, '<missing>');
    const image = await loadImage(id);
    assert.equal(image.labels.stage, 'loaded');
    assert.equal(image.labelOrigins.stage, 'image');
    assert.equal(image.labelOrigins['com.example.base-only'], 'image');
  });
});
