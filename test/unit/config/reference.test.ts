import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { loadConfig } from '../../../agent/config/load.ts';
import { configSchema, exporterSchemas, receiverSchemas } from '../../../agent/config/schema.ts';

const REFERENCE = fileURLToPath(new URL('../../../config/labelcast.yaml', import.meta.url));
const text = readFileSync(REFERENCE, 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'lc-reference-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Enables every optional line. The file's convention: an optional line is the real line with a `#`
 * put at its block's indentation (`  #host: …`, `  #  start_at: end`); prose reads `# Text` (one space).
 */
function uncomment(yaml: string): string {
  return yaml
    .split('\n')
    .map((line) => line.replace(/^(\s*)#(?=(?: {2})*(?:[a-z_][\w./-]*:(?:\s|$)|- ))/, '$1'))
    .join('\n');
}

/** Keys that exclude another documented key, so they are shown in prose (`#  #   basic_auth: …`). */
const ALTERNATIVES = new Set(['exporters.loki.basic_auth']);

type Schema = z.core.$ZodType;
type Tree = Record<string, unknown>;

function unwrap(schema: Schema): Schema {
  let s = schema;
  for (;;) {
    const def = s._zod.def as { type: string; innerType?: Schema; in?: Schema };
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else return s;
  }
}

function shapeOf(schema: Schema): Record<string, Schema> | undefined {
  const def = unwrap(schema)._zod.def;
  return def.type === 'object' ? (def as z.core.$ZodObjectDef).shape : undefined;
}

/** Every key of `schema` appears in `doc`, and every key with a default states exactly that default. */
function assertDocumented(schema: Schema, doc: unknown, path: string): void {
  const shape = shapeOf(schema);
  assert.ok(shape, `${path} is an object schema`);
  assert.ok(typeof doc === 'object' && doc !== null, `${path} is documented as a mapping`);
  for (const [key, child] of Object.entries(shape)) {
    const at = path ? `${path}.${key}` : key;
    if (ALTERNATIVES.has(at)) {
      assert.match(text, new RegExp(`#\\s+${key}: `), `${at} is documented as an alternative`);
      continue;
    }
    assert.ok(key in (doc as Tree), `${at} is documented in config/labelcast.yaml`);
    const value: unknown = (doc as Tree)[key];
    if (shapeOf(child)) {
      assertDocumented(child, value, at);
      continue;
    }
    const fallback = (child as z.ZodType).safeParse(undefined);
    if (fallback.success && fallback.data !== undefined) {
      assert.deepEqual((child as z.ZodType).parse(value), fallback.data, `${at} states its default`);
    }
  }
}

describe('config/labelcast.yaml', () => {
  test('as shipped it validates and holds the defaults plus the default json_file to stdout pipeline', () => {
    assert.deepEqual(
      loadConfig({ file: REFERENCE, env: {} }),
      configSchema.parse({
        receivers: { json_file: {} },
        exporters: { stdout: {} },
        pipelines: { logs: { receivers: ['json_file'], exporters: ['stdout'] } },
      }),
    );
  });

  test('with every optional line enabled it still validates', () => {
    const file = join(dir, 'uncommented.yaml');
    writeFileSync(file, uncomment(text));
    const config = loadConfig({ file, env: {} });
    assert.deepEqual(Object.keys(config.receivers).sort(), Object.keys(receiverSchemas).sort());
    assert.deepEqual(Object.keys(config.exporters).sort(), Object.keys(exporterSchemas).sort());
  });

  test('documents every key of the schema, each with its default', () => {
    const doc = parseYaml(uncomment(text)) as Tree;
    const { receivers, exporters, pipelines: _pipelines, ...sections } = configSchema.shape;
    for (const [key, schema] of Object.entries(sections)) {
      if (shapeOf(schema)) assertDocumented(schema, doc[key], key);
      else assert.deepEqual(schema.parse(doc[key]), schema.parse(undefined), `${key} states its default`);
    }
    assert.ok(receivers && exporters);
    for (const [section, schemas] of [
      ['receivers', receiverSchemas],
      ['exporters', exporterSchemas],
    ] as const) {
      const components = doc[section] as Tree;
      for (const [type, schema] of Object.entries(schemas)) {
        assert.ok(type in components, `${section}.${type} is documented`);
        if (shapeOf(schema)) assertDocumented(schema, components[type] ?? {}, `${section}.${type}`);
      }
    }
  });
});
