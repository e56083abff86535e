import { readFileSync } from 'node:fs';
import { parseDocument, parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { type Config, configSchema, exporterSchemas, receiverSchemas } from './schema.ts';

export interface LoadConfigOptions {
  /** YAML file to read; defaults to LABELCAST_CONFIG, then no file (schema defaults). */
  file?: string | undefined;
  /** Environment to overlay (`LABELCAST_*`); defaults to process.env. */
  env?: NodeJS.ProcessEnv | undefined;
}

/** Environment variables that name a config key directly, for the keys operators set most. */
export const ENV_ALIASES: Readonly<Record<string, readonly string[]>> = {
  LABELCAST_DOCKER_HOST: ['docker', 'host'],
  LABELCAST_DOCKER_TLS_VERIFY: ['docker', 'tls_verify'],
  LABELCAST_DOCKER_CERT_PATH: ['docker', 'cert_path'],
  LABELCAST_LOG_LEVEL: ['telemetry', 'log_level'],
  LABELCAST_METRICS_LISTEN: ['telemetry', 'metrics_listen'],
};

/** Variables under the LABELCAST_ prefix that are not config keys. */
const NOT_KEYS = new Set(['LABELCAST_CONFIG']);
const PREFIX = 'LABELCAST_';

type Path = readonly PropertyKey[];
type Tree = Record<string, unknown>;

/**
 * Maps a `LABELCAST_*` variable to a config key path: an alias from ENV_ALIASES, or the general rule
 * `LABELCAST_<SECTION>__<KEY>…` (`__` separates levels, names are lower-cased), so
 * `LABELCAST_STATE_DIR` → `state_dir` and `LABELCAST_RECEIVERS__JSON_FILE__START_AT` →
 * `receivers.json_file.start_at`. Returns undefined for variables that are not config keys.
 */
export function envVarToPath(name: string): string[] | undefined {
  if (!name.startsWith(PREFIX) || NOT_KEYS.has(name)) return undefined;
  const alias = ENV_ALIASES[name];
  if (alias) return [...alias];
  const segments = name.slice(PREFIX.length).toLowerCase().split('__');
  return segments.every((s) => s !== '') ? segments : undefined;
}

/**
 * An env value is read as a YAML scalar or flow collection (`5000` is a number, `[a, b]` a list),
 * except for keys that only take a string, so a tenant `007` or a token `true` stays as written.
 */
function parseEnvValue(raw: string, path: readonly string[]): unknown {
  const schema = schemaAt(path);
  const type = schema && unwrap(schema)._zod.def.type;
  if (type === 'string' || type === 'enum') return raw;
  try {
    const value: unknown = parseYaml(raw);
    return value === null ? raw : value;
  } catch {
    return raw;
  }
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function setPath(tree: Tree, path: readonly string[], value: unknown): void {
  let node = tree;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (!isTree(next)) node[key] = {};
    node = node[key] as Tree;
  }
  node[path[path.length - 1] as string] = value;
}

function getPath(tree: unknown, path: Path): unknown {
  let node = tree;
  for (const key of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/**
 * `key:` with nothing after it (a section whose keys are all commented out) means "not set". A
 * component written `stdout:` is kept: it means "this component, with its defaults".
 */
function dropNulls(tree: Tree, path: readonly string[] = []): Tree {
  const componentMap = path.length === 1 && (path[0] === 'receivers' || path[0] === 'exporters');
  for (const [key, value] of Object.entries(tree)) {
    if (value === null && !componentMap) delete tree[key];
    else if (isTree(value)) dropNulls(value, [...path, key]);
  }
  return tree;
}

function readYamlFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new ConfigError(
      `Cannot read config ${file}: ${why} (pass an existing file with --config or LABELCAST_CONFIG)`,
      { cause: err },
    );
  }
  const doc = parseDocument(text);
  const first = doc.errors[0];
  if (first) {
    // The message's first line already ends with "at line L, column C".
    throw new ConfigError(
      `Cannot parse config ${file}: ${first.message.split('\n')[0]?.replace(/:$/, '')} (fix the YAML syntax)`,
    );
  }
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) return {};
  if (!isTree(data)) {
    throw new ConfigError(
      `Cannot parse config ${file}: the top level must be a mapping of keys, not a list or a value`,
    );
  }
  return dropNulls(data);
}

/**
 * Reads the YAML file (if any), overlays `LABELCAST_*` variables, and validates against the schema.
 * Throws ConfigError with one line per problem, each naming the key path, the value given and what
 * is allowed. With no file, returns the schema defaults (plus the environment overlay).
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? (env.LABELCAST_CONFIG || undefined);
  const raw: Tree = file === undefined ? {} : readYamlFile(file);
  const fromEnv = new Map<string, string>();
  for (const [name, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (value === undefined || value === '') continue;
    const path = envVarToPath(name);
    if (!path) continue;
    setPath(raw, path, parseEnvValue(value, path));
    fromEnv.set(path.join('.'), name);
  }
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const source = file ?? 'from environment';
  const lines = result.error.issues.flatMap((issue) => describeIssue(issue, raw, fromEnv));
  throw new ConfigError(lines.map((line) => `Invalid config ${source}: ${line}`).join('\n'), {
    cause: result.error,
  });
}

function formatPath(path: Path): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

/** Keys whose values must not be echoed back in an error (they end up in terminals and CI logs). */
const SECRET_KEY = /pass(word)?|secret|token|authorization|api[-_]?key|credential/i;

