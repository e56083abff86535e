import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  containerLabelOrigins,
  type ImageHistoryEntry,
  imageLabelOrigins,
} from '../../../agent/metadata/provenance.ts';
import type { ImageEntry } from '../../../agent/metadata/types.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures/docker');

// biome-ignore lint/suspicious/noExplicitAny: recorded engine JSON
function fixture(name: string): any {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8'));
}

function origins(name: string): Record<string, string> {
  return imageLabelOrigins(fixture(`image-${name}`), fixture(`image-${name}.history`));
}

const BASE_KEYS = [
  'com.example.base-only',
  'org.opencontainers.image.authors',
  'org.opencontainers.image.vendor',
] as const;
const APP_KEYS = [
  'com.example.db-password',
  'io.labelcast.contact',
  'io.labelcast.team',
  'org.opencontainers.image.revision',
  'org.opencontainers.image.source',
  'org.opencontainers.image.title',
  'org.opencontainers.image.version',
] as const;

describe('imageLabelOrigins on recorded engine history', () => {
  test('marks every label of an image built FROM scratch as its own', () => {
    for (const origin of Object.values(origins('base'))) assert.equal(origin, 'image');
  });

  test('marks labels set only by the tagged base as base-image and labels the app Dockerfile set as image', () => {
    const o = origins('app');
    for (const key of BASE_KEYS) assert.equal(o[key], 'base-image', key);
    // `source` is set by both; the app's own LABEL wins.
    for (const key of APP_KEYS) assert.equal(o[key], 'image', key);
  });

  test('marks labels kept through docker commit as base-image and labels the commit changed as image', () => {
    const plain = origins('committed');
    for (const key of [...BASE_KEYS, 'io.labelcast.team', 'org.opencontainers.image.title']) {
      assert.equal(plain[key], 'base-image', key);
    }
    // The committed container's own --label values: a new key and a changed value.
    assert.equal(plain['run.label'], 'image');
    assert.equal(plain['org.opencontainers.image.version'], 'image');

    const changed = origins('committed-change');
    assert.equal(changed['commit.label'], 'image');
    assert.equal(changed['io.labelcast.team'], 'image');
    assert.equal(changed['io.labelcast.contact'], 'base-image');
  });

  test('finds the base boundary of an untagged image built FROM a tagged base', () => {
    const o = origins('untagged');
    assert.equal(o['org.opencontainers.image.title'], 'image');
    for (const key of BASE_KEYS) assert.equal(o[key], 'base-image', key);
  });

  test('counts the whole history as the own build when the base ids show <missing> (documented limit)', () => {
    const history = fixture('image-loaded.history') as ImageHistoryEntry[];
    assert.equal(history[1]?.Id, '<missing>');
    for (const origin of Object.values(origins('loaded'))) assert.equal(origin, 'image');
  });

  test('treats a pulled parent (an id above <missing> entries) as the base', () => {
    const image = { Id: 'sha256:top', Config: { Labels: { a: '1', b: 'two words', c: '3' } } };
    const history: ImageHistoryEntry[] = [
      { Id: 'sha256:top', CreatedBy: '/bin/sh -c #(nop)  LABEL c=3', Tags: ['x:1'] },
      { Id: 'sha256:mid', CreatedBy: '/bin/sh -c #(nop)  CMD ["sh"]', Tags: null },
      {
        Id: 'sha256:pulled',
        CreatedBy: 'LABEL a=1 b=two words',
        Tags: null,
        Comment: 'buildkit.dockerfile.v0',
      },
      { Id: '<missing>', CreatedBy: '/bin/sh -c #(nop) ADD file:abc in / ', Tags: null },
    ];
    assert.deepEqual(imageLabelOrigins(image, history), { a: 'base-image', b: 'base-image', c: 'image' });
  });

  test('reads a value that runs into a key settled by a newer step correctly', () => {
    const image = { Id: 'sha256:top', Config: { Labels: { a: 'x y', b: 'new' } } };
    const history: ImageHistoryEntry[] = [
      { Id: 'sha256:top', CreatedBy: '/bin/sh -c #(nop)  LABEL b=new', Tags: ['x:2'] },
      { Id: 'sha256:base', CreatedBy: '/bin/sh -c #(nop)  LABEL a=x y b=old', Tags: ['base:1'] },
    ];
    assert.deepEqual(imageLabelOrigins(image, history), { a: 'base-image', b: 'image' });
  });

  test('returns nothing for an image without labels', () => {
    assert.deepEqual(imageLabelOrigins({ Id: 'sha256:x', Config: { Labels: null } }, []), {});
  });
});

describe('containerLabelOrigins', () => {
  const image: ImageEntry = {
    id: 'sha256:x',
    repoTags: [],
    repoDigests: [],
    created: '',
    labels: { a: '1', b: '2' },
    labelOrigins: { a: 'image', b: 'base-image' },
  };

  test('keeps the image origin for an unchanged image label and says container for new or changed ones', () => {
    assert.deepEqual(containerLabelOrigins({ a: '1', b: 'changed', c: 'new' }, image), {
      a: 'image',
      b: 'container',
      c: 'container',
    });
  });

  test('says container for every label when the image is unknown', () => {
    assert.deepEqual(containerLabelOrigins({ a: '1' }, undefined), { a: 'container' });
  });
});