/** The value given, as shown in an error: short, and without secrets or nested values. */
function formatValue(value: unknown, path: Path): string {
  if (value === undefined) return 'nothing';
  if (path.some((key) => typeof key === 'string' && SECRET_KEY.test(key))) return '[REDACTED]';
  // A mapping may hold credentials below it; its keys are enough to recognise it.
  if (isTree(value)) return `{${Object.keys(value).join(', ')}}`;
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Turns one zod issue into lines of `path: got VALUE, expected ALLOWED`. */
function describeIssue(issue: z.core.$ZodIssue, raw: Tree, fromEnv: Map<string, string>): string[] {
  const where = (path: Path): string => {
    const name = fromEnv.get(path.map(String).join('.'));
    return name ? `${formatPath(path)} (from ${name})` : formatPath(path);
  };
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(issue.path);
    return issue.keys.map((key) => {
      const path = [...issue.path, key];
      const hint = allowed.length > 0 ? `, expected one of ${allowed.join(', ')}` : '';
      const guess = closest(key, allowed);
      return `${where(path)}: unknown key${hint}${guess ? ` (did you mean ${guess}?)` : ''}`;
    });
  }
  if (issue.code === 'invalid_key') {
    const key = issue.path[issue.path.length - 1];
    return [`${where(issue.path)}: unknown name ${formatValue(key, [])}, ${expectation(issue.issues[0])}`];
  }
  const given = getPath(raw, issue.path);
  const got = `${where(issue.path)}: got ${formatValue(given, issue.path)}`;
  // Cross-field rules explain themselves ("set either basic_auth or bearer_token, not both").
  if (issue.code === 'custom' && !issue.message.startsWith('expected')) return [`${got}: ${issue.message}`];
  return [`${got}, ${expectation(issue)}`];
}

/** What the schema allows, phrased as `expected …`. */
function expectation(issue: z.core.$ZodIssue | undefined): string {
  if (!issue) return 'expected a valid value';
  switch (issue.code) {
    case 'invalid_value':
      return `expected one of ${issue.values.map(String).join(', ')}`;
    case 'invalid_type':
      return issue.expected === 'undefined'
        ? 'expected no value here'
        : `expected ${article(issue.expected)}`;
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const op = issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
      const n = Number(bound);
      const least = issue.code === 'too_small' ? 'at least' : 'at most';
      if (issue.origin === 'array' || issue.origin === 'set')
        return `expected ${least} ${n} item${n === 1 ? '' : 's'}`;
      if (issue.origin === 'string') return `expected ${least} ${n} character${n === 1 ? '' : 's'}`;
      return `expected a number ${op} ${String(bound)}`;
    }
    case 'invalid_union': {
      const kinds = issue.errors.flatMap((branch) =>
        branch.flatMap((i) => (i.code === 'invalid_type' ? [i.expected] : [])),
      );
      if (kinds.length > 0) return `expected ${kinds.map(article).join(' or ')}`;
      return issue.message;
    }
    default:
      // Format checks carry their own "expected …" text in the schema.
      return issue.message.startsWith('expected') ? issue.message : `expected ${issue.message}`;
  }
}

function article(type: string): string {
  if (type === 'object') return 'a mapping of keys';
  if (type === 'array') return 'a list';
  if (type === 'int') return 'an integer';
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** The schema that validates the value at a config path, or undefined when the path is not a key. */
function schemaAt(path: Path): z.core.$ZodType | undefined {
  let schema: z.core.$ZodType | undefined = configSchema;
  let rest = path;
  const [section, id] = path;
  if ((section === 'receivers' || section === 'exporters') && typeof id === 'string') {
    // Component entries are validated by the schema of their type (the part before `/`).
    const schemas: Record<string, z.core.$ZodType> =
      section === 'receivers' ? receiverSchemas : exporterSchemas;
    schema = schemas[id.split('/')[0] ?? ''];
    rest = path.slice(2);
  }
  for (const key of rest) schema = schema && childSchema(schema, key);
  return schema;
}

/** The keys a strict object accepts at a config path, found by walking the schema. */
export function allowedKeys(path: Path): string[] {
  const schema = schemaAt(path);
  const def = schema && unwrap(schema)._zod.def;
  if (def?.type === 'object') return Object.keys((def as z.core.$ZodObjectDef).shape);
  if (def?.type === 'record') {
    const keyDef = (def as z.core.$ZodRecordDef).keyType._zod.def;
    if (keyDef.type === 'enum') return Object.values((keyDef as z.core.$ZodEnumDef).entries).map(String);
  }
  return [];
}

/** Strips defaults, optionals and transforms down to the schema that checks the value's shape. */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let s = schema;
  for (;;) {
    const def = s._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else return s;
  }
}

function childSchema(schema: z.core.$ZodType, key: PropertyKey): z.core.$ZodType | undefined {
  const s = unwrap(schema);
  const def = s._zod.def;
  if (def.type === 'object') return (def as z.core.$ZodObjectDef).shape[String(key)];
  if (def.type === 'record') return (def as z.core.$ZodRecordDef).valueType;
  if (def.type === 'array') return (def as z.core.$ZodArrayDef).element;
  return undefined;
}

/** The known key nearest to a misspelled one, if it is near enough to be a typo. */
function closest(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  // Short keys tolerate fewer edits, so `bogus` is not "close" to `logs`.
  let bestDistance = Math.max(1, Math.floor(key.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = editDistance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: a swap of two neighbours (`hots` → `host`) counts as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = best;
    }
  }
  return at(a.length, b.length);
}
